/**
 * zlib decompression (RFC 1950 around RFC 1951's DEFLATE) of a Go binary's compressed DWARF
 * sections, in TypeScript: node:zlib would bring Deno's Node compatibility layer into the agent
 * (~6 MB of memory) for a few reads per Go binary.
 */

export class InflateError extends Error {
  override name = "InflateError";
}

/** Base lengths and extra bits of length codes 257..285. */
const LEN_BASE = [
  3,
  4,
  5,
  6,
  7,
  8,
  9,
  10,
  11,
  13,
  15,
  17,
  19,
  23,
  27,
  31,
  35,
  43,
  51,
  59,
  67,
  83,
  99,
  115,
  131,
  163,
  195,
  227,
  258,
];
const LEN_EXTRA = [
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  0,
  1,
  1,
  1,
  1,
  2,
  2,
  2,
  2,
  3,
  3,
  3,
  3,
  4,
  4,
  4,
  4,
  5,
  5,
  5,
  5,
  0,
];
/** Base distances and extra bits of distance codes 0..29. */
const DIST_BASE = [
  1,
  2,
  3,
  4,
  5,
  7,
  9,
  13,
  17,
  25,
  33,
  49,
  65,
  97,
  129,
  193,
  257,
  385,
  513,
  769,
  1025,
  1537,
  2049,
  3073,
  4097,
  6145,
  8193,
  12289,
  16385,
  24577,
];
const DIST_EXTRA = [
  0,
  0,
  0,
  0,
  1,
  1,
  2,
  2,
  3,
  3,
  4,
  4,
  5,
  5,
  6,
  6,
  7,
  7,
  8,
  8,
  9,
  9,
  10,
  10,
  11,
  11,
  12,
  12,
  13,
  13,
];
/** The order in which a dynamic block sends its code-length code lengths. */
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * A canonical Huffman code as a lookup table indexed by the next `bits` input bits (LSB
 * first): each entry is symbol << 4 | code length, 0 for bit patterns no code starts with.
 */
interface Code {
  table: Uint32Array;
  bits: number;
}

function buildCode(lengths: ArrayLike<number>): Code {
  let bits = 0;
  const count = new Uint16Array(16);
  for (let i = 0; i < lengths.length; i++) {
    count[lengths[i]]++;
    if (lengths[i] > bits) bits = lengths[i];
  }
  count[0] = 0;
  const next = new Uint16Array(16);
  for (let len = 1, code = 0; len < 16; len++) {
    code = (code + count[len - 1]) << 1;
    next[len] = code;
    if (code + count[len] > 1 << len) throw new InflateError("over-subscribed Huffman code");
  }
  const table = new Uint32Array(1 << bits);
  for (let sym = 0; sym < lengths.length; sym++) {
    const len = lengths[sym];
    if (!len) continue;
    // codes are sent most significant bit first: reversed, they index the LSB-first input
    let code = next[len]++, rev = 0;
    for (let i = 0; i < len; i++, code >>= 1) rev = (rev << 1) | (code & 1);
    for (let i = rev; i < table.length; i += 1 << len) table[i] = (sym << 4) | len;
  }
  return { table, bits };
}

let fixed: { lit: Code; dist: Code } | undefined;

function fixedCodes(): { lit: Code; dist: Code } {
  if (fixed) return fixed;
  const lit = new Uint8Array(288);
  lit.fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288);
  return fixed = { lit: buildCode(lit), dist: buildCode(new Uint8Array(30).fill(5)) };
}

/** The DEFLATE data of a zlib stream `data`, which must inflate to exactly `size` bytes. */
export function inflateZlib(data: Uint8Array, size: number): Uint8Array<ArrayBuffer> {
  if (data.length < 2 || (data[0] & 0x0f) !== 8 || ((data[0] << 8) | data[1]) % 31 !== 0) {
    throw new InflateError("not a zlib stream");
  }
  if (data[1] & 0x20) throw new InflateError("zlib stream with a preset dictionary");
  const out = new Uint8Array(size);
  let pos = 2, bitBuf = 0, bitCnt = 0, o = 0;

  const need = (n: number) => {
    while (bitCnt < n) {
      // past the end reads zeros: a truncated stream fails on its lengths, not here
      bitBuf |= (pos < data.length ? data[pos] : 0) << bitCnt;
      pos++;
      bitCnt += 8;
    }
  };
  const take = (n: number) => {
    need(n);
    const v = bitBuf & ((1 << n) - 1);
    bitBuf >>>= n;
    bitCnt -= n;
    return v;
  };
  const decode = (c: Code) => {
    need(c.bits);
    const e = c.table[bitBuf & ((1 << c.bits) - 1)];
    const len = e & 15;
    if (!len) throw new InflateError("invalid Huffman code");
    bitBuf >>>= len;
    bitCnt -= len;
    return e >>> 4;
  };

  for (let last = 0; !last;) {
    if (pos > data.length + 4) throw new InflateError("truncated stream");
    last = take(1);
    const type = take(2);
    if (type === 0) {
      // to the byte boundary: whole bytes read ahead into the bit buffer are given back
      pos -= bitCnt >> 3;
      bitBuf = bitCnt = 0;
      if (pos + 4 > data.length) throw new InflateError("truncated stored block");
      const len = data[pos] | (data[pos + 1] << 8), nlen = data[pos + 2] | (data[pos + 3] << 8);
      if ((len ^ 0xffff) !== nlen) throw new InflateError("stored block length check");
      pos += 4;
      if (pos + len > data.length || o + len > size) throw new InflateError("stored block overrun");
      out.set(data.subarray(pos, pos + len), o);
      pos += len;
      o += len;
      continue;
    }
    let lit: Code, dist: Code;
    if (type === 1) ({ lit, dist } = fixedCodes());
    else if (type === 2) ({ lit, dist } = dynamicCodes(take, decode));
    else throw new InflateError("reserved block type");
    for (;;) {
      const sym = decode(lit);
      if (sym < 256) {
        if (o >= size) throw new InflateError("output longer than expected");
        out[o++] = sym;
        continue;
      }
      if (sym === 256) break;
      // the length's extra bits come before the distance's code
      const li = sym - 257;
      if (li >= 29) throw new InflateError("invalid length code");
      const len = LEN_BASE[li] + take(LEN_EXTRA[li]);
      const di = decode(dist);
      if (di >= 30) throw new InflateError("invalid distance code");
      const d = DIST_BASE[di] + take(DIST_EXTRA[di]);
      if (d > o) throw new InflateError("distance before the start");
      if (o + len > size) throw new InflateError("output longer than expected");
      // byte by byte: a copy may overlap its own output (a run)
      for (let i = 0; i < len; i++, o++) out[o] = out[o - d];
    }
  }
  if (o !== size) throw new InflateError(`${o} of ${size} bytes`);
  return out;
}

/** The codes of a dynamic block, from its header. */
function dynamicCodes(
  take: (n: number) => number,
  decode: (c: Code) => number,
): { lit: Code; dist: Code } {
  const nlit = take(5) + 257, ndist = take(5) + 1, ncl = take(4) + 4;
  if (nlit > 286 || ndist > 30) throw new InflateError("too many codes");
  const cl = new Uint8Array(19);
  for (let i = 0; i < ncl; i++) cl[CL_ORDER[i]] = take(3);
  const clCode = buildCode(cl);
  const lengths = new Uint8Array(nlit + ndist);
  for (let i = 0; i < lengths.length;) {
    const sym = decode(clCode);
    if (sym < 16) {
      lengths[i++] = sym;
      continue;
    }
    let rep: number, val = 0;
    if (sym === 16) {
      if (!i) throw new InflateError("repeat with no previous length");
      val = lengths[i - 1];
      rep = 3 + take(2);
    } else rep = sym === 17 ? 3 + take(3) : 11 + take(7);
    if (i + rep > lengths.length) throw new InflateError("code lengths overrun");
    lengths.fill(val, i, i + rep);
    i += rep;
  }
  if (!lengths[256]) throw new InflateError("no end-of-block code");
  return { lit: buildCode(lengths.subarray(0, nlit)), dist: buildCode(lengths.subarray(nlit)) };
}
