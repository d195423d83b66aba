/**
 * The reads and writes of a mirrored pair's server end (bpf/http_mirror.h) while its client end
 * is framed in user space: the calls the client end's framer completes get the server end's
 * times for the same bytes, found by TCP sequence number.
 */

/**
 * Stamps kept per kind: the server end is ahead of its client end by the calls in flight on the
 * connection (an HTTP/2 connection a proxy shares carries dozens at once).
 */
const KEEP = 256;
/** A stamp sent twice (a handed-over HTTP/1 client end's dump, then live) is among the last. */
const DUPLICATE_WITHIN = 16;

/** Whether a is at or after b in sequence space (u32, wrapping). */
function atOrAfter(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The last KEEP stamps of one kind, newest last. */
class Stamps {
  readonly #seq = new Uint32Array(KEEP);
  readonly #end = new Uint32Array(KEEP);
  readonly #ts: bigint[] = new Array(KEEP).fill(0n);
  #n = 0;

  add(seq: number, end: number, ts: bigint): boolean {
    for (let i = this.#n - 1; i >= 0 && i >= this.#n - DUPLICATE_WITHIN; i--) {
      const k = i % KEEP;
      if (this.#seq[k] === seq && this.#ts[k] === ts) return false;
    }
    const k = this.#n++ % KEEP;
    this.#seq[k] = seq;
    this.#end[k] = end;
    this.#ts[k] = ts;
    return true;
  }

  /** The time of the newest stamp whose bytes [seq, end) hold byte `s`. */
  holding(s: number): bigint | undefined {
    for (let i = this.#n - 1; i >= 0 && i >= this.#n - KEEP; i--) {
      const k = i % KEEP;
      if (atOrAfter(s, this.#seq[k]) && !atOrAfter(s, this.#end[k])) return this.#ts[k];
    }
    return undefined;
  }

  /**
   * The time of the newest stamp that begins at or before byte `e`: writes follow each other in
   * the byte stream, so it is the write holding `e` (a write that waited and began again at the
   * same byte: its latest start).
   */
  startingBy(e: number): bigint | undefined {
    for (let i = this.#n - 1; i >= 0 && i >= this.#n - KEEP; i--) {
      const k = i % KEEP;
      if (atOrAfter(e, this.#seq[k])) return this.#ts[k];
    }
    return undefined;
  }
}

export class MirrorStamps {
  readonly #reads = new Stamps();
  /** reads after a write, where requests start: a long upload's start outlives its reads */
  readonly #turns = new Stamps();
  readonly #writes = new Stamps();
  #wrote = true;

  /** A read (with its end) or the start of a write; a stamp sent twice is kept once. */
  add(read: boolean, seq: number, end: number, ts: bigint): void {
    if (!(read ? this.#reads : this.#writes).add(seq, end, ts)) return;
    if (read && this.#wrote) this.#turns.add(seq, end, ts);
    this.#wrote = !read;
  }

  /** When the read that holds byte `s` returned. */
  readAt(s: number): bigint | undefined {
    return this.#reads.holding(s) ?? this.#turns.holding(s);
  }

  /** When the write that holds byte `e` began. */
  writeAt(e: number): bigint | undefined {
    return this.#writes.startingBy(e);
  }
}
