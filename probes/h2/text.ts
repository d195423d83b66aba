/**
 * Strings of the header values the HTTP/2 parser reports. Values are latin1 (RFC 9110 5.5), and
 * the same few repeat on every call: a connection's last value of a field is kept with its
 * bytes, and short strings are shared through one table by hash (probes/latin1.ts).
 */

import { memoLatin1 } from "../latin1.ts";

const MEDIA_TYPE_MAX = 128;

/** latin1 of b[s, min(e, s + max)), shared with every other use of the same bytes. */
export function text(b: Uint8Array, s: number, e: number, max: number): string {
  return memoLatin1(b, s, Math.min(e, s + max));
}

/** Media type without parameters, lower case. */
export function mediaType(b: Uint8Array, s: number, e: number): string {
  let q = s;
  while (q < e && b[q] !== 59) q++; // ';'
  while (q > s && (b[q - 1] === 32 || b[q - 1] === 9)) q--;
  let upper = false;
  for (let i = s; i < q && !upper; i++) upper = b[i] >= 65 && b[i] <= 90;
  const t = text(b, s, q, MEDIA_TYPE_MAX);
  return upper ? t.toLowerCase() : t;
}

/** Longer values are not kept: they are made each time. */
const LAST_MAX = 1024;

/** The string a field's value made last, with its bytes: a repeat costs one comparison. */
export class LastText {
  private bytes = new Uint8Array(0);
  private len = -1;
  private str = "";

  constructor(private readonly make: (b: Uint8Array, s: number, e: number) => string) {}

  of(b: Uint8Array, s: number, e: number): string {
    const n = e - s;
    if (n > LAST_MAX) return this.make(b, s, e);
    const x = this.bytes;
    if (n === this.len) {
      let i = 0;
      while (i < n && x[i] === b[s + i]) i++;
      if (i === n) return this.str;
    }
    if (x.length < n) this.bytes = new Uint8Array(Math.max(n, 32));
    const y = this.bytes;
    for (let i = 0; i < n; i++) y[i] = b[s + i];
    this.len = n;
    return this.str = this.make(b, s, e);
  }
}
