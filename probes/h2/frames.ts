/**
 * HTTP/2 frames (RFC 9113 sections 4 and 6) of one direction of a connection, read
 * incrementally from the payload the kernel captures of each syscall.
 *
 * A chunk is a logical range [0, len) of which head covers [0, h) and tail [len - t, len).
 * Payloads may run through the uncaptured middle: DATA is then counted by length only, and a
 * header block with bytes missing is reported lost. A frame header in the middle loses the
 * framing; reading resumes at a later chunk that starts with plausible frames.
 */

import type { Chunk } from "../http1.ts";

export const DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4;
export const PUSH_PROMISE = 5, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;

export const END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4, PADDED = 0x8, PRIORITY_FLAG = 0x20;

export const SETTINGS_HEADER_TABLE_SIZE = 0x1, SETTINGS_MAX_FRAME_SIZE = 0x5;

/** SETTINGS_MAX_FRAME_SIZE until the receiver announces another (RFC 9113 6.5.2). */
export const DEFAULT_MAX_FRAME = 16384;
/** The length field has 24 bits: the largest frame any peer may accept (16 MiB - 1). */
export const FRAME_LEN_MAX = 0xffffff;
/** A longer header block is not kept: it is reported lost. */
export const HEADER_BLOCK_MAX = 65536;

export const FRAME_HEADER = 9;
export const PREFACE = Uint8Array.from(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  (ch) => ch.charCodeAt(0),
);

/** Flags each type defines: senders set no others, which tells frames from garbage when syncing. */
const DEFINED_FLAGS = [0x09, 0x2d, 0, 0, 0x01, 0x0c, 0x01, 0, 0, 0x04];
/** Well-formed frames in a row after which the bytes are taken to be HTTP/2. */
const CONFIRM_FRAMES = 8;
/** Well-formed frames after reading resumed that make its framing trusted again. */
const TRUST_FRAMES = 4;
/** A header block buffer up to this size is kept for the next block. */
const BLOCK_KEEP = 4096;

/** Receives the frames of one direction. */
export interface FrameSink {
  /** Data of a DATA frame, padding excluded: b[s, e) captured, or (b null) e - s bytes not. */
  dataBytes(stream: number, b: Uint8Array | null, s: number, e: number): void;
  /** The pad length of a DATA frame was not captured: where its data ends is unknown. */
  dataUnbounded(stream: number): void;
  /** A DATA frame ended: n bytes of data without padding (with it after dataUnbounded). */
  dataEnd(stream: number, n: number, endStream: boolean, ts: bigint): void;
  /**
   * A header block (HEADERS or PUSH_PROMISE with its CONTINUATIONs) is complete: b[s, e), or
   * b null when some of it was not captured. startTs: chunk of its first frame's header.
   */
  headers(
    stream: number,
    endStream: boolean,
    b: Uint8Array | null,
    s: number,
    e: number,
    startTs: bigint,
    ts: bigint,
    promise: boolean,
  ): void;
  /** RST_STREAM; code -1 when not captured. */
  rst(stream: number, code: number, ts: bigint): void;
  setting(id: number, value: number): void;
  goaway(lastStream: number, code: number, ts: bigint): void;
  /** The preface, or enough well-formed frames in a row: the bytes are HTTP/2. */
  confirm(): void;
  /**
   * The framing is lost: frames may pass unseen until it is found again. broken: the bytes
   * were not valid framing (rather than not captured).
   */
  lost(ts: bigint, broken: boolean): void;
}

const u32 = (b: Uint8Array, p: number) =>
  ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;

/** The fixed rules of RFC 9113 section 6 a frame header must meet. */
export function frameShapeOk(type: number, flags: number, stream: number, len: number): boolean {
  const pad = flags & PADDED ? 1 : 0;
  switch (type) {
    case DATA:
      return stream !== 0 && len >= pad;
    case HEADERS:
      return stream !== 0 && len >= pad + (flags & PRIORITY_FLAG ? 5 : 0);
    case PRIORITY:
      return stream !== 0 && len === 5;
    case RST_STREAM:
      return stream !== 0 && len === 4;
    case SETTINGS:
      return stream === 0 && len % 6 === 0 && (!(flags & ACK) || len === 0);
    case PUSH_PROMISE:
      return stream !== 0 && len >= pad + 4;
    case PING:
      return stream === 0 && len === 8;
    case GOAWAY:
      return stream === 0 && len >= 8;
    case WINDOW_UPDATE:
      return len === 4;
    case CONTINUATION:
      return stream !== 0;
    default:
      return true; // unknown types are ignored (RFC 9113 5.5)
  }
}

/**
 * Type of the first frame when the chunk begins with a chain of plausible frame headers, else
 * -1: where reading may start in a connection seen from the middle. Stricter than framing
 * rules: known types, defined flags only, reserved bit clear, no CONTINUATION first,
 * CONTINUATION exactly where a header block is open, and the chain must end with the chunk,
 * through headers in its captured tail if the middle was not captured. Writes hold whole
 * frames; payload bytes seldom line up like that, and a later piece of a long write never
 * starts one.
 */
export function plausibleStart(c: Chunk, maxLen: number): number {
  if (c.cont) return -1;
  const head = c.head, h = head.length;
  const len = Number.isSafeInteger(c.len) && c.len >= h ? c.len : h;
  const t = len - h < c.tail.length ? 0 : c.tail.length, tb = len - t;
  let p = 0, first = -1, open = false;
  while (p < len) {
    // the next header, in the head or entirely in the tail
    let b = head, i = p;
    if (p + FRAME_HEADER > h) {
      if (p < tb || p + FRAME_HEADER > len) return -1;
      b = c.tail;
      i = p - tb;
    }
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2], type = b[i + 3], flags = b[i + 4];
    if (n > maxLen || type > CONTINUATION || (flags & ~DEFINED_FLAGS[type])) return -1;
    if (b[i + 5] & 0x80 || !frameShapeOk(type, flags, u32(b, i + 5), n)) return -1;
    if ((type === CONTINUATION) !== open) return -1;
    if (type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) {
      open = !(flags & END_HEADERS);
    }
    if (first < 0) first = type;
    p += FRAME_HEADER + n;
  }
  return p === len ? first : -1;
}

/** Reader states. */
const IDLE = 0, PREFACE_BYTES = 1, HEADER = 2, PAYLOAD = 3, LOST = 4, DEAD = 5;

export class FrameReader {
  /** Frames longer than this are not framing (the receiver's SETTINGS_MAX_FRAME_SIZE). */
  maxFrame = FRAME_LEN_MAX;
  /** Longest frame accepted where reading (re)starts. */
  syncMaxFrame = DEFAULT_MAX_FRAME;
  private state = IDLE;
  private readonly hdr = new Uint8Array(FRAME_HEADER);
  private hdrLen = 0;
  private matched = 0;
  // the frame being read
  private type = 0;
  private flags = 0;
  private stream = 0;
  private length = 0;
  private off = 0;
  /** payload bytes before the content (pad length, priority, promised stream) */
  private lead = 0;
  /** payload offset where padding starts */
  private contentEnd = 0;
  private padLost = false;
  /** first bytes of a control frame's payload, or the SETTINGS entry being read */
  private readonly small = new Uint8Array(8);
  private smallLost = false;
  // the header block being assembled
  private block: Uint8Array | null = null;
  private blockLen = 0;
  /** a block in one frame, captured whole: a view of the chunk's bytes instead of a copy */
  private direct: Uint8Array | null = null;
  private directStart = 0;
  private blockLost = false;
  private blockStream = 0;
  private blockEnd = false;
  private blockPromise = false;
  private blockTs = 0n;
  /** a HEADERS or PUSH_PROMISE without END_HEADERS was read: CONTINUATION must follow */
  private inBlock = false;
  private framesOk = 0;
  private confirmed = false;
  /** reading started at the connection's start */
  private fromStart = false;
  /**
   * TCP sequence numbers (u32), -1 where not known: of the header block's first frame, and just
   * past the last frame that ended. They place a call at the other end of the pod's own
   * connection (a mirrored server end's stamps).
   */
  blockSeq = -1;
  frameEnd = -1;
  /** ... of the frame being read, and of the chunk's first byte */
  private frameSeq = -1;
  private seq0 = -1;
  // the chunk being read
  private ts = 0n;
  private h = 0;
  private t = 0;
  private len = 0;
  /** Where locate() found a position: the captured bytes, the index in them, their end. */
  private bytes: Uint8Array = new Uint8Array(0);
  private at = 0;
  private atEnd = 0;

  constructor(private readonly sink: FrameSink) {}

  /** Reading frames (or the preface), as opposed to waiting for framing or stopped. */
  get reading(): boolean {
    return this.state === PREFACE_BYTES || this.state === HEADER || this.state === PAYLOAD;
  }

  /**
   * Frames are read from the connection's start, or enough of them followed the point where
   * reading resumed: that point was not a coincidence of payload bytes.
   */
  get trusted(): boolean {
    return this.fromStart || this.framesOk >= TRUST_FRAMES;
  }

  /** Between frames, outside a header block: whole frames may go by unread. */
  get atFrameStart(): boolean {
    return this.state === HEADER && this.hdrLen === 0 && !this.inBlock;
  }

  get heldBytes(): number {
    return this.block ? this.block.length : 0;
  }

  /** The direction starts with the client connection preface. */
  startPreface(): void {
    this.state = PREFACE_BYTES;
    this.matched = 0;
    this.fromStart = true;
  }

  /** The direction starts at a frame boundary; fromStart: the connection's start. */
  startFrames(fromStart: boolean): void {
    this.state = HEADER;
    this.hdrLen = 0;
    this.framesOk = 0;
    this.fromStart = fromStart;
  }

  /** Framing is unknown: wait for a chunk that starts with plausible frames. */
  startLost(): void {
    this.state = LOST;
  }

  stop(): void {
    this.state = DEAD;
    this.block = null;
    this.inBlock = false;
  }

  feed(c: Chunk): void {
    const h = c.head.length;
    let t = c.tail.length, len = c.len;
    if (!(Number.isSafeInteger(len) && len >= h)) len = h;
    if (len - h < t) t = 0;
    if (len === 0) return;
    this.h = h;
    this.t = t;
    this.len = len;
    this.ts = c.ts;
    this.seq0 = c.seq === undefined || len !== c.len ? -1 : (c.seq - len) >>> 0;
    if (this.state === LOST) {
      if (plausibleStart(c, this.syncMaxFrame) < 0) return;
      this.startFrames(false);
    }
    let pos = 0;
    while (pos < len) {
      if (this.state === HEADER) pos = this.header(c, pos);
      else if (this.state === PAYLOAD) pos = this.payload(c, pos);
      else if (this.state === PREFACE_BYTES) pos = this.preface(c, pos);
      else break;
    }
  }

  /** Points at/atEnd/bytes at stream position `pos` of `c`; false where it was not captured. */
  private locate(c: Chunk, pos: number): boolean {
    const tb = this.len - this.t;
    if (pos >= tb) {
      this.bytes = c.tail;
      this.at = pos - tb;
      this.atEnd = this.t;
    } else if (pos < this.h) {
      this.bytes = c.head;
      this.at = pos;
      this.atEnd = this.h;
    } else {
      return false;
    }
    return true;
  }

  private preface(c: Chunk, pos: number): number {
    if (!this.locate(c, pos)) return this.lose(false);
    const b = this.bytes, end = this.atEnd;
    let i = this.at;
    const start = i;
    while (i < end && this.matched < PREFACE.length) {
      if (b[i++] !== PREFACE[this.matched++]) return this.lose(true);
    }
    if (this.matched === PREFACE.length) {
      this.startFrames(true);
      this.confirm();
    }
    return pos + (i - start);
  }

  private header(c: Chunk, pos: number): number {
    if (!this.locate(c, pos)) return this.lose(false);
    const b = this.bytes, i = this.at, end = this.atEnd;
    if (this.hdrLen === 0) this.frameSeq = this.seq0 < 0 ? -1 : (this.seq0 + pos) >>> 0;
    if (this.hdrLen === 0 && end - i >= FRAME_HEADER) {
      this.begin(b, i); // read where it lies: most headers are not split
      return this.reading ? pos + FRAME_HEADER : this.len;
    }
    const n = Math.min(FRAME_HEADER - this.hdrLen, end - i);
    for (let k = 0; k < n; k++) this.hdr[this.hdrLen + k] = b[i + k];
    this.hdrLen += n;
    if (this.hdrLen === FRAME_HEADER) this.begin(this.hdr, 0);
    return this.reading ? pos + n : this.len;
  }

  /** The frame header x[p, p + 9) was read. */
  private begin(x: Uint8Array, p: number): void {
    const length = (x[p] << 16) | (x[p + 1] << 8) | x[p + 2], type = x[p + 3], flags = x[p + 4];
    const stream = u32(x, p + 5) & 0x7fffffff; // the reserved bit is ignored (RFC 9113 4.1)
    this.hdrLen = 0;
    const continuation = type === CONTINUATION;
    if (
      length > this.maxFrame || continuation !== this.inBlock ||
      (continuation && stream !== this.blockStream) || !frameShapeOk(type, flags, stream, length)
    ) {
      this.lose(true);
      return;
    }
    this.type = type;
    this.flags = flags;
    this.stream = stream;
    this.length = this.contentEnd = length;
    this.off = 0;
    this.padLost = this.smallLost = false;
    const pad = type !== CONTINUATION && flags & PADDED ? 1 : 0;
    if (type === DATA) {
      this.lead = pad;
    } else if (type === HEADERS || type === PUSH_PROMISE) {
      this.lead = pad + (type === PUSH_PROMISE ? 4 : flags & PRIORITY_FLAG ? 5 : 0);
      this.blockStream = stream;
      this.blockLen = 0;
      this.blockLost = false;
      this.direct = null;
      this.blockEnd = (flags & END_STREAM) !== 0 && type === HEADERS;
      this.blockPromise = type === PUSH_PROMISE;
      this.blockTs = this.ts;
      this.blockSeq = this.frameSeq;
    } else {
      this.lead = 0;
    }
    if (++this.framesOk === CONFIRM_FRAMES) this.confirm();
    this.state = PAYLOAD;
    if (length === 0) this.end();
  }

  private payload(c: Chunk, pos: number): number {
    const stop = pos + Math.min(this.length - this.off, this.len - pos);
    const h = this.h, tb = this.len - this.t;
    let p = pos;
    while (p < stop && this.state === PAYLOAD) {
      let e: number;
      if (p < h) {
        e = Math.min(stop, h);
        this.piece(c.head, p, e);
      } else if (p >= tb) {
        e = stop;
        this.piece(c.tail, p - tb, e - tb);
      } else {
        e = Math.min(stop, tb);
        this.piece(null, p, e);
      }
      p = e;
    }
    if (this.state !== PAYLOAD) return this.len;
    if (this.off === this.length) this.end();
    return stop;
  }

  /** Payload bytes b[s, e), or e - s bytes not captured when b is null. */
  private piece(b: Uint8Array | null, s: number, e: number): void {
    const o = this.off, n = e - s, type = this.type;
    this.off = o + n;
    if (type === DATA || type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) {
      if (o === 0 && this.lead > 0 && type !== CONTINUATION && this.flags & PADDED) {
        if (b === null) {
          this.padLost = true;
          if (type === DATA) this.sink.dataUnbounded(this.stream);
        } else {
          const pad = b[s];
          if (this.lead + pad > this.length) { // RFC 9113 6.1: padding beyond the payload
            this.lose(true);
            return;
          }
          this.contentEnd = this.length - pad;
        }
      }
      const cs = Math.max(o, this.lead), ce = Math.min(o + n, this.contentEnd);
      if (type === DATA) {
        if (cs < ce && !this.padLost) this.sink.dataBytes(this.stream, b, s + cs - o, s + ce - o);
      } else if (this.padLost || (b === null && cs < ce)) {
        this.loseBlock();
      } else if (cs < ce) {
        if (
          cs === this.lead && ce === this.contentEnd && o + n === this.length &&
          this.flags & END_HEADERS && type !== CONTINUATION
        ) {
          // the whole frame is in this piece, and so is the block: it is read before feed returns
          this.direct = b;
          this.directStart = s + cs - o;
          this.blockLen = ce - cs;
        } else {
          this.append(b!, s + cs - o, s + ce - o);
        }
      }
      return;
    }
    if (type === SETTINGS) {
      for (let k = 0; k < n; k++) {
        const i = (o + k) % 6;
        if (i === 0) this.smallLost = false;
        if (b === null) this.smallLost = true;
        else this.small[i] = b[s + k];
        if (i === 5 && !this.smallLost) {
          this.sink.setting((this.small[0] << 8) | this.small[1], u32(this.small, 2));
        }
        if (b === null && k + 6 < n) k += Math.floor((n - k - 1) / 6) * 6; // skip whole entries
      }
      return;
    }
    if (type === RST_STREAM || type === GOAWAY) {
      for (let k = o; k < Math.min(o + n, 8); k++) {
        if (b === null) this.smallLost = true;
        else this.small[k] = b[s + k - o];
      }
    }
  }

  private end(): void {
    this.state = HEADER;
    const ts = this.ts, type = this.type;
    this.frameEnd = this.frameSeq < 0 ? -1 : (this.frameSeq + FRAME_HEADER + this.length) >>> 0;
    if (type === DATA) {
      const endStream = (this.flags & END_STREAM) !== 0;
      this.sink.dataEnd(this.stream, this.contentEnd - this.lead, endStream, ts);
    } else if (type === HEADERS || type === PUSH_PROMISE || type === CONTINUATION) {
      if (this.flags & END_HEADERS) this.finishBlock();
      else this.inBlock = true;
    } else if (type === RST_STREAM) {
      this.sink.rst(this.stream, this.smallLost ? -1 : u32(this.small, 0), ts);
    } else if (type === GOAWAY && !this.smallLost) {
      this.sink.goaway(u32(this.small, 0) & 0x7fffffff, u32(this.small, 4), ts);
    }
  }

  private append(b: Uint8Array, s: number, e: number): void {
    if (this.blockLost) return;
    const need = this.blockLen + (e - s);
    if (need > HEADER_BLOCK_MAX) {
      this.loseBlock();
      return;
    }
    const cap = this.block ? this.block.length : 0;
    if (need > cap) {
      const next = new Uint8Array(Math.min(HEADER_BLOCK_MAX, Math.max(need, cap * 2, 256)));
      if (this.block) next.set(this.block.subarray(0, this.blockLen));
      this.block = next;
    }
    const block = this.block!;
    if (e - s > 64) block.set(b.subarray(s, e), this.blockLen);
    else for (let i = s, o = this.blockLen; i < e; i++, o++) block[o] = b[i]; // no view made
    this.blockLen = need;
  }

  private loseBlock(): void {
    this.blockLost = true;
    if (this.block && this.block.length > BLOCK_KEEP) this.block = null;
  }

  private finishBlock(): void {
    this.inBlock = false;
    const direct = this.direct;
    this.direct = null;
    const b = this.blockLost ? null : direct ?? this.block;
    const s = direct && b ? this.directStart : 0;
    this.sink.headers(
      this.blockStream,
      this.blockEnd,
      b,
      s,
      s + this.blockLen,
      this.blockTs,
      this.ts,
      this.blockPromise,
    );
    if (this.block && this.block.length > BLOCK_KEEP) this.block = null;
  }

  private confirm(): void {
    if (this.confirmed) return;
    this.confirmed = true;
    this.sink.confirm();
  }

  /** The framing is lost; returns the chunk's length so that reading stops. */
  private lose(broken: boolean): number {
    if (this.inBlock && !broken) {
      // the block's last fragments went by unseen (after broken framing, it may be no block)
      this.blockLost = true;
      this.finishBlock();
    }
    this.inBlock = false;
    this.fromStart = false;
    this.state = LOST;
    this.hdrLen = 0;
    this.framesOk = 0;
    if (this.block && this.block.length > BLOCK_KEEP) this.block = null;
    this.sink.lost(this.ts, broken);
    return this.len;
  }
}
