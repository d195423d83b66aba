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
    this.count(
      container,
      x.side,
      x.method,
      route,
      x.status,
      x.outcome,
      Number(x.endNs - x.startNs),
      x.requestBodyBytes,
      x.responseBodyBytes,
    );
  }

  /** As add(), from an exchange's fields (a run that only counts builds no exchanges). */
  count(
    container: string,
    side: HttpExchange["side"],
    method: string,
    route: string,
    status: number,
    outcome: HttpExchange["outcome"],
    durationNs: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    const error = outcome === "complete" ? "" : outcome;
    let s: HttpCounts | undefined;
    for (const r of this.#recent.items) {
      if (
        r.route === route && r.status === status && r.method === method && r.side === side &&
        r.container === container && r.error === error
      ) {
        s = r;
        break;
      }
    }
    if (s) return this.#observe(s, durationNs, requestBytes, responseBytes);
    let key = `${container}\0${side}\0${method}\0${route}\0${status}\0${error}`;
    s = this.#series.get(key);
    const folded = !s && this.#series.size >= MAX_SERIES;
    if (folded) {
      route = "other";
      key = `${container}\0${side}\0${method}\0${route}\0${status}\0${error}`;
      s = this.#series.get(key);
    }
    if (!s) {
      s = {
        container,
        side,
        method,
        route,
        status,
        error,
        duration: buckets(DURATION_BOUNDS),
        request_bytes: buckets(SIZE_BOUNDS),
        response_bytes: buckets(SIZE_BOUNDS),
      };
      this.#series.set(key, s);
    }
    // a folded exchange's series says "other": no exchange names it, so it is not remembered
    if (!folded) this.#recent.remember(s);
    this.#observe(s, durationNs, requestBytes, responseBytes);
  }

  #observe(s: HttpCounts, durationNs: number, requestBytes: number, responseBytes: number): void {
    observe(s.duration, durationNs * 1e-9);
    observe(s.request_bytes, requestBytes);
    observe(s.response_bytes, responseBytes);
  }

  get size(): number {
    return this.#series.size;
  }

  /** Every series so far; the event shares the live counts (the sinks read them, never keep them). */
  snapshot(base: Omit<HttpStatsEvent, "type" | "series">): HttpStatsEvent {
    return { ...base, type: "http_stats", series: [...this.#series.values()] };
  }
}
