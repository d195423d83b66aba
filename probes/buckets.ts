/**
 * The probes' histograms: fixed-bound ones the user-space probes count into (BucketCounts:
 * counts[i] are the observations ≤ bounds[i], not cumulative, the last slot +Inf), with their
 * bounds, and the log2 slots the kernel counts (Log2Counts): sums, differences, quantiles.
 */

import type { BucketCounts, Log2Counts } from "./events.ts";

/**
 * Seconds: OpenTelemetry's advised bounds for http.server/client.request.duration, which begin at
 * 5 ms, with five below them: a pod's own hops (sidecar to service on loopback) take well under a
 * millisecond, and without them every such request falls in one bucket.
 */
export const DURATION_BOUNDS = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
] as const;

/** Body and message sizes in bytes: powers of 4 from 64 B to 64 MiB. */
export const SIZE_BOUNDS = Array.from({ length: 11 }, (_, i) => 64 * 4 ** i);

/** An empty histogram with `bounds`. */
export function buckets(bounds: readonly number[]): BucketCounts {
  return { bounds, counts: new Array(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/** Counts one observation. */
export function observe(b: BucketCounts, v: number): void {
  let i = 0;
  while (i < b.bounds.length && v > b.bounds[i]) i++;
  b.counts[i]++;
  b.sum += v;
  b.count++;
}

/** Adds `h` into `into` (same bounds). */
export function addBuckets(into: BucketCounts, h: BucketCounts): void {
  into.count += h.count;
  into.sum += h.sum;
  h.counts.forEach((n, i) => (into.counts[i] = (into.counts[i] ?? 0) + n));
}

/** Adds `h` into `into` (same unit). */
export function addLog2(into: Log2Counts, h: Log2Counts): void {
  into.count += h.count;
  into.sum_seconds += h.sum_seconds;
  h.slots.forEach((n, i) => (into.slots[i] = (into.slots[i] ?? 0) + n));
}

/** `to - from` of two readings of one running histogram; `from` absent counts as empty. */
export function log2Delta(to: Log2Counts, from: Log2Counts | undefined): Log2Counts {
  if (!from) return to;
  return {
    count: to.count - from.count,
    sum_seconds: to.sum_seconds - from.sum_seconds,
    unit_seconds: to.unit_seconds,
    slots: to.slots.map((n, i) => n - (from.slots[i] ?? 0)),
  };
}

/**
 * The q-quantile (0..1) of log2 slots in seconds: slot i holds values in [2^i, 2^(i+1)) units,
 * interpolated linearly inside the slot as Prometheus does inside a bucket. 0 when empty.
 */
export function log2Quantile(h: Log2Counts, q: number): number {
  const total = h.slots.reduce((a, b) => a + b, 0);
  if (!total) return 0;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < h.slots.length; i++) {
    const n = h.slots[i];
    if (n && below + n >= rank) {
      const lo = i === 0 ? 0 : 2 ** i;
      return (lo + (2 ** (i + 1) - lo) * (rank - below) / n) * h.unit_seconds;
    }
    below += n;
  }
  return 2 ** h.slots.length * h.unit_seconds;
}
