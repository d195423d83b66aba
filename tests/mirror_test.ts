/**
 * A mirrored pair's client end framed in user space (bpf/http_mirror.h): the framer places each
 * exchange in the connection's byte stream by TCP sequence number, and the server end's stamps
 * give its times for the same bytes, across the sequence space's wrap; a kernel record of a
 * mirrored exchange gives both ends' exchanges, whether built or only counted.
 */

import { assertEquals } from "./helpers/assert.ts";
import { type Chunk, Http1Conn } from "../probes/http1.ts";
import { MirrorStamps } from "../probes/mirror_stamps.ts";
import { KERNEL_RECORD, KernelHttp1 } from "../probes/http1_records.ts";
import { HTTP1_EVENT_LAYOUT as R, HTTP1_EVENT_SIZE } from "../bpf/gen/http.ts";

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

/** An EXCHANGE record of a client end whose server end mirrors it, as the kernel writes it. */
function mirroredExchange(): Uint8Array {
  const b = new Uint8Array(HTTP1_EVENT_SIZE);
  const v = new DataView(b.buffer);
  const u64 = (f: { offset: number }, n: bigint) => v.setBigUint64(f.offset, n, true);
  u64(R.ts_ns, 5_000_000_123n); // the response's end at the client end
  u64(R.req_ts_ns, 4_999_000_000n);
  u64(R.resp_body, 1024n);
  u64(R.req_body, 7n);
  u64(R.srv_sock, 0xffff_8880_1234_5678n);
  u64(R.srv_req_ts, 4_999_100_000n);
  u64(R.srv_resp_ts, 4_999_900_000n);
  v.setUint8(R.kind.offset, KERNEL_RECORD.EXCHANGE);
  v.setUint8(R.req_dir.offset, 0); // sent: the client end
  v.setUint8(R.method.offset, 2); // POST
  v.setUint8(R.flags.offset, 64); // HTTP1_MIRRORED
  v.setUint16(R.status.offset, 201, true);
  v.setUint32(R.srv_container.offset, 3, true);
  v.setUint32(R.srv_pid.offset, 42, true);
  b.set(enc.encode("app"), R.srv_comm.offset);
  const target = enc.encode("/orders/17");
  v.setUint16(R.target_len.offset, target.length, true);
  b.set(target, R.data.offset);
  return b;
}

Deno.test("mirror: a run that only counts takes the same numbers from a record as its exchanges", () => {
  const b = mirroredExchange();
  const view = new DataView(b.buffer);
  const built = new KernelHttp1().push(view, b, 0, KERNEL_RECORD.EXCHANGE);
  const counted: unknown[][] = [];
  const took = new KernelHttp1().count(view, b, 0, KERNEL_RECORD.EXCHANGE, (...a) => {
    counted.push(a);
  });
  assertEquals(took, true);
  const peer = { sock: 0xffff_8880_1234_5678n, container: 3, pid: 42, comm: "app" };
  assertEquals(
    built.map((x) => [
      x.side,
      x.method,
      x.target,
      x.status,
      x.outcome,
      Number(x.endNs - x.startNs),
      x.requestBodyBytes,
      x.responseBodyBytes,
      x.peer,
    ]),
    [
      ["client", "POST", "/orders/17", 201, "complete", 1_000_123, 7, 1024, undefined],
      ["server", "POST", "/orders/17", 201, "complete", 800_000, 7, 1024, peer],
    ],
  );
  assertEquals(counted, [
    ["client", "POST", "/orders/17", 201, "complete", 1_000_123, 7, 1024],
    ["server", "POST", "/orders/17", 201, "complete", 800_000, 7, 1024, peer],
  ]);
});

Deno.test("mirror: a long upload's first byte outlives its reads (the turn that began it)", () => {
  const s = new MirrorStamps();
  s.add(false, 900, 0, 1n); // the previous response
  // a request of 300 reads of 1000 bytes each, from 1000 on: more than the reads kept
  for (let i = 0; i < 300; i++) s.add(true, 1000 + 1000 * i, 2000 + 1000 * i, BigInt(10 + i));
  assertEquals([s.readAt(1000), s.readAt(1999), s.readAt(2000), s.readAt(300_999)], [
    10n,
    10n,
    undefined, // a middle read long gone: nothing to say
    309n,
  ]);
});
