/**
 * Huffman decoding of HPACK string literals (RFC 7541 section 5.2, code of Appendix B).
 *
 * Header strings of every request pass through here, so decoding is a table walk that never
 * allocates: a 256-state automaton (one state per inner node of the code tree) consumes 4 bits
 * per lookup and emits at most one symbol per lookup, since no code is shorter than 5 bits.
 */

/**
 * Appendix B, symbols 0..256 (256 is EOS) in order: "code/len" with the code in hex aligned to
 * the least significant bit, as the RFC lists them. Tokens ending in ":" number the rows.
 */
const APPENDIX_B = `
  0: 1ff8/13 7fffd8/23 fffffe2/28 fffffe3/28 fffffe4/28 fffffe5/28 fffffe6/28 fffffe7/28
  8: fffffe8/28 ffffea/24 3ffffffc/30 fffffe9/28 fffffea/28 3ffffffd/30 fffffeb/28 fffffec/28
 16: fffffed/28 fffffee/28 fffffef/28 ffffff0/28 ffffff1/28 ffffff2/28 3ffffffe/30 ffffff3/28
 24: ffffff4/28 ffffff5/28 ffffff6/28 ffffff7/28 ffffff8/28 ffffff9/28 ffffffa/28 ffffffb/28
 32: 14/6 3f8/10 3f9/10 ffa/12 1ff9/13 15/6 f8/8 7fa/11
 40: 3fa/10 3fb/10 f9/8 7fb/11 fa/8 16/6 17/6 18/6
 48: 0/5 1/5 2/5 19/6 1a/6 1b/6 1c/6 1d/6
 56: 1e/6 1f/6 5c/7 fb/8 7ffc/15 20/6 ffb/12 3fc/10
 64: 1ffa/13 21/6 5d/7 5e/7 5f/7 60/7 61/7 62/7
 72: 63/7 64/7 65/7 66/7 67/7 68/7 69/7 6a/7
 80: 6b/7 6c/7 6d/7 6e/7 6f/7 70/7 71/7 72/7
 88: fc/8 73/7 fd/8 1ffb/13 7fff0/19 1ffc/13 3ffc/14 22/6
 96: 7ffd/15 3/5 23/6 4/5 24/6 5/5 25/6 26/6
104: 27/6 6/5 74/7 75/7 28/6 29/6 2a/6 7/5
112: 2b/6 76/7 2c/6 8/5 9/5 2d/6 77/7 78/7
120: 79/7 7a/7 7b/7 7ffe/15 7fc/11 3ffd/14 1ffd/13 ffffffc/28
128: fffe6/20 3fffd2/22 fffe7/20 fffe8/20 3fffd3/22 3fffd4/22 3fffd5/22 7fffd9/23
136: 3fffd6/22 7fffda/23 7fffdb/23 7fffdc/23 7fffdd/23 7fffde/23 ffffeb/24 7fffdf/23
144: ffffec/24 ffffed/24 3fffd7/22 7fffe0/23 ffffee/24 7fffe1/23 7fffe2/23 7fffe3/23
152: 7fffe4/23 1fffdc/21 3fffd8/22 7fffe5/23 3fffd9/22 7fffe6/23 7fffe7/23 ffffef/24
160: 3fffda/22 1fffdd/21 fffe9/20 3fffdb/22 3fffdc/22 7fffe8/23 7fffe9/23 1fffde/21
168: 7fffea/23 3fffdd/22 3fffde/22 fffff0/24 1fffdf/21 3fffdf/22 7fffeb/23 7fffec/23
176: 1fffe0/21 1fffe1/21 3fffe0/22 1fffe2/21 7fffed/23 3fffe1/22 7fffee/23 7fffef/23
184: fffea/20 3fffe2/22 3fffe3/22 3fffe4/22 7ffff0/23 3fffe5/22 3fffe6/22 7ffff1/23
192: 3ffffe0/26 3ffffe1/26 fffeb/20 7fff1/19 3fffe7/22 7ffff2/23 3fffe8/22 1ffffec/25
200: 3ffffe2/26 3ffffe3/26 3ffffe4/26 7ffffde/27 7ffffdf/27 3ffffe5/26 fffff1/24 1ffffed/25
208: 7fff2/19 1fffe3/21 3ffffe6/26 7ffffe0/27 7ffffe1/27 3ffffe7/26 7ffffe2/27 fffff2/24
216: 1fffe4/21 1fffe5/21 3ffffe8/26 3ffffe9/26 ffffffd/28 7ffffe3/27 7ffffe4/27 7ffffe5/27
224: fffec/20 fffff3/24 fffed/20 1fffe6/21 3fffe9/22 1fffe7/21 1fffe8/21 7ffff3/23
232: 3fffea/22 3fffeb/22 1ffffee/25 1ffffef/25 fffff4/24 fffff5/24 3ffffea/26 7ffff4/23
240: 3ffffeb/26 7ffffe6/27 3ffffec/26 3ffffed/26 7ffffe7/27 7ffffe8/27 7ffffe9/27 7ffffea/27
248: 7ffffeb/27 ffffffe/28 7ffffec/27 7ffffed/27 7ffffee/27 7ffffef/27 7fffff0/27 3ffffee/26
256: 3fffffff/30
`;

export const EOS = 256;

function parseTable(): { codes: number[]; lengths: number[] } {
  const codes: number[] = [], lengths: number[] = [];
  for (const tok of APPENDIX_B.split(/\s+/)) {
    if (tok === "" || tok.endsWith(":")) continue;
    const [code, len] = tok.split("/");
    codes.push(parseInt(code, 16));
    lengths.push(parseInt(len, 10));
  }
  if (codes.length !== EOS + 1) throw new Error("HPACK Huffman table: wrong symbol count");
  return { codes, lengths };
}

const TABLE = parseTable();
/** Code of each symbol, aligned to the least significant bit. */
export const HUFFMAN_CODES: readonly number[] = TABLE.codes;
/** Bit length of each symbol's code. */
export const HUFFMAN_LENGTHS: readonly number[] = TABLE.lengths;

// ---------------------------------------------------------------------------------------------
// The decoding automaton

/** FSM entry bits: next state in the low byte, then flags, then the emitted symbol. */
const EMIT = 0x100, FAIL = 0x200;
const FSM = new Uint32Array(256 * 16);
/** States in which input may end: the bits since the last symbol are a prefix of EOS (1s) of at most 7 bits. */
const ACCEPT = new Uint8Array(256);

function buildAutomaton(): void {
  // inner nodes are numbered 0..255 (0 = root); a child < 0 is the leaf of symbol -child - 1
  const child = new Int32Array(512).fill(0x7fffffff);
  const depth = new Uint8Array(256), ones = new Uint8Array(256);
  let nodes = 1;
  ones[0] = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const code = HUFFMAN_CODES[sym], len = HUFFMAN_LENGTHS[sym];
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1, slot = node * 2 + bit;
      if (i === 0) {
        if (child[slot] !== 0x7fffffff) throw new Error("HPACK Huffman table: not a prefix code");
        child[slot] = -sym - 1;
      } else if (child[slot] === 0x7fffffff) {
        if (nodes === 256) throw new Error("HPACK Huffman table: too many nodes");
        depth[nodes] = depth[node] + 1;
        ones[nodes] = ones[node] & bit;
        child[slot] = nodes++;
        node = child[slot];
      } else if (child[slot] < 0) {
        throw new Error("HPACK Huffman table: not a prefix code");
      } else {
        node = child[slot];
      }
    }
  }
  if (nodes !== 256 || child.includes(0x7fffffff)) {
    throw new Error("HPACK Huffman table: incomplete code");
  }
  for (let s = 0; s < 256; s++) {
    ACCEPT[s] = ones[s] && depth[s] <= 7 ? 1 : 0;
    for (let nib = 0; nib < 16; nib++) {
      let node = s, entry = 0;
      for (let k = 3; k >= 0; k--) {
        const next = child[node * 2 + ((nib >> k) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = -next - 1;
        if (sym === EOS) {
          entry |= FAIL;
          break;
        }
        entry |= EMIT | (sym << 16);
        node = 0;
      }
      FSM[s * 16 + nib] = entry | node;
    }
  }
}

buildAutomaton();

/** Upper bound of the decoded length of n encoded bytes (the shortest code has 5 bits). */
export function huffmanMaxDecoded(n: number): number {
  return Math.ceil(n * 8 / 5);
}

/**
 * The automaton a byte at a time, built from the nibble one: next state in the low byte, the
 * number of symbols emitted (0..2, codes being 5 bits or longer) in bits 8-9, then FAIL, then
 * the first and second symbol in the upper bytes. Half the lookups of the nibble walk, for
 * 256 KiB.
 */
const FAIL8 = 0x400;
const FSM8 = new Uint32Array(256 * 256);

function buildByteAutomaton(): void {
  for (let s = 0; s < 256; s++) {
    for (let x = 0; x < 256; x++) {
      const t1 = FSM[(s << 4) | (x >> 4)];
      if (t1 & FAIL) {
        FSM8[(s << 8) | x] = FAIL8;
        continue;
      }
      const t2 = FSM[((t1 & 0xff) << 4) | (x & 15)];
      if (t2 & FAIL) {
        FSM8[(s << 8) | x] = FAIL8;
        continue;
      }
      let n = 0, syms = 0;
      if (t1 & EMIT) syms |= (t1 >>> 16) << (16 + 8 * n++);
      if (t2 & EMIT) syms |= (t2 >>> 16) << (16 + 8 * n++);
      FSM8[(s << 8) | x] = (syms | (n << 8) | (t2 & 0xff)) >>> 0;
    }
  }
}

buildByteAutomaton();

/**
 * Decodes src[s, e) into out starting at o; returns the end offset in out, or -1 when the
 * input holds EOS or its padding is not a 0..7-bit prefix of EOS (RFC 7541 5.2). out must
 * have room for huffmanMaxDecoded(e - s) bytes.
 */
export function huffmanDecode(
  src: Uint8Array,
  s: number,
  e: number,
  out: Uint8Array,
  o: number,
): number {
  let state = 0;
  for (let i = s; i < e; i++) {
    const t = FSM8[(state << 8) | src[i]];
    if (t & FAIL8) return -1;
    const n = (t >> 8) & 3;
    if (n !== 0) {
      out[o++] = t >>> 16; // the Uint8Array keeps the low byte
      if (n === 2) out[o++] = t >>> 24;
    }
    state = t & 0xff;
  }
  return ACCEPT[state] ? o : -1;
}

/**
 * The decoded length of src[s, e) without its output, or -1 where huffmanDecode fails: what the
 * HPACK table needs of a value nobody reads (its size counts the decoded octets).
 */
export function huffmanLength(src: Uint8Array, s: number, e: number): number {
  let state = 0, n = 0;
  for (let i = s; i < e; i++) {
    const t = FSM8[(state << 8) | src[i]];
    if (t & FAIL8) return -1;
    n += (t >> 8) & 3;
    state = t & 0xff;
  }
  return ACCEPT[state] ? n : -1;
}
