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

function keep(list: Stamp[], s: Stamp): void {
  list.push(s);
  if (list.length > KEEP) list.shift();
}

/** Whether a is at or after b in sequence space (u32, wrapping). */
function atOrAfter(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export class MirrorStamps {
  readonly #reads: Stamp[] = [];
  /** reads after a write, where requests start: a long upload's start outlives its reads */
  readonly #turns: Stamp[] = [];
  readonly #writes: Stamp[] = [];
  #wrote = true;

  /** A read (with its end) or the start of a write; a stamp sent twice is kept once. */
  add(read: boolean, seq: number, end: number, ts: bigint): void {
    const list = read ? this.#reads : this.#writes;
    if (list.some((s) => s.seq === seq && s.ts === ts)) return;
    keep(list, { seq, end, ts });
    if (read && this.#wrote) keep(this.#turns, { seq, end, ts });
    this.#wrote = !read;
  }

  /** When the read that holds byte `s` returned. */
  readAt(s: number): bigint | undefined {
    const holds = (r: Stamp) => atOrAfter(s, r.seq) && !atOrAfter(s, r.end);
    return (this.#reads.find(holds) ?? this.#turns.find(holds))?.ts;
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
