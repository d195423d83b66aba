/** Text forms of the raw addresses in BPF events. */

/** IPv4 from the first 4 bytes, or IPv6 (RFC 5952 form) from 16 bytes. */
export function formatAddr(family: number, bytes: Uint8Array): string {
  return family === 2 ? ipv4(bytes) : ipv6(bytes);
}

function ipv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

function ipv6(b: Uint8Array): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) {
    return `::ffff:${ipv4(b.subarray(12))}`;
  }
  // longest run of two or more zero words becomes "::"
  let bestStart = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/**
 * The 16 bytes of an IPv6 address, or of an IPv4 address as ::ffff:a.b.c.d; undefined when
 * `text` is neither.
 */
export function addrBytes(text: string): Uint8Array<ArrayBuffer> | undefined {
  const out = new Uint8Array(16);
  const v4 = (s: string, at: number) => {
    const parts = s.split(".");
    if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) < 256)) {
      return false;
    }
    parts.forEach((p, i) => (out[at + i] = Number(p)));
    return true;
  };
  if (!text.includes(":")) {
    out[10] = out[11] = 0xff;
    return v4(text, 12) ? out : undefined;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const words = (s: string) => (s ? s.split(":") : []);
  const head = words(halves[0]), tail = halves.length === 2 ? words(halves[1]) : [];
  // an embedded IPv4 tail (::ffff:1.2.3.4) fills the last two words
  const last = (halves.length === 2 ? tail : head).at(-1) ?? "";
  const embedded = last.includes(".");
  if (embedded) (halves.length === 2 ? tail : head).pop();
  const total = head.length + tail.length + (embedded ? 2 : 0);
  if (halves.length === 1 ? total !== 8 : total > 7) return undefined;
  const all = halves.length === 2 ? [...head, ...new Array(8 - total).fill("0"), ...tail] : head;
  for (const [i, word] of all.entries()) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(word)) return undefined;
    const w = parseInt(word, 16);
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 255;
  }
  if (embedded && !v4(last, 12)) return undefined;
  return out;
}
