/** Converts kernel timestamps (bpf_ktime_get_boot_ns) to wall-clock RFC 3339 strings. */

import { libc } from "../bpf/ffi.ts";

const CLOCK_REALTIME = 0;
export const CLOCK_MONOTONIC = 1;
export const CLOCK_BOOTTIME = 7;

export function nowNs(clock: number): bigint {
  const ts = new BigInt64Array(2);
  libc().clock_gettime(clock, new Uint8Array(ts.buffer));
  return ts[0] * 1_000_000_000n + ts[1];
}

/** Wall-clock ns minus boot-clock ns, taken once: both clocks run at the same rate. */
let offsetNs: bigint | undefined;

/** The "YYYY-MM-DDTHH:MM:SS" of the last second formatted: events come in bursts of one second. */
let cachedSecond = -1;
let cachedPrefix = "";

/** RFC 3339 with microseconds, UTC ("2026-11-27T15:00:00.123456Z"). */
export function bootNsToRfc3339(bootNs: bigint): string {
  offsetNs ??= nowNs(CLOCK_REALTIME) - nowNs(CLOCK_BOOTTIME);
  const wall = bootNs + offsetNs;
  const second = Number(wall / 1_000_000_000n);
  const micros = Number(wall % 1_000_000_000n) / 1000 | 0;
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19);
  }
  return `${cachedPrefix}.${String(micros).padStart(6, "0")}Z`;
}
