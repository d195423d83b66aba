/**
 * Metrics whose values were counted elsewhere (the kernel, a probe) and arrive as running totals:
 * counters and histograms that show them as they are at each collection.
 */

import type * as Prom from "prom-client";
import counterClass from "prom-client/lib/counter.js";
import gaugeClass from "prom-client/lib/gauge.js";
import type { BucketCounts, Log2Counts } from "../probes/events.ts";

const Counter = counterClass as unknown as typeof Prom.Counter;
const Gauge = gaugeClass as unknown as typeof Prom.Gauge;
type Registry = Prom.Registry;

/**
 * A counter showing running totals counted elsewhere (the kernel): `values` gives every series'
 * current total at each collection.
 */
export function shownCounter<L extends string>(
  registers: Registry[],
  name: string,
  help: string,
  labelNames: readonly L[],
  values: () => [Record<L, string>, number][],
): void {
  new Counter<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const [labels, n] of values()) this.inc(labels as never, n);
    },
  });
}

export interface Log2Series extends Log2Counts {
  labels: Record<string, string>;
}

/** Adds histogram `h` into `into` (same unit). */
export function addLog2(into: Log2Series, h: Log2Counts): void {
  into.count += h.count;
  into.sum_seconds += h.sum_seconds;
  h.slots.forEach((n, i) => (into.slots[i] = (into.slots[i] ?? 0) + n));
}

export interface BucketSeries {
  labels: Record<string, string>;
  h: BucketCounts;
}

/**
 * A histogram with fixed bounds whose buckets arrive as running totals (prom-client's Histogram
 * takes single observations only): rendered in the shape the registry prints.
 */
export class BucketHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly series: () => BucketSeries[],
  ) {}

  get() {
    const values = [];
    for (const { labels, h } of this.series()) {
      let below = 0;
      for (let i = 0; i < h.bounds.length; i++) {
        below += h.counts[i];
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { ...labels, le: h.bounds[i] },
          value: below,
        });
      }
      values.push({
        metricName: `${this.name}_bucket`,
        labels: { ...labels, le: "+Inf" },
        value: h.count,
      });
      values.push({ metricName: `${this.name}_sum`, labels, value: h.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: h.count });
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }

  reset(): void {}
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
  registers: Registry[],
  name: string,
  help: string,
  labelNames: readonly L[],
  values: () => [Record<L, string>, number][],
): void {
  new Gauge<L>({
    name,
    help,
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const [labels, n] of values()) this.set(labels as never, n);
    },
  });
}
