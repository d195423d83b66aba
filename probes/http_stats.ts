/**
 * RED counts of the HTTP probe, aggregated as requests complete: one series per container, side,
 * method, route, status and outcome, each with histograms of duration and body sizes. Reported
 * as cumulative `http_stats` events, as the kernel probes report their counters.
 */

import { buckets, DURATION_BOUNDS, observe, SIZE_BOUNDS } from "./buckets.ts";
import type { HttpCounts, HttpStatsEvent } from "./events.ts";
import type { HttpExchange } from "./http1.ts";
import { RecentSeries } from "./recent_series.ts";

/** Series beyond this many are folded into one per container and side (route "other"). */
const MAX_SERIES = 2000;

export class HttpStats {
  readonly #series = new Map<string, HttpCounts>();
  readonly #recent = new RecentSeries<HttpCounts>();

  /** Counts one exchange of `container` under its folded, bounded `route`. */
  add(container: string, x: HttpExchange, route: string): void {
    const error = x.outcome === "complete" ? "" : x.outcome;
    for (const r of this.#recent.items) {
      if (
        r.route === route && r.status === x.status && r.method === x.method &&
        r.side === x.side && r.container === container && r.error === error
      ) return this.#observe(r, x);
    }
    let key = `${container}\0${x.side}\0${x.method}\0${route}\0${x.status}\0${error}`;
    let s = this.#series.get(key);
    const folded = !s && this.#series.size >= MAX_SERIES;
    if (folded) {
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
    // a folded exchange's series says "other": no exchange names it, so it is not remembered
    if (!folded) this.#recent.remember(s);
    this.#observe(s, x);
  }

  #observe(s: HttpCounts, x: HttpExchange): void {
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
