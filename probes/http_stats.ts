/**
 * RED counts of the HTTP probe, aggregated as requests complete: one series per container, side,
 * method, route, status and outcome, each with histograms of duration and body sizes. Reported
 * as cumulative `http_stats` events, as the kernel probes report their counters.
 */

import type { BucketCounts, HttpCounts, HttpStatsEvent } from "./events.ts";
import type { HttpExchange } from "./http1.ts";

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

/** Body sizes in bytes: powers of 4 from 64 B to 64 MiB. */
export const SIZE_BOUNDS = Array.from({ length: 11 }, (_, i) => 64 * 4 ** i);

/** Series beyond this many are folded into one per container and side (route "other"). */
const MAX_SERIES = 2000;

function buckets(bounds: readonly number[]): BucketCounts {
  return { bounds, counts: new Array(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

function observe(b: BucketCounts, v: number): void {
  let i = 0;
  while (i < b.bounds.length && v > b.bounds[i]) i++;
  b.counts[i]++;
  b.sum += v;
  b.count++;
}

export class HttpStats {
  readonly #series = new Map<string, HttpCounts>();

  /** Counts one exchange of `container` under its folded, bounded `route`. */
  add(container: string, x: HttpExchange, route: string): void {
    const error = x.outcome === "complete" ? "" : x.outcome;
    let key = `${container}\0${x.side}\0${x.method}\0${route}\0${x.status}\0${error}`;
    let s = this.#series.get(key);
    if (!s && this.#series.size >= MAX_SERIES) {
      route = "other";
      key = `${container}\0${x.side}\0${x.method}\0${route}\0${x.status}\0${error}`;
      s = this.#series.get(key);
    }
    if (!s) {
      s = {
        container,
        side: x.side,
        method: x.method,
        route,
        status: x.status,
        error,
        duration: buckets(DURATION_BOUNDS),
        request_bytes: buckets(SIZE_BOUNDS),
        response_bytes: buckets(SIZE_BOUNDS),
      };
      this.#series.set(key, s);
    }
    observe(s.duration, Number(x.endNs - x.startNs) * 1e-9);
    observe(s.request_bytes, x.requestBodyBytes);
    observe(s.response_bytes, x.responseBodyBytes);
  }

  get size(): number {
    return this.#series.size;
  }

  /** Every series so far; the event shares the live counts (the sinks read them, never keep them). */
  snapshot(base: Omit<HttpStatsEvent, "type" | "series">): HttpStatsEvent {
    return { ...base, type: "http_stats", series: [...this.#series.values()] };
  }
}
