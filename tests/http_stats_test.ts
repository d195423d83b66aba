/** The HTTP counts: one series per container, side, method, route, status and outcome. */

import { assert, assertEquals } from "./helpers/assert.ts";
import { HttpStats } from "../probes/http_stats.ts";
import type { HttpExchange } from "../probes/http1.ts";

function exchange(o: Partial<HttpExchange> = {}): HttpExchange {
  return {
    side: "server",
    method: "GET",
    target: "/",
    version: "1.1",
    status: 200,
    startNs: 1_000_000n,
    endNs: 3_000_000n,
    requestBodyBytes: 0,
    responseBodyBytes: 100,
    contentType: "",
    traceparent: "",
    outcome: "complete",
    credentials: false,
    ...o,
  };
}

const snap = (h: HttpStats) => h.snapshot({ ts: "" } as never);

Deno.test("http stats: exchanges fall in their own series, however they interleave", () => {
  const h = new HttpStats();
  const kinds: [string, HttpExchange["side"], string, number, HttpExchange["outcome"]][] = [];
  for (const c of ["a", "b"]) {
    for (const side of ["server", "client"] as const) {
      for (const m of ["GET", "POST"]) {
        for (const st of [200, 503]) {
          for (const out of ["complete", "closed"] as const) kinds.push([c, side, m, st, out]);
        }
      }
    }
  }
  // more series than are remembered as recent, in an order that defeats any recency
  for (let i = 0; i < 10; i++) {
    for (const [k, [c, side, method, status, outcome]] of kinds.entries()) {
      for (let j = 0; j <= k % 3; j++) {
        h.add(c, exchange({ side, method, status, outcome }), `/r${k % 2}`);
      }
    }
  }
  const e = snap(h);
  assertEquals(e.series.length, kinds.length);
  for (const [k, [c, side, method, status, outcome]] of kinds.entries()) {
    const s = e.series.find((s) =>
      s.container === c && s.side === side && s.method === method && s.status === status &&
      s.route === `/r${k % 2}` && s.error === (outcome === "complete" ? "" : outcome)
    );
    assert(s !== undefined, `${k}`);
    assertEquals(s.duration.count, 10 * (1 + k % 3), `${k}`);
    assertEquals(s.response_bytes.sum, 100 * 10 * (1 + k % 3), `${k}`);
    assertEquals(Math.round(s.duration.sum * 1e6), 2000 * 10 * (1 + k % 3), `${k}`);
  }
});

Deno.test("http stats: routes beyond the series limit are counted as other", () => {
  const h = new HttpStats();
  for (let i = 0; i < 2000; i++) h.add("c", exchange(), `/r${i}`);
  h.add("c", exchange(), "/r1999"); // known: its own series still
  for (let i = 0; i < 3; i++) h.add("c", exchange(), "/new");
  h.add("c", exchange(), "/newer");
  const e = snap(h);
  assertEquals(e.series.length, 2001);
  assertEquals(e.series.find((s) => s.route === "/r1999")!.duration.count, 2);
  assertEquals(e.series.find((s) => s.route === "other")!.duration.count, 4);
});
