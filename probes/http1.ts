/**
 * HTTP/1.x exchanges of one TCP connection, from the payload the kernel captures of each of
 * its send/recv syscalls (RFC 9112 framing).
 *
 * The kernel copies the first bytes and the last 16 bytes of a syscall but not its middle, so
 * bodies are counted by syscall length, and only framing that falls into an uncaptured middle
 * is lost. Such exchanges are reported as "truncated" rather than guessed at. This runs for
 * every request of a busy pod: bytes are scanned in place, only the start line and a few
 * header values become strings, and state is bounded by the options.
 */

import { memoLatin1 } from "./latin1.ts";
import { traceparent } from "./trace_context.ts";

export interface Chunk {
  /** "in": bytes the watched process received; "out": bytes it sent. */
  dir: "in" | "out";
  /** kernel monotonic ns */
  ts: bigint;
  /** full length of the syscall's payload */
  len: number;
  /** first bytes of the payload (head.length <= len); may be empty when nothing could be copied */
  head: Uint8Array;
  /** last bytes when len > head.length (never overlaps head); empty otherwise */
  tail: Uint8Array;
  /** HTTP/2: a later piece of a call copied in several records, so not where its frames start */
  cont?: boolean;
  /** TCP sequence number just past the call's bytes, where the kernel sends it (u32) */
  seq?: number;
}

/** The sequence number of byte `pos` of a chunk that carries one. */
function seqAt(c: Chunk, pos: number): number | undefined {
  return c.seq === undefined ? undefined : (c.seq - c.len + pos) >>> 0;
}

export type HttpOutcome = "complete" | "closed" | "no_response" | "truncated";

export interface HttpExchange {
  /** "server": the watched process received the request; "client": it sent it. */
  side: "server" | "client";
  /** as sent, e.g. "GET" */
  method: string;
  /** request-target as sent (path + query), truncated to 512 chars */
  target: string;
  version: "1.0" | "1.1";
  /** 0 when no response came (an interim 1xx when only that came) */
  status: number;
  /** ts of the first chunk of the request */
  startNs: bigint;
  /** ts of the chunk that completed the response (or of close) */
  endNs: bigint;
  /** body bytes only (not headers), decoded from chunked framing where known */
  requestBodyBytes: number;
  responseBodyBytes: number;
  /** response content-type without parameters, lower case, "" if none */
  contentType: string;
  /** request's traceparent header value when valid W3C, "" otherwise */
  traceparent: string;
  /**
   * complete | closed: connection closed before the response ended | no_response: closed
   * before any response | truncated: framing lost (bytes not captured), sizes are estimates
   */
  outcome: HttpOutcome;
  /** request carried Authorization, Proxy-Authorization or Cookie, or response carried Set-Cookie */
  credentials: boolean;
  /** where chunks carry sequence numbers: the request's first byte, and just past the response */
  reqSeq?: number;
  respEndSeq?: number;
  /** the kernel matched the request's read at the server end of a mirrored pair (probes/http.ts) */
  serverStartNs?: bigint;
  /** the server end's exchange of a mirrored pair, reported from its client end's records */
  peer?: MirrorPeer;
  /** up to previewMax bytes of the response body as captured (only when previewMax > 0 and !credentials) */
  preview?: Uint8Array;
}

/** The server end of a pod's own connection that its client end reports for (bpf/http_mirror.h). */
export interface MirrorPeer {
  sock: bigint;
  container: number;
  pid: number;
  comm: string;
}

export interface Http1Options {
  /** response body bytes kept per exchange; default 0 (none) */
  previewMax?: number;
  /** bytes of header blocks held per connection while they span chunks; default 16384 */
  maxHeaderBytes?: number;
  /** requests waiting for a response; default 64, the oldest is dropped beyond it */
  maxPipelined?: number;
}

const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58, COMMA = 44, SEMI = 59;
const TARGET_MAX = 512;
const CONTENT_TYPE_MAX = 128;
/** Captured chunks without a request line before a connection is judged not HTTP/1. */
const UNSYNCED_LIMIT = 32;
/** A chunk-size line (extensions included) longer than this is not framing. */
const CHUNK_LINE_MAX = 4096;
/** Hex digits of a chunk size: 13 keep it below 2^52, exact in a double. */
const CHUNK_DIGITS_MAX = 13;
/** Decimal digits of a Content-Length: 15 keep it exact in a double. */
const LENGTH_DIGITS_MAX = 15;
const NO_LENGTH = -1, BAD_LENGTH = -2;

const ascii = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/** Request methods known here, in the order the kernel's framer numbers them (bpf/http1_head.h). */
export const METHODS = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
] as const;
const METHOD_BYTES = METHODS.map(ascii);
const HTTP1 = ascii("HTTP/1.");
const PREFACE = ascii("PRI * HTTP/2.0");
const CHUNKED = ascii("chunked");
const N_CONTENT_LENGTH = ascii("content-length");
const N_TRANSFER_ENCODING = ascii("transfer-encoding");
const N_CONTENT_TYPE = ascii("content-type");
const N_TRACEPARENT = ascii("traceparent");
const N_AUTHORIZATION = ascii("authorization");
const N_PROXY_AUTHORIZATION = ascii("proxy-authorization");
const N_COOKIE = ascii("cookie");
const N_SET_COOKIE = ascii("set-cookie");

// ---------------------------------------------------------------------------------------------
// Byte-level parsing of start lines and header blocks

/** Index into METHODS of the method token at b[p] followed by SP, or -1. */
function matchMethod(b: Uint8Array, p: number, end: number): number {
  for (let i = 0; i < METHOD_BYTES.length; i++) {
    const m = METHOD_BYTES[i];
    if (b[p] !== m[0] || p + m.length >= end || b[p + m.length] !== SP) continue;
    let j = 1;
    while (j < m.length && b[p + j] === m[j]) j++;
    if (j === m.length) return i;
  }
  return -1;
}

/** b[p, end) is a prefix of pat, or pat is a prefix of it. */
function prefixOf(b: Uint8Array, p: number, end: number, pat: Uint8Array): boolean {
  const n = Math.min(end - p, pat.length);
  for (let i = 0; i < n; i++) if (b[p + i] !== pat[i]) return false;
  return true;
}

/** The bytes could begin a start line; used before buffering an incomplete header block. */
function startPrefix(b: Uint8Array, p: number, end: number, isReq: boolean): boolean {
  if (!isReq) return prefixOf(b, p, end, HTTP1);
  if (matchMethod(b, p, end) >= 0) return true;
  for (const m of METHOD_BYTES) {
    if (end - p <= m.length && prefixOf(b, p, end, m)) return true;
  }
  return false;
}

/** "HTTP/1.0" or "HTTP/1.1" at b[p]. */
function isHttp1(b: Uint8Array, p: number): boolean {
  return prefixOf(b, p, p + 8, HTTP1) && (b[p + 7] === 48 || b[p + 7] === 49);
}

const isDigit = (x: number) => x >= 48 && x <= 57;

/** A chunk head that begins with METHOD SP and a plausible target: where resync may happen. */
function startsRequest(b: Uint8Array): boolean {
  const m = matchMethod(b, 0, b.length);
  if (m < 0) return false;
  const t = b[METHODS[m].length + 1] | 0x20; // '/' and '*' are unchanged by the case bit
  return t === 47 || t === 42 || (t >= 97 && t <= 122) || isDigit(t);
}

/** A chunk head that begins with "HTTP/1.x NNN". */
function startsStatus(b: Uint8Array): boolean {
  return b.length >= 12 && isHttp1(b, 0) && b[8] === SP && isDigit(b[9]) && isDigit(b[10]) &&
    isDigit(b[11]);
}

/** The HTTP/2 connection preface ("PRI * HTTP/2.0") begins at b[p]. */
function isPreface(b: Uint8Array, p: number): boolean {
  return b.length - p >= PREFACE.length && prefixOf(b, p, b.length, PREFACE);
}

/** TLS record header (change_cipher_spec..application_data, version 3.x). */
function isTls(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] === 3 && b[2] <= 4;
}

/**
 * Index of the first x in b[p, end), or end. Header lines are short: a loop beats the call
 * into indexOf for them, and indexOf takes over for long runs.
 */
function find(b: Uint8Array, x: number, p: number, end: number): number {
  const near = Math.min(end, p + 128);
  for (let i = p; i < near; i++) if (b[i] === x) return i;
  if (near === end) return end;
  const i = b.indexOf(x, near);
  return i < 0 || i > end ? end : i;
}

/** Case-insensitive match of a lower-case ASCII name at b[p]. */
function nameIs(b: Uint8Array, p: number, name: Uint8Array): boolean {
  for (let i = 0; i < name.length; i++) {
    const x = b[p + i], n = name[i];
    if (x !== n && (n < 97 || n > 122 || x !== n - 32)) return false;
  }
  return true;
}

/** What a start line and header block said, for the fields this module reports. */
class Head {
  /** where the next unscanned line begins, so a block arriving in pieces is scanned once */
  scanned = 0;
  started = false;
  method = "";
  target = "";
  version: "1.0" | "1.1" = "1.1";
  status = 0;
  length = NO_LENGTH;
  /** Transfer-Encoding: 0 none, 1 chunked is the final coding, 2 another final coding */
  te = 0;
  contentType = "";
  traceparent = "";
  traceparents = 0;
  credentials = false;

  reset(at: number): void {
    this.scanned = at;
    this.started = false;
    this.method = this.target = "";
    this.contentType = this.traceparent = "";
    this.version = "1.1";
    this.status = this.te = this.traceparents = 0;
    this.length = NO_LENGTH;
    this.credentials = false;
  }

  /** Repeated Content-Length values must agree (RFC 9110 8.6). */
  setLength(n: number): void {
    this.length = this.length === NO_LENGTH || this.length === n ? n : BAD_LENGTH;
  }
}

/**
 * METHOD SP target SP HTTP/1.x in b[s, e) (e excludes the CRLF). `partial` accepts a line cut
 * short by the capture: the target runs to the end and the version defaults to 1.1.
 */
function requestLine(b: Uint8Array, s: number, e: number, h: Head, partial: boolean): boolean {
  const m = matchMethod(b, s, e);
  if (m < 0) return false;
  const ts = s + METHODS[m].length + 1;
  const te = find(b, SP, ts, e);
  if (te === ts) return false;
  if (e - te === 9 && isHttp1(b, te + 1)) h.version = b[te + 8] === 49 ? "1.1" : "1.0";
  else if (!partial) return false;
  h.method = METHODS[m];
  h.target = memoLatin1(b, ts, Math.min(te, ts + TARGET_MAX));
  return true;
}

/** HTTP/1.x SP 3DIGIT [SP reason] in b[s, e). */
function statusLine(b: Uint8Array, s: number, e: number, h: Head, partial: boolean): boolean {
  if (e - s < 12 || !isHttp1(b, s) || b[s + 8] !== SP) return false;
  if (!isDigit(b[s + 9]) || !isDigit(b[s + 10]) || !isDigit(b[s + 11])) return false;
  if (!partial && e - s > 12 && b[s + 12] !== SP) return false;
  h.status = (b[s + 9] - 48) * 100 + (b[s + 10] - 48) * 10 + (b[s + 11] - 48);
  return h.status >= 100;
}

/** A start line cut short by the capture (no LF in b[s, e)). */
function partialStart(b: Uint8Array, s: number, e: number, isReq: boolean, h: Head): boolean {
  h.started = isReq ? requestLine(b, s, e, h, true) : statusLine(b, s, e, h, true);
  return h.started;
}

const INCOMPLETE = -1, BAD_START = -2;

/**
 * Scans the lines of a header block in b[h.scanned, end): the index just past its empty
 * line, INCOMPLETE (the lines seen so far are recorded in h) or BAD_START.
 */
function scanHead(b: Uint8Array, end: number, isReq: boolean, h: Head): number {
  let p = h.scanned;
  for (;;) {
    const lf = find(b, LF, p, end);
    if (lf === end) {
      h.scanned = p;
      return INCOMPLETE;
    }
    const e = lf > p && b[lf - 1] === CR ? lf - 1 : lf;
    if (!h.started) {
      const ok = isReq ? requestLine(b, p, e, h, false) : statusLine(b, p, e, h, false);
      if (!ok) return BAD_START;
      h.started = true;
    } else if (e === p) {
      h.scanned = lf + 1;
      return lf + 1;
    } else {
      headerLine(b, p, e, isReq, h);
    }
    p = lf + 1;
  }
}

/** Records the header field in b[p, e) if it is one this module reports or frames by. */
function headerLine(b: Uint8Array, p: number, e: number, isReq: boolean, h: Head): void {
  let c = p;
  while (c < e && b[c] !== COLON) c++;
  if (c === e) return; // obs-fold continuation or malformed: nothing this module needs
  let vs = c + 1, ve = e;
  while (vs < ve && (b[vs] === SP || b[vs] === HTAB)) vs++;
  while (ve > vs && (b[ve - 1] === SP || b[ve - 1] === HTAB)) ve--;
  switch (c - p) {
    case 14:
      if (nameIs(b, p, N_CONTENT_LENGTH)) h.setLength(parseLength(b, vs, ve));
      break;
    case 17:
      if (ve > vs && nameIs(b, p, N_TRANSFER_ENCODING)) h.te = finalChunked(b, vs, ve) ? 1 : 2;
      break;
    case 12:
      if (!isReq && nameIs(b, p, N_CONTENT_TYPE)) h.contentType = mediaType(b, vs, ve);
      break;
    case 11:
      if (isReq && nameIs(b, p, N_TRACEPARENT)) {
        // more than one traceparent is ambiguous, so none is reported
        h.traceparent = h.traceparents++ === 0 ? traceparent(b, vs, ve) : "";
      }
      break;
    case 13:
      if (isReq && nameIs(b, p, N_AUTHORIZATION)) h.credentials = true;
      break;
    case 19:
      if (isReq && nameIs(b, p, N_PROXY_AUTHORIZATION)) h.credentials = true;
      break;
    case 6:
      if (isReq && nameIs(b, p, N_COOKIE)) h.credentials = true;
      break;
    case 10:
      if (!isReq && nameIs(b, p, N_SET_COOKIE)) h.credentials = true;
      break;
  }
}

/** Content-Length value: 1*DIGIT, or a list of identical ones; BAD_LENGTH otherwise. */
function parseLength(b: Uint8Array, s: number, e: number): number {
  let value = NO_LENGTH, cur = 0, digits = 0, spaced = false;
  for (let i = s; i <= e; i++) {
    const x = i < e ? b[i] : COMMA;
    if (isDigit(x)) {
      if (spaced || ++digits > LENGTH_DIGITS_MAX) return BAD_LENGTH;
      cur = cur * 10 + (x - 48);
    } else if (x === SP || x === HTAB) {
      spaced = digits > 0;
    } else if (x === COMMA) {
      if (digits === 0 || (value !== NO_LENGTH && value !== cur)) return BAD_LENGTH;
      value = cur;
      cur = digits = 0;
      spaced = false;
    } else {
      return BAD_LENGTH;
    }
  }
  return value;
}

/** The last transfer coding of the list in b[s, e) is "chunked". */
function finalChunked(b: Uint8Array, s: number, e: number): boolean {
  let t = e;
  while (t > s && b[t - 1] !== COMMA) t--;
  while (t < e && (b[t] === SP || b[t] === HTAB)) t++;
  let q = t;
  while (q < e && b[q] !== SEMI && b[q] !== SP && b[q] !== HTAB) q++;
  return q - t === CHUNKED.length && nameIs(b, t, CHUNKED);
}

/** Media type without parameters, lower case. */
export function mediaType(b: Uint8Array, s: number, e: number): string {
  let q = s;
  while (q < e && b[q] !== SEMI) q++;
  while (q > s && (b[q - 1] === SP || b[q - 1] === HTAB)) q--;
  const type = memoLatin1(b, s, Math.min(q, s + CONTENT_TYPE_MAX));
  return hasUpper(type) ? type.toLowerCase() : type;
}

function hasUpper(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    if (ch >= 65 && ch <= 90) return true;
  }
  return false;
}

function hexValue(x: number): number {
  if (isDigit(x)) return x - 48;
  const l = x | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * Bytes of chunked framing that end the chunk's captured bytes when they end with the
 * last-chunk "0\r\n\r\n" (with the previous data's CRLF when visible), else 0.
 */
function lastChunkMark(c: Chunk, h: number, t: number, len: number): number {
  const b = t >= 5 ? c.tail : c.head, e = t >= 5 ? t : h;
  if (e < 5 || (t < 5 && h !== len)) return 0;
  if (b[e - 5] !== 48 || b[e - 4] !== CR || b[e - 3] !== LF || b[e - 2] !== CR) return 0;
  if (b[e - 1] !== LF) return 0;
  if (e < 6) return 5;
  if (b[e - 6] !== LF) return 0;
  return e >= 7 && b[e - 7] === CR ? 7 : 6;
}

// ---------------------------------------------------------------------------------------------
// Message framing of one direction

/** How a message's body is delimited, as decided from its head. */
const B_NONE = 0, B_LENGTH = 1, B_CHUNKED = 2, B_CLOSE = 3, B_REJECT = 4, B_INVALID = 5;
const B_TUNNEL = 6;

/** Framer states. States below LOST parse bytes. */
const START = 0, HEAD = 1, LENGTH = 2, CHUNK_SIZE = 3, CHUNK_DATA = 4, CHUNK_CRLF = 5;
const TRAILERS = 6, UNTIL_CLOSE = 7, LOST = 8, DEAD = 9;

/** What a framer reports its messages to. */
interface Sink {
  readonly maxHeaderBytes: number;
  /** Bytes of header buffer this framer may hold. */
  headerRoom(f: Framer): number;
  /** A message head (starting at sequence number startSeq); returns how its body is delimited (B_*). */
  head(
    isReq: boolean,
    h: Head,
    startTs: bigint,
    ts: bigint,
    truncated: boolean,
    startSeq?: number,
  ): number;
  /** n body bytes at logical offset pos of the chunk. */
  body(isReq: boolean, c: Chunk, pos: number, n: number): void;
  /** The open message ended with the chunk at ts, just before sequence number endSeq. */
  end(isReq: boolean, ts: bigint, endSeq?: number): void;
  /** The open message's framing was lost: its sizes are estimates from here on. */
  lost(isReq: boolean): void;
  /** Response bytes start where nothing was captured; true if a request takes them. */
  unseen(): boolean;
  /** Not HTTP/1 (anymore). */
  giveUp(): void;
}

/**
 * Splits one direction's byte stream into messages. A chunk is a logical range [0, len) of
 * which head covers [0, h) and tail [len - t, len); bodies are counted across the middle,
 * anything that must be parsed there loses the framing (state LOST) until a chunk begins
 * with a start line again.
 */
class Framer {
  state = START;
  private readonly hd = new Head();
  private buf: Uint8Array | null = null;
  private bufLen = 0;
  private remaining = 0;
  private size = 0;
  private digits = 0;
  private lineLen = 0;
  private ext = false;
  private cr = false;
  private trailerBytes = 0;
  /** in LOST: the message whose framing was lost is still open and counts bytes */
  private inflight = false;
  private lostChunked = false;
  private startTs = 0n;
  private startSeq: number | undefined;
  private lastTs = 0n;
  /** a message head was parsed here: bytes at a later boundary belong to a message */
  private synced = false;
  /** bytes of the next chunk framed already (by the kernel, before it handed over) */
  private skip = 0;
  private h = 0;
  private t = 0;
  private len = 0;

  constructor(readonly isReq: boolean, private readonly sink: Sink) {}

  get capacity(): number {
    return this.buf ? this.buf.length : 0;
  }

  feed(c: Chunk): void {
    if (!this.geometry(c)) return;
    let pos = Math.min(this.skip, this.len);
    this.skip = 0;
    if (this.state === LOST && !this.resync(c)) {
      this.lastTs = c.ts;
      return;
    }
    while (pos < this.len && this.state < LOST) pos = this.step(c, pos);
    this.lastTs = c.ts;
  }

  /** The connection closed with a header block still arriving: report what it said. */
  flushPartial(ts: bigint): void {
    if (this.state === HEAD && this.buf) {
      const hd = this.hd;
      if (hd.started || partialStart(this.buf, 0, this.bufLen, this.isReq, hd)) {
        this.sink.head(this.isReq, hd, this.startTs, ts, false, this.startSeq);
      }
    }
    this.release();
    if (this.state !== UNTIL_CLOSE) this.state = DEAD;
  }

  stop(): void {
    this.release();
    this.state = DEAD;
  }

  /**
   * Takes over from the kernel's framer: a message starts `skip` bytes into the next chunk, a
   * body goes on for `remaining` bytes, or the framing is lost until a start line.
   */
  resume(state: ResumeState, skip: number): void {
    this.synced = true;
    this.skip = skip;
    if (state.state === "body" && state.remaining > 0) {
      this.state = LENGTH;
      this.remaining = state.remaining;
    } else {
      this.state = state.state === "lost" ? LOST : START;
    }
  }

  /** Normalizes the chunk's lengths so that inconsistent input cannot misdirect parsing. */
  private geometry(c: Chunk): boolean {
    const h = c.head.length;
    let t = c.tail.length, len = c.len;
    if (!(Number.isSafeInteger(len) && len >= h)) len = h;
    if (len - h < t) t = 0;
    this.h = h;
    this.t = t;
    this.len = len;
    return len > 0;
  }

  private step(c: Chunk, pos: number): number {
    switch (this.state) {
      case START:
        return this.start(c, pos);
      case HEAD:
        return this.more(c);
      case LENGTH:
      case CHUNK_DATA:
        return this.counted(c, pos);
      case UNTIL_CLOSE:
        this.sink.body(this.isReq, c, pos, this.len - pos);
        return this.len;
      default:
        return this.framing(c, pos);
    }
  }

  private resync(c: Chunk): boolean {
    if (!(this.isReq ? startsRequest(c.head) : startsStatus(c.head))) {
      if (this.inflight) this.countLost(c);
      return false;
    }
    if (this.inflight) {
      this.inflight = false;
      this.sink.end(this.isReq, this.lastTs, seqAt(c, 0));
    }
    this.state = START;
    return true;
  }

  /** A chunk of a message whose framing was lost: all of it is body, up to a last-chunk. */
  private countLost(c: Chunk): void {
    const mark = this.lostChunked ? lastChunkMark(c, this.h, this.t, this.len) : 0;
    this.sink.body(this.isReq, c, 0, this.len - mark);
    if (mark === 0) return;
    this.inflight = false;
    this.state = START;
    this.sink.end(this.isReq, c.ts, seqAt(c, this.len));
  }

  private start(c: Chunk, pos: number): number {
    const head = c.head, h = this.h;
    // empty lines between messages are tolerated (RFC 9112 2.2)
    while (pos < h && (head[pos] === CR || head[pos] === LF)) pos++;
    if (pos === this.len) return pos;
    if (pos >= h) return this.unseenStart();
    this.startTs = c.ts;
    this.startSeq = seqAt(c, pos);
    const hd = this.hd;
    hd.reset(pos);
    const r = scanHead(head, h, this.isReq, hd);
    if (r >= 0) return r - pos > this.sink.maxHeaderBytes ? this.giveUp() : this.headDone(c, r);
    if (r === BAD_START) return this.isReq && isPreface(head, pos) ? this.giveUp() : this.drop();
    if (h < this.len) return this.truncatedHead(c, head, pos, h);
    if (!startPrefix(head, pos, h, this.isReq)) return this.drop();
    return this.hold(c, pos);
  }

  /** Keeps the start of a header block that continues in the next chunk. */
  private hold(c: Chunk, pos: number): number {
    const n = this.h - pos;
    if (!this.reserve(n)) return this.giveUp();
    this.buf!.set(c.head.subarray(pos, this.h));
    this.bufLen = n;
    this.hd.scanned -= pos;
    this.state = HEAD;
    return this.len;
  }

  /** The next piece of a held header block. */
  private more(c: Chunk): number {
    const h = this.h, old = this.bufLen;
    if (h === 0) return this.truncatedHead(c, this.buf!, 0, old);
    const take = Math.min(h, this.sink.headerRoom(this) - old);
    if (take <= 0 || !this.reserve(old + take)) return this.giveUp();
    const buf = this.buf!;
    buf.set(take === h ? c.head : c.head.subarray(0, take), old);
    this.bufLen = old + take;
    const r = scanHead(buf, this.bufLen, this.isReq, this.hd);
    if (r >= 0) {
      this.release();
      return this.headDone(c, r - old);
    }
    if (r === BAD_START) {
      this.release();
      return this.drop();
    }
    if (take < h) return this.giveUp();
    if (h < this.len) return this.truncatedHead(c, buf, 0, this.bufLen);
    return this.len;
  }

  private reserve(needed: number): boolean {
    const cap = this.capacity;
    if (needed <= cap) return true;
    const limit = this.sink.headerRoom(this);
    if (needed > limit) return false;
    const next = new Uint8Array(Math.min(limit, Math.max(needed, cap * 2, 512)));
    if (this.buf) next.set(this.buf.subarray(0, this.bufLen));
    this.buf = next;
    return true;
  }

  private release(): void {
    this.buf = null;
    this.bufLen = 0;
  }

  /** The header block ends at logical offset end of this chunk. */
  private headDone(c: Chunk, end: number): number {
    const hd = this.hd;
    const d = this.sink.head(this.isReq, hd, this.startTs, c.ts, false, this.startSeq);
    if (d === B_REJECT) return this.drop();
    if (d === B_TUNNEL) return this.dead();
    this.synced = true;
    if (d === B_INVALID) return this.loseFraming(c, end, false);
    if (d === B_CLOSE) {
      this.state = UNTIL_CLOSE;
    } else if (d === B_CHUNKED) {
      this.state = CHUNK_SIZE;
      this.newSizeLine();
    } else if (d === B_LENGTH && hd.length > 0) {
      this.state = LENGTH;
      this.remaining = hd.length;
    } else {
      this.state = START;
      this.sink.end(this.isReq, c.ts, seqAt(c, end));
    }
    return end;
  }

  /** The header block does not end within the captured head: the rest of it is lost. */
  private truncatedHead(c: Chunk, b: Uint8Array, s: number, e: number): number {
    const hd = this.hd;
    if (!hd.started && !partialStart(b, s, e, this.isReq, hd)) {
      this.release();
      return !this.isReq && startPrefix(b, s, e, false) ? this.unseenStart() : this.drop();
    }
    const d = this.sink.head(this.isReq, hd, this.startTs, c.ts, true, this.startSeq);
    this.release();
    if (d === B_REJECT) return this.drop();
    if (d === B_TUNNEL) return this.dead();
    this.synced = true;
    if (d === B_NONE && !this.isReq) {
      // a response without body ends in this chunk; where the next one starts is unknown
      this.sink.end(false, c.ts);
      return this.drop();
    }
    this.state = LOST;
    this.inflight = true;
    this.lostChunked = d === B_CHUNKED;
    return this.len;
  }

  /** A message starts where nothing was captured. */
  private unseenStart(): number {
    // only a response can be attributed (to the oldest pending request); an unseen request
    // would be an invented one
    this.inflight = !this.isReq && this.synced && this.sink.unseen();
    this.lostChunked = false;
    this.state = LOST;
    return this.len;
  }

  /** Content-Length body or chunk data: counted by length, captured or not. */
  private counted(c: Chunk, pos: number): number {
    const n = Math.min(this.remaining, this.len - pos);
    this.sink.body(this.isReq, c, pos, n);
    this.remaining -= n;
    if (this.remaining === 0) {
      if (this.state === CHUNK_DATA) {
        this.state = CHUNK_CRLF;
        this.cr = false;
      } else {
        this.state = START;
        this.sink.end(this.isReq, c.ts, seqAt(c, pos + n));
      }
    }
    return pos + n;
  }

  /** Chunk-size lines, the CRLF after chunk data and trailers, byte by byte. */
  private framing(c: Chunk, pos: number): number {
    const inHead = pos < this.h;
    if (!inHead && pos < this.len - this.t) return this.chunkedGap(c, pos);
    const b = inHead ? c.head : c.tail;
    const base = inHead ? 0 : this.len - this.t, end = inHead ? this.h : this.t;
    let i = pos - base;
    while (i < end) {
      const x = b[i++];
      const ok = this.state === CHUNK_SIZE
        ? this.sizeByte(x)
        : this.state === CHUNK_CRLF
        ? this.crlfByte(x)
        : this.trailerByte(x, c.ts, seqAt(c, base + i));
      if (!ok) return this.loseFraming(c, base + i, true);
      if (this.state !== CHUNK_SIZE && this.state !== CHUNK_CRLF && this.state !== TRAILERS) break;
    }
    return base + i;
  }

  private newSizeLine(): void {
    this.size = this.digits = this.lineLen = 0;
    this.ext = false;
  }

  private sizeByte(x: number): boolean {
    const v = this.ext ? -1 : hexValue(x);
    if (v >= 0) {
      if (++this.digits > CHUNK_DIGITS_MAX) return false;
      this.size = this.size * 16 + v;
    } else if (x === LF) {
      if (this.digits === 0) return false;
      if (this.size === 0) {
        this.state = TRAILERS;
        this.lineLen = this.trailerBytes = 0;
      } else {
        this.state = CHUNK_DATA;
        this.remaining = this.size;
      }
    } else {
      // chunk extensions (and the CR) are skipped up to the LF
      if (this.digits === 0 || ++this.lineLen > CHUNK_LINE_MAX) return false;
      this.ext = true;
    }
    return true;
  }

  private crlfByte(x: number): boolean {
    if (x === CR && !this.cr) {
      this.cr = true;
      return true;
    }
    if (x !== LF) return false;
    this.state = CHUNK_SIZE;
    this.newSizeLine();
    return true;
  }

  private trailerByte(x: number, ts: bigint, endSeq: number | undefined): boolean {
    if (x === LF) {
      if (this.lineLen === 0) {
        this.state = START;
        this.sink.end(this.isReq, ts, endSeq);
      }
      this.lineLen = 0;
    } else if (x !== CR) {
      this.lineLen++;
      if (++this.trailerBytes > this.sink.maxHeaderBytes) return false;
    }
    return true;
  }

  /**
   * Chunk framing falls where nothing was captured. A tail ending in the last-chunk ends the
   * message; the bytes in between count as body (with any chunk-size lines among them).
   */
  private chunkedGap(c: Chunk, pos: number): number {
    const mark = lastChunkMark(c, this.h, this.t, this.len);
    if (mark === 0) return this.loseFraming(c, pos, true);
    this.sink.lost(this.isReq);
    this.sink.body(this.isReq, c, pos, Math.max(0, this.len - mark - pos));
    this.state = START;
    this.sink.end(this.isReq, c.ts, seqAt(c, this.len));
    return this.len;
  }

  /** The open message continues without framing: its bytes are counted until a resync. */
  private loseFraming(c: Chunk, pos: number, chunked: boolean): number {
    this.sink.lost(this.isReq);
    this.sink.body(this.isReq, c, pos, this.len - pos);
    this.state = LOST;
    this.inflight = true;
    this.lostChunked = chunked;
    return this.len;
  }

  private drop(): number {
    this.state = LOST;
    this.inflight = false;
    return this.len;
  }

  private dead(): number {
    this.stop();
    return this.len;
  }

  private giveUp(): number {
    this.sink.giveUp();
    return this.len;
  }
}

// ---------------------------------------------------------------------------------------------
// Pairing requests with responses

/** What a request's head said, as the pairing keeps it. */
export interface RequestHead {
  method: string;
  target: string;
  version: "1.0" | "1.1";
  traceparent: string;
  credentials: boolean;
}

/** A request the kernel framed whose response is still to come. */
export interface PendingRequest extends RequestHead {
  startNs: bigint;
  bodyBytes: number;
  /** its first byte's sequence number, and the server end's read of it (a mirrored pair) */
  seq?: number;
  serverStartNs?: bigint;
}

/** Where one direction stands when the kernel hands a connection over. */
export interface ResumeState {
  state: "start" | "body" | "lost";
  /** body bytes still to come ("body") */
  remaining: number;
}

/** What the kernel's framer knew of a connection when it handed it over. */
export interface Resume {
  side: "server" | "client";
  /** unanswered requests, oldest first */
  pending: PendingRequest[];
  request: ResumeState;
  response: ResumeState;
  /** the direction whose next chunk starts `skip` bytes in */
  skipDir: "in" | "out";
  skip: number;
}

/** One request and what is known of its response. */
class Exchange {
  readonly method: string;
  readonly target: string;
  readonly version: "1.0" | "1.1";
  readonly traceparent: string;
  readonly reqCred: boolean;
  reqBody = 0;
  respBody = 0;
  status = 0;
  interim = 0;
  /** a final response (or bytes of an uncaptured one) belongs to this request */
  final = false;
  respSeen = false;
  respTruncated = false;
  respCred = false;
  contentType = "";
  previewOn = false;
  preview: Uint8Array | null = null;
  previewLen = 0;
  reqSeq: number | undefined;
  serverStartNs: bigint | undefined;

  constructor(h: RequestHead, readonly startNs: bigint, public reqTruncated: boolean) {
    this.method = h.method;
    this.target = h.target;
    this.version = h.version;
    this.traceparent = h.traceparent;
    this.reqCred = h.credentials;
  }
}

/** Bytes of a request line split into tiny first chunks, looked at before the side is known. */
const EARLY_MAX = 16;

/** The early chunks' bytes followed by the start of b, at most EARLY_MAX + 1 of b's. */
function earlyBytes(early: Chunk[], b: Uint8Array): Uint8Array {
  let n = 0;
  for (const e of early) n += e.head.length;
  const out = new Uint8Array(n + Math.min(b.length, EARLY_MAX + 1));
  n = 0;
  for (const e of early) {
    out.set(e.head, n);
    n += e.head.length;
  }
  out.set(b.subarray(0, out.length - n), n);
  return out;
}

/** A chunk that outlives the caller's buffers. */
function ownCopy(c: Chunk): Chunk {
  return { dir: c.dir, ts: c.ts, len: c.len, head: c.head.slice(), tail: c.tail.slice() };
}

function option(v: number | undefined, fallback: number, min: number): number {
  return v === undefined || !Number.isFinite(v) ? fallback : Math.max(min, Math.floor(v));
}

class Tracker implements Sink {
  readonly maxHeaderBytes: number;
  private readonly previewMax: number;
  private readonly maxPipelined: number;
  notHttp = false;
  private closed = false;
  private side: "server" | "client" = "server";
  private reqDir: "in" | "out" = "in";
  private req: Framer | null = null;
  private resp: Framer | null = null;
  /** requests waiting for their response, oldest first */
  private queue: Exchange[] = [];
  /** the request whose body is arriving */
  private reqCur: Exchange | null = null;
  /** the request whose response is arriving */
  private respCur: Exchange | null = null;
  private out: HttpExchange[] = [];
  private unsynced = 0;
  /** fully captured chunks that together begin a request line, before the side is known */
  private early: Chunk[] | null = null;

  constructor(opts: Http1Options) {
    this.previewMax = option(opts.previewMax, 0, 0);
    this.maxHeaderBytes = option(opts.maxHeaderBytes, 16384, 64);
    this.maxPipelined = option(opts.maxPipelined, 64, 1);
  }

  get bufferedBytes(): number {
    return (this.req?.capacity ?? 0) + (this.resp?.capacity ?? 0) +
      (this.respCur?.preview?.length ?? 0);
  }

  /** Synchronized from the kernel's framer's state (see Resume). */
  resume(r: Resume): void {
    this.side = r.side;
    this.reqDir = r.side === "server" ? "in" : "out";
    this.req = new Framer(true, this);
    this.resp = new Framer(false, this);
    this.queue = r.pending.map((p) => {
      const x = new Exchange(p, p.startNs, false);
      x.reqBody = p.bodyBytes;
      x.reqSeq = p.seq;
      x.serverStartNs = p.serverStartNs;
      return x;
    });
    if (this.queue.length > this.maxPipelined) {
      this.queue.splice(0, this.queue.length - this.maxPipelined);
    }
    // a request body still arriving belongs to the newest request
    this.reqCur = r.request.state === "body" ? this.queue.at(-1) ?? null : null;
    const reqSkip = r.skipDir === this.reqDir ? r.skip : 0;
    this.req.resume(r.request, reqSkip);
    this.resp.resume(r.response, r.skip - reqSkip);
  }

  push(c: Chunk): HttpExchange[] {
    if (this.notHttp || this.closed) return [];
    try {
      if (!this.req || !this.resp) this.detect(c);
      else (c.dir === this.reqDir ? this.req : this.resp).feed(c);
    } catch {
      // malformed input must not take the caller down; the connection is given up instead
      this.giveUp();
    }
    return this.take();
  }

  close(ts: bigint): HttpExchange[] {
    if (this.closed) return [];
    this.closed = true;
    if (this.notHttp || !this.req || !this.resp) return [];
    try {
      this.req.flushPartial(ts);
      this.resp.flushPartial(ts);
      const x = this.respCur;
      this.respCur = null;
      if (x && !this.notHttp) this.emit(x, ts, this.closedOutcome(x));
      for (const q of this.queue) this.emit(q, ts, "no_response");
    } catch {
      this.giveUp();
    }
    this.queue = [];
    this.reqCur = null;
    return this.take();
  }

  headerRoom(f: Framer): number {
    return this.maxHeaderBytes - (f === this.req ? this.resp : this.req)!.capacity;
  }

  head(
    isReq: boolean,
    h: Head,
    startTs: bigint,
    ts: bigint,
    truncated: boolean,
    startSeq?: number,
  ): number {
    return isReq ? this.request(h, startTs, truncated, startSeq) : this.response(h, ts, truncated);
  }

  body(isReq: boolean, c: Chunk, pos: number, n: number): void {
    if (isReq) {
      if (this.reqCur) this.reqCur.reqBody += n;
      return;
    }
    const x = this.respCur;
    if (!x) return;
    x.respBody += n;
    if (x.previewOn) this.capture(x, c.head, pos, n);
  }

  end(isReq: boolean, ts: bigint, endSeq?: number): void {
    const x = this.respCur;
    if (isReq || !x || !x.final) return; // an interim response leaves the request waiting
    this.respCur = null;
    this.emit(x, ts, x.reqTruncated || x.respTruncated ? "truncated" : "complete", endSeq);
  }

  lost(isReq: boolean): void {
    if (isReq) {
      if (this.reqCur) this.reqCur.reqTruncated = true;
    } else if (this.respCur) {
      this.respCur.respTruncated = true;
      this.respCur.previewOn = false;
    }
  }

  unseen(): boolean {
    const x = this.respCur ?? this.queue.shift();
    if (!x) return false;
    this.respCur = x;
    x.respSeen = x.final = x.respTruncated = true;
    x.previewOn = false;
    return true;
  }

  giveUp(): void {
    this.notHttp = true;
    this.req?.stop();
    this.resp?.stop();
    this.queue = [];
    this.reqCur = this.respCur = null;
  }

  /**
   * Before the side is known: waits for a chunk that starts with a request line, in either
   * direction (or for a few short chunks that together do).
   */
  private detect(c: Chunk): void {
    const b = c.head;
    if (b.length === 0) return;
    const early = this.early;
    this.early = null;
    if (early && early[0].dir === c.dir) {
      const joined = earlyBytes(early, b);
      if (startsRequest(joined)) return this.sync(c, early);
      if (
        joined.length <= EARLY_MAX && c.len === b.length &&
        startPrefix(joined, 0, joined.length, true)
      ) {
        early.push(ownCopy(c));
        this.early = early;
        return;
      }
    }
    if (startsRequest(b)) return this.sync(c, []);
    if (c.len === b.length && b.length < EARLY_MAX && startPrefix(b, 0, b.length, true)) {
      this.early = [ownCopy(c)];
    }
    // responses are evidence of HTTP seen from the middle; anything else counts against it
    const other = !startsStatus(b) && ++this.unsynced >= UNSYNCED_LIMIT;
    const h2 = b.length >= 4 && prefixOf(b, 0, b.length, PREFACE);
    if (other || h2 || isTls(b)) this.giveUp();
  }

  /** The first request line was seen in c (preceded by `early` pieces of it). */
  private sync(c: Chunk, early: Chunk[]): void {
    this.reqDir = c.dir === "out" ? "out" : "in";
    this.side = this.reqDir === "in" ? "server" : "client";
    this.req = new Framer(true, this);
    this.resp = new Framer(false, this);
    for (const e of early) this.req.feed(e);
    this.req.feed(c);
  }

  private request(h: Head, startTs: bigint, truncated: boolean, startSeq?: number): number {
    const x = new Exchange(h, startTs, truncated);
    x.reqSeq = startSeq;
    if (this.queue.length >= this.maxPipelined) this.queue.shift();
    this.queue.push(x);
    this.reqCur = x;
    if (h.te === 1) return B_CHUNKED;
    if (h.te === 2 || h.length === BAD_LENGTH) {
      x.reqTruncated = true;
      return B_INVALID;
    }
    return h.length > 0 ? B_LENGTH : B_NONE;
  }

  /** RFC 9112 6.3: how the response to the oldest pending request is delimited. */
  private response(h: Head, ts: bigint, truncated: boolean): number {
    const x = this.respCur ?? this.queue.shift();
    if (!x) return B_REJECT;
    this.respCur = x;
    x.respSeen = true;
    const st = h.status;
    if (st < 200 && st !== 101) {
      x.interim = st;
      return B_NONE;
    }
    x.final = true;
    x.status = st;
    x.contentType = h.contentType;
    x.respCred = h.credentials;
    if (truncated) x.respTruncated = true;
    x.previewOn = this.previewMax > 0 && !x.reqCred && !x.respCred && !truncated;
    if (st === 101 || (x.method === "CONNECT" && st < 300)) {
      this.respCur = null;
      this.emit(x, ts, x.reqTruncated || truncated ? "truncated" : "complete");
      this.giveUp();
      return B_TUNNEL;
    }
    if (x.method === "HEAD" || st === 204 || st === 304) return B_NONE;
    if (h.te === 1) return B_CHUNKED;
    if (h.te === 2) return B_CLOSE;
    if (h.length === BAD_LENGTH) {
      x.respTruncated = true;
      return B_INVALID;
    }
    return h.length >= 0 ? B_LENGTH : B_CLOSE;
  }

  private closedOutcome(x: Exchange): HttpOutcome {
    if (!x.respSeen) return "no_response";
    if (x.reqTruncated || x.respTruncated) return "truncated";
    return x.final && this.resp!.state === UNTIL_CLOSE ? "complete" : "closed";
  }

  /** Keeps the captured start of a response body, up to previewMax contiguous bytes. */
  private capture(x: Exchange, head: Uint8Array, pos: number, n: number): void {
    const h = head.length;
    if (pos >= h) {
      x.previewOn = false;
      return;
    }
    x.preview ??= new Uint8Array(this.previewMax);
    const take = Math.min(n, h - pos, this.previewMax - x.previewLen);
    x.preview.set(head.subarray(pos, pos + take), x.previewLen);
    x.previewLen += take;
    if (pos + n > h || x.previewLen === this.previewMax) x.previewOn = false;
  }

  private emit(x: Exchange, endNs: bigint, outcome: HttpOutcome, endSeq?: number): void {
    const credentials = x.reqCred || x.respCred;
    const e: HttpExchange = {
      side: this.side,
      method: x.method,
      target: x.target,
      version: x.version,
      status: x.status || x.interim,
      startNs: x.startNs,
      endNs,
      requestBodyBytes: x.reqBody,
      responseBodyBytes: x.respBody,
      contentType: x.contentType,
      traceparent: x.traceparent,
      outcome,
      credentials,
    };
    if (x.reqSeq !== undefined) {
      e.reqSeq = x.reqSeq;
      if (endSeq !== undefined) e.respEndSeq = endSeq;
    }
    if (x.serverStartNs !== undefined) e.serverStartNs = x.serverStartNs;
    if (this.previewMax > 0 && !credentials) {
      e.preview = x.preview ? x.preview.subarray(0, x.previewLen) : new Uint8Array(0);
    }
    this.out.push(e);
  }

  private take(): HttpExchange[] {
    if (this.out.length === 0) return [];
    const out = this.out;
    this.out = [];
    return out;
  }
}

/** Turns the chunk stream of one TCP connection into completed HTTP/1.x exchanges. */
export class Http1Conn {
  readonly #s: Tracker;

  constructor(opts: Http1Options = {}) {
    this.#s = new Tracker(opts);
  }

  /** A connection the kernel framed so far, framed here from the state it handed over. */
  static resume(opts: Http1Options, r: Resume): Http1Conn {
    const conn = new Http1Conn(opts);
    conn.#s.resume(r);
    return conn;
  }

  /** true once the stream was judged not to be HTTP/1.x (then push ignores input cheaply) */
  get notHttp(): boolean {
    return this.#s.notHttp;
  }

  /** bytes held in internal buffers: header blocks in pieces and the current preview */
  get bufferedBytes(): number {
    return this.#s.bufferedBytes;
  }

  /** Feeds one chunk; returns exchanges completed by it (in request order). Never throws. */
  push(c: Chunk): HttpExchange[] {
    return this.#s.push(c);
  }

  /**
   * The connection closed at ts: finishes close-delimited responses, reports pending
   * requests (outcome closed/no_response).
   */
  close(ts: bigint): HttpExchange[] {
    return this.#s.close(ts);
  }
}
