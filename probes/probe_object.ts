/**
 * One loaded BPF object of a probe and everything attached from it: the
 * owner that opens, configures, loads, fills the target filter, attaches and
 * reads the ring, and on dispose undoes it all in reverse order.
 */

import { disposeAll } from "../bpf/link.ts";
import type { Attachment } from "../bpf/link.ts";
import { BpfObject, type RodataField, type RodataValue } from "../bpf/object.ts";
import { objectBytes, type ObjectName } from "../bpf/objects.ts";
import { RingBuffer, type SampleHandler } from "../bpf/ringbuf.ts";
import type { Target } from "../k8s/target.ts";
import { applyFilter, filterMode, filterRodata } from "./filter.ts";

/**
 * Probes batch their events: a CPU wakes the reader with its first record after 50 ms without a
 * wake-up and once 64 KiB went into the ring from it (a few hundred events; bpf/include/ringbuf.h); while records flow the reader reads every 50 ms
 * (every 200 ms while they trickle, bpf/ringbuf.ts), and when a round finds nothing it sleeps
 * until woken (at most IDLE_WAIT_MS). A wake-up per event would cost a worker-thread round trip
 * per event, and a wait every 50 ms on a quiet ring about 1% of a core; this costs at most 50 ms
 * of delay under load and 200 ms for a trickle.
 */
const WAKEUP_BYTES = 64 * 1024;
const BATCH_MS = 50;
const IDLE_WAIT_MS = 1000;

export interface ProbeObjectOptions {
  object: ObjectName;
  target: Target;
  rodataLayout: Readonly<Record<string, RodataField>>;
  /** Tunables besides the filter switches. */
  rodata?: Record<string, RodataValue>;
  /** Ring size in bytes (power of two, multiple of the page size). */
  ringBytes?: number;
  /** Programs to leave unloaded (e.g. a variant this kernel does not allow). */
  skip?: string[];
  /** Configures the opened object before load (e.g. program types libbpf 1.1 cannot infer). */
  prepare?: (obj: BpfObject) => void;
  /** Attaches the loaded programs; owners are returned so they can be undone. */
  attach: (obj: BpfObject) => Attachment[];
  /** Receives each ring record; an object without an event ring (`ringless`) has none. */
  onSample?: SampleHandler;
  /** The object has no `events` ring (it only counts in maps). */
  ringless?: boolean;
}

export class ProbeObject implements AsyncDisposable {
  readonly object: BpfObject;
  readonly ring: RingBuffer | undefined;
  readonly attachments: Attachment[];
  readonly #mode;
  #reading: Promise<void> | undefined;
  #closed = false;
  #lostAtClose: bigint | undefined;
  #released = false;

  private constructor(
    object: BpfObject,
    ring: RingBuffer | undefined,
    attachments: Attachment[],
    mode: ReturnType<typeof filterMode>,
  ) {
    this.object = object;
    this.ring = ring;
    this.attachments = attachments;
    this.#mode = mode;
  }

  static open(opts: ProbeObjectOptions): ProbeObject {
    const owned: Disposable[] = [];
    try {
      const obj = BpfObject.open(objectBytes(opts.object), `kupod_${opts.object}`);
      owned.push(obj);
      const mode = filterMode(opts.target);
      obj.setRodata(opts.rodataLayout, {
        ...filterRodata(mode),
        ...(opts.ringless ? {} : { wakeup_bytes: WAKEUP_BYTES }),
        ...opts.rodata,
      });
      if (opts.ringBytes) obj.setMaxEntries("events", opts.ringBytes);
      for (const name of opts.skip ?? []) obj.program(name).setAutoload(false);
      opts.prepare?.(obj);
      obj.load();
      applyFilter(obj, mode, opts.target);
      const ring = opts.ringless
        ? undefined
        : new RingBuffer(obj.map("events"), opts.onSample ?? (() => {}), obj.map("events_lost"), {
          pollMs: IDLE_WAIT_MS,
          batchMs: BATCH_MS,
        });
      if (ring) owned.push(ring);
      const attachments: Attachment[] = [];
      try {
        attachments.push(...opts.attach(obj));
      } catch (e) {
        disposeAll(attachments);
        throw e;
      }
      return new ProbeObject(obj, ring, attachments, mode);
    } catch (e) {
      disposeAll(owned);
      throw e;
    }
  }

  /** Starts reading the ring in the background; the promise settles when reading stops. */
  read(): Promise<void> {
    this.#reading ??= this.ring?.run() ?? Promise.resolve();
    return this.#reading;
  }

  /** Events the kernel could not put in the ring, so far (or in all, once closed). */
  lost(): bigint {
    return this.#lostAtClose ?? this.ring?.lost() ?? 0n;
  }

  /** Follows a changed target (restarted containers, new pids) without reloading. */
  retarget(target: Target): void {
    applyFilter(this.object, this.#mode, target);
  }

  /**
   * Detaches every program first (no new events), then lets the probe report
   * its final kernel counts (`final`, maps still readable), then drains what
   * the kernel already committed, then closes the ring and the object.
   */
  async close(final?: () => void): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      disposeAll(this.attachments);
      final?.();
    } finally {
      try {
        await this.ring?.stop();
        if (this.#reading) await this.#reading;
      } finally {
        this.#lostAtClose = this.ring?.lost() ?? 0n;
        this.object[Symbol.dispose]();
        this.#released = true;
      }
    }
  }

  /** Whether the object is closed: its maps can no longer be read. */
  get released(): boolean {
    return this.#released;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
