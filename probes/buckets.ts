/**
 * Fixed-bound histograms the user-space probes count into (BucketCounts: counts[i] are the
 * observations ≤ bounds[i], not cumulative, the last slot +Inf), and their bounds.
 */

import type { BucketCounts } from "./events.ts";

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
