/**
 * Header text from captured bytes. HTTP field values are latin1 (RFC 9110 5.5), and the same few
 * (targets, paths, authorities, media types) repeat on every request of every connection: short
 * strings are shared through a small table by hash, so a repeat costs a hash and a comparison
 * instead of a new string.
 */

export function latin1(b: Uint8Array, s: number, e: number): string {
  // apply takes the typed array as the argument list, much cheaper than spreading it
  return e > s ? String.fromCharCode.apply(null, b.subarray(s, e) as unknown as number[]) : "";
}

/**
 * A hash of b[s, e), four bytes a step; never 0 (a free slot's value where callers keep
 * hashes). For the tables that find repeated header bytes: it picks a slot, and the bytes are
 * compared before anything is reused.
 */
export function hashBytes(b: Uint8Array, s: number, e: number): number {
  let h = e - s, i = s;
  for (; i + 4 <= e; i += 4) {
    h = Math.imul(h ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)), 0x5bd1e995);
    h ^= h >>> 15;
  }
  for (; i < e; i++) h = Math.imul(h ^ b[i], 0x5bd1e995);
  return (h ^ (h >>> 13)) | 1;
}

const MEMO_MAX_LEN = 128;
const MEMO_SLOTS = 4096; // a power of two
const memo: string[] = new Array(MEMO_SLOTS).fill("");

/** latin1 of b[s, e), reusing the string decoded last time for the same bytes. */
export function memoLatin1(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n <= 0 || n > MEMO_MAX_LEN) return latin1(b, s, e);
  const slot = (hashBytes(b, s, e) >>> 1) & (MEMO_SLOTS - 1);
  const hit = memo[slot];
  if (hit.length === n) {
    let i = s;
    while (i < e && hit.charCodeAt(i - s) === b[i]) i++;
    if (i === e) return hit;
  }
  return memo[slot] = latin1(b, s, e);
}
