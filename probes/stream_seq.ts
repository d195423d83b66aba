/**
 * Records missing from one connection's byte stream, told by TCP sequence numbers. Each HTTP/2
 * record says where its call's bytes end in the stream (bpf/http.bpf.c: write_seq after a send,
 * copied_seq after a receive), so the calls of a direction meet end to start, and a record the
 * full ring dropped leaves a hole of known size. The parser is told of the hole as bytes it did
 * not see: it then reports what those bytes held as unknown rather than decode a stream with a
 * piece cut out (a lost header block would shift every later HPACK index to a wrong name).
 */

/** A forward jump beyond this is not a hole but numbers that do not follow the calls. */
const HOLE_MAX = 2 ** 30;

export class StreamSeq {
  /** Where the last call of each direction (0: received, 1: sent) ended; -1 before the first. */
  readonly #end = [-1, -1];
  /**
   * The numbers went backwards: they do not follow this socket's calls (a socket whose sends
   * a sockmap redirects moves no write_seq), so holes are no longer looked for.
   */
  #off = false;

  /**
   * Bytes missing before a call of `len` bytes that ended at `seqEnd` (0: not known) in
   * direction `dir`; 0 when none are, or when that cannot be told.
   */
  missing(dir: 0 | 1, seqEnd: number, len: number): number {
    if (this.#off || seqEnd === 0) return 0;
    const start = (seqEnd - len) >>> 0;
    const last = this.#end[dir];
    this.#end[dir] = seqEnd;
    if (last < 0 || start === last) return 0;
    const hole = (start - last) >>> 0;
    if (hole < HOLE_MAX) return hole;
    this.#off = true;
    return 0;
  }
}
