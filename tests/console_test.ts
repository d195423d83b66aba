/** ConsoleSink: every line written whole, once and in order, ASCII or not, batched and on time. */

import { ConsoleSink } from "../exporters/console.ts";
import type { TcpEvent } from "../probes/events.ts";
import { assertEquals } from "./helpers/assert.ts";

Deno.test("console: batches of any size and UTF-8 width come out byte for byte", () => {
  const chunks: Uint8Array[] = [];
  // a writer that takes at most 1000 bytes per call, as a pipe may
  const out = {
    writeSync(p: Uint8Array): number {
      const n = Math.min(p.length, 1000);
      chunks.push(p.slice(0, n));
      return n;
    },
  };
  const sink = new ConsoleSink("json", "normal", out);
  const expected: string[] = [];
  for (let i = 0; i < 3000; i++) {
    const e: TcpEvent = {
      ts: "2026-01-01T00:00:00.000000Z",
      type: "tcp_accept",
      pid: i,
      // wide characters (2, 3 and 4 bytes in UTF-8) in some lines, long lines in others
      // and a few lines longer than what is left of a batch, or than a whole one
      comm: i % 1000 === 999
        ? "é".repeat(150_000)
        : i % 100 === 50
        ? "é".repeat(40_000)
        : i % 3
        ? `srv-${"ñ✓😀".repeat(i % 50)}`
        : "x".repeat(i % 500),
      family: "ipv4",
      saddr: "10.0.0.1",
      sport: 80,
      daddr: "10.0.0.2",
      dport: 1000 + i,
      conn_id: i.toString(16),
    };
    sink.event(e);
    expected.push(JSON.stringify(e));
  }
  sink.flush();
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) (all.set(c, at), at += c.length);
  assertEquals(new TextDecoder().decode(all), expected.join("\n") + "\n");
});

Deno.test("console: a line longer than what is left of the batch is written once", () => {
  const written: Uint8Array[] = [];
  const sink = new ConsoleSink("json", "normal", {
    writeSync: (p) => (written.push(p.slice()), p.length),
  });
  const event = (comm: string, pid: number): TcpEvent => ({
    ts: "2026-01-01T00:00:00.000000Z",
    type: "tcp_accept",
    pid,
    comm,
    family: "ipv4",
    saddr: "10.0.0.1",
    sport: 80,
    daddr: "10.0.0.2",
    dport: 1000,
    conn_id: "1",
  });
  const expected: string[] = [];
  const add = (e: TcpEvent) => (sink.event(e), expected.push(JSON.stringify(e)));
  // fill the batch to just under its 64 KiB flush mark, then a line that fits only an empty one
  const filler = JSON.stringify(event("x".repeat(100), 0)).length + 1;
  for (let i = 0; i < Math.floor(60_000 / filler); i++) add(event("x".repeat(100), i));
  add(event("y".repeat(80_000), -1));
  add(event("z", -2));
  sink.flush();
  const text = written.map((b) => new TextDecoder().decode(b)).join("");
  assertEquals(text, expected.join("\n") + "\n");
});

Deno.test("console: waiting lines are written after flushAfterMs, with one timer per batch", async () => {
  const writes: string[] = [];
  const sink = new ConsoleSink("json", "normal", {
    writeSync: (p) => (writes.push(new TextDecoder().decode(p)), p.length),
  }, 30);
  const accept = (pid: number): TcpEvent => ({
    ts: "2026-01-01T00:00:00.000000Z",
    type: "tcp_accept",
    pid,
    comm: "srv",
    family: "ipv4",
    saddr: "10.0.0.1",
    sport: 80,
    daddr: "10.0.0.2",
    dport: 1000 + pid,
    conn_id: pid.toString(16),
  });
  sink.event(accept(1));
  sink.event(accept(2));
  assertEquals(writes.length, 0);
  await new Promise((r) => setTimeout(r, 120));
  // both lines in one write, by the timer the first line armed
  assertEquals(writes, [`${JSON.stringify(accept(1))}\n${JSON.stringify(accept(2))}\n`]);
  // an explicit flush writes at once and disarms the timer of the next batch (no timer leaks)
  sink.event(accept(3));
  sink.flush();
  assertEquals(writes.length, 2);
  assertEquals(writes[1], `${JSON.stringify(accept(3))}\n`);
});
