/**
 * HPACK decoding (RFC 7541) of the header blocks one peer of an HTTP/2 connection sends.
 *
 * An observer cannot ask for a header block again: when one is lost (not captured, or joined
 * midway) the dynamic table no longer matches the encoder's. The decoder then runs "desynced":
 * the table is emptied and only entries inserted from then on are kept. The encoder inserts at
 * the front and evicts at the back, so its newest k entries are exactly the k insertions seen
 * since, whatever it evicted or held before: a reference into them is still exact, anything
 * older yields an unknown field, never a wrong one. A size update to 0 empties the encoder's
 * table too, after which the decoder is in sync again.
 *
 * Every header of every call passes through here, so the common path allocates nothing: names
 * are interned to small ids, and a decoder made for the reported names only (the calls' parser)
 * keeps and decodes the values of those names alone. Of other values it needs only the decoded
 * length, for the table's sizes, which a Huffman walk counts without output. Entries live in
 * one byte ring per table (the table is a FIFO), described by a few integers each.
 */

import { huffmanDecode, huffmanLength, huffmanMaxDecoded } from "./huffman.ts";

/** Largest dynamic table kept, whatever the peers agree on. */
export const TABLE_CAP = 65536;
/** Longer string literals are not header fields this observer decodes. */
export const STRING_MAX = 65536;
/** Integers beyond this are not a plausible index, length or table size. */
const INT_MAX = 1 << 28;
/** RFC 7541 4.1: an entry's size counts 32 bytes besides its name and value. */
const ENTRY_OVERHEAD = 32;

/** Appendix A: the static table, index 1..61. */
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];
export const STATIC_COUNT = 61;

// ---------------------------------------------------------------------------------------------
// Names

/** Ids of the names the calls' parser reads; the ids below REPORTED_NAMES. */
export const N_AUTHORITY = 0, N_METHOD = 1, N_PATH = 2, N_SCHEME = 3, N_STATUS = 4;
export const N_CONTENT_TYPE = 5, N_USER_AGENT = 6, N_GRPC_STATUS = 7, N_GRPC_MESSAGE = 8;
export const N_GRPC_TIMEOUT = 9, N_TRACEPARENT = 10, N_GRPC_TRACE_BIN = 11;
export const REPORTED_NAMES = 12;
/** A name not interned: its bytes are kept only by a decoder that keeps every value. */
export const OTHER_NAME = -1;
/** A reference the desynced table cannot resolve: name and value unknown. */
export const UNKNOWN_NAME = -2;

/** Interned names: the reported ones (at their ids), then the static table's and gRPC's others. */
export const NAMES: readonly string[] = [
  ...new Set([
    ":authority",
    ":method",
    ":path",
    ":scheme",
    ":status",
    "content-type",
    "user-agent",
    "grpc-status",
    "grpc-message",
    "grpc-timeout",
    "traceparent",
    "grpc-trace-bin",
    ...STATIC_TABLE.map(([n]) => n),
    "te",
    "grpc-encoding",
    "grpc-accept-encoding",
    "tracestate",
  ]),
];

const ascii = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const NAME_BYTES: readonly Uint8Array[] = NAMES.map(ascii);
/** Ids of the interned names by length. */
const BY_LENGTH: number[][] = [];
NAME_BYTES.forEach((b, id) => (BY_LENGTH[b.length] ??= []).push(id));

/** Id of the name b[s, e): an interned one, else OTHER_NAME. */
export function nameId(b: Uint8Array, s: number, e: number): number {
  const ids = BY_LENGTH[e - s];
  if (ids === undefined) return OTHER_NAME;
  for (let k = 0; k < ids.length; k++) {
    const n = NAME_BYTES[ids[k]];
    let i = n.length - 1; // names sharing a prefix differ at the end sooner
    while (i >= 0 && n[i] === b[s + i]) i--;
    if (i < 0) return ids[k];
  }
  return OTHER_NAME;
}

const STATIC_ID = Int32Array.from(STATIC_TABLE, ([n]) => NAMES.indexOf(n));
const STATIC_VALUE: readonly Uint8Array[] = STATIC_TABLE.map(([, v]) => ascii(v));

/**
 * One field, handed to the callback of decode(): views valid only during the call. id is one of
 * NAMES, OTHER_NAME or UNKNOWN_NAME; name is the name's bytes (null when unknown); value is null
 * only together with it.
 */
export interface HeaderField {
  id: number;
  name: Uint8Array | null;
  ns: number;
  ne: number;
  value: Uint8Array | null;
  vs: number;
  ve: number;
}

export type FieldHandler = (f: HeaderField) => void;

// ---------------------------------------------------------------------------------------------
// The decoder

/** Decoded Huffman strings of the block being decoded; shared, decoding is synchronous. */
let scratch = new Uint8Array(1024);
const EMPTY = new Uint8Array(0);

/** Longest block whose insertions are logged (see lastBlockInserts). */
export const LOG_BLOCK_MAX = 256;

/**
 * The entries a header block inserted, in order: per entry (L_STRIDE integers) its name id,
 * name and value octets, and which of them were kept, whose bytes follow one another in bytes.
 */
export interface InsertLog {
  readonly meta: Int32Array;
  readonly bytes: Uint8Array;
}

const L_STRIDE = 4, L_KEEP_NAME = 1, L_KEEP_VALUE = 2;
// the log of the block being decoded; shared like scratch
let logMeta = new Int32Array(16 * L_STRIDE);
let logBytes = new Uint8Array(LOG_BLOCK_MAX * 2);
let logCount = 0;
let logLen = 0;

function logBytesOf(src: Uint8Array, s: number, n: number): void {
  if (logLen + n > logBytes.length) {
    const next = new Uint8Array(Math.max(logBytes.length * 2, logLen + n));
    next.set(logBytes.subarray(0, logLen));
    logBytes = next;
  }
  for (let i = 0; i < n; i++) logBytes[logLen + i] = src[s + i];
  logLen += n;
}

/** An entry's integers in the ring `meta`: name id, RFC size, name octets, ... */
const M_ID = 0, M_SIZE = 1, M_NAME = 2;
/** ... where its bytes are in the arena: name bytes kept (0 or M_NAME), value bytes or -1. */
const M_OFF = 3, M_NAME_KEPT = 4, M_VALUE = 5;
const M_STRIDE = 8; // a power of two

export class HpackDecoder {
  /** the table is known to equal the encoder's */
  private exact = true;
  /** the table's maximum size as last set by the encoder (capped) */
  private maxSize: number;
  /** the largest SETTINGS_HEADER_TABLE_SIZE its peer announced: size updates may not exceed it */
  private limit: number;
  /** every field is reported and every value kept, rather than the reported names' only */
  private readonly all: boolean;
  private size = 0;
  /** entries, oldest at `first`: M_STRIDE integers each */
  private meta = new Int32Array(0);
  private first = 0;
  private count = 0;
  /** the entries' kept bytes, a ring from the oldest entry's offset to `head` */
  private arena = EMPTY;
  private head = 0;
  private kept = 0;
  // cursor and last string of the block being decoded
  private pos = 0;
  private end = 0;
  private sb: Uint8Array = scratch;
  private ss = 0;
  private se = 0;
  private out = 0;
  /** the string read last by strStart is Huffman-coded */
  private huff = false;
  private pure = true;
  /** the block being decoded referred to a dynamic entry, or changed the table's size */
  private dynamic = false;
  /** its insertions are logged (a short block) */
  private logging = false;
  private readonly field: HeaderField = {
    id: OTHER_NAME,
    name: null,
    ns: 0,
    ne: 0,
    value: null,
    vs: 0,
    ve: 0,
  };

  /**
   * maxSize: the table size both ends start from (SETTINGS_HEADER_TABLE_SIZE, default 4096).
   * reportedOnly: decode() reports only the names below REPORTED_NAMES (and unknown fields),
   * and keeps no other value.
   */
  constructor(maxSize = 4096, reportedOnly = false) {
    this.limit = maxSize;
    this.maxSize = Math.min(maxSize, TABLE_CAP);
    this.all = !reportedOnly;
  }

  /** The table equals the encoder's: every reference resolves. */
  get synced(): boolean {
    return this.exact;
  }

  /** The table's size as RFC 7541 4.1 counts it. */
  get tableSize(): number {
    return this.size;
  }

  get tableEntries(): number {
    return this.count;
  }

  /** Bytes held by the dynamic table: the names and values it keeps. */
  get heldBytes(): number {
    return this.kept;
  }

  /**
   * The block decoded last referred to the static table only, inserted nothing and changed no
   * size: the same bytes decode the same whatever the table holds, and leave it as it is.
   */
  get lastBlockPure(): boolean {
    return this.pure;
  }

  /**
   * The block decoded last, when it referred to no dynamic entry, changed no size and was at
   * most LOG_BLOCK_MAX bytes: the entries it inserted (null for none). Its fields are the same
   * whatever the table holds, and replay() of this log leaves the table as decoding the same
   * bytes again would. undefined for other blocks.
   */
  lastBlockInserts(): InsertLog | null | undefined {
    if (this.dynamic || !this.logging) return undefined;
    if (logCount === 0) return null;
    return { meta: logMeta.slice(0, logCount * L_STRIDE), bytes: logBytes.slice(0, logLen) };
  }

  /** Inserts the entries of a block's log, as decoding that block again would. */
  replay(log: InsertLog | null): void {
    this.pure = log === null;
    this.dynamic = false;
    this.logging = false;
    if (log === null) return;
    const m = log.meta, b = log.bytes;
    let o = 0;
    for (let i = 0; i < m.length; i += L_STRIDE) {
      const nameLen = m[i + 1], valueLen = m[i + 2], keep = m[i + 3];
      const nk = keep & L_KEEP_NAME ? nameLen : 0;
      const vk = keep & L_KEEP_VALUE ? valueLen : 0;
      this.insert(m[i], nameLen, valueLen, nk ? b : null, o, vk ? b : null, o + nk);
      o += nk + vk;
    }
  }

  /** The decoding peer announced SETTINGS_HEADER_TABLE_SIZE. */
  setLimit(n: number): void {
    if (n > this.limit) this.limit = n;
  }

  /** A header block went by unseen, or the connection was joined midway. */
  desync(): void {
    this.exact = false;
    this.clear();
  }

  /**
   * Decodes the header block b[s, e), calling onField for each field in order (for the
   * reported names only, and unknown fields, when made so). Returns false when the block is
   * malformed: the fields after the fault are not reported and the decoder is desynced.
   */
  decode(b: Uint8Array, s: number, e: number, onField: FieldHandler): boolean {
    const need = huffmanMaxDecoded(e - s) + 8;
    if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
    this.pos = s;
    this.end = e;
    this.pure = true;
    this.dynamic = false;
    this.logging = e - s <= LOG_BLOCK_MAX;
    logCount = logLen = 0;
    let fields = false;
    while (this.pos < e) {
      const x = b[this.pos];
      let ok: boolean;
      if (x & 0x80) ok = this.indexed(b, onField);
      else if (x & 0x40) ok = this.literal(b, 6, true, onField);
      else if (x & 0x20) ok = !fields && this.sizeUpdate(b);
      else ok = this.literal(b, 4, false, onField); // without indexing, or never indexed
      if (!ok) {
        this.desync();
        this.sb = scratch;
        this.pure = false;
        this.dynamic = true;
        return false;
      }
      if ((x & 0xe0) !== 0x20) fields = true;
    }
    this.sb = scratch; // holds no caller's buffer
    return true;
  }

  /** The field's value is decoded and kept. */
  private wants(id: number): boolean {
    return this.all ? id !== UNKNOWN_NAME : id >= 0 && id < REPORTED_NAMES;
  }

  private indexed(b: Uint8Array, onField: FieldHandler): boolean {
    const idx = this.int(b, 7);
    if (idx <= 0) return false;
    const f = this.field;
    if (idx <= STATIC_COUNT) {
      const id = STATIC_ID[idx - 1];
      if (!this.wants(id)) return true;
      f.id = id;
      this.staticName(id);
      f.value = STATIC_VALUE[idx - 1];
      f.vs = 0;
      f.ve = f.value.length;
      onField(f);
      return true;
    }
    this.pure = false;
    this.dynamic = true;
    const at = this.entry(idx);
    const id = at < 0 ? UNKNOWN_NAME : this.meta[at + M_ID];
    if (id === UNKNOWN_NAME) {
      f.id = id;
      f.name = f.value = null;
      onField(f);
      return true;
    }
    if (!this.wants(id)) return true;
    const m = this.meta, off = m[at + M_OFF];
    f.id = id;
    if (id >= 0) this.staticName(id);
    else {
      f.name = this.arena;
      f.ns = off;
      f.ne = off + m[at + M_NAME_KEPT];
    }
    f.value = this.arena;
    f.vs = off + m[at + M_NAME_KEPT];
    f.ve = f.vs + m[at + M_VALUE];
    onField(f);
    return true;
  }

  private staticName(id: number): void {
    const f = this.field;
    f.name = NAME_BYTES[id];
    f.ns = 0;
    f.ne = f.name.length;
  }

  private literal(b: Uint8Array, bits: number, insert: boolean, onField: FieldHandler): boolean {
    const idx = this.int(b, bits);
    if (idx < 0) return false;
    const f = this.field;
    this.out = 0;
    let id: number, nameLen: number, keepName = false;
    if (idx === 0) {
      if (!this.str(b)) return false;
      nameLen = this.se - this.ss;
      id = nameId(this.sb, this.ss, this.se);
      if (id === OTHER_NAME && this.all) {
        keepName = true;
        f.name = this.sb;
        f.ns = this.ss;
        f.ne = this.se;
      }
    } else if (idx <= STATIC_COUNT) {
      id = STATIC_ID[idx - 1];
      nameLen = NAME_BYTES[id].length;
    } else {
      this.pure = false;
      this.dynamic = true;
      const at = this.entry(idx);
      id = at < 0 ? UNKNOWN_NAME : this.meta[at + M_ID];
      nameLen = at < 0 ? -1 : this.meta[at + M_NAME];
      if (id === OTHER_NAME && this.all) {
        // the entry may be evicted by this very insertion (RFC 7541 4.4): copy its name out
        keepName = true;
        const off = this.meta[at + M_OFF];
        if (scratch.length < nameLen + huffmanMaxDecoded(this.end - this.pos) + 8) {
          scratch = new Uint8Array(nameLen + huffmanMaxDecoded(this.end - this.pos) + 8);
        }
        scratch.set(this.arena.subarray(off, off + nameLen));
        f.name = scratch;
        f.ns = 0;
        f.ne = this.out = nameLen;
      }
    }
    if (id >= 0) this.staticName(id);
    f.id = id;
    let valueLen: number, keepValue = false;
    if (this.wants(id)) {
      if (!this.str(b)) return false;
      valueLen = this.se - this.ss;
      keepValue = true;
      f.value = this.sb;
      f.vs = this.ss;
      f.ve = this.se;
      onField(f);
    } else {
      valueLen = this.strLength(b);
      if (valueLen < 0) return false;
      if (id === UNKNOWN_NAME) {
        f.name = f.value = null;
        onField(f);
      }
    }
    if (insert) {
      this.pure = false;
      this.insert(
        id,
        nameLen,
        valueLen,
        keepName ? f.name : null,
        f.ns,
        keepValue ? f.value : null,
        f.vs,
      );
    }
    return true;
  }

  private sizeUpdate(b: Uint8Array): boolean {
    this.pure = false;
    this.dynamic = true;
    const v = this.int(b, 5);
    if (v < 0) return false;
    if (this.exact) {
      if (v > this.limit) return false; // RFC 7541 6.3: a decoding error
    } else if (v === 0) {
      // the encoder emptied its table: from here on it is known again
      this.exact = true;
    }
    if (v > TABLE_CAP) this.exact = false; // the entries kept stay its newest ones
    this.maxSize = Math.min(v, TABLE_CAP);
    this.evict(this.maxSize);
    return true;
  }

  /** Where dynamic index idx's entry is in meta; -1 when the desynced table cannot tell. */
  private entry(idx: number): number {
    const d = idx - STATIC_COUNT - 1;
    if (d < this.count) {
      const mask = this.meta.length / M_STRIDE - 1;
      return ((this.first + this.count - 1 - d) & mask) * M_STRIDE;
    }
    // out of range in a table believed exact: the belief was wrong, keep only what follows
    if (this.exact) this.desync();
    return -1;
  }

  /**
   * Adds a field: nameLen octets of name (-1: unknown), its bytes kept from name[ns, ...) unless
   * name is null; valueLen octets of value, kept from value[vs, ...) unless null.
   */
  private insert(
    id: number,
    nameLen: number,
    valueLen: number,
    name: Uint8Array | null,
    ns: number,
    value: Uint8Array | null,
    vs: number,
  ): void {
    const keepName = name !== null, keepValue = value !== null;
    if (this.logging) {
      if ((logCount + 1) * L_STRIDE > logMeta.length) {
        const next = new Int32Array(logMeta.length * 2);
        next.set(logMeta);
        logMeta = next;
      }
      const k = logCount++ * L_STRIDE;
      logMeta[k] = id;
      logMeta[k + 1] = nameLen;
      logMeta[k + 2] = valueLen;
      logMeta[k + 3] = (keepName ? L_KEEP_NAME : 0) | (keepValue ? L_KEEP_VALUE : 0);
      if (keepName) logBytesOf(name, ns, nameLen);
      if (keepValue) logBytesOf(value, vs, valueLen);
    }
    const size = Math.max(nameLen, 0) + valueLen + ENTRY_OVERHEAD;
    // a desynced table may keep more or less than the encoder's: it stays a prefix of it
    const max = this.exact ? this.maxSize : Math.min(Math.max(this.limit, this.maxSize), TABLE_CAP);
    if (size > max) {
      // RFC 7541 4.4: the table is emptied and the entry not added
      this.clear();
      return;
    }
    this.evict(max - size);
    const nk = keepName ? nameLen : 0, n = nk + (keepValue ? valueLen : 0);
    const off = this.alloc(n, max);
    if (keepName) copy(name, ns, ns + nameLen, this.arena, off);
    if (keepValue) copy(value, vs, vs + valueLen, this.arena, off + nk);
    if (this.count === this.meta.length / M_STRIDE) this.grow();
    const m = this.meta;
    const at = ((this.first + this.count) & (m.length / M_STRIDE - 1)) * M_STRIDE;
    m[at + M_ID] = id;
    m[at + M_SIZE] = size;
    m[at + M_NAME] = nameLen;
    m[at + M_OFF] = off;
    m[at + M_NAME_KEPT] = nk;
    m[at + M_VALUE] = keepValue ? valueLen : -1;
    this.count++;
    this.size += size;
    this.kept += n;
  }

  /** Arena room for n bytes after the newest entry's; the table's size is at most max. */
  private alloc(n: number, max: number): number {
    if (this.count === 0) this.head = 0;
    const h = this.head;
    if (n === 0) return h;
    const cap = this.arena.length;
    const tail = this.count > 0 ? this.meta[this.first * M_STRIDE + M_OFF] : 0;
    // kept bytes are [tail, h), or [tail, cap) and [0, h) once wrapped; bounds are strict where
    // the head would meet the tail, which would read as an empty ring
    if (h >= tail) {
      if (h + n <= cap) {
        this.head = h + n;
        return h;
      }
      if (n < tail) {
        this.head = n;
        return 0;
      }
    } else if (h + n < tail) {
      this.head = h + n;
      return h;
    }
    // twice the largest table never runs out: kept bytes and the room wasted at the end where
    // the ring wrapped are each below max
    const bound = Math.max(256, pow2(2 * max));
    this.compact(Math.min(Math.max(256, 2 * cap, pow2(2 * (this.kept + n))), bound));
    const off = this.head;
    this.head += n;
    return off;
  }

  /** Copies the kept bytes, oldest first, into a new arena of cap bytes. */
  private compact(cap: number): void {
    const next = new Uint8Array(cap), m = this.meta, mask = m.length / M_STRIDE - 1;
    let o = 0;
    for (let i = 0; i < this.count; i++) {
      const at = ((this.first + i) & mask) * M_STRIDE, off = m[at + M_OFF];
      const n = m[at + M_NAME_KEPT] + Math.max(m[at + M_VALUE], 0);
      next.set(this.arena.subarray(off, off + n), o);
      m[at + M_OFF] = o;
      o += n;
    }
    this.arena = next;
    this.head = o;
  }

  /** Evicts the oldest entries until the table's size is at most max. */
  private evict(max: number): void {
    const m = this.meta, mask = m.length / M_STRIDE - 1;
    while (this.size > max && this.count > 0) {
      const at = this.first * M_STRIDE;
      this.size -= m[at + M_SIZE];
      this.kept -= m[at + M_NAME_KEPT] + Math.max(m[at + M_VALUE], 0);
      this.first = (this.first + 1) & mask;
      this.count--;
    }
  }

  private grow(): void {
    const old = this.meta, slots = old.length / M_STRIDE;
    const next = new Int32Array(Math.max(16, slots * 2) * M_STRIDE);
    for (let i = 0; i < this.count; i++) {
      const at = ((this.first + i) & (slots - 1)) * M_STRIDE;
      next.set(old.subarray(at, at + M_STRIDE), i * M_STRIDE);
    }
    this.meta = next;
    this.first = 0;
  }

  /** Empties the table and lets its memory go. */
  private clear(): void {
    this.meta = new Int32Array(0);
    this.arena = EMPTY;
    this.first = this.count = this.head = 0;
    this.size = this.kept = 0;
  }

  /** RFC 7541 5.1 integer with an n-bit prefix at this.pos; -1 when malformed or implausible. */
  private int(b: Uint8Array, n: number): number {
    const mask = (1 << n) - 1;
    let v = b[this.pos++] & mask;
    if (v < mask) return v;
    for (let m = 0; m < 28; m += 7) {
      if (this.pos >= this.end) return -1;
      const x = b[this.pos++];
      v += (x & 0x7f) * (1 << m);
      if (!(x & 0x80)) return v > INT_MAX ? -1 : v;
    }
    return -1;
  }

  /** RFC 7541 5.2 string literal at this.pos into sb[ss, se). */
  private str(b: Uint8Array): boolean {
    const s = this.strStart(b);
    if (s < 0) return false;
    const len = this.pos - s;
    if (!this.huff) {
      this.sb = b;
      this.ss = s;
      this.se = s + len;
      return true;
    }
    const o = huffmanDecode(b, s, s + len, scratch, this.out);
    if (o < 0) return false;
    this.sb = scratch;
    this.ss = this.out;
    this.se = this.out = o;
    return true;
  }

  /** The decoded length of the string literal at this.pos, skipped; -1 when malformed. */
  private strLength(b: Uint8Array): number {
    const s = this.strStart(b);
    if (s < 0) return -1;
    return this.huff ? huffmanLength(b, s, this.pos) : this.pos - s;
  }

  /** Reads a string literal's header, skips its bytes; returns where they start, or -1. */
  private strStart(b: Uint8Array): number {
    if (this.pos >= this.end) return -1;
    this.huff = (b[this.pos] & 0x80) !== 0;
    const len = this.int(b, 7);
    if (len < 0 || len > STRING_MAX || len > this.end - this.pos) return -1;
    const s = this.pos;
    this.pos += len;
    return s;
  }
}

/** src[s, e) to dst at o; short runs byte by byte, which makes no view. */
function copy(src: Uint8Array, s: number, e: number, dst: Uint8Array, o: number): void {
  if (e - s > 64) dst.set(src.subarray(s, e), o);
  else for (let i = s; i < e; i++) dst[o++] = src[i];
}

/** The least power of two at least n. */
function pow2(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}
