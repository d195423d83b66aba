/**
 * Metrics whose values were counted elsewhere (the kernel, a probe) and arrive as running totals:
 * counters and histograms that show them as they are at each collection.
 */

import type { BucketCounts, Log2Counts } from "../probes/events.ts";
import type { MetricFamily, Registry, Sample } from "./registry.ts";

type Values<L extends string> = () => [Record<L, string>, number][];

/**
 * Samples of `values` with exactly the labels `labelNames`, in that order (one missing is ""),
 * those with the same labels combined by `merge`.
 */
function shown<L extends string>(
  name: string,
  labelNames: readonly L[],
  values: Values<L>,
  merge: (a: number, b: number) => number,
): () => Sample[] {
  return () => {
    const byLabels = new Map<string, Sample>();
    for (const [given, value] of values()) {
      const labels = Object.fromEntries(labelNames.map((k) => [k, given[k] ?? ""]));
      const key = JSON.stringify(labels);
      const seen = byLabels.get(key);
      byLabels.set(key, { name, labels, value: seen ? merge(seen.value, value) : value });
    }
    return [...byLabels.values()];
  };
}

/**
 * A counter showing running totals counted elsewhere (the kernel): `values` gives every series'
 * current total at each collection (series given twice add up).
 */
export function shownCounter<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  values: Values<L>,
): void {
  const samples = shown(name, labelNames, values, (a, b) => a + b);
  registry.register({ name, help, type: "counter", samples });
}

export interface Log2Series extends Log2Counts {
  labels: Record<string, string>;
}

export { addLog2 } from "../probes/buckets.ts";

export interface BucketSeries {
  labels: Record<string, string>;
  h: BucketCounts;
}

/**
 * A histogram with fixed bounds whose buckets arrive as running totals: rendered as Prometheus
 * cumulative buckets, sum and count.
 */
export class BucketHistogram implements MetricFamily {
  readonly type = "histogram";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly series: () => BucketSeries[],
  ) {}

  *samples(): Iterable<Sample> {
    for (const { labels, h } of this.series()) {
      let below = 0;
      for (let i = 0; i < h.bounds.length; i++) {
        below += h.counts[i];
        yield { name: `${this.name}_bucket`, labels: { ...labels, le: h.bounds[i] }, value: below };
      }
      yield { name: `${this.name}_bucket`, labels: { ...labels, le: "+Inf" }, value: h.count };
      yield { name: `${this.name}_sum`, labels, value: h.sum };
      yield { name: `${this.name}_count`, labels, value: h.count };
    }
  }
}

/**
 * A histogram whose buckets were counted in the kernel (log2 of the series' unit) and arrive as
 * running totals, rendered as a BucketHistogram: bucket k has the upper bound 2^k units, for k
 * in `exps` (first..last).
 */
export class Log2Histogram extends BucketHistogram {
  constructor(
    name: string,
    help: string,
    exps: [first: number, last: number],
    series: () => Log2Series[],
  ) {
    const ks = Array.from({ length: exps[1] - exps[0] + 1 }, (_, i) => exps[0] + i);
    super(name, help, () => series().map((s) => log2Buckets(s, ks)));
  }
}

/** The log2 slots of `s` as counts per upper bound 2^k units (k in `ks`), the rest above. */
function log2Buckets(s: Log2Series, ks: number[]): BucketSeries {
  const counts: number[] = [];
  let slot = 0;
  for (const k of ks) {
    let n = 0;
    for (; slot < k && slot < s.slots.length; slot++) n += s.slots[slot];
    counts.push(n);
  }
  counts.push(Math.max(0, s.count - counts.reduce((a, b) => a + b, 0)));
  return {
    labels: s.labels,
    h: {
      bounds: ks.map((k) => 2 ** k * s.unit_seconds),
      counts,
      sum: s.sum_seconds,
      count: s.count,
    },
  };
}

/** A gauge showing values read elsewhere: `values` gives every series at each collection. */
export function shownGauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly L[],
  values: Values<L>,
): void {
  const samples = shown(name, labelNames, values, (_, b) => b);
  registry.register({ name, help, type: "gauge", samples });
}
