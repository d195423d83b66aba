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

const MEMO_MAX_LEN = 128;
const MEMO_SLOTS = 4096; // a power of two
const memo: string[] = new Array(MEMO_SLOTS).fill("");

/** latin1 of b[s, e), reusing the string decoded last time for the same bytes. */
export function memoLatin1(b: Uint8Array, s: number, e: number): string {
  const n = e - s;
  if (n <= 0 || n > MEMO_MAX_LEN) return latin1(b, s, e);
  let h = n;
  for (let i = s; i < e; i++) h = (Math.imul(h, 31) + b[i]) & 0x3fffffff;
  const slot = h & (MEMO_SLOTS - 1);
  const hit = memo[slot];
  if (hit.length === n) {
    let i = s;
    while (i < e && hit.charCodeAt(i - s) === b[i]) i++;
    if (i === e) return hit;
  }
  return memo[slot] = latin1(b, s, e);
}
