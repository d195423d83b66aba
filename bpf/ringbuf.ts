/**
 * BPF ring buffer reader that reads the mmapped ring directly.
 *
 * libbpf's ring_buffer__poll would call back into JavaScript once per event
 * and block the thread it polls on. Instead the consumer page (rw) and the
 * producer page + data area (ro) are mapped here and read in place; only the
 * wait for new data goes through epoll_wait on a worker thread. An eventfd in
 * the same epoll set wakes the reader when it is stopped.
 *
 * The kernel offers the data area twice in a row, so that a record running
 * past the ring's end reads on contiguously; libbpf maps both copies. Mapped
 * pages of a ring count in full towards the agent's resident memory from the
 * start, so here the data area is mapped once, and the rare record that wraps
 * is copied out whole before its handler sees it: a ring costs its size in
 * RSS, not twice that.
 */

import { check } from "./errors.ts";
import { errno, libc } from "./ffi.ts";
import type { BpfMap } from "./map.ts";
import { u32Key } from "./map.ts";
import { BpfError } from "./errors.ts";

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 1;
const EPOLL_CTL_ADD = 1;
const EPOLLIN = 1;
const EPOLL_CLOEXEC = 0o2000000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;
const SC_PAGESIZE = 30;
/** A sigset_t with every signal: signals go to other threads while a worker waits. */
const ALL_SIGNALS = new Uint8Array(128).fill(0xff);
/** Consecutive failed waits after which the reader gives up (a closed fd, not a signal). */
const MAX_WAIT_FAILURES = 50;

const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const HEADER_SIZE = 8;
/** Store the consumer position after this many records, so the kernel can reuse space early. */
const COMMIT_EVERY = 256;
/** At most this many records per drain(), so a busy ring cannot starve the event loop. */
const MAX_PER_DRAIN = 65536;
/**
 * Batched reading: a round that found fewer records than this is a trickle (a few connections
 * a second), and the next round comes TRICKLE_FACTOR times later. Each round costs a wake-up of
 * the agent whatever it reads; a trickle gathers into fewer rounds, and a flow that grows
 * gets the short interval back at its next round.
 */
const TRICKLE_RECORDS = 64;
const TRICKLE_FACTOR = 4;

/** Called per record with the view of the whole ring, the record's offset and length. */
export type SampleHandler = (view: DataView, offset: number, length: number) => void;

export interface RingStats {
  /** Records handed to the handler. */
  readonly received: number;
  /** Records the kernel could not reserve (the object's per-CPU `events_lost` counter). */
  readonly lost: bigint;
}

export class RingBuffer implements AsyncDisposable, Disposable {
  readonly #ring: BpfMap;
  readonly #lostMap: BpfMap | undefined;
  readonly #handler: SampleHandler;
  readonly #pageSize: number;
  readonly #size: number;
  readonly #mask: number;
  #consumerPtr: Deno.PointerObject | null;
  #producerPtr: Deno.PointerObject | null;
  readonly #consumer: DataView;
  readonly #producer: DataView;
  readonly #header: Uint32Array;
  readonly #data: DataView;
  readonly #wrap: Wrap;
  #epfd: number;
  #wakeFd: number;
  readonly #epollEvents = new Uint8Array(24);
  #received = 0;
  /** Longest wait for data, when the producer wakes the reader on every record. */
  readonly #pollMs: number;
  /** Batched producer (ringbuf.h wakeup_bytes): read again after this long while records flow. */
  readonly #batchMs: number | undefined;
  #stopping = false;
  #running: Promise<void> | undefined;

  /**
   * Maps the ring of `ring` (a BPF_MAP_TYPE_RINGBUF of a loaded object); `lost`
   * is the per-CPU counter the object increments when a reservation fails.
   * `pollMs` bounds each wait. `batchMs` is for objects that wake the reader only per batch
   * and on the first record into an empty ring (ringbuf.h's `wakeup_bytes`): while records
   * flow the reader reads every `batchMs` on a timer, and once a round finds nothing it
   * sleeps until the producer wakes it.
   */
  constructor(
    ring: BpfMap,
    handler: SampleHandler,
    lost?: BpfMap,
    opts: { pollMs?: number; batchMs?: number } = {},
  ) {
    this.#pollMs = opts.pollMs ?? 1000;
    this.#batchMs = opts.batchMs;
    this.#ring = ring;
    this.#lostMap = lost;
    this.#handler = handler;
    this.#pageSize = Number(libc().sysconf(SC_PAGESIZE));
    this.#size = ring.maxEntries;
    this.#mask = this.#size - 1;
    const c = libc();
    this.#consumerPtr = mmapOrThrow(ring, this.#pageSize, PROT_READ | PROT_WRITE, 0);
    try {
      this.#producerPtr = mmapOrThrow(ring, this.#pageSize + this.#size, PROT_READ, this.#pageSize);
    } catch (e) {
      c.munmap(this.#consumerPtr, BigInt(this.#pageSize));
      throw e;
    }
    this.#consumer = new DataView(Deno.UnsafePointerView.getArrayBuffer(this.#consumerPtr, 8));
    const producer = Deno.UnsafePointerView.getArrayBuffer(
      this.#producerPtr,
      this.#pageSize + this.#size,
    );
    this.#producer = new DataView(producer, 0, 8);
    this.#data = new DataView(producer, this.#pageSize);
    this.#header = new Uint32Array(producer, this.#pageSize);
    this.#wrap = new Wrap(new Uint8Array(producer, this.#pageSize));
    this.#epfd = c.epoll_create1(EPOLL_CLOEXEC);
    this.#wakeFd = c.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#epfd < 0 || this.#wakeFd < 0) {
      const err = errno();
      this.#release();
      throw new BpfError(`epoll for ring ${ring.name}`, err);
    }
    this.#watch(ring.fd, 0);
    this.#watch(this.#wakeFd, 1);
  }

  #watch(fd: number, tag: number): void {
    const ev = new Uint8Array(12); // struct epoll_event is packed on x86-64: u32 events, u64 data
    const v = new DataView(ev.buffer);
    v.setUint32(0, EPOLLIN, true);
    v.setUint32(4, tag, true);
    check(`epoll_ctl for ring ${this.#ring.name}`, () => {
      const rc = libc().epoll_ctl(this.#epfd, EPOLL_CTL_ADD, fd, ev);
      return rc < 0 ? -errno() : rc;
    });
  }

  get stats(): RingStats {
    return { received: this.#received, lost: this.lost() };
  }

  /** Records that ran past the ring's end and were copied out whole. */
  get wrapped(): number {
    return this.#wrap.count;
  }

  /** Events the kernel dropped because the ring was full. */
  lost(): bigint {
    return this.#lostMap ? this.#lostMap.sumU64(u32Key(0)) : 0n;
  }

  /**
   * Hands committed records to the handler and returns how many it read.
   * Stops at a record the producer has reserved but not yet committed, or
   * after MAX_PER_DRAIN records (call again: the rest is still there).
   */
  drain(): number {
    if (!this.#consumerPtr) return 0;
    const n = drainRing(
      this.#consumer,
      this.#producer,
      this.#header,
      this.#data,
      this.#mask,
      this.#handler,
      this.#wrap,
    );
    this.#received += n;
    return n;
  }

  /** Reads until stop(): drains, then waits on epoll (off the event loop) for more. */
  run(): Promise<void> {
    this.#running ??= this.#loop();
    return this.#running;
  }

  async #loop(): Promise<void> {
    try {
      let failures = 0;
      while (!this.#stopping) {
        const n = this.drain();
        if (n > 0 && n < MAX_PER_DRAIN && this.#batchMs !== undefined) {
          // records flow: let the next batch gather (a timer costs far less than a wait on
          // the worker thread; the producer's wake-up meanwhile is remembered by epoll)
          const ms = n < TRICKLE_RECORDS ? this.#batchMs * TRICKLE_FACTOR : this.#batchMs;
          await new Promise((r) => setTimeout(r, ms));
          continue;
        }
        // When the drain stopped at its cap, more is waiting: a zero-timeout wait still lets
        // timers and I/O run before reading on.
        const timeout = n === MAX_PER_DRAIN ? 0 : this.#pollMs;
        const rc = await libc().epoll_pwait(this.#epfd, this.#epollEvents, 2, timeout, ALL_SIGNALS);
        // errno belongs to the worker thread and cannot be read here: a failed wait is
        // retried, and only a persistent failure ends the reader.
        failures = rc < 0 ? failures + 1 : 0;
        if (failures >= MAX_WAIT_FAILURES) {
          throw new BpfError(`epoll_pwait on ring ${this.#ring.name} keeps failing`, 5);
        }
      }
      while (this.drain() === MAX_PER_DRAIN); // what was committed before the stop
    } finally {
      this.#release();
    }
  }

  /** Stops the reader after a final drain and unmaps the ring. */
  async stop(): Promise<void> {
    this.#wake();
    if (this.#running) await this.#running;
    else this.#release();
  }

  #wake(): void {
    this.#stopping = true;
    if (this.#wakeFd >= 0) {
      const one = new Uint8Array(8);
      one[0] = 1;
      libc().write(this.#wakeFd, one, 8n);
    }
  }

  #release(): void {
    const c = libc();
    if (this.#consumerPtr) c.munmap(this.#consumerPtr, BigInt(this.#pageSize));
    if (this.#producerPtr) c.munmap(this.#producerPtr, BigInt(this.#pageSize + this.#size));
    this.#consumerPtr = this.#producerPtr = null;
    if (this.#epfd >= 0) c.close(this.#epfd);
    if (this.#wakeFd >= 0) c.close(this.#wakeFd);
    this.#epfd = this.#wakeFd = -1;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  /** Synchronous stop: unmaps now if not running, else as soon as the wait returns. */
  [Symbol.dispose](): void {
    this.#wake();
    if (!this.#running) this.#release();
  }
}

/**
 * Where a record that runs past the ring's end is put together: its two parts, copied into a
 * buffer of its own that the handler gets in place of the ring (kept and reused, so the
 * handler's view of it is as short-lived as a view of the ring).
 */
class Wrap {
  count = 0;
  readonly #ring: Uint8Array;
  #bytes = new Uint8Array(0);
  #view = new DataView(this.#bytes.buffer);

  constructor(ring: Uint8Array) {
    this.#ring = ring;
  }

  /** The record of `length` bytes from `start` on, past the end, whole at offset 0 of the view. */
  record(start: number, length: number): DataView {
    const ring = this.#ring, head = ring.length - start;
    if (this.#bytes.length < length) {
      this.#bytes = new Uint8Array(Math.max(length, 2 * this.#bytes.length));
      this.#view = new DataView(this.#bytes.buffer);
    }
    this.#bytes.set(ring.subarray(start), 0);
    this.#bytes.set(ring.subarray(0, length - head), head);
    this.count++;
    return this.#view;
  }
}

/**
 * The consumer loop, kept apart from the class so that V8 optimises it once: with private
 * fields read inside the loop, each call fell back to slower code at the loop's tail.
 */
function drainRing(
  consumer: DataView,
  producer: DataView,
  headers: Uint32Array,
  data: DataView,
  mask: number,
  handler: SampleHandler,
  wrap: Wrap,
): number {
  let cons = Number(consumer.getBigUint64(0, true));
  let prod = Number(producer.getBigUint64(0, true));
  let n = 0;
  let sinceCommit = 0;
  while (cons < prod && n < MAX_PER_DRAIN) {
    const at = cons & mask;
    // the producer clears BUSY with a release store; this load must not be reordered before it
    const header = Atomics.load(headers, at >>> 2);
    if (header & BUSY_BIT) break;
    const length = header & ~(BUSY_BIT | DISCARD_BIT);
    if (!(header & DISCARD_BIT)) {
      // a header is 8-byte aligned in the ring and never wraps; its record's bytes may
      const start = (at + HEADER_SIZE) & mask;
      if (start + length <= mask + 1) handler(data, start, length);
      else handler(wrap.record(start, length), 0, length);
      n++;
    }
    cons += (length + HEADER_SIZE + 7) & ~7;
    if (++sinceCommit === COMMIT_EVERY) {
      consumer.setBigUint64(0, BigInt(cons), true);
      sinceCommit = 0;
    }
    if (cons >= prod) prod = Number(producer.getBigUint64(0, true));
  }
  if (sinceCommit) consumer.setBigUint64(0, BigInt(cons), true);
  return n;
}

function mmapOrThrow(
  ring: BpfMap,
  length: number,
  prot: number,
  offset: number,
): Deno.PointerObject {
  const p = libc().mmap(null, BigInt(length), prot, MAP_SHARED, ring.fd, BigInt(offset));
  // MAP_FAILED is (void *)-1
  if (!p || BigInt(Deno.UnsafePointer.value(p)) === 0xffffffffffffffffn) {
    throw new BpfError(`mmap of ring ${ring.name}`, errno());
  }
  return p;
}
