/** Converts kernel timestamps (bpf_ktime_get_boot_ns) to wall-clock RFC 3339 strings. */

import { libc } from "../bpf/ffi.ts";

const CLOCK_REALTIME = 0;
const CLOCK_BOOTTIME = 7;

function nowNs(clock: number): bigint {
  const ts = new BigInt64Array(2);
  libc().clock_gettime(clock, new Uint8Array(ts.buffer));
  return ts[0] * 1_000_000_000n + ts[1];
}

/** Wall-clock ns minus boot-clock ns, taken once: both clocks run at the same rate. */
let offsetNs: bigint | undefined;

export function bootNsToDate(bootNs: bigint): Date {
  offsetNs ??= nowNs(CLOCK_REALTIME) - nowNs(CLOCK_BOOTTIME);
  return new Date(Number((bootNs + offsetNs) / 1_000_000n));
}

/** RFC 3339 with microseconds, UTC. */
export function bootNsToRfc3339(bootNs: bigint): string {
  offsetNs ??= nowNs(CLOCK_REALTIME) - nowNs(CLOCK_BOOTTIME);
  const wall = bootNs + offsetNs;
  const iso = new Date(Number(wall / 1_000_000n)).toISOString(); // ...SS.mmmZ
  const micros = String((wall / 1000n) % 1000n).padStart(3, "0");
  return `${iso.slice(0, -1)}${micros}Z`;
}
