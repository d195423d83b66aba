/**
 * HTTP/1.x exchanges the kernel framed (bpf/http1_fast.h): one record per request and its
 * response, or a request alone (pipelining) followed later by its response. This pairs the
 * lone ones in order, ends what is pending when the connection closes, and hands the connection
 * to the user-space framer (probes/http1.ts) when the kernel gives it up.
 */

import { HTTP1_EVENT_LAYOUT as R, HTTP1_HANDOFF_EVENT_LAYOUT as H } from "../bpf/gen/http.ts";
import {
  Http1Conn,
  type Http1Options,
  type HttpExchange,
  type HttpOutcome,
  mediaType,
  METHODS,
  type MirrorPeer,
  type PendingRequest,
  type ResumeState,
} from "./http1.ts";
import { hashBytes, memoLatin1 } from "./latin1.ts";
import { traceparent } from "./trace_context.ts";

/**
 * Strings of record bytes by their bytes (hashBytes picks the slot, the bytes are compared): every
 * exchange carries a target and a media type, and a busy pod repeats a few of them. Decoding
 * them byte by byte was a third of the agent's time per exchange.
 */
class TextCache {
  readonly #slots: ({ bytes: Uint8Array; view: DataView; text: string } | undefined)[];
  readonly #mask: number;

  constructor(slots: number) {
    this.#slots = new Array(slots);
    this.#mask = slots - 1;
  }

  /** The text of b[s, e) as `decode` makes it, from the cache when these bytes were seen. */
  get(
    view: DataView,
    b: Uint8Array,
    s: number,
    e: number,
    decode: (b: Uint8Array, s: number, e: number) => string,
  ): string {
    const n = e - s;
    if (n <= 0) return decode(b, s, e);
    const slot = (hashBytes(b, s, e) >>> 1) & this.#mask;
    const hit = this.#slots[slot];
    if (hit && hit.bytes.length === n && same(hit.view, view, s, n)) return hit.text;
    const bytes = b.slice(s, e);
    const text = decode(b, s, e);
    this.#slots[slot] = { bytes, view: new DataView(bytes.buffer), text };
    return text;
  }
}

function same(a: DataView, b: DataView, at: number, n: number): boolean {
  let i = 0;
  for (; i + 4 <= n; i += 4) if (a.getUint32(i, true) !== b.getUint32(at + i, true)) return false;
  for (; i < n; i++) if (a.getUint8(i) !== b.getUint8(at + i)) return false;
  return true;
}

const targets = new TextCache(1024);
const mediaTypes = new TextCache(256);

/** enum http_record_kind of bpf/http.h */
export const KERNEL_RECORD = { EXCHANGE: 4, REQUEST: 5, RESPONSE: 6, HANDOFF: 7 } as const;

/** http1_event.flags (bpf/http.h) */
const REQ_CREDENTIALS = 1, RESP_CREDENTIALS = 2, HTTP10 = 4, TRUNCATED = 8, CLOSED = 16;
const MIRRORED = 64, MIRROR_LOST = 128;
/** http1_handoff_event.state */
const STATES: ResumeState["state"][] = ["start", "body", "lost"];
const DIR_RECEIVED = 1;
const NO_PENDING = 64;

/**
 * Where a run only counts (no per-request events): an exchange's fields, no objects built. `peer`:
 * the exchange is a mirrored server end's (bpf/http_mirror.h).
 */
export type CountExchange = (
  side: "server" | "client",
  method: string,
  target: string,
  status: number,
  outcome: HttpOutcome,
  durationNs: number,
  requestBytes: number,
  responseBytes: number,
  peer?: MirrorPeer,
) => void;

/** The requests and responses of one connection that the kernel frames. */
export class KernelHttp1 {
  #pending: PendingRequest[] = [];
  #side: "server" | "client" = "server";
  /** the server end this client end reports for, once a record said so */
  #peer: MirrorPeer | undefined;

  /**
   * `clockNs` is added to the records' times (the kernel's clock to the events'); `counts`
   * gathers the server ends' exchanges whose stamps were gone (bpf/http_mirror.h).
   */
  constructor(readonly clockNs = 0n, readonly counts = { mirrorLost: 0 }) {}

  /** The exchanges a record completes (none for a request alone). */
  push(view: DataView, bytes: Uint8Array, at: number, kind: number): HttpExchange[] {
    const side = view.getUint8(at + R.req_dir.offset) === DIR_RECEIVED ? "server" : "client";
    this.#side = side;
    const flags = view.getUint8(at + R.flags.offset);
    if (kind === KERNEL_RECORD.REQUEST) {
      if (this.#pending.length >= NO_PENDING) this.#pending.shift();
      const p = request(view, bytes, at, this.clockNs);
      if (flags & MIRRORED) {
        this.#peer = peerOf(view, bytes, at, this.#peer);
        p.serverStartNs = view.getBigUint64(at + R.srv_req_ts.offset, true) + this.clockNs;
      }
      this.#pending.push(p);
      return [];
    }
    const q = kind === KERNEL_RECORD.EXCHANGE
      ? request(view, bytes, at, this.clockNs)
      : this.#pending.shift();
    if (!q) return []; // the request's record was lost
    const status = view.getUint16(at + R.status.offset, true);
    const interim = view.getUint16(at + R.interim.offset, true);
    const dataAt = at + R.data.offset;
    const ctypeAt = dataAt + view.getUint16(at + R.target_len.offset, true) +
      view.getUint8(at + R.tp_len.offset);
    const outcome = outcomeOf(flags);
    const respCred = (flags & RESP_CREDENTIALS) !== 0;
    const x: HttpExchange = {
      side,
      method: q.method,
      target: q.target,
      version: q.version,
      status: status || interim,
      startNs: q.startNs,
      endNs: view.getBigUint64(at + R.ts_ns.offset, true) + this.clockNs,
      requestBodyBytes: q.bodyBytes,
      responseBodyBytes: Number(view.getBigUint64(at + R.resp_body.offset, true)),
      contentType: mediaTypes.get(
        view,
        bytes,
        ctypeAt,
        ctypeAt + view.getUint8(at + R.ctype_len.offset),
        mediaType,
      ),
      traceparent: q.traceparent,
      outcome,
      credentials: q.credentials || respCred,
    };
    if (flags & MIRRORED) {
      // the service's span of the same bytes, timed by its own reads and writes
      this.#peer = peerOf(view, bytes, at, this.#peer);
      return [x, {
        ...x,
        side: "server",
        startNs: view.getBigUint64(at + R.srv_req_ts.offset, true) + this.clockNs,
        endNs: view.getBigUint64(at + R.srv_resp_ts.offset, true) + this.clockNs,
        peer: this.#peer,
      }];
    }
    if (flags & MIRROR_LOST) this.counts.mirrorLost++;
    return [x];
  }

  /**
   * An EXCHANGE record (the common one) counted without building its exchange, nor BigInts for
   * its times; false for other records, which push() takes.
   */
  count(view: DataView, bytes: Uint8Array, at: number, kind: number, into: CountExchange): boolean {
    if (kind !== KERNEL_RECORD.EXCHANGE) return false;
    const side = view.getUint8(at + R.req_dir.offset) === DIR_RECEIVED ? "server" : "client";
    this.#side = side;
    const flags = view.getUint8(at + R.flags.offset);
    const method = METHODS[view.getUint8(at + R.method.offset)] ?? "unknown";
    const targetAt = at + R.data.offset;
    const target = targets.get(
      view,
      bytes,
      targetAt,
      targetAt + view.getUint16(at + R.target_len.offset, true),
      memoLatin1,
    );
    const status = view.getUint16(at + R.status.offset, true) ||
      view.getUint16(at + R.interim.offset, true);
    const outcome = outcomeOf(flags);
    const reqBytes = u64(view, at + R.req_body.offset);
    const respBytes = u64(view, at + R.resp_body.offset);
    const ns = nsBetween(view, at + R.req_ts_ns.offset, at + R.ts_ns.offset);
    into(side, method, target, status, outcome, ns, reqBytes, respBytes);
    if (flags & MIRRORED) {
      this.#peer = peerOf(view, bytes, at, this.#peer);
      const srv = nsBetween(view, at + R.srv_req_ts.offset, at + R.srv_resp_ts.offset);
      into("server", method, target, status, outcome, srv, reqBytes, respBytes, this.#peer);
    } else if (flags & MIRROR_LOST) this.counts.mirrorLost++;
    return true;
  }

  /** The connection closed: requests still without a response got none. */
  close(ts: bigint): HttpExchange[] {
    const out: HttpExchange[] = [];
    for (const q of this.#pending) {
      out.push(noResponse(q, this.#side, q.startNs, ts));
      // a request the server end of a mirrored pair read and never answered
      if (q.serverStartNs !== undefined && this.#peer) {
        out.push({ ...noResponse(q, "server", q.serverStartNs, ts), peer: this.#peer });
      }
    }
    this.#pending = [];
    return out;
  }

  /**
   * The kernel gives the connection up: its framing goes on in user space from this state. A
   * mirrored pair's client end says which server end it reports for, and from which request on.
   */
  handoff(
    view: DataView,
    bytes: Uint8Array,
    at: number,
    opts: Http1Options,
  ): { conn: Http1Conn; mirror?: { peer: MirrorPeer; since: number } } {
    const reqDir = view.getUint8(at + H.req_dir.offset);
    const state = (dir: number): ResumeState => ({
      state: STATES[view.getUint8(at + H.state.offset + dir)] ?? "lost",
      remaining: Number(view.getBigUint64(at + H.remaining.offset + 8 * dir, true)),
    });
    const pending = this.#pending;
    this.#pending = [];
    const conn = Http1Conn.resume(opts, {
      side: reqDir === DIR_RECEIVED ? "server" : "client",
      pending,
      request: state(reqDir & 1),
      response: state((reqDir ^ 1) & 1),
      skipDir: view.getUint8(at + H.dir.offset) === DIR_RECEIVED ? "in" : "out",
      skip: view.getUint32(at + H.skip.offset, true),
    });
    if (view.getBigUint64(at + H.srv_sock.offset, true) === 0n) return { conn };
    const commAt = at + H.srv_comm.offset;
    return {
      conn,
      mirror: {
        peer: {
          sock: view.getBigUint64(at + H.srv_sock.offset, true),
          container: view.getUint32(at + H.srv_container.offset, true),
          pid: view.getUint32(at + H.srv_pid.offset, true),
          comm: cString(bytes, commAt, commAt + H.srv_comm.size),
        },
        since: view.getUint32(at + H.mirror_since.offset, true),
      },
    };
  }
}

function outcomeOf(flags: number): HttpOutcome {
  return flags & TRUNCATED ? "truncated" : flags & CLOSED ? "closed" : "complete";
}

/** A u64 field as a number (exact below 2^53: byte counts). */
function u64(view: DataView, at: number): number {
  return view.getUint32(at + 4, true) * 2 ** 32 + view.getUint32(at, true);
}

/** The nanoseconds from the u64 time at `from` to the one at `to`, without BigInts. */
function nsBetween(view: DataView, from: number, to: number): number {
  return (view.getUint32(to + 4, true) - view.getUint32(from + 4, true)) * 2 ** 32 +
    (view.getUint32(to, true) - view.getUint32(from, true));
}

/** A request without a response, as `side` saw it from `startNs`. */
function noResponse(
  q: PendingRequest,
  side: "server" | "client",
  startNs: bigint,
  ts: bigint,
): HttpExchange {
  return {
    side,
    method: q.method,
    target: q.target,
    version: q.version,
    status: 0,
    startNs,
    endNs: ts,
    requestBodyBytes: q.bodyBytes,
    responseBodyBytes: 0,
    contentType: "",
    traceparent: q.traceparent,
    outcome: "no_response",
    credentials: q.credentials,
  };
}

/** The server end a record reports for (the last one, when it is the same socket). */
function peerOf(
  view: DataView,
  bytes: Uint8Array,
  at: number,
  last: MirrorPeer | undefined,
): MirrorPeer {
  const sock = view.getBigUint64(at + R.srv_sock.offset, true);
  if (last?.sock === sock) return last;
  const commAt = at + R.srv_comm.offset;
  return {
    sock,
    container: view.getUint32(at + R.srv_container.offset, true),
    pid: view.getUint32(at + R.srv_pid.offset, true),
    comm: cString(bytes, commAt, commAt + R.srv_comm.size),
  };
}

function cString(b: Uint8Array, s: number, e: number): string {
  const nul = b.indexOf(0, s);
  return memoLatin1(b, s, nul < 0 || nul > e ? e : nul);
}

/** The request fields of a record. */
function request(view: DataView, bytes: Uint8Array, at: number, clockNs: bigint): PendingRequest {
  const flags = view.getUint8(at + R.flags.offset);
  const targetAt = at + R.data.offset;
  const tpAt = targetAt + view.getUint16(at + R.target_len.offset, true);
  const q: PendingRequest = {
    method: METHODS[view.getUint8(at + R.method.offset)] ?? "unknown",
    target: targets.get(view, bytes, targetAt, tpAt, memoLatin1),
    version: flags & HTTP10 ? "1.0" : "1.1",
    traceparent: traceparent(bytes, tpAt, tpAt + view.getUint8(at + R.tp_len.offset)),
    credentials: (flags & REQ_CREDENTIALS) !== 0,
    startNs: view.getBigUint64(at + R.req_ts_ns.offset, true) + clockNs,
    bodyBytes: Number(view.getBigUint64(at + R.req_body.offset, true)),
  };
  if (view.getUint8(at + R.seqs.offset)) q.seq = view.getUint32(at + R.req_seq.offset, true);
  return q;
}
