/**
 * Percentiles and differences of the histograms the probes report as running totals: log2 slots
 * counted in the kernel and fixed-bound buckets counted by the user-space probes.
 */

import type { BucketCounts, Log2Counts, Percentiles } from "../probes/events.ts";

import { log2Quantile } from "../probes/buckets.ts";

export {
  addBuckets,
  addLog2,
  buckets as emptyBuckets,
  log2Delta,
  log2Quantile,
} from "../probes/buckets.ts";

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
export function bucketDelta(to: BucketCounts, from: BucketCounts | undefined): BucketCounts {
  if (!from) return to;
  return {
    bounds: to.bounds,
    count: to.count - from.count,
    sum: to.sum - from.sum,
    counts: to.counts.map((n, i) => n - (from.counts[i] ?? 0)),
  };
}
