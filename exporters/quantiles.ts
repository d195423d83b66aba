/**
 * Percentiles and differences of the histograms the probes report as running totals: log2 slots
 * counted in the kernel and fixed-bound buckets counted by the user-space probes.
 */

import type { BucketCounts, Log2Counts, Percentiles } from "../probes/events.ts";

export { addBuckets, buckets as emptyBuckets } from "../probes/buckets.ts";

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

/**
 * The q-quantile of fixed-bound buckets (counts[i] ≤ bounds[i], the last +Inf), interpolated
 * inside the bucket like Prometheus's histogram_quantile; the +Inf bucket answers its lower bound.
 */
export function bucketQuantile(h: BucketCounts, q: number): number {
  if (!h.count) return 0;
  const rank = q * h.count;
  let below = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const n = h.counts[i];
    if (n && below + n >= rank) {
      if (i >= h.bounds.length) return h.bounds[h.bounds.length - 1] ?? 0;
      const lo = i === 0 ? 0 : h.bounds[i - 1];
      return lo + (h.bounds[i] - lo) * (rank - below) / n;
    }
    below += n;
  }
  return h.bounds[h.bounds.length - 1] ?? 0;
}

export function log2Percentiles(h: Log2Counts): Percentiles {
  return { count: h.count, p50_seconds: log2Quantile(h, 0.5), p99_seconds: log2Quantile(h, 0.99) };
}

export function bucketPercentiles(h: BucketCounts): Percentiles {
  return {
    count: h.count,
    p50_seconds: bucketQuantile(h, 0.5),
    p99_seconds: bucketQuantile(h, 0.99),
  };
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

/** `to - from` of two readings of one running histogram; `from` absent counts as empty. */
export function bucketDelta(to: BucketCounts, from: BucketCounts | undefined): BucketCounts {
  if (!from) return to;
  return {
    bounds: to.bounds,
    count: to.count - from.count,
    sum: to.sum - from.sum,
    counts: to.counts.map((n, i) => n - (from.counts[i] ?? 0)),
  };
}
