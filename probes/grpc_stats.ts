/**
 * gRPC counts of the user-space probe, aggregated as calls complete: one series per container,
 * side, service, method and grpc-status, with histograms of the duration and of the sizes of
 * the request and response messages. Reported as cumulative `grpc_stats` events.
 */

import { buckets, DURATION_BOUNDS, observe, SIZE_BOUNDS } from "./buckets.ts";
import type { BucketCounts, GrpcCounts, GrpcStatsEvent } from "./events.ts";
import type { H2Call } from "./h2/conn.ts";
import { RecentSeries } from "./recent_series.ts";

/** Series beyond this many are folded into method "other". */
const MAX_SERIES = 2000;

export class GrpcStats {
  readonly #series = new Map<string, GrpcCounts>();
  readonly #recent = new RecentSeries<GrpcCounts>();
  #unknown = 0;
  #unseen = 0;

  /** Counts one call of `container`. */
  add(container: string, c: H2Call, service: string, method: string): void {
    if (c.pathUnknown) this.#unknown++;
    const s = this.#find(container, c.side, service, method, c.grpcStatus);
    observe(s.duration, Number(c.endNs - c.startNs) * 1e-9);
    if (c.requestSizes) add(s.request_message_bytes, c.requestSizes);
    if (c.responseSizes) add(s.response_message_bytes, c.responseSizes);
  }

  #find(
    container: string,
    side: H2Call["side"],
    service: string,
    method: string,
    status: number,
  ): GrpcCounts {
    const recent = this.#recent.items;
    for (let i = 0; i < recent.length; i++) {
      const r = recent[i];
      if (
        r.grpc_status === status && r.method === method && r.service === service &&
        r.side === side && r.container === container
      ) return r;
    }
    let key = `${container}\0${side}\0${service}\0${method}\0${status}`;
    let s = this.#series.get(key);
    const folded = !s && this.#series.size >= MAX_SERIES;
    if (folded) {
      method = "other";
      key = `${container}\0${side}\0${service}\0${method}\0${status}`;
      s = this.#series.get(key);
    }
    if (!s) {
      s = {
        container,
        side,
        service,
        method,
        grpc_status: status,
        duration: buckets(DURATION_BOUNDS),
        request_message_bytes: buckets(SIZE_BOUNDS),
        response_message_bytes: buckets(SIZE_BOUNDS),
      };
      this.#series.set(key, s);
    }
    // a folded call's series says "other": no call names it, so it is not remembered
    if (!folded) this.#recent.remember(s);
    return s;
  }

  /** Counts `n` calls (or HTTP/2 requests) that went by in bytes the capture could not frame. */
  addUnseen(n: number): void {
    this.#unseen += n;
  }

  /** Whether there is anything to report: series, or calls counted without one. */
  get empty(): boolean {
    return this.#series.size === 0 && this.#unseen === 0;
  }

  snapshot(
    base: Omit<GrpcStatsEvent, "type" | "series" | "unknown_method_calls" | "unseen_calls">,
  ): GrpcStatsEvent {
    return {
      ...base,
      type: "grpc_stats",
      series: [...this.#series.values()],
      unknown_method_calls: this.#unknown,
      unseen_calls: this.#unseen,
    };
  }
}

/** addBuckets without a callback per slot: this runs for every call. */
function add(into: BucketCounts, h: BucketCounts): void {
  into.count += h.count;
  into.sum += h.sum;
  const a = into.counts, b = h.counts;
  for (let i = 0; i < b.length; i++) a[i] += b[i];
}
