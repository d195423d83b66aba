/**
 * gRPC calls and HTTP/2 requests of one TCP connection, from the payload the kernel captures of
 * each of its send/recv syscalls (RFC 9113; gRPC over HTTP/2 framing of messages).
 *
 * Each direction has a frame reader and an HPACK decoder. A stream becomes a call with its
 * request HEADERS and is reported once both directions ended it, on RST_STREAM, or at close.
 * What the capture missed is reported as unknown, never guessed: a header block with bytes
 * missing, or lost framing, desyncs that direction's decoder (see hpack.ts), and a call whose
 * :path cannot be resolved says pathUnknown. Only :path and the few fields reported become
 * strings; counting messages reads just their 5-byte prefixes.
 */

import type { Chunk } from "../http1.ts";
import {
  ACK,
  DEFAULT_MAX_FRAME,
  FRAME_LEN_MAX,
  FrameReader,
  type FrameSink,
  plausibleStart,
  PREFACE,
  SETTINGS,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_MAX_FRAME_SIZE,
} from "./frames.ts";
import {
  type HeaderField,
  HpackDecoder,
  type InsertLog,
  LOG_BLOCK_MAX,
  N_AUTHORITY,
  N_CONTENT_TYPE,
  N_GRPC_MESSAGE,
  N_GRPC_STATUS,
  N_GRPC_TIMEOUT,
  N_GRPC_TRACE_BIN,
  N_METHOD,
  N_PATH,
  N_SCHEME,
  N_STATUS,
  N_TRACEPARENT,
  N_USER_AGENT,
} from "./hpack.ts";
import { observe, SIZE_BOUNDS } from "../buckets.ts";
import type { BucketCounts } from "../events.ts";
import { grpcTimeoutSeconds, grpcTraceBin, traceparent } from "../trace_context.ts";
import { LastText, mediaType, text } from "./text.ts";
import { hashBytes } from "../latin1.ts";

export interface H2Call {
  /** "server": the watched process received the request; "client": it sent it. */
  side: "server" | "client";
  streamId: number;
  /** the request's content-type starts with application/grpc (or, when the request's was not
   * known, the response's does or it carried grpc-status) */
  grpc: boolean;
  /** :method, "" if unknown */
  method: string;
  /** :path (up to 512 chars), "" when unknown */
  path: string;
  /** gRPC "/pkg.Service/Method" → "pkg.Service"; "" otherwise */
  service: string;
  /** gRPC "Method"; "unknown" when the path is unknown; "" for other requests */
  rpcMethod: string;
  /** final :status, 0 if none */
  status: number;
  /** -1 if no grpc-status was seen */
  grpcStatus: number;
  /** ts of the chunk holding the request HEADERS frame */
  startNs: bigint;
  /** ts of the chunk that ended the call (or of close) */
  endNs: bigint;
  /** gRPC length-prefixed messages begun (0 for non-gRPC) */
  requestMessages: number;
  responseMessages: number;
  /** sizes of the gRPC messages whose length prefix was captured (none for non-gRPC) */
  requestSizes?: BucketCounts;
  responseSizes?: BucketCounts;
  /** DATA payload bytes without padding */
  requestBytes: number;
  responseBytes: number;
  kind: "unary" | "client_stream" | "server_stream" | "bidi";
  /** complete: both sides ended the stream | reset: RST_STREAM (or refused by GOAWAY) |
   * closed: the connection closed first (or too many streams were open) */
  outcome: "complete" | "reset" | "closed";
  /** the request's :path could not be known (header block lost, or a reference the desynced
   * HPACK table cannot resolve) */
  pathUnknown: boolean;
  /** grpc-message as sent (percent-encoded, up to 256 chars), "" if none */
  grpcMessage: string;
  /** :scheme, :authority (up to 256 chars) and the request's media type (lower case, no
   * parameters), "" if none or unknown */
  scheme: string;
  authority: string;
  contentType: string;
  /** the request's user-agent (up to 128 chars), "" if none or unknown */
  userAgent: string;
  /** the request's grpc-timeout in seconds, -1 if none */
  timeoutSeconds: number;
  /** the request's trace context as a W3C traceparent (from traceparent or grpc-trace-bin) */
  traceparent: string;
  /** RST_STREAM or GOAWAY error code, -1 if none (or not captured) */
  errorCode: number;
  /** frames or header blocks of the call went by uncaptured: counts are lower bounds, fields
   * other than :path may be missing */
  truncated: boolean;
  /**
   * TCP sequence numbers (u32) of the request's first byte (its HEADERS frame) and just past the
   * response's last frame, -1 where not known: where the call lies in the connection's bytes.
   */
  reqSeq: number;
  respEndSeq: number;
}

export interface H2Options {
  /** "server": the watched process accepted the connection. When absent, the connection
   * preface or the first request decides. The preface wins over this. */
  side?: "server" | "client";
  /**
   * The kernel took the connection for HTTP/2 (it saw its preface or whole frames): a long call
   * read in pieces that split frames, before framing is found, is no reason to give it up.
   */
  known?: boolean;
}

/** What most chunks complete: shared, callers only read it. */
const NO_CALLS: H2Call[] = [];

/** Streams open at once; beyond, the oldest is reported as closed. */
const MAX_STREAMS = 1024;
/** Ranges of skipped stream ids kept (a mirrored server end's unseen calls, see skippedAbove). */
const SKIP_RANGES = 256;
/** Chunks without framing, or bytes, before the bytes are confirmed to be HTTP/2; beyond,
 * the connection is given up. */
const UNSYNCED_LIMIT = 16;
const UNCONFIRMED_BYTES = 1 << 20;
const PATH_MAX = 512;
const AUTHORITY_MAX = 256;
const GRPC_MESSAGE_MAX = 256;

type Dir = "in" | "out";

const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------
// Strings

const USER_AGENT_MAX = 128;

/** Digits only, up to 9 of them; -1 otherwise. */
function decimal(b: Uint8Array, s: number, e: number): number {
  if (e <= s || e - s > 9) return -1;
  let v = 0;
  for (let i = s; i < e; i++) {
    const d = b[i] - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

let lastType = "", lastGrpc = false;
/** Media types are the same few strings: the answer for the last one is kept. */
function isGrpc(mediaType: string): boolean {
  if (mediaType !== lastType) {
    lastType = mediaType;
    lastGrpc = mediaType.startsWith("application/grpc");
  }
  return lastGrpc;
}

/** "/pkg.Service/Method" → ["pkg.Service", "Method"], remembered per path. */
const routes = new Map<string, readonly [string, string]>();
const ROUTES_MAX = 4096;

function grpcRoute(path: string): readonly [string, string] {
  let r = routes.get(path);
  if (r) return r;
  const k = path.lastIndexOf("/");
  r = path[0] === "/" && k > 1 && k < path.length - 1
    ? [path.slice(1, k), path.slice(k + 1)]
    : ["", ""];
  if (routes.size >= ROUTES_MAX) routes.clear();
  routes.set(path, r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Streams

/** buckets(SIZE_BOUNDS) as a literal: one is made per call and direction. */
function sizeHistogram(): BucketCounts {
  return { bounds: SIZE_BOUNDS, counts: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], sum: 0, count: 0 };
}
if (SIZE_BOUNDS.length !== 11) throw new Error("sizeHistogram() has a slot per bound and +Inf");

/** gRPC length-prefixed messages (1-byte flags, 4-byte big-endian length) of one direction. */
class Messages {
  count = 0;
  /** lengths of the messages whose prefix was read, made on the first */
  sizes: BucketCounts | undefined;
  /** a prefix went by uncaptured: count is a lower bound from here */
  lost = false;
  /** not gRPC message framing */
  bad = false;
  /** bytes left of the current message */
  private need = 0;
  /** prefix bytes read of the next message */
  private pfx = 0;
  private plen = 0;

  bytes(b: Uint8Array, s: number, e: number): void {
    let p = s;
    while (p < e && !this.lost && !this.bad) {
      if (this.need > 0) {
        const k = Math.min(this.need, e - p);
        this.need -= k;
        p += k;
        continue;
      }
      const x = b[p++];
      if (this.pfx === 0) {
        // bit 0: compressed; bit 7 marks trailers in gRPC-Web; no others are defined
        if (x & 0x7e) {
          this.bad = true;
          return;
        }
        this.count++;
        this.plen = 0;
        this.pfx = 1;
      } else {
        this.plen = this.plen * 256 + x;
        if (++this.pfx === 5) {
          this.need = this.plen;
          this.pfx = 0;
          observe(this.sizes ??= sizeHistogram(), this.plen);
        }
      }
    }
  }

  /** Every byte so far was whole messages: none bad, lost or cut off. */
  whole(): boolean {
    return !this.bad && !this.lost && this.need === 0 && this.pfx === 0;
  }

  /** n bytes not captured */
  gap(n: number): void {
    if (this.lost || this.bad) return;
    if (this.pfx === 0 && this.need >= n) this.need -= n;
    else this.lost = true;
  }
}

const UNAVAILABLE = 14;

/**
 * The status a gRPC client is given for a stream reset without trailers, by the RST_STREAM
 * code (gRPC over HTTP/2, "Errors"): the protocol's own mapping, -1 where it has none.
 */
function resetStatus(code: number): number {
  switch (code) {
    case 7: // REFUSED_STREAM: not processed
      return UNAVAILABLE;
    case 8: // CANCEL
      return 1; // CANCELLED
    case 11: // ENHANCE_YOUR_CALM
      return 8; // RESOURCE_EXHAUSTED
    case 12: // INADEQUATE_SECURITY
      return 7; // PERMISSION_DENIED
    case 5: // STREAM_CLOSED: no mapping
      return -1;
    default: // the other errors up to CONNECT_ERROR
      return code >= 0 && code <= 10 ? 13 : -1; // INTERNAL
  }
}

/**
 * A stream whose headers are all unknown (a connection joined midway, its HPACK entries from
 * before) is gRPC by its shape: both directions' DATA is whole length-prefixed messages, at
 * least one, and the response ended with trailers after its head, or was trailers alone (gRPC's
 * "Trailers-Only" error response) to a request of messages. Other bodies fail the message
 * framing at their first byte or length.
 */
function grpcShaped(x: Stream): boolean {
  if (x.respOther || !x.respEnded || !x.req.whole() || !x.resp.whole()) return false;
  return x.resp.count > 0 ? x.respHeads >= 2 : x.req.count > 0 && x.respHeads === 1;
}

class Stream {
  method = "";
  path = "";
  scheme = "";
  authority = "";
  userAgent = "";
  timeoutSeconds = -1;
  traceparent = "";
  contentType = "";
  pathUnknown = false;
  /** the request's content-type could not be known */
  ctUnknown = false;
  status = 0;
  /** a final (non-1xx) response head was seen */
  respFinal = false;
  respGrpc = false;
  /** the response's content-type was seen and is not gRPC's */
  respOther = false;
  /** response header blocks: head, then trailers */
  respHeads = 0;
  grpcStatus = -1;
  grpcMessage = "";
  reqBytes = 0;
  respBytes = 0;
  readonly req = new Messages();
  readonly resp = new Messages();
  reqEnded = false;
  respEnded = false;
  truncated = false;
  errorCode = -1;
  /** The status a client is given for the stream's reset (resetStatus), -1 if none. */
  resetStatus = -1;
  lastNs: bigint;
  reqSeq = -1;
  respEndSeq = -1;

  constructor(readonly id: number, readonly startNs: bigint) {
    this.lastNs = startNs;
  }
}

/** The fields of one header block that this module reports. */
class FieldValues {
  method = "";
  path = "";
  scheme = "";
  authority = "";
  contentType = "";
  userAgent = "";
  timeoutSeconds = -1;
  traceparent = "";
  status = 0;
  grpcStatus = -1;
  grpcMessage = "";
  pathSeen = false;
  ctSeen = false;
  /** a known pseudo-header was decoded */
  pseudo = false;
  /** a field could not be resolved */
  unknown = false;

  reset(): void {
    this.method = this.path = this.scheme = "";
    this.authority = this.contentType = this.grpcMessage = "";
    this.userAgent = this.traceparent = "";
    this.timeoutSeconds = -1;
    this.status = 0;
    this.grpcStatus = -1;
    this.pathSeen = this.ctSeen = false;
    this.pseudo = this.unknown = false;
  }

  copy(o: FieldValues): void {
    this.method = o.method;
    this.path = o.path;
    this.scheme = o.scheme;
    this.authority = o.authority;
    this.contentType = o.contentType;
    this.userAgent = o.userAgent;
    this.timeoutSeconds = o.timeoutSeconds;
    this.traceparent = o.traceparent;
    this.status = o.status;
    this.grpcStatus = o.grpcStatus;
    this.grpcMessage = o.grpcMessage;
    this.pathSeen = o.pathSeen;
    this.ctSeen = o.ctSeen;
    this.pseudo = o.pseudo;
    this.unknown = o.unknown;
  }
}

class Fields extends FieldValues {
  // the strings of the connection's last values: most fields repeat on every call
  readonly lastPath = new LastText((b, s, e) => text(b, s, e, PATH_MAX));
  readonly lastAuthority = new LastText((b, s, e) => text(b, s, e, AUTHORITY_MAX));
  readonly lastUserAgent = new LastText((b, s, e) => text(b, s, e, USER_AGENT_MAX));
  readonly lastContentType = new LastText(mediaType);
}

/** Memo slots (a power of two), shared by every connection. */
const MEMO_SLOTS = 512;

/**
 * A header block that referred to no dynamic entry (lastBlockInserts), with its fields and the
 * entries it inserted: the same bytes decode the same on any connection, whatever its table
 * holds. Proxies send the same blocks on every call, literals and all (nginx re-sends its
 * upstream request's :path, :authority and content-type, Huffman-coded, with incremental
 * indexing): a repeat then costs a hash, a comparison and the insertions.
 */
class BlockMemo {
  bytes = new Uint8Array(0);
  len = -1;
  readonly fields = new FieldValues();
  inserts: InsertLog | null = null;

  matches(b: Uint8Array, s: number, e: number): boolean {
    if (e - s !== this.len) return false;
    const x = this.bytes;
    for (let i = s; i < e; i++) if (b[i] !== x[i - s]) return false;
    return true;
  }

  set(b: Uint8Array, s: number, e: number, f: FieldValues, inserts: InsertLog | null): void {
    if (this.bytes.length < e - s) this.bytes = new Uint8Array(e - s);
    for (let i = s; i < e; i++) this.bytes[i - s] = b[i];
    this.len = e - s;
    this.fields.copy(f);
    this.inserts = inserts;
  }
}

const memos: (BlockMemo | undefined)[] = new Array(MEMO_SLOTS);
/** The hash of the last block seen at each slot: a block is kept on its second sighting. */
const memoSeen = new Int32Array(MEMO_SLOTS);

/** One direction of the connection. */
class Way {
  reader!: FrameReader;
  readonly hpack = new HpackDecoder(4096, true);
  started = false;
  /** its first bytes began a connection: the client preface, or the server's SETTINGS */
  startOk = false;
  /** whether its decoder can be in sync was decided (at its first header block) */
  checked = false;
  constructor(readonly dir: Dir) {}
}

// ---------------------------------------------------------------------------------------------
// The connection

/** Turns the chunk stream of one TCP connection into completed HTTP/2 calls. */
export class H2Conn {
  private readonly ways: readonly [Way, Way];
  private reqDir: Dir | null;
  /** the client preface was seen as the first bytes of its direction */
  private fromStart = false;
  private confirmed = false;
  /** H2Options.known */
  private readonly known: boolean;
  private gaveUp = false;
  private closed = false;
  private unsynced = 0;
  private unconfirmedBytes = 0;
  private readonly streams = new Map<number, Stream>();
  /** the stream found last: its frames tend to come together (HEADERS, DATA, end) */
  private lastStream: Stream | undefined;
  private maxClientStream = 0;
  /** requests opened in bytes that were not captured, not yet taken (takeUnseen) */
  private unseen = 0;
  /** The skipped streams' ids by range (first and last, odd), the newest SKIP_RANGES kept. */
  private readonly skips: number[] = [];
  /** Ranges recorded so far (the first kept is number skipsMade - skips.length / 2). */
  private skipsMade = 0;
  private out: H2Call[] = [];
  private readonly fields = new Fields();

  constructor(opts: H2Options = {}) {
    this.reqDir = opts.side === "server" ? "in" : opts.side === "client" ? "out" : null;
    this.known = opts.known ?? false;
    this.ways = [new Way("in"), new Way("out")];
    for (const w of this.ways) w.reader = new FrameReader(this.sink(w));
  }

  /** The bytes are not HTTP/2 (or not a connection this module could follow): given up. */
  get notH2(): boolean {
    return this.gaveUp;
  }

  /**
   * Streams the client opened in bytes that went by unframed (a write longer than the capture
   * copies, a lost record), found as the ids skipped before a request that was seen: clients
   * open streams in order, two ids apart. Counted since the last call, then reset.
   */
  takeUnseen(): number {
    const n = this.unseen;
    this.unseen = 0;
    return n;
  }

  /** The connection's requests are written here (it is the client end), once that is known. */
  get clientEnd(): boolean {
    return this.reqDir === "out";
  }

  /** Ranges of skipped streams recorded so far (see skippedAbove). */
  get skipRanges(): number {
    return this.skipsMade;
  }

  /**
   * Streams skipped with ids above `above`, in the ranges recorded from the `from`-th on (those
   * already dropped count as none). A mirrored server end's calls beyond those it framed itself
   * are its client end's, unseen ones too.
   */
  skippedAbove(from: number, above: number): number {
    let n = 0;
    const first = this.skipsMade - this.skips.length / 2;
    for (let r = Math.max(from, first); r < this.skipsMade; r++) {
      // ids are odd, two apart; hi is one of them
      let lo = Math.max(this.skips[2 * (r - first)], above + 1);
      if (lo % 2 === 0) lo++;
      const hi = this.skips[2 * (r - first) + 1];
      if (hi >= lo) n += (hi - lo) / 2 + 1;
    }
    return n;
  }

  /** It was seen from its preface. */
  get fromPreface(): boolean {
    return this.fromStart;
  }

  /**
   * The rest of the connection is framed at its other end (a mirrored server end, see
   * probes/http.ts): this one stops, and hands over when each call still open began, by stream,
   * and the highest stream it framed a request of (a higher one was never framed here).
   */
  handOver(): { open: Map<number, bigint>; maxStream: number } {
    const open = new Map<number, bigint>();
    if (!this.gaveUp && !this.closed) {
      for (const x of this.streams.values()) open.set(x.id, x.startNs);
    }
    const maxStream = this.gaveUp ? 0 : this.maxClientStream;
    this.closed = true;
    this.release();
    return { open, maxStream };
  }

  /** Bytes held: header blocks in pieces and the HPACK dynamic tables. */
  get bufferedBytes(): number {
    let n = 0;
    for (const w of this.ways) n += w.reader.heldBytes + w.hpack.heldBytes;
    return n;
  }

  /** Feeds one chunk; returns the calls it completed. Never throws. */
  push(c: Chunk): H2Call[] {
    if (this.gaveUp || this.closed) return NO_CALLS;
    try {
      const w = this.ways[c.dir === "in" ? 0 : 1];
      if (!w.started) this.begin(w, c);
      if (this.gaveUp) return NO_CALLS;
      w.reader.feed(c);
      if (!this.confirmed && c.len > 0) this.unconfirmed(w, c.len);
    } catch {
      // malformed input must not take the caller down; the connection is given up instead
      this.giveUp();
    }
    return this.take();
  }

  /**
   * `n` bytes of whole control frames (PING, WINDOW_UPDATE, SETTINGS acknowledgements) of
   * direction `dir` that the capture left out before its next chunk: nothing to read where that
   * direction is between frames or not reading (waiting for framing, as after a hole), a gap
   * where a frame was in progress (then they only looked like frames).
   */
  skipped(dir: Dir, n: number, ts: bigint): H2Call[] {
    const w = this.ways[dir === "in" ? 0 : 1];
    if (n <= 0 || !w.started || !w.reader.reading || w.reader.atFrameStart) return NO_CALLS;
    return this.push({ dir, ts, len: n, head: EMPTY, tail: EMPTY, cont: false });
  }

  /** The connection closed at ts: calls still open are reported with outcome "closed". */
  close(ts: bigint): H2Call[] {
    if (this.closed) return NO_CALLS;
    this.closed = true;
    if (!this.gaveUp) {
      for (const x of [...this.streams.values()]) this.finish(x, "closed", ts);
    }
    this.release();
    return this.take();
  }

  private take(): H2Call[] {
    const out = this.out;
    if (out.length === 0) return NO_CALLS;
    this.out = [];
    return out;
  }

  private sink(w: Way): FrameSink {
    return {
      dataBytes: (id, b, s, e) => this.dataBytes(w, id, b, s, e),
      dataUnbounded: (id) => this.dataUnbounded(w, id),
      dataEnd: (id, n, endStream, ts) => this.dataEnd(w, id, n, endStream, ts),
      headers: (id, endStream, b, s, e, startTs, ts, promise) =>
        this.headers(w, id, endStream, b, s, e, startTs, ts, promise),
      rst: (id, code, ts) => this.rst(w, id, code, ts),
      setting: (id, value) => this.setting(w, id, value),
      goaway: (last, code, ts) => this.goaway(w, last, code, ts),
      confirm: () => {
        this.confirmed = true;
      },
      lost: (ts, broken) => this.lost(w, ts, broken),
    };
  }

  private other(w: Way): Way {
    return w === this.ways[0] ? this.ways[1] : this.ways[0];
  }

  /** The first chunk of a direction: where its framing starts, if anywhere. */
  private begin(w: Way, c: Chunk): void {
    w.started = true;
    const head = c.head;
    if (startsPreface(head, c.len)) {
      this.reqDir = w.dir;
      this.fromStart = w.startOk = true;
      // before the receiver's SETTINGS, frames are bound by the default (RFC 9113 4.2)
      for (const x of this.ways) x.reader.maxFrame = DEFAULT_MAX_FRAME;
      w.reader.startPreface();
      return;
    }
    if (this.fromStart) {
      // after the client's preface, the server's first bytes begin a frame (its SETTINGS)
      w.startOk = true;
      w.reader.startFrames(true);
      return;
    }
    const first = plausibleStart(c, DEFAULT_MAX_FRAME);
    if (first >= 0) {
      w.startOk = first === SETTINGS && !(head[4] & ACK); // the server's preface
      w.reader.startFrames(false);
      return;
    }
    if (!this.confirmed && otherProtocol(head)) {
      this.giveUp();
      return;
    }
    w.reader.startLost();
  }

  /** Bytes the connection has not shown to be HTTP/2 yet: frames cannot be found for long. */
  private unconfirmed(w: Way, n: number): void {
    if (this.known) return;
    if (!w.reader.reading) this.unsynced++;
    this.unconfirmedBytes += n;
    if (this.unsynced > UNSYNCED_LIMIT || this.unconfirmedBytes > UNCONFIRMED_BYTES) this.giveUp();
  }

  private giveUp(): void {
    this.gaveUp = true;
    this.out = [];
    this.release();
  }

  private release(): void {
    this.streams.clear();
    this.lastStream = undefined;
    for (const w of this.ways) {
      w.reader.stop();
      w.hpack.desync();
    }
  }

  private readonly onField = (x: HeaderField): void => {
    const f = this.fields, v = x.value;
    if (v === null) {
      f.unknown = true;
      return;
    }
    const vs = x.vs, ve = x.ve;
    switch (x.id) {
      case N_PATH:
        f.path = f.lastPath.of(v, vs, ve);
        f.pathSeen = f.pseudo = true;
        break;
      case N_METHOD:
        f.method = text(v, vs, ve, 32);
        f.pseudo = true;
        break;
      case N_STATUS:
        f.status = ve - vs === 3 ? Math.max(decimal(v, vs, ve), 0) : 0;
        f.pseudo = true;
        break;
      case N_SCHEME:
        f.scheme = text(v, vs, ve, 32);
        f.pseudo = true;
        break;
      case N_AUTHORITY:
        f.authority = f.lastAuthority.of(v, vs, ve);
        f.pseudo = true;
        break;
      case N_USER_AGENT:
        f.userAgent = f.lastUserAgent.of(v, vs, ve);
        break;
      case N_GRPC_STATUS:
        f.grpcStatus = decimal(v, vs, ve);
        break;
      case N_TRACEPARENT:
        f.traceparent ||= traceparent(v, vs, ve);
        break;
      case N_CONTENT_TYPE:
        f.contentType = f.lastContentType.of(v, vs, ve);
        f.ctSeen = true;
        break;
      case N_GRPC_MESSAGE:
        f.grpcMessage = text(v, vs, ve, GRPC_MESSAGE_MAX);
        break;
      case N_GRPC_TIMEOUT:
        f.timeoutSeconds = grpcTimeoutSeconds(v, vs, ve);
        break;
      case N_GRPC_TRACE_BIN:
        // W3C traceparent wins where both came
        if (!f.traceparent) f.traceparent = grpcTraceBin(v, vs, ve);
        break;
    }
  };

  private headers(
    w: Way,
    id: number,
    endStream: boolean,
    b: Uint8Array | null,
    s: number,
    e: number,
    startTs: bigint,
    ts: bigint,
    promise: boolean,
  ): void {
    if (!w.checked) {
      // a decoder is in sync only if its direction was seen from the connection's start
      w.checked = true;
      if (!this.fromStart || !w.startOk) w.hpack.desync();
    }
    const f = this.fields;
    f.reset();
    let broken = b === null;
    if (b === null) w.hpack.desync();
    else if (e - s > LOG_BLOCK_MAX) broken = !w.hpack.decode(b, s, e, this.onField);
    else {
      const h = hashBytes(b, s, e), slot = (h >>> 1) & (MEMO_SLOTS - 1);
      const m = memos[slot];
      if (m !== undefined && m.matches(b, s, e)) {
        f.copy(m.fields);
        w.hpack.replay(m.inserts);
      } else if (!w.hpack.decode(b, s, e, this.onField)) {
        broken = true;
      } else if (memoSeen[slot] !== h) {
        memoSeen[slot] = h;
      } else {
        const inserts = w.hpack.lastBlockInserts();
        if (inserts !== undefined) (memos[slot] ??= new BlockMemo()).set(b, s, e, f, inserts);
      }
    }
    if (f.pseudo && !broken) this.confirmed = true;
    if (promise) return; // pushed streams are not calls; the block mattered for HPACK only
    if (this.reqDir === null) {
      if (f.method !== "" || f.pathSeen) this.reqDir = w.dir;
      else if (f.status > 0) this.reqDir = this.other(w).dir;
      else return;
    }
    if (w.dir !== this.reqDir) this.response(id, endStream, f, broken, ts, w.reader.frameEnd);
    else if (this.stream(id) !== undefined || w.reader.trusted || (f.pseudo && !broken)) {
      // where reading just resumed, only a block that shows a request opens a call
      this.request(id, endStream, f, broken, startTs, ts, w.reader.blockSeq);
    }
  }

  private request(
    id: number,
    endStream: boolean,
    f: Fields,
    broken: boolean,
    startTs: bigint,
    ts: bigint,
    seq: number,
  ): void {
    if (id % 2 === 0) return; // clients open odd streams
    const old = this.stream(id);
    if (old) {
      // request trailers
      old.lastNs = ts;
      if (broken) old.truncated = true;
      if (endStream) {
        old.reqEnded = true;
        this.settle(old, ts);
      }
      return;
    }
    if (id <= this.maxClientStream) return; // ended, or reported already
    if (f.status > 0 && f.method === "" && !f.pathSeen) return; // a response: sides mistaken
    // the first id of a connection seen from its preface is 1; joined midway, any
    const last = this.maxClientStream || (this.fromStart ? -1 : id - 2);
    if (id - last > 2) {
      this.unseen += (id - last) / 2 - 1;
      if (this.skips.length === 2 * SKIP_RANGES) this.skips.splice(0, 2);
      this.skips.push(last + 2, id - 2);
      this.skipsMade++;
    }
    this.maxClientStream = id;
    const x = new Stream(id, startTs);
    x.reqSeq = seq;
    const unsure = broken || f.unknown;
    x.method = f.method;
    x.path = f.path;
    x.scheme = f.scheme;
    x.authority = f.authority;
    x.userAgent = f.userAgent;
    x.timeoutSeconds = f.timeoutSeconds;
    x.traceparent = f.traceparent;
    x.contentType = f.contentType;
    x.pathUnknown = !f.pathSeen && unsure;
    x.ctUnknown = !f.ctSeen && unsure;
    x.truncated = broken;
    x.reqEnded = endStream;
    x.lastNs = ts;
    if (this.streams.size >= MAX_STREAMS) {
      const oldest = this.streams.values().next().value!;
      oldest.truncated = true;
      this.finish(oldest, "closed", oldest.lastNs);
    }
    this.streams.set(id, x);
  }

  private response(
    id: number,
    endStream: boolean,
    f: Fields,
    broken: boolean,
    ts: bigint,
    seq: number,
  ): void {
    const x = this.stream(id);
    if (!x) return;
    x.lastNs = ts;
    x.respEndSeq = seq;
    if (broken) x.truncated = true;
    if (!x.respFinal) {
      if (f.status >= 200 || (f.status === 0 && (broken || f.unknown))) {
        x.status = f.status;
        x.respFinal = true;
      }
      if (f.ctSeen) {
        if (isGrpc(f.contentType)) x.respGrpc = true;
        else x.respOther = true;
      }
    }
    x.respHeads++;
    if (f.grpcStatus >= 0) x.grpcStatus = f.grpcStatus;
    if (f.grpcMessage !== "") x.grpcMessage = f.grpcMessage;
    if (endStream) {
      x.respEnded = true;
      this.settle(x, ts);
    }
  }

  private dataBytes(w: Way, id: number, b: Uint8Array | null, s: number, e: number): void {
    const x = this.stream(id);
    if (!x) return;
    const m = w.dir === this.reqDir ? x.req : x.resp;
    if (b === null) m.gap(e - s);
    else m.bytes(b, s, e);
  }

  private dataUnbounded(w: Way, id: number): void {
    const x = this.stream(id);
    if (!x) return;
    x.truncated = true;
    (w.dir === this.reqDir ? x.req : x.resp).lost = true;
  }

  private dataEnd(w: Way, id: number, n: number, endStream: boolean, ts: bigint): void {
    const x = this.stream(id);
    if (!x) return;
    x.lastNs = ts;
    if (w.dir === this.reqDir) {
      x.reqBytes += n;
      if (endStream) x.reqEnded = true;
    } else {
      x.respBytes += n;
      x.respEndSeq = w.reader.frameEnd;
      if (endStream) x.respEnded = true;
    }
    if (endStream) this.settle(x, ts);
  }

  private rst(w: Way, id: number, code: number, ts: bigint): void {
    const x = this.stream(id);
    if (!x) return;
    if (w.dir !== this.reqDir) x.respEndSeq = w.reader.frameEnd;
    x.errorCode = code;
    x.resetStatus = resetStatus(code);
    // a server may cut the request short with NO_ERROR once its response is complete (8.1)
    this.finish(x, code === 0 && x.respEnded ? "complete" : "reset", ts);
  }

  private setting(w: Way, id: number, value: number): void {
    // settings describe their sender as a receiver: they bind the other direction
    const o = this.other(w);
    if (id === SETTINGS_HEADER_TABLE_SIZE) {
      o.hpack.setLimit(value);
    } else if (id === SETTINGS_MAX_FRAME_SIZE && value >= DEFAULT_MAX_FRAME) {
      if (value <= FRAME_LEN_MAX) o.reader.maxFrame = o.reader.syncMaxFrame = value;
    }
  }

  private goaway(w: Way, last: number, code: number, ts: bigint): void {
    if (w.dir === this.reqDir) return; // the client's GOAWAY concerns pushed streams only
    // streams above last were not and will not be processed (RFC 9113 6.8)
    for (const x of [...this.streams.values()]) {
      if (x.id > last) {
        x.errorCode = code;
        x.resetStatus = UNAVAILABLE; // never processed: a client may retry it
        this.finish(x, "reset", ts);
      }
    }
  }

  private lost(w: Way, _ts: bigint, broken: boolean): void {
    if (broken && !this.confirmed) {
      this.giveUp();
      return;
    }
    // unseen frames may have carried header blocks
    w.hpack.desync();
    const isReq = w.dir === this.reqDir;
    for (const x of this.streams.values()) {
      x.truncated = true;
      (isReq ? x.req : x.resp).lost = true;
    }
  }

  private stream(id: number): Stream | undefined {
    const last = this.lastStream;
    if (last !== undefined && last.id === id) return last;
    const x = this.streams.get(id);
    if (x !== undefined) this.lastStream = x;
    return x;
  }

  private settle(x: Stream, ts: bigint): void {
    if (x.reqEnded && x.respEnded) this.finish(x, "complete", ts);
  }

  private finish(x: Stream, outcome: H2Call["outcome"], ts: bigint): void {
    this.streams.delete(x.id);
    if (this.lastStream === x) this.lastStream = undefined;
    this.out.push(this.call(x, outcome, ts));
  }

  private call(x: Stream, outcome: H2Call["outcome"], ts: bigint): H2Call {
    const grpc = x.contentType !== ""
      ? isGrpc(x.contentType)
      : x.ctUnknown && (x.respGrpc || x.grpcStatus >= 0 || grpcShaped(x));
    let service = "", rpcMethod = "";
    if (x.pathUnknown) rpcMethod = "unknown";
    else if (grpc) [service, rpcMethod] = grpcRoute(x.path);
    const reqMsgs = grpc ? x.req.count : 0, respMsgs = grpc ? x.resp.count : 0;
    const kind = reqMsgs > 1
      ? (respMsgs > 1 ? "bidi" : "client_stream")
      : (respMsgs > 1 ? "server_stream" : "unary");
    const call: H2Call = {
      side: this.reqDir === "in" ? "server" : "client",
      streamId: x.id,
      grpc,
      method: x.method,
      path: x.pathUnknown ? "" : x.path,
      service,
      rpcMethod,
      status: x.status,
      grpcStatus: x.grpcStatus >= 0 || !grpc ? x.grpcStatus : x.resetStatus,
      startNs: x.startNs,
      endNs: ts,
      requestMessages: reqMsgs,
      responseMessages: respMsgs,
      requestBytes: x.reqBytes,
      responseBytes: x.respBytes,
      kind,
      outcome,
      pathUnknown: x.pathUnknown,
      grpcMessage: x.grpcMessage,
      scheme: x.scheme,
      authority: x.authority,
      userAgent: x.userAgent,
      timeoutSeconds: x.timeoutSeconds,
      traceparent: x.traceparent,
      contentType: x.contentType,
      errorCode: x.errorCode,
      truncated: x.truncated || (grpc && (x.req.lost || x.resp.lost)),
      reqSeq: x.reqSeq,
      respEndSeq: x.respEndSeq,
    };
    if (grpc && x.req.sizes) call.requestSizes = x.req.sizes;
    if (grpc && x.resp.sizes) call.responseSizes = x.resp.sizes;
    return call;
  }
}

/** The chunk begins with the client preface, or all of it is the preface's start. */
function startsPreface(head: Uint8Array, len: number): boolean {
  const n = Math.min(head.length, PREFACE.length);
  if (n === 0 || (n < PREFACE.length && head.length !== len)) return false;
  for (let i = 0; i < n; i++) if (head[i] !== PREFACE[i]) return false;
  return true;
}

/** An HTTP/1 start line or a TLS record: certainly not HTTP/2 framing. */
function otherProtocol(b: Uint8Array): boolean {
  if (b.length >= 3 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] === 3 && b[2] <= 4) return true;
  let i = 0;
  while (i < b.length && i < 16 && b[i] >= 65 && b[i] <= 90) i++; // an upper-case token
  return i >= 3 && i < b.length && (b[i] === 32 || b[i] === 47); // "GET " or "HTTP/"
}
