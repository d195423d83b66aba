/**
 * A mirrored pair's client end framed in user space (bpf/http_mirror.h): the framer places each
 * exchange in the connection's byte stream by TCP sequence number, and the server end's stamps
 * give its times for the same bytes, across the sequence space's wrap.
 */

import { assertEquals } from "./helpers/assert.ts";
import { type Chunk, Http1Conn } from "../probes/http1.ts";
import { MirrorStamps } from "../probes/mirror_stamps.ts";

const enc = new TextEncoder();

/** A chunk of a client end (requests out, responses in), all captured, ending at `seqEnd`. */
function at(dir: "in" | "out", ts: number, text: string, seqEnd: number): Chunk {
  const b = enc.encode(text);
  return { dir, ts: BigInt(ts), len: b.length, head: b, tail: new Uint8Array(0), seq: seqEnd };
}

Deno.test("mirror: exchanges carry where their request starts and their response ends", () => {
  const conn = new Http1Conn();
  // the request stream starts just below the wrap, the response stream at 5000
  const req1 = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  const req2 = "POST /b HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
  const resp1 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
  const resp2 = "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
  const r0 = 0xffff_fff0;
  const w1 = (r0 + req1.length) >>> 0, w2 = (w1 + req2.length) >>> 0;
  const out = [
    ...conn.push(at("out", 1, req1 + req2, w2)), // pipelined in one write
    ...conn.push(at("in", 2, resp1.slice(0, 20), 5020)),
    ...conn.push(at("in", 3, resp1.slice(20) + resp2.slice(0, 30), 5000 + resp1.length + 30)),
    ...conn.push(at("in", 4, resp2.slice(30), 5000 + resp1.length + resp2.length)),
  ];
  assertEquals(
    out.map((x) => [x.method, x.status, x.reqSeq, x.respEndSeq]),
    [
      ["GET", 200, r0, 5000 + resp1.length],
      ["POST", 201, w1, 5000 + resp1.length + resp2.length],
    ],
  );
});

Deno.test("mirror: a server end's stamps by sequence number, across the wrap", () => {
  const s = new MirrorStamps();
  // reads [0xfffffff0, 0x10) and [0x10, 0x30); writes begin at 100, 200 and 300
  s.add(true, 0xffff_fff0, 0x10, 10n);
  s.add(true, 0x10, 0x30, 20n);
  s.add(true, 0x10, 0x30, 20n); // sent twice (a client end going to user space meanwhile)
  for (const [seq, ts] of [[100, 30n], [200, 40n], [300, 50n]] as const) s.add(false, seq, 0, ts);
  assertEquals(
    [0xffff_fff0, 0xffff_ffff, 0, 0x0f, 0x10, 0x2f, 0x30].map((b) => s.readAt(b)),
    [10n, 10n, 10n, 10n, 20n, 20n, undefined],
  );
  assertEquals([99, 100, 199, 200, 299, 300, 5000].map((b) => s.writeAt(b)), [
    undefined,
    30n,
    30n,
    40n,
    40n,
    50n,
    50n,
  ]);
});
