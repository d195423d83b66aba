/**
 * gRPC counts of the user-space probe, aggregated as calls complete: one series per container,
 * side, service, method and grpc-status, with histograms of the duration and of the sizes of
 * the request and response messages. Reported as cumulative `grpc_stats` events.
 */

import { addBuckets, buckets, DURATION_BOUNDS, observe, SIZE_BOUNDS } from "./buckets.ts";
import type { GrpcCounts, GrpcStatsEvent } from "./events.ts";
import type { H2Call } from "./h2/conn.ts";

/** Series beyond this many are folded into method "other". */
const MAX_SERIES = 2000;

export class GrpcStats {
  readonly #series = new Map<string, GrpcCounts>();
  #unknown = 0;

  /** Counts one call of `container`. */
  add(container: string, c: H2Call, service: string, method: string): void {
    if (c.pathUnknown) this.#unknown++;
    let key = `${container}\0${c.side}\0${service}\0${method}\0${c.grpcStatus}`;
    let s = this.#series.get(key);
    if (!s && this.#series.size >= MAX_SERIES) {
      method = "other";
      key = `${container}\0${c.side}\0${service}\0${method}\0${c.grpcStatus}`;
      s = this.#series.get(key);
    }
    if (!s) {
      s = {
        container,
        side: c.side,
        service,
        method,
        grpc_status: c.grpcStatus,
        duration: buckets(DURATION_BOUNDS),
        request_message_bytes: buckets(SIZE_BOUNDS),
        response_message_bytes: buckets(SIZE_BOUNDS),
      };
      this.#series.set(key, s);
    }
    observe(s.duration, Number(c.endNs - c.startNs) * 1e-9);
    if (c.requestSizes) addBuckets(s.request_message_bytes, c.requestSizes);
    if (c.responseSizes) addBuckets(s.response_message_bytes, c.responseSizes);
  }

  get size(): number {
    return this.#series.size;
  }

  snapshot(base: Omit<GrpcStatsEvent, "type" | "series" | "unknown_method_calls">): GrpcStatsEvent {
    return {
      ...base,
      type: "grpc_stats",
      series: [...this.#series.values()],
      unknown_method_calls: this.#unknown,
    };
  }
}
