/**
 * The exact :path of the grpc-go streams recorded last (probes/grpc_go.ts), by kernel socket,
 * stream id and side, kept in typed arrays with the paths interned. A busy Go service records
 * ten thousand streams a second; an object per stream, kept for the second or two until newer
 * ones pushed it out, outlived V8's young generation, and the old generation filled with them
 * between full collections (the agent grew from 76 to ~160 MB under such a load).
 */

/** Distinct paths kept; past it the table starts over (a service has far fewer methods). */
const MAX_PATHS = 4096;
const EMPTY = -1;
const TRUNCATED = -2;

/** A small integer (a V8 Smi: no allocation as a Map key) from a stream's identity. */
function hash(sock: number, sid: number): number {
  const lo = sock >>> 0, hi = Math.floor(sock / 2 ** 32);
  let h = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b) ^ Math.imul(sid, 0x9e3779b1), 0xc2b2ae35);
  h ^= h >>> 15;
  return h & 0x3fffffff;
}

export class GoStreamTable {
  readonly #sock: Float64Array;
  /** stream id × 2 + side (1: client) */
  readonly #sid: Float64Array;
  readonly #hash: Int32Array;
  /** index into #paths, EMPTY or TRUNCATED */
  readonly #path: Int32Array;
  /**
   * Open addressing over the slots (linear probing, a power of two at least twice the slots):
   * a Map's table, rewritten as entries come and go, was itself garbage for the full collections.
   */
  readonly #index: Int32Array;
  readonly #mask: number;
  /** The slot the next record takes: the oldest once the table is full. */
  #next = 0;
  #size = 0;
  #paths: string[] = [];
  #pathBytes: Uint8Array[] = [];
  /** FNV-1a of a path's bytes → indexes into #paths */
  #pathIds = new Map<number, number[]>();
  readonly #decoder = new TextDecoder();

  constructor(readonly capacity: number) {
    this.#sock = new Float64Array(capacity);
    this.#sid = new Float64Array(capacity);
    this.#hash = new Int32Array(capacity);
    this.#path = new Int32Array(capacity).fill(EMPTY);
    const buckets = 2 ** Math.ceil(Math.log2(2 * capacity));
    this.#index = new Int32Array(buckets).fill(EMPTY);
    this.#mask = buckets - 1;
  }

  /**
   * Stream `streamId` of socket `sock` (a sock_id's low 53 bits) on `side` has the path in
   * `bytes` (undefined: longer than was recorded). The newest record of a stream wins.
   */
  record(sock: number, streamId: number, client: boolean, bytes: Uint8Array | undefined): void {
    const sid = streamId * 2 + (client ? 1 : 0), h = hash(sock, sid);
    const slot = this.#next;
    this.#next = (slot + 1) % this.capacity;
    if (this.#path[slot] !== EMPTY) {
      this.#remove(this.#find(this.#sock[slot], this.#sid[slot], this.#hash[slot]));
    }
    const at = this.#find(sock, sid, h);
    if (at >= 0) this.#remove(at); // the same stream again: a socket address reused
    this.#sock[slot] = sock;
    this.#sid[slot] = sid;
    this.#hash[slot] = h;
    this.#path[slot] = bytes === undefined ? TRUNCATED : this.#intern(bytes);
    let i = h & this.#mask;
    while (this.#index[i] !== EMPTY) i = (i + 1) & this.#mask;
    this.#index[i] = slot;
    this.#size++;
  }

  /** The path recorded for the stream; undefined when none was or it was truncated. */
  get(sock: number, streamId: number, client: boolean): string | undefined {
    const at = this.#find(sock, streamId * 2 + (client ? 1 : 0));
    const p = at < 0 ? EMPTY : this.#path[this.#index[at]];
    return p >= 0 ? this.#paths[p] : undefined;
  }

  /** The index position of the stream's slot, or -1. */
  #find(sock: number, sid: number, h = hash(sock, sid)): number {
    for (let i = h & this.#mask;; i = (i + 1) & this.#mask) {
      const slot = this.#index[i];
      if (slot === EMPTY) return -1;
      if (this.#sid[slot] === sid && this.#sock[slot] === sock) return i;
    }
  }

  /** Frees index position `at` and its slot, moving later entries of its run back. */
  #remove(at: number): void {
    if (at < 0) return;
    this.#path[this.#index[at]] = EMPTY;
    this.#size--;
    let i = at;
    for (let j = (i + 1) & this.#mask;; j = (j + 1) & this.#mask) {
      const slot = this.#index[j];
      if (slot === EMPTY) break;
      const home = this.#hash[slot] & this.#mask;
      // an entry whose home lies cyclically in (i, j] is still found from it: it stays
      if (i <= j ? i < home && home <= j : i < home || home <= j) continue;
      this.#index[i] = slot;
      i = j;
    }
    this.#index[i] = EMPTY;
  }

  get size(): number {
    return this.#size;
  }

  /** The index of the path with these bytes, decoded once. */
  #intern(bytes: Uint8Array): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
    h &= 0x3fffffff;
    const ids = this.#pathIds.get(h);
    if (ids) {
      for (const id of ids) if (same(this.#pathBytes[id], bytes)) return id;
    }
    if (this.#paths.length >= MAX_PATHS) {
      this.#clear();
      return this.#intern(bytes);
    }
    const id = this.#paths.length;
    this.#paths.push(this.#decoder.decode(bytes));
    this.#pathBytes.push(bytes.slice());
    if (ids) ids.push(id);
    else this.#pathIds.set(h, [id]);
    return id;
  }

  /** Forgets every stream and path: their indexes are about to be reused. */
  #clear(): void {
    this.#index.fill(EMPTY);
    this.#path.fill(EMPTY);
    this.#size = 0;
    this.#paths = [];
    this.#pathBytes = [];
    this.#pathIds = new Map();
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
