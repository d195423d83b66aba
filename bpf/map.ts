/** A loaded BPF map: lookup, update, delete, iterate, and per-CPU values summed. */

import { BPF } from "./abi.ts";
import { check } from "./errors.ts";
import { libbpf } from "./ffi.ts";

const ENOENT = 2;
let possibleCpus = 0;

/** Number of possible CPUs: the stride of per-CPU map values. */
export function numPossibleCpus(): number {
  possibleCpus ||= check("libbpf_num_possible_cpus", () => libbpf().libbpf_num_possible_cpus());
  return possibleCpus;
}

export function u32Key(n: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
}

export function u64Key(n: bigint): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}

/** A map of a loaded object. It does not own the fd: the object does. */
export class BpfMap {
  readonly perCpu: boolean;
  /** Bytes of one CPU's slot in a per-CPU value (value size rounded up to 8). */
  readonly cpuStride: number;
  #scratch: Uint8Array<ArrayBuffer> | undefined;
  #scratchView: DataView | undefined;
  constructor(
    readonly name: string,
    readonly fd: number,
    readonly type: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
  ) {
    this.perCpu = type === BPF.MAP_TYPE_PERCPU_HASH || type === BPF.MAP_TYPE_PERCPU_ARRAY ||
      type === BPF.MAP_TYPE_LRU_PERCPU_HASH;
    this.cpuStride = Math.ceil(valueSize / 8) * 8;
  }

  /** Size of the buffer a lookup fills: one value, or one slot per possible CPU. */
  get valueBufferSize(): number {
    return this.perCpu ? this.cpuStride * numPossibleCpus() : this.valueSize;
  }

  #checkKey(key: Uint8Array): void {
    if (key.length !== this.keySize) {
      throw new RangeError(
        `map ${this.name}: key is ${key.length} bytes, expected ${this.keySize}`,
      );
    }
  }

  /** The value under `key` (all CPUs' slots for a per-CPU map), or undefined. */
  lookup(key: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | undefined {
    this.#checkKey(key);
    const value = new Uint8Array(this.valueBufferSize);
    const rc = libbpf().bpf_map_lookup_elem(this.fd, key, value);
    if (rc === -ENOENT) return undefined;
    check(`lookup in map ${this.name}`, () => rc);
    return value;
  }

  /** Sets `key` to `value` (for a per-CPU map, `value` fills every CPU's slot). */
  update(key: Uint8Array<ArrayBuffer>, value: Uint8Array<ArrayBuffer>, flags = 0): void {
    this.#checkKey(key);
    let buf = value;
    if (this.perCpu && value.length === this.valueSize) {
      buf = new Uint8Array(this.valueBufferSize);
      for (let cpu = 0; cpu < numPossibleCpus(); cpu++) buf.set(value, cpu * this.cpuStride);
    }
    if (buf.length !== this.valueBufferSize) {
      throw new RangeError(`map ${this.name}: value is ${value.length} bytes`);
    }
    check(
      `update of map ${this.name}`,
      () => libbpf().bpf_map_update_elem(this.fd, key, buf, BigInt(flags)),
    );
  }

  /** Removes `key`; false when it was not there. */
  delete(key: Uint8Array<ArrayBuffer>): boolean {
    this.#checkKey(key);
    const rc = libbpf().bpf_map_delete_elem(this.fd, key);
    if (rc === -ENOENT) return false;
    check(`delete in map ${this.name}`, () => rc);
    return true;
  }

  /** Every key, in the kernel's order. Keys deleted while iterating may restart the walk. */
  *keys(): Generator<Uint8Array<ArrayBuffer>> {
    let prev: Uint8Array<ArrayBuffer> | null = null;
    for (;;) {
      const next = new Uint8Array(this.keySize);
      const rc = libbpf().bpf_map_get_next_key(this.fd, prev, next);
      if (rc === -ENOENT) return;
      check(`iteration of map ${this.name}`, () => rc);
      yield next;
      prev = next;
    }
  }

  /** Every (key, value) pair present. */
  *entries(): Generator<[Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>]> {
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) yield [key, value];
    }
  }

  /** The u64 at `offset` of a value, summed over all CPUs for a per-CPU map; 0n if absent. */
  sumU64(key: Uint8Array<ArrayBuffer>, offset = 0): bigint {
    const value = this.lookup(key);
    if (!value) return 0n;
    const v = new DataView(value.buffer);
    if (!this.perCpu) return v.getBigUint64(offset, true);
    let total = 0n;
    for (let cpu = 0; cpu < numPossibleCpus(); cpu++) {
      total += v.getBigUint64(cpu * this.cpuStride + offset, true);
    }
    return total;
  }

  /**
   * A value made of u64s (counters, histogram slots), each summed over all CPUs for a per-CPU
   * map, as numbers; undefined if `key` is absent, or if the u64 at index `unlessZero` sums to 0
   * (an empty histogram: nothing else is read). Read into one reused buffer and summed as u32
   * halves: a scrape reads hundreds of these every second.
   */
  sumU64s(key: Uint8Array<ArrayBuffer>, unlessZero?: number): number[] | undefined {
    this.#checkKey(key);
    const buf = this.#scratch ??= new Uint8Array(this.valueBufferSize);
    const rc = libbpf().bpf_map_lookup_elem(this.fd, key, buf);
    if (rc === -ENOENT) return undefined;
    check(`lookup in map ${this.name}`, () => rc);
    const v = this.#scratchView ??= new DataView(buf.buffer);
    const cpus = this.perCpu ? numPossibleCpus() : 1;
    const sum = (i: number) => {
      let total = 0;
      for (let cpu = 0; cpu < cpus; cpu++) {
        const at = cpu * this.cpuStride + i * 8;
        total += v.getUint32(at, true) + v.getUint32(at + 4, true) * 2 ** 32;
      }
      return total;
    };
    if (unlessZero !== undefined && sum(unlessZero) === 0) return undefined;
    return Array.from({ length: Math.floor(this.valueSize / 8) }, (_, i) => sum(i));
  }

  /**
   * A value made of u64s with each u64 summed over all CPUs (per-CPU maps), as one value's bytes
   * for a generated decoder; undefined if `key` is absent.
   */
  summedValue(key: Uint8Array<ArrayBuffer>): DataView | undefined {
    const sums = this.sumU64s(key);
    if (!sums) return undefined;
    const out = new DataView(new ArrayBuffer(this.valueSize));
    sums.forEach((n, i) => {
      out.setUint32(i * 8, n % 2 ** 32, true);
      out.setUint32(i * 8 + 4, Math.floor(n / 2 ** 32), true);
    });
    return out;
  }

  /** Removes every entry. */
  clear(): void {
    for (const key of [...this.keys()]) this.delete(key);
  }
}
