/**
 * A small HTTP/1.1 client over raw TCP for pod tests, so a test decides exactly how many
 * connections carry its requests (fetch pools them out of sight): `keepAlive` sends every
 * request over one connection, otherwise each request gets a fresh one ("Connection: close").
 * And wrk's connection-per-request load, for counts too large to send one by one.
 */

import { assert } from "./assert.ts";
import type { TestPod } from "./pod.ts";

export interface HttpReply {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string>;
  body: Uint8Array;
}

export interface HttpRun {
  replies: HttpReply[];
  /** TCP connections opened. */
  connections: number;
  /** Local ports of those connections, in order. */
  localPorts: number[];
  /** Bytes written and read on those connections, as TCP payload. */
  bytesSent: number;
  bytesReceived: number;
}

export interface HttpGetOptions {
  /** Requests to send (default 1). */
  count?: number;
  /** One connection for all requests (default false: one connection per request). */
  keepAlive?: boolean;
  /** Request target (default "/"). */
  path?: string;
  /** For the whole run (default 10 s). */
  timeoutMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Reader {
  #buf = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn, readonly run: HttpRun) {}

  /** Reads more; false at EOF. */
  async #more(): Promise<boolean> {
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.conn.read(chunk);
    if (n === null) return false;
    this.run.bytesReceived += n;
    const next = new Uint8Array(this.#buf.length + n);
    next.set(this.#buf);
    next.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = next;
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.slice(n);
    return out;
  }

  /** Up to and without the next CRLF. */
  async line(): Promise<string> {
    for (;;) {
      const at = this.#buf.findIndex((b, i) => b === 13 && this.#buf[i + 1] === 10);
      if (at >= 0) {
        const line = decoder.decode(this.#take(at));
        this.#take(2);
        return line;
      }
      if (!(await this.#more())) throw new Error("connection closed inside a header line");
    }
  }

  async exactly(n: number): Promise<Uint8Array> {
    while (this.#buf.length < n) {
      if (!(await this.#more())) {
        throw new Error(`connection closed ${n - this.#buf.length} bytes short`);
      }
    }
    return this.#take(n);
  }

  async rest(): Promise<Uint8Array> {
    while (await this.#more());
    return this.#take(this.#buf.length);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

async function readReply(r: Reader): Promise<HttpReply> {
  const statusLine = await r.line();
  const m = statusLine.match(/^HTTP\/1\.[01] (\d{3})/);
  if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
  const headers: Record<string, string> = {};
  for (let line = await r.line(); line !== ""; line = await r.line()) {
    const colon = line.indexOf(":");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body: Uint8Array;
  if (/\bchunked\b/i.test(headers["transfer-encoding"] ?? "")) {
    const parts: Uint8Array[] = [];
    for (;;) {
      const size = parseInt((await r.line()).split(";")[0], 16);
      if (!(size > 0)) break;
      parts.push(await r.exactly(size));
      await r.exactly(2);
    }
    while ((await r.line()) !== ""); // trailers
    body = concat(parts);
  } else if (headers["content-length"] !== undefined) {
    body = await r.exactly(Number(headers["content-length"]));
  } else {
    body = await r.rest();
  }
  return { status: Number(m[1]), headers, body };
}

/** `count` GET requests to host:port, each reply read in full before the next request. */
export async function httpGet(
  host: string,
  port: number,
  opts: HttpGetOptions = {},
): Promise<HttpRun> {
  const count = opts.count ?? 1, path = opts.path ?? "/";
  const run: HttpRun = {
    replies: [],
    connections: 0,
    localPorts: [],
    bytesSent: 0,
    bytesReceived: 0,
  };
  let conn: Deno.Conn | undefined;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      conn?.close();
    } catch {
      // closed already
    }
  }, opts.timeoutMs ?? 10_000);
  const open = async () => {
    conn = await Deno.connect({ hostname: host, port });
    run.connections++;
    run.localPorts.push((conn.localAddr as Deno.NetAddr).port);
    return new Reader(conn, run);
  };
  const request = (close: boolean) =>
    encoder.encode(
      `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: kupod-test\r\n` +
        `Connection: ${close ? "close" : "keep-alive"}\r\n\r\n`,
    );
  try {
    let reader: Reader | undefined;
    for (let i = 0; i < count; i++) {
      if (!opts.keepAlive || !reader) reader = await open();
      const last = i === count - 1;
      const req = request(!opts.keepAlive || last);
      if ((await conn!.write(req)) !== req.length) throw new Error("request written in part");
      run.bytesSent += req.length;
      run.replies.push(await readReply(reader));
      if (!opts.keepAlive || last) {
        conn!.close();
        conn = undefined;
      }
    }
  } catch (e) {
    if (timedOut) throw new Error(`GET ${host}:${port}${path}: no replies within the timeout`);
    throw e;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // closed already
    }
  }
  return run;
}

/**
 * Raw requests over one connection, each reply read in full: one after another, or all written
 * at once before the first reply is read (`pipelined`). Returns the replies in order.
 */
export async function httpExchange(
  host: string,
  port: number,
  requests: string[],
  opts: { pipelined?: boolean; timeoutMs?: number } = {},
): Promise<HttpReply[]> {
  const run: HttpRun = {
    replies: [],
    connections: 1,
    localPorts: [],
    bytesSent: 0,
    bytesReceived: 0,
  };
  const conn = await Deno.connect({ hostname: host, port });
  const timer = setTimeout(() => conn.close(), opts.timeoutMs ?? 10_000);
  try {
    const reader = new Reader(conn, run);
    const write = async (text: string) => {
      const bytes = encoder.encode(text);
      for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    };
    if (opts.pipelined) await write(requests.join(""));
    for (const req of requests) {
      if (!opts.pipelined) await write(req);
      run.replies.push(await readReply(reader));
    }
    return run.replies;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // closed already (the timeout)
    }
  }
}

/** Connection-per-request HTTP load through the sidecar with wrk for `seconds`. */
export async function wrkClose(pod: TestPod, port: number, seconds: number): Promise<void> {
  const out = await new Deno.Command("wrk", {
    args: [
      "-t1",
      "-c16",
      `-d${seconds}s`,
      "-H",
      "Connection: close",
      `http://${pod.podIP}:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
}
