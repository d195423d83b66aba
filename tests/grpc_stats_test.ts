/** The gRPC counts: one series per container, side, service, method and status. */

import { assert, assertEquals } from "./helpers/assert.ts";
import { GrpcStats } from "../probes/grpc_stats.ts";
import { SIZE_BOUNDS } from "../probes/buckets.ts";
import type { H2Call } from "../probes/h2/conn.ts";

function call(o: Partial<H2Call> = {}): H2Call {
  return {
    side: "server",
    streamId: 1,
    grpc: true,
    method: "POST",
    path: "/a.S/M",
    service: "a.S",
    rpcMethod: "M",
    status: 200,
    grpcStatus: 0,
    startNs: 1_000_000n,
    endNs: 3_000_000n,
    requestMessages: 1,
    responseMessages: 1,
    requestSizes: { bounds: SIZE_BOUNDS, counts: [1, ...new Array(11).fill(0)], sum: 10, count: 1 },
    requestBytes: 15,
    responseBytes: 0,
    kind: "unary",
    outcome: "complete",
    pathUnknown: false,
    grpcMessage: "",
    scheme: "http",
    authority: "",
    contentType: "application/grpc",
    userAgent: "",
    timeoutSeconds: -1,
    traceparent: "",
    errorCode: -1,
    truncated: false,
    reqSeq: -1,
    respEndSeq: -1,
    ...o,
  };
}

const snap = (g: GrpcStats) => g.snapshot({ ts: "" } as never);

Deno.test("grpc stats: calls fall in their own series, however they interleave", () => {
  const g = new GrpcStats();
  const kinds: [string, H2Call["side"], string, string, number][] = [];
  for (const c of ["a", "b"]) {
    for (const side of ["server", "client"] as const) {
      for (const m of ["M", "N", "O"]) for (const st of [0, 5]) kinds.push([c, side, "a.S", m, st]);
    }
  }
  // more series than are remembered as recent, in an order that defeats any recency
  for (let i = 0; i < 10; i++) {
    for (const [k, [c, side, svc, m, st]] of kinds.entries()) {
      for (let j = 0; j <= k % 3; j++) {
        g.add(c, call({ side, grpcStatus: st, pathUnknown: st === 5 }), svc, m);
      }
    }
  }
  const e = snap(g);
  assertEquals(e.series.length, kinds.length);
  for (const [k, [c, side, svc, m, st]] of kinds.entries()) {
    const s = e.series.find((s) =>
      s.container === c && s.side === side && s.service === svc && s.method === m &&
      s.grpc_status === st
    );
    assert(s !== undefined, `${k}`);
    assertEquals(s.duration.count, 10 * (1 + k % 3), `${k}`);
    assertEquals(s.request_message_bytes.count, 10 * (1 + k % 3), `${k}`);
    assertEquals(s.request_message_bytes.counts[0], 10 * (1 + k % 3), `${k}`);
    assertEquals(s.response_message_bytes.count, 0, `${k}`);
    assertEquals(Math.round(s.duration.sum * 1e6), 2000 * 10 * (1 + k % 3), `${k}`);
  }
  const unknown = [...kinds.entries()].filter(([, k]) => k[4] === 5);
  assertEquals(e.unknown_method_calls, unknown.reduce((n, [k]) => n + 10 * (1 + k % 3), 0));
});

Deno.test("grpc stats: methods beyond the series limit are counted as other", () => {
  const g = new GrpcStats();
  for (let i = 0; i < 2000; i++) g.add("c", call(), "a.S", `M${i}`);
  g.add("c", call(), "a.S", "M1999"); // known: its own series still
  for (let i = 0; i < 3; i++) g.add("c", call(), "a.S", "New");
  g.add("c", call(), "a.S", "Newer");
  const e = snap(g);
  assertEquals(e.series.length, 2001);
  assertEquals(e.series.find((s) => s.method === "M1999")!.duration.count, 2);
  assertEquals(e.series.find((s) => s.method === "other")!.duration.count, 4);
});
