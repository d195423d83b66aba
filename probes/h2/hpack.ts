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
 */

import { huffmanDecode, huffmanMaxDecoded } from "./huffman.ts";

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

/** A table entry as bytes: name then value in one array. nameLen < 0: the name is unknown. */
class Entry {
  constructor(
    readonly bytes: Uint8Array,
    readonly nameLen: number,
    readonly size: number,
  ) {}
}

const ascii = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const STATIC_ENTRIES: readonly Entry[] = STATIC_TABLE.map(([n, v]) =>
  new Entry(ascii(n + v), n.length, n.length + v.length + ENTRY_OVERHEAD)
);

/**
 * One decoded field, handed to the callback of decode(): views valid only during the call.
 * name is null when unknown (a reference the desynced table cannot resolve); value is null
 * only together with it.
 */
export interface HeaderField {
  name: Uint8Array | null;
  ns: number;
  ne: number;
  value: Uint8Array | null;
  vs: number;
  ve: number;
}

export type FieldHandler = (f: HeaderField) => void;

/** Decoded Huffman strings of the block being decoded; shared, decoding is synchronous. */
let scratch = new Uint8Array(1024);

export class HpackDecoder {
  /** the table is known to equal the encoder's */
  private exact = true;
  /** the table's maximum size as last set by the encoder (capped) */
  private maxSize: number;
  /** the largest SETTINGS_HEADER_TABLE_SIZE its peer announced: size updates may not exceed it */
  private limit: number;
  private size = 0;
  private bytes = 0;
  /** ring of entries, oldest at `first` */
  private ring: (Entry | undefined)[] = new Array(16);
  private first = 0;
  private count = 0;
  // cursor and last string of the block being decoded
  private pos = 0;
  private end = 0;
  private sb: Uint8Array = scratch;
  private ss = 0;
  private se = 0;
  private out = 0;
  private readonly field: HeaderField = {
    name: null,
    ns: 0,
    ne: 0,
    value: null,
    vs: 0,
    ve: 0,
  };

  /** maxSize: the table size both ends start from (SETTINGS_HEADER_TABLE_SIZE, default 4096). */
  constructor(maxSize = 4096) {
    this.limit = maxSize;
    this.maxSize = Math.min(maxSize, TABLE_CAP);
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

  /** Bytes held by the dynamic table. */
  get heldBytes(): number {
    return this.bytes;
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
   * Decodes the header block b[s, e), calling onField for each field in order. Returns false
   * when the block is malformed: the fields after the fault are not reported and the decoder
   * is desynced.
   */
  decode(b: Uint8Array, s: number, e: number, onField: FieldHandler): boolean {
    const need = huffmanMaxDecoded(e - s) + 8;
    if (scratch.length < need) scratch = new Uint8Array(Math.max(need, scratch.length * 2));
    this.pos = s;
    this.end = e;
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
        return false;
      }
      if ((x & 0xe0) !== 0x20) fields = true;
    }
    this.sb = scratch; // holds no caller's buffer
    return true;
  }

  private indexed(b: Uint8Array, onField: FieldHandler): boolean {
    const idx = this.int(b, 7);
    if (idx <= 0) return false;
    const f = this.field;
    const en = this.lookup(idx);
    if (en === null) {
      f.name = f.value = null;
    } else if (en.nameLen < 0) {
      f.name = null;
      f.value = en.bytes;
      f.vs = 0;
      f.ve = en.bytes.length;
    } else {
      f.name = f.value = en.bytes;
      f.ns = 0;
      f.ne = f.vs = en.nameLen;
      f.ve = en.bytes.length;
    }
    onField(f);
    return true;
  }

  private literal(b: Uint8Array, bits: number, insert: boolean, onField: FieldHandler): boolean {
    const idx = this.int(b, bits);
    if (idx < 0) return false;
    const f = this.field;
    this.out = 0;
    if (idx === 0) {
      if (!this.str(b)) return false;
      f.name = this.sb;
      f.ns = this.ss;
      f.ne = this.se;
    } else {
      const en = this.lookup(idx);
      if (en === null || en.nameLen < 0) {
        f.name = null;
      } else {
        f.name = en.bytes;
        f.ns = 0;
        f.ne = en.nameLen;
      }
    }
    if (!this.str(b)) return false;
    f.value = this.sb;
    f.vs = this.ss;
    f.ve = this.se;
    onField(f);
    if (insert) this.insert(f);
    return true;
  }

  private sizeUpdate(b: Uint8Array): boolean {
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

  /** Index 1..61 static, 62.. dynamic (newest first); null when the table cannot tell. */
  private lookup(idx: number): Entry | null {
    if (idx <= STATIC_COUNT) return STATIC_ENTRIES[idx - 1];
    const d = idx - STATIC_COUNT - 1;
    if (d < this.count) {
      return this.ring[(this.first + this.count - 1 - d) & (this.ring.length - 1)]!;
    }
    // out of range in a table believed exact: the belief was wrong, keep only what follows
    if (this.exact) this.desync();
    return null;
  }

  private insert(f: HeaderField): void {
    const vlen = f.ve - f.vs;
    const nlen = f.name === null ? -1 : f.ne - f.ns;
    const size = Math.max(nlen, 0) + vlen + ENTRY_OVERHEAD;
    // a desynced table may keep more or less than the encoder's: it stays a prefix of it
    const max = this.exact ? this.maxSize : Math.min(Math.max(this.limit, this.maxSize), TABLE_CAP);
    if (size > max) {
      // RFC 7541 4.4: the table is emptied and the entry not added
      this.clear();
      return;
    }
    this.evict(max - size);
    const bytes = new Uint8Array(Math.max(nlen, 0) + vlen);
    if (f.name !== null) bytes.set(f.name.subarray(f.ns, f.ne));
    bytes.set(f.value!.subarray(f.vs, f.ve), Math.max(nlen, 0));
    if (this.count === this.ring.length) this.grow();
    this.ring[(this.first + this.count) & (this.ring.length - 1)] = new Entry(bytes, nlen, size);
    this.count++;
    this.size += size;
    this.bytes += bytes.length;
  }

  /** Evicts the oldest entries until the table's size is at most max. */
  private evict(max: number): void {
    const mask = this.ring.length - 1;
    while (this.size > max && this.count > 0) {
      const en = this.ring[this.first]!;
      this.ring[this.first] = undefined;
      this.first = (this.first + 1) & mask;
      this.count--;
      this.size -= en.size;
      this.bytes -= en.bytes.length;
    }
  }

  private grow(): void {
    const old = this.ring, mask = old.length - 1;
    const next: (Entry | undefined)[] = new Array(old.length * 2);
    for (let i = 0; i < this.count; i++) next[i] = old[(this.first + i) & mask];
    this.ring = next;
    this.first = 0;
  }

  private clear(): void {
    this.ring = new Array(16);
    this.first = this.count = 0;
    this.size = this.bytes = 0;
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
    if (this.pos >= this.end) return false;
    const huff = b[this.pos] & 0x80;
    const len = this.int(b, 7);
    if (len < 0 || len > STRING_MAX || len > this.end - this.pos) return false;
    const s = this.pos;
    this.pos += len;
    if (!huff) {
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
}
