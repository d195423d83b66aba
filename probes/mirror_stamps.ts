/**
 * The reads and writes of a mirrored pair's server end (bpf/http_mirror.h) while its client end
 * is framed in user space: the exchanges the client end's framer completes get the server end's
 * times for the same bytes, found by TCP sequence number.
 */

/** Stamps kept per direction: the server end is at most a few calls ahead of its client end. */
const KEEP = 64;

interface Stamp {
  seq: number;
  /** a read: just past its last byte; a write: 0 (not known where it begins) */
  end: number;
  ts: bigint;
}

/** Whether a is at or after b in sequence space (u32, wrapping). */
function atOrAfter(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export class MirrorStamps {
  readonly #reads: Stamp[] = [];
  readonly #writes: Stamp[] = [];

  /** A read (with its end) or the start of a write; a stamp sent twice is kept once. */
  add(read: boolean, seq: number, end: number, ts: bigint): void {
    const list = read ? this.#reads : this.#writes;
    if (list.some((s) => s.seq === seq && s.ts === ts)) return;
    list.push({ seq, end, ts });
    if (list.length > KEEP) list.shift();
  }

  /** When the read that holds byte `s` returned. */
  readAt(s: number): bigint | undefined {
    return this.#reads.find((r) => atOrAfter(s, r.seq) && !atOrAfter(s, r.end))?.ts;
  }

  /** When the write that holds byte `e` began: the latest that began at or before it. */
  writeAt(e: number): bigint | undefined {
    let best: Stamp | undefined;
    for (const w of this.#writes) {
      if (atOrAfter(e, w.seq) && (!best || atOrAfter(w.seq, best.seq))) best = w;
    }
    return best?.ts;
  }
}
