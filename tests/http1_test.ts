/** HTTP/1.x exchanges from captured syscall payloads, and route folding. */

import { assert, assertEquals } from "./helpers/assert.ts";
import {
  type Chunk,
  Http1Conn,
  type Http1Options,
  type HttpExchange,
  type PendingRequest,
} from "../probes/http1.ts";
import { foldRoute, RouteTable } from "../probes/http_route.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const TAIL = 16;

type Dir = "in" | "out";
type Data = string | Uint8Array;

const bytes = (d: Data) => typeof d === "string" ? enc.encode(d) : d;

/** A chunk whose bytes were all captured. */
function full(dir: Dir, ts: number, data: Data): Chunk {
  const b = bytes(data);
  return { dir, ts: BigInt(ts), len: b.length, head: b, tail: new Uint8Array(0) };
}

/** A chunk of which only the first `cap` bytes and the last 16 were captured. */
function cut(dir: Dir, ts: number, data: Data, cap: number): Chunk {
  const b = bytes(data);
  const head = b.subarray(0, cap);
  const tail = b.length > cap ? b.subarray(Math.max(cap, b.length - TAIL)) : new Uint8Array(0);
  return { dir, ts: BigInt(ts), len: b.length, head, tail };
}

function feed(conn: Http1Conn, chunks: Chunk[]): HttpExchange[] {
  return chunks.flatMap((c) => conn.push(c));
}

/** The fields most tests check, on one line. */
function line(x: HttpExchange): string {
  return `${x.method} ${x.target} ${x.status} ${x.requestBodyBytes}/${x.responseBodyBytes} ` +
    `${x.startNs}-${x.endNs} ${x.outcome}`;
}

const lines = (xs: HttpExchange[]) => xs.map(line);

/** Splits text at the given offsets into fully captured chunks with consecutive ts. */
function split(dir: Dir, ts: number, text: Data, at: number[]): Chunk[] {
  const b = bytes(text), out: Chunk[] = [];
  let from = 0;
  for (const to of [...at, b.length]) {
    if (to > from) out.push(full(dir, ts++, b.subarray(from, to)));
    from = Math.max(from, to);
  }
  return out;
}

const OK2 =
  "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok";

Deno.test("http1: keep-alive GETs pair with their responses", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 10, "GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"),
    full("out", 11, OK2),
    full("in", 20, "POST /b?x=1 HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\n\r\nhello"),
    full("out", 21, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    full("in", 30, "DELETE /c HTTP/1.1\r\n\r\n"),
    full("out", 31, "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found"),
  ]);
  assertEquals(lines(got), [
    "GET /a 200 0/2 10-11 complete",
    "POST /b?x=1 201 5/0 20-21 complete",
    "DELETE /c 404 0/9 30-31 complete",
  ]);
  assertEquals(got.map((x) => [x.side, x.version, x.contentType]), [
    ["server", "1.1", "text/plain"],
    ["server", "1.1", ""],
    ["server", "1.1", ""],
  ]);
  assertEquals(conn.close(40n), []);
  assertEquals(conn.bufferedBytes, 0);
});

const PIPE_REQ =
  "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nPUT /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
const PIPE_RESP = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none" +
  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n" +
  "HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\nthree";

Deno.test("http1: pipelined requests in one chunk, responses in one chunk", () => {
  const conn = new Http1Conn();
  assertEquals(conn.push(full("in", 1, PIPE_REQ)), []);
  assertEquals(lines(conn.push(full("out", 2, PIPE_RESP))), [
    "GET /1 200 0/3 1-2 complete",
    "GET /2 200 0/3 1-2 complete",
    "PUT /3 500 3/5 1-2 complete",
  ]);
});

Deno.test("http1: pipelined responses split at every odd boundary", () => {
  for (const step of [1, 3, 7, 13, 29]) {
    const conn = new Http1Conn();
    conn.push(full("in", 1, PIPE_REQ));
    const at: number[] = [];
    for (let i = step; i < PIPE_RESP.length; i += step) at.push(i);
    const chunks = split("out", 100, PIPE_RESP, at);
    const got = feed(conn, chunks);
    assertEquals(got.map((x) => `${x.target} ${x.status} ${x.responseBodyBytes}`), [
      "/1 200 3",
      "/2 200 3",
      "/3 500 5",
    ], `step ${step}`);
    assertEquals(got[2].endNs, BigInt(100 + chunks.length - 1), `step ${step}`);
  }
});

const CHUNKED_REQ = "POST /up HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" +
  "5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
const CHUNKED_RESP = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
  "A\r\n0123456789\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";

Deno.test("http1: chunked bodies split at every offset, size lines included", () => {
  for (let i = 1; i < CHUNKED_REQ.length; i++) {
    for (const j of [1, 17, CHUNKED_RESP.length - 3]) {
      const resp = split("out", 5, CHUNKED_RESP, [j, j + 1, j + 5]);
      const got = feed(new Http1Conn(), [...split("in", 1, CHUNKED_REQ, [i]), ...resp]);
      const want = `POST /up 200 31/26 1-${4 + resp.length} complete`;
      assertEquals(lines(got), [want], `split at ${i} and ${j}`);
    }
  }
});

Deno.test("http1: chunked bodies fed one byte per chunk", () => {
  const conn = new Http1Conn();
  const req = split("in", 1, CHUNKED_REQ, [...CHUNKED_REQ].map((_, i) => i));
  const resp = split("out", 1000, CHUNKED_RESP, [...CHUNKED_RESP].map((_, i) => i));
  const got = feed(conn, [...req, ...resp]);
  assertEquals(lines(got), [`POST /up 200 31/26 1-${1000 + CHUNKED_RESP.length - 1} complete`]);
});

Deno.test("http1: content-length body over many chunks whose middles were not captured", () => {
  const conn = new Http1Conn({ previewMax: 8 });
  const total = 100_000, first = 4000, piece = 12_000;
  const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${total}\r\n\r\n`;
  const body = new Uint8Array(total).map((_, i) => 97 + (i % 26));
  const chunks = [full("in", 1, "GET /blob HTTP/1.1\r\n\r\n")];
  const firstBytes = new Uint8Array([...enc.encode(head), ...body.subarray(0, first)]);
  chunks.push(cut("out", 2, firstBytes, 256));
  let ts = 3;
  for (let off = first; off < total; off += piece) {
    chunks.push(cut("out", ts++, body.subarray(off, Math.min(total, off + piece)), 64));
  }
  // a sendfile of nothing captured, then the next exchange on the same connection
  chunks.push({
    dir: "out",
    ts: BigInt(ts),
    len: 0,
    head: new Uint8Array(0),
    tail: new Uint8Array(0),
  });
  chunks.push(full("in", 50, "GET /next HTTP/1.1\r\n\r\n"), full("out", 51, OK2));
  const got = feed(conn, chunks);
  assertEquals(lines(got), [
    `GET /blob 200 0/${total} 1-${ts - 1} complete`,
    "GET /next 200 0/2 50-51 complete",
  ]);
  assertEquals(dec.decode(got[0].preview), "abcdefgh");
  assertEquals(got[0].contentType, "application/octet-stream");
});

Deno.test("http1: a body sent by sendfile is counted without bytes", () => {
  const conn = new Http1Conn();
  const empty = new Uint8Array(0);
  const got = feed(conn, [
    full("in", 1, "GET /f HTTP/1.1\r\n\r\n"),
    full("out", 2, "HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n"),
    { dir: "out", ts: 3n, len: 65536, head: empty, tail: empty },
  ]);
  assertEquals(lines(got), ["GET /f 200 0/65536 1-3 complete"]);
});

Deno.test("http1: Expect: 100-continue waits for the final response", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "PUT /obj HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
    full("out", 2, "HTTP/1.1 100 Continue\r\n\r\n"),
    full("in", 3, "01234"),
    full("in", 4, "56789"),
    full("out", 5, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 201 Created\r\n"),
    full("out", 6, "Content-Length: 0\r\n\r\n"),
  ]);
  assertEquals(lines(got), ["PUT /obj 201 10/0 1-6 complete"]);
});

Deno.test("http1: HEAD, 204 and 304 responses have no body whatever their headers say", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "HEAD /h HTTP/1.1\r\n\r\n"),
    full("out", 2, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
    full("in", 3, "DELETE /d HTTP/1.1\r\n\r\n"),
    full("out", 4, "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
    full("in", 5, 'GET /c HTTP/1.1\r\nIf-None-Match: "x"\r\n\r\n'),
    full("out", 6, "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
    full("in", 7, "GET /a HTTP/1.1\r\n\r\n"),
    full("out", 8, OK2),
  ]);
  assertEquals(lines(got), [
    "HEAD /h 200 0/0 1-2 complete",
    "DELETE /d 204 0/0 3-4 complete",
    "GET /c 304 0/0 5-6 complete",
    "GET /a 200 0/2 7-8 complete",
  ]);
});

Deno.test("http1: an HTTP/1.0 response without length ends at close", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "GET /old HTTP/1.0\r\n\r\n"),
    full("out", 2, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>"),
    full("out", 3, "HTTP/1.1 200 OK\r\n\r\n"), // only body now, whatever it looks like
    full("out", 4, "</html>"),
  ]);
  assertEquals(got, []);
  const closed = conn.close(9n);
  assertEquals(lines(closed), ["GET /old 200 0/32 1-9 complete"]);
  assertEquals([closed[0].version, closed[0].contentType], ["1.0", "text/html"]);
  assertEquals(conn.close(10n), []);
  assertEquals(conn.push(full("in", 11, "GET / HTTP/1.1\r\n\r\n")), []);
});

Deno.test("http1: close mid-response, and requests that got no response", () => {
  const conn = new Http1Conn();
  feed(conn, [
    full("in", 1, "GET /slow HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\n\r\n"),
    full("out", 2, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"),
  ]);
  assertEquals(lines(conn.close(7n)), [
    "GET /slow 200 0/7 1-7 closed",
    "GET /never 0 0/0 1-7 no_response",
  ]);

  const lone = new Http1Conn();
  assertEquals(lone.push(full("in", 1, "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nab")), []);
  assertEquals(lines(lone.close(2n)), ["POST /x 0 2/0 1-2 no_response"]);

  const interim = new Http1Conn();
  feed(interim, [
    full("in", 1, "POST /y HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
    full("out", 2, "HTTP/1.1 100 Continue\r\n\r\n"),
  ]);
  assertEquals(lines(interim.close(3n)), ["POST /y 100 0/0 1-3 closed"]);

  const headers = new Http1Conn();
  feed(headers, [full("in", 1, "GET /h HTTP/1.1\r\n\r\n"), full("out", 2, "HTTP/1.1 502 Ba")]);
  assertEquals(lines(headers.close(3n)), ["GET /h 502 0/0 1-3 closed"]);

  const unsent = new Http1Conn();
  feed(unsent, [full("in", 1, "GET /a HTTP/1.1\r\n\r\n"), full("in", 2, "GET /b HTTP/1.1\r\nHo")]);
  assertEquals(lines(unsent.close(3n)), [
    "GET /a 0 0/0 1-3 no_response",
    "GET /b 0 0/0 2-3 no_response",
  ]);
});

Deno.test("http1: client side: the watched process sends the request", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("out", 1, "GET /api/v1/pods HTTP/1.1\r\nHost: kubernetes\r\n\r\n"),
    full(
      "in",
      2,
      "HTTP/1.1 200 OK\r\nContent-Type: Application/JSON\r\nContent-Length: 2\r\n\r\n{}",
    ),
  ]);
  assertEquals(lines(got), ["GET /api/v1/pods 200 0/2 1-2 complete"]);
  assertEquals([got[0].side, got[0].contentType], ["client", "application/json"]);
});

Deno.test("http1: a connection seen from the middle resynchronizes without inventing", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("out", 1, 'ld"}]}'),
    full("in", 2, "rest of an upload body"),
    full("out", 3, OK2), // the response to a request never seen
    full("out", 4, "\x00\x01binary"),
    full("in", 5, "GET /first HTTP/1.1\r\n\r\n"),
    full("out", 6, "more of the old response body"),
    full("out", 7, OK2),
  ]);
  assertEquals(lines(got), ["GET /first 200 0/2 5-7 complete"]);
  assertEquals(conn.notHttp, false);
});

Deno.test("http1: response bytes with no pending request are ignored", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "GET /a HTTP/1.1\r\n\r\n"),
    full("out", 2, OK2),
    full("out", 3, OK2),
    full("out", 4, "stray"),
    full("in", 5, "GET /b HTTP/1.1\r\n\r\n"),
    full("out", 6, OK2),
  ]);
  assertEquals(lines(got), ["GET /a 200 0/2 1-2 complete", "GET /b 200 0/2 5-6 complete"]);
});

Deno.test("http1: 101 Switching Protocols ends HTTP on the connection", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
    full("out", 2, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
    full("in", 3, new Uint8Array([0x81, 0x85, 1, 2, 3, 4, 5, 6, 7, 8, 9])),
    full("in", 4, "GET /not-http HTTP/1.1\r\n\r\n"),
    full("out", 5, OK2),
  ]);
  assertEquals(lines(got), ["GET /ws 101 0/0 1-2 complete"]);
  assertEquals(conn.notHttp, true);
  assertEquals(conn.close(6n), []);

  const tunnel = new Http1Conn();
  const t = feed(tunnel, [
    full("out", 1, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"),
    full("in", 2, "HTTP/1.1 200 Connection established\r\n\r\n"),
    full("out", 3, "GET / HTTP/1.1\r\n\r\n"),
  ]);
  assertEquals(lines(t), ["CONNECT db:5432 200 0/0 1-2 complete"]);
  assertEquals(tunnel.notHttp, true);
});

/** Deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, xs: readonly T[]) => xs[int(r, xs.length)];

function randomBytes(r: Rand, n: number): Uint8Array {
  return new Uint8Array(n).map(() => int(r, 256));
}

Deno.test("http1: streams that are not HTTP/1 are given up", () => {
  const r = rng(7);
  const random = new Http1Conn();
  for (let i = 0; i < 40; i++) {
    assertEquals(random.push(full(pick(r, ["in", "out"] as const), i, randomBytes(r, 200))), []);
  }
  assertEquals([random.notHttp, random.close(41n).length], [true, 0]);

  const hello = new Uint8Array([0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03]);
  const tls = new Http1Conn();
  assertEquals(tls.push(full("out", 1, hello)), []);
  assertEquals(tls.notHttp, true);

  const h2 = new Http1Conn();
  assertEquals(h2.push(full("in", 1, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")), []);
  assertEquals(h2.notHttp, true);
  assertEquals(h2.push(full("in", 2, "GET / HTTP/1.1\r\n\r\n")), []);
});

const TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Deno.test("http1: traceparent is reported only when valid", () => {
  const cases: [string, string][] = [
    [`traceparent: ${TP}`, TP],
    [`TraceParent:   ${TP}  `, TP],
    [`traceparent: ${TP.toUpperCase()}`, ""],
    ["traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""],
    ["traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", ""],
    [`traceparent: ff${TP.slice(2)}`, ""],
    [`traceparent: ${TP}-x`, ""],
    [`traceparent: 01${TP.slice(2)}-future`, `01${TP.slice(2)}-future`],
    [`traceparent: ${TP.slice(0, 54)}`, ""],
    [`traceparent: ${TP.replace(/-/g, "_")}`, ""],
    [`traceparent: ${TP}\r\ntraceparent: ${TP}`, ""],
    ["x-traceparent: " + TP, ""],
  ];
  for (const [header, want] of cases) {
    const conn = new Http1Conn();
    const got = feed(conn, [
      full("in", 1, `GET / HTTP/1.1\r\n${header}\r\n\r\n`),
      full("out", 2, OK2),
    ]);
    assertEquals(got.map((x) => x.traceparent), [want], header);
  }
});

Deno.test("http1: credentials are flagged and suppress the preview", () => {
  const ask = (req: string, resp: string, previewMax = 4) => {
    const got = feed(new Http1Conn({ previewMax }), [full("in", 1, req), full("out", 2, resp)]);
    assertEquals(got.length, 1);
    return got[0];
  };
  const plain = ask(
    "GET / HTTP/1.1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
  );
  assertEquals([plain.credentials, dec.decode(plain.preview)], [false, "hell"]);
  for (const h of ["Authorization: Bearer x", "proxy-authorization: Basic eA==", "COOKIE: a=b"]) {
    const x = ask(`GET / HTTP/1.1\r\n${h}\r\n\r\n`, OK2);
    assertEquals([x.credentials, "preview" in x], [true, false], h);
  }
  const set = ask(
    "GET / HTTP/1.1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nSet-Cookie: s=1\r\nContent-Length: 2\r\n\r\nok",
  );
  assertEquals([set.credentials, "preview" in set], [true, false]);
  const none = ask("GET / HTTP/1.1\r\n\r\n", OK2, 0);
  assertEquals([none.credentials, "preview" in none], [false, false]);
  const chunked = ask(
    "GET / HTTP/1.1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    8,
  );
  assertEquals([dec.decode(chunked.preview), chunked.responseBodyBytes], ["hello wo", 11]);
  const empty = ask("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n");
  assertEquals(empty.preview?.length, 0);
});

Deno.test("http1: header blocks split across three chunks", () => {
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "GET /s HTTP/1.1\r\nHo"),
    full("in", 2, `st: a\r\nAuthorization: x\r\ntraceparent: ${TP}\r`),
    full("in", 3, "\n\r\n"),
    full("out", 4, "HTTP/1.1 200 OK\r\nContent-Le"),
    full("out", 5, "ngth: 4\r\n\r"),
    full("out", 6, "\nbody"),
  ]);
  assertEquals(lines(got), ["GET /s 200 0/4 1-6 complete"]);
  assertEquals([got[0].traceparent, got[0].credentials], [TP, true]);
  assertEquals(conn.bufferedBytes, 0);
});

Deno.test("http1: a chunked response whose middle was not captured ends at its tail", () => {
  const data = "x".repeat(1024);
  const resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
    `400\r\n${data}\r\n400\r\n${data}\r\n0\r\n\r\n`;
  const conn = new Http1Conn();
  const got = feed(conn, [
    full("in", 1, "GET /big HTTP/1.1\r\n\r\n"),
    cut("out", 2, resp, 100),
    full("in", 3, "GET /after HTTP/1.1\r\n\r\n"),
    full("out", 4, OK2),
  ]);
  // the bytes between the lost framing and the last-chunk count, the "400\r\n" line included
  assertEquals(lines(got), [
    "GET /big 200 0/2055 1-2 truncated",
    "GET /after 200 0/2 3-4 complete",
  ]);

  // without the last-chunk in view, the response stays open until the next one starts
  const open = new Http1Conn();
  const chunks = [
    full("in", 1, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
    cut("out", 2, resp.slice(0, -20), 100),
    cut("out", 3, "y".repeat(500), 0),
  ];
  assertEquals(feed(open, chunks), []);
  assertEquals(lines(open.push(full("out", 4, OK2))), [
    `GET /a 200 0/${resp.length - 20 - 52 + 500} 1-3 truncated`,
    "GET /b 200 0/2 1-4 complete",
  ]);
});

Deno.test("http1: framing lost at a message boundary keeps responses paired", () => {
  const conn = new Http1Conn();
  const body = "b".repeat(300);
  // the second response starts in the uncaptured middle of the first chunk
  const resp = `HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n${body}HTTP/1.1 404 No\r\n\r\n`;
  const got = feed(conn, [
    full("in", 1, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"),
    cut("out", 2, resp, 80),
    full("out", 3, OK2),
  ]);
  assertEquals(lines(got), [
    "GET /1 200 0/300 1-2 complete",
    "GET /2 0 0/0 1-2 truncated",
    "GET /3 200 0/2 1-3 complete",
  ]);
});

Deno.test("http1: a header block cut by the capture is reported truncated", () => {
  const conn = new Http1Conn();
  const target = "/search?q=" + "k".repeat(600);
  const got = feed(conn, [
    cut("in", 1, `GET ${target} HTTP/1.1\r\nHost: a\r\n\r\n`, 256),
    full("out", 2, OK2),
    full("in", 3, "GET /next HTTP/1.1\r\n\r\n"),
    full("out", 4, OK2),
  ]);
  assertEquals(lines(got), [
    `GET ${target.slice(0, 252)} 200 0/2 1-2 truncated`,
    "GET /next 200 0/2 3-4 complete",
  ]);
  const long = feed(new Http1Conn(), [
    full("in", 1, `GET ${target} HTTP/1.1\r\n\r\n`),
    full("out", 2, OK2),
  ]);
  assertEquals(long[0].target, target.slice(0, 512));
});

Deno.test("http1: invalid lengths lose the framing instead of guessing", () => {
  for (
    const cl of [
      "1000000000000000000",
      "99999999999999999999",
      "-5",
      "abc",
      "5, 6",
      "5\r\nContent-Length: 6",
    ]
  ) {
    const conn = new Http1Conn();
    const got = feed(conn, [
      full("in", 1, `POST /p HTTP/1.1\r\nContent-Length: ${cl}\r\n\r\nhello`),
      full("out", 2, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
      full("in", 3, "GET /next HTTP/1.1\r\n\r\n"),
      full("out", 4, OK2),
    ]);
    assertEquals(lines(got), [
      "POST /p 400 5/0 1-2 truncated",
      "GET /next 200 0/2 3-4 complete",
    ], cl);
  }
  const same = feed(new Http1Conn(), [
    full("in", 1, "POST /p HTTP/1.1\r\nContent-Length: 3, 3\r\ncontent-length: 3\r\n\r\nabc"),
    full("out", 2, "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nxyz"),
  ]);
  assertEquals(same, []);
});

Deno.test("http1: bounded state: header limit and pipelined queue", () => {
  const conn = new Http1Conn({ maxHeaderBytes: 1024 });
  conn.push(full("in", 1, "GET / HTTP/1.1\r\n"));
  for (let i = 0; i < 100 && !conn.notHttp; i++) {
    conn.push(full("in", 2 + i, "X-Pad: " + "p".repeat(50) + "\r\n"));
    assert(conn.bufferedBytes <= 1024, `buffered ${conn.bufferedBytes}`);
  }
  assertEquals([conn.notHttp, conn.bufferedBytes], [true, 0]);

  const queue = new Http1Conn({ maxPipelined: 8 });
  for (let i = 0; i < 100; i++) queue.push(full("in", i, `GET /${i} HTTP/1.1\r\n\r\n`));
  const left = queue.close(200n);
  assertEquals(left.map((x) => x.target), [92, 93, 94, 95, 96, 97, 98, 99].map((i) => `/${i}`));
  assert(left.every((x) => x.outcome === "no_response"));
});

/** A request the kernel framed and handed over unanswered. */
function pending(method: string, target: string, startNs: number, bodyBytes = 0): PendingRequest {
  return {
    method,
    target,
    version: "1.1",
    traceparent: "",
    credentials: false,
    startNs: BigInt(startNs),
    bodyBytes,
  };
}

Deno.test("http1: resumed from the kernel's framer: pending requests, a body still arriving", () => {
  const conn = Http1Conn.resume({}, {
    side: "server",
    pending: [pending("GET", "/a", 1), pending("POST", "/b", 2, 40)],
    request: { state: "body", remaining: 60 },
    response: { state: "start", remaining: 0 },
    // the response's head starts 2 bytes into its next chunk (the kernel framed those)
    skipDir: "out",
    skip: 2,
  });
  const got = feed(conn, [
    full("in", 3, "x".repeat(60) + "GET /c HTTP/1.1\r\n\r\n"),
    full(
      "out",
      4,
      "ok" + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    ),
    full("out", 5, OK2),
    full("out", 6, "HTTP/1.1 204 No Content\r\n\r\n"),
  ]);
  assertEquals(lines(got), [
    "GET /a 200 0/2 1-4 complete",
    "POST /b 200 100/2 2-5 complete",
    "GET /c 204 0/0 3-6 complete",
  ]);
});

Deno.test("http1: resumed with the response framing lost: waits for a status line", () => {
  const conn = Http1Conn.resume({}, {
    side: "client",
    pending: [pending("GET", "/a", 1)],
    request: { state: "start", remaining: 0 },
    response: { state: "lost", remaining: 0 },
    skipDir: "out",
    skip: 0,
  });
  const got = feed(conn, [
    full("in", 2, "tail of a response the kernel reported cut short"),
    full("in", 3, OK2),
  ]);
  assertEquals(lines(got), ["GET /a 200 0/2 1-3 complete"]);
});

Deno.test("foldRoute: ids fold to *, queries go, absolute-form gives its path", () => {
  const cases: [string, string][] = [
    ["/users/123/orders/9", "/users/*/orders/*"],
    ["/v1/items/550e8400-e29b-41d4-a716-446655440000/tags", "/v1/items/*/tags"],
    ["/blobs/0123456789abcdef0123", "/blobs/*"],
    ["/c/deadbeef", "/c/deadbeef"],
    ["/c/dead1234", "/c/*"],
    ["/t/eyJhbGciOiJIUzI1NiJ9abcdEFGH_-12", "/t/*"],
    ["/t/averyveryveryverylongname", "/t/averyveryveryverylongname"],
    ["/search?q=1&x=2", "/search"],
    ["/a/b#frag", "/a/b"],
    ["http://h/x?y", "/x"],
    ["https://example.com:8443/api/42?z", "/api/*"],
    ["http://h", "/"],
    ["http://h?q", "/"],
    ["", "/"],
    ["*", "*"],
    ["db:5432", "other"],
    ["/", "/"],
    ["/v2/", "/v2/"],
  ];
  for (const [target, want] of cases) assertEquals(foldRoute(target), want, target);
});

Deno.test("RouteTable: the first routes are kept, later new ones are other", () => {
  const t = new RouteTable(2);
  assertEquals([t.route("/a"), t.route("/b"), t.route("/a"), t.route("/c")], [
    "/a",
    "/b",
    "/a",
    "other",
  ]);
  assertEquals(t.size, 2);
  assertEquals(t.route("/b"), "/b");
});

// ---------------------------------------------------------------------------------------------
// Fuzzing

interface Built {
  chunks: Chunk[];
  want: string[];
}

interface Msg {
  bytes: Uint8Array;
  /** [from, to) ranges of body bytes that are counted, not parsed */
  counted: [number, number][];
}

interface Planned {
  method: string;
  target: string;
  status: number;
  req: Msg;
  resp: Msg;
  reqBody: number;
  respBody: number;
}

/** A body framed by Content-Length or chunked, with the ranges that carry data. */
function framedBody(
  r: Rand,
  size: number,
  chunked: boolean,
): { text: string; ranges: [number, number][]; header: string } {
  const data = "d".repeat(size);
  if (!chunked) return { text: data, ranges: [[0, size]], header: `Content-Length: ${size}\r\n` };
  let text = "", off = 0;
  const ranges: [number, number][] = [];
  while (off < size) {
    const n = Math.min(size - off, 1 + int(r, 40));
    text += n.toString(16) + (r() < 0.3 ? ";ext=v" : "") + "\r\n";
    ranges.push([text.length, text.length + n]);
    text += data.slice(off, off + n) + "\r\n";
    off += n;
  }
  text += "0\r\n" + (r() < 0.3 ? "X-Trailer: t\r\n" : "") + "\r\n";
  return { text, ranges, header: "Transfer-Encoding: chunked\r\n" };
}

function message(head: string, body: { text: string; ranges: [number, number][] } | null): Msg {
  const bytes = enc.encode(head + (body?.text ?? ""));
  const counted = (body?.ranges ?? []).map(([a, b]) =>
    [a + head.length, b + head.length] as [number, number]
  );
  return { bytes, counted };
}

function plan(r: Rand): Planned {
  const method = pick(r, ["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH"] as const);
  const target = `/api/${int(r, 1000)}?q=${int(r, 10)}`;
  // small enough for the smallest maxHeaderBytes of the fuzz
  const pad = r() < 0.5 ? `X-Pad: ${"p".repeat(int(r, 150))}\r\n` : "";
  let reqHead = `${method} ${target} HTTP/1.1\r\nHost: svc\r\n${pad}`;
  let reqBody = 0, reqFramed = null;
  if (method === "POST" || method === "PUT" || method === "PATCH") {
    reqBody = int(r, 3) === 0 ? 0 : int(r, 3000);
    reqFramed = framedBody(r, reqBody, r() < 0.4);
    reqHead += reqFramed.header;
  }
  const status = pick(r, [200, 200, 201, 204, 304, 404, 500] as const);
  let respHead = `HTTP/1.1 ${status} X\r\nContent-Type: text/plain\r\n`;
  let respBody = 0, respFramed = null;
  if (method === "HEAD" || status === 204 || status === 304) {
    if (r() < 0.5) respHead += `Content-Length: ${int(r, 5000)}\r\n`;
  } else {
    respBody = int(r, 4) === 0 ? 0 : int(r, 20000);
    respFramed = framedBody(r, respBody, r() < 0.4);
    respHead += respFramed.header;
  }
  return {
    method,
    target,
    status,
    req: message(reqHead + "\r\n", reqFramed),
    resp: message(respHead + "\r\n", respFramed),
    reqBody,
    respBody,
  };
}

/**
 * A keep-alive conversation with pipelined batches, split at random offsets; when `truncate`,
 * chunks whose uncaptured part lies within counted body bytes lose their middle.
 */
function conversation(r: Rand, truncate: boolean): Built {
  const side = r() < 0.5 ? "server" : "client";
  const reqDir: Dir = side === "server" ? "in" : "out";
  const respDir: Dir = reqDir === "in" ? "out" : "in";
  const planned = Array.from({ length: 1 + int(r, 6) }, () => plan(r));
  const chunks: Chunk[] = [];
  const first = new Map<Msg, bigint>(), last = new Map<Msg, bigint>();
  let ts = 1000;
  const send = (dir: Dir, msgs: Msg[]) => {
    const all = new Uint8Array(msgs.reduce((n, m) => n + m.bytes.length, 0));
    const starts: number[] = [];
    let off = 0;
    for (const m of msgs) {
      starts.push(off);
      all.set(m.bytes, off);
      off += m.bytes.length;
    }
    const counted = msgs.flatMap((m, i) =>
      m.counted.map(([a, b]) => [a + starts[i], b + starts[i]])
    );
    for (let a = 0; a < all.length;) {
      const b = Math.min(all.length, a + 1 + int(r, pick(r, [8, 200, 5000])));
      const piece = all.subarray(a, b);
      let c = full(dir, ts, piece);
      const cap = int(r, piece.length);
      // exact only when nothing after the capture needs parsing within this chunk
      if (truncate && r() < 0.5 && counted.some(([s, e]) => s <= a + cap && b <= e)) {
        c = r() < 0.2
          ? { ...c, head: piece.subarray(0, cap), tail: new Uint8Array(0) }
          : cut(dir, ts, piece, cap);
      }
      chunks.push(c);
      msgs.forEach((m, i) => {
        const s = starts[i], e = s + m.bytes.length;
        if (s >= a && s < b) first.set(m, BigInt(ts));
        if (e > a && e <= b) last.set(m, BigInt(ts));
      });
      ts++;
      a = b;
    }
  };
  for (let i = 0; i < planned.length;) {
    const batch = planned.slice(i, i + 1 + int(r, 3));
    send(reqDir, batch.map((p) => p.req));
    send(respDir, batch.map((p) => p.resp));
    i += batch.length;
  }
  const want = planned.map((p) =>
    `${side} ${p.method} ${p.target} ${p.status} ${p.reqBody}/${p.respBody} ` +
    `${first.get(p.req)}-${last.get(p.resp)} complete`
  );
  return { chunks, want };
}

const NASTY_HEADERS = [
  "Content-Length: 1000000000000000000",
  "Content-Length: 99999999999999999999",
  "Content-Length: -1",
  "Content-Length: 12abc",
  "Content-Length: 5\r\nContent-Length: 7",
  "Content-Length: ",
  "Transfer-Encoding: chunked, gzip",
  "Transfer-Encoding: chunked\r\nContent-Length: 4",
  "Transfer-Encoding: chunked",
];
const NASTY_BODIES = [
  "fffffffffffffffffffffffffff\r\nxx\r\n",
  "zz\r\n",
  "5;" + "e".repeat(5000) + "\r\nhello\r\n0\r\n\r\n",
  "3\r\nabcXY",
  "0\r\n" + "T: x\r\n".repeat(3000),
  "7FFFFFFFFFFFF\r\n" + "a".repeat(100),
];

/** Pieces of HTTP/1 that, shuffled, reach states well-formed traffic does not. */
const SOUP = [
  "GET / HTTP/1.1\r\n",
  "HEAD /h HTTP/1.0\r\n",
  "CONNECT h:1 HTTP/1.1\r\n",
  "HTTP/1.1 200 OK\r\n",
  "HTTP/1.1 100 Continue\r\n\r\n",
  "HTTP/1.1 101 Switching\r\n",
  "HTTP/1.0 204 No\r\n",
  "Content-Length: 5\r\n",
  "Transfer-Encoding: chunked\r\n",
  "Set-Cookie: a\r\n",
  "\r\n",
  "\n",
  "5\r\nhello\r\n",
  "0\r\n\r\n",
  "ffff;x\r\n",
  "hello",
  "\r",
  ...NASTY_HEADERS.map((h) => h + "\r\n"),
];

function soup(r: Rand): Chunk[] {
  return Array.from({ length: 1 + int(r, 40) }, (_, i) => {
    const text = Array.from({ length: 1 + int(r, 8) }, () => pick(r, SOUP)).join("");
    const c = full(pick(r, ["in", "out"] as const), i, text);
    return r() < 0.3 ? cut(c.dir, i, text, int(r, text.length)) : c;
  });
}

/** Streams to survive: random bytes, broken framing, endless headers, mutated conversations. */
function garbage(r: Rand): Chunk[] {
  const dir = () => pick(r, ["in", "out"] as const);
  const kind = int(r, 6);
  if (kind === 5) return soup(r);
  if (kind === 0) {
    return Array.from(
      { length: 1 + int(r, 60) },
      (_, i) => full(dir(), i, randomBytes(r, int(r, 300))),
    );
  }
  if (kind === 1) {
    const head = `${pick(r, ["GET", "POST"])} /n HTTP/1.1\r\n${pick(r, NASTY_HEADERS)}\r\n\r\n`;
    const out = [full("in", 1, head + pick(r, NASTY_BODIES))];
    out.push(
      full(
        "out",
        2,
        `HTTP/1.1 200 OK\r\n${pick(r, NASTY_HEADERS)}\r\n\r\n${pick(r, NASTY_BODIES)}`,
      ),
    );
    for (let i = 0; i < 10; i++) {
      out.push(full(dir(), 3 + i, pick(r, [...NASTY_BODIES, OK2, PIPE_REQ])));
    }
    return out;
  }
  if (kind === 2) {
    const out = [full(dir(), 0, "POST /endless HTTP/1.1\r\n")];
    for (let i = 1; i < 200; i++) {
      out.push(full(out[0].dir, i, "X-A: " + "a".repeat(int(r, 400)) + "\r\n"));
    }
    return out;
  }
  const { chunks } = conversation(r, kind === 3);
  return chunks.map((c) => {
    const head = r() < 0.1 ? randomBytes(r, c.head.length) : c.head.slice();
    if (head.length > 0 && r() < 0.2) head[int(r, head.length)] = int(r, 256);
    const len = r() < 0.05 ? pick(r, [-1, NaN, 1e18, 2 ** 53, 0, 3.5]) : c.len;
    const tail = r() < 0.05 ? randomBytes(r, 16) : c.tail;
    return {
      ...c,
      dir: r() < 0.03 ? dir() : c.dir,
      head: r() < 0.1 ? head.subarray(0, int(r, head.length)) : head,
      tail,
      len,
    };
  });
}

function sane(x: HttpExchange): boolean {
  return x.method.length > 0 && x.status >= 0 && x.status <= 999 && x.startNs <= x.endNs &&
    x.requestBodyBytes >= 0 && x.responseBodyBytes >= 0 && x.target.length <= 512;
}

Deno.test("http1: fuzz: no throw, bounded state, well-formed neighbours exact", () => {
  const r = rng(0x6b75706f);
  let exchanges = 0;
  for (let iter = 0; iter < 2500; iter++) {
    const opts: Http1Options = {
      maxHeaderBytes: pick(r, [256, 1024, 16384]),
      previewMax: pick(r, [0, 0, 32]),
      maxPipelined: pick(r, [4, 64]),
    };
    const bound = opts.maxHeaderBytes! + opts.previewMax!;
    const good = Array.from({ length: 3 }, () => conversation(r, r() < 0.5));
    const bad = Array.from({ length: 2 }, () => garbage(r));
    const conns = [...good, ...bad].map(() => new Http1Conn(opts));
    const streams = [...good.map((g) => g.chunks), ...bad];
    const got: string[][] = conns.map(() => []);
    const next = streams.map(() => 0);
    const record = (i: number, xs: HttpExchange[]) => {
      for (const x of xs) {
        assert(sane(x), `iter ${iter}: ${JSON.stringify(line(x))}`);
        got[i].push(`${x.side} ${line(x)}`);
      }
    };
    for (let left = streams.reduce((n, s) => n + s.length, 0); left > 0; left--) {
      let i = int(r, streams.length);
      while (next[i] >= streams[i].length) i = (i + 1) % streams.length;
      record(i, conns[i].push(streams[i][next[i]++]));
      assert(conns[i].bufferedBytes <= bound, `iter ${iter}: buffered ${conns[i].bufferedBytes}`);
    }
    conns.forEach((c, i) => record(i, c.close(1_000_000n)));
    good.forEach((g, i) => assertEquals(got[i], g.want, `iter ${iter} conn ${i}`));
    for (const c of conns) assertEquals(c.bufferedBytes, 0, `iter ${iter}`);
    exchanges += got.slice(0, 3).reduce((n, xs) => n + xs.length, 0);
  }
  assert(exchanges > 10_000, `only ${exchanges} exchanges checked`);
});
