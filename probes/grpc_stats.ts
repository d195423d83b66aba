/**
 * gRPC counts of the user-space probe, aggregated as calls complete: one series per container,
 * side, service, method and grpc-status, with a duration histogram. Reported as cumulative
 * `grpc_stats` events.
 */

import type { GrpcCounts, GrpcStatsEvent } from "./events.ts";
import type { H2Call } from "./h2/conn.ts";
import { DURATION_BOUNDS } from "./http_stats.ts";

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
        duration: {
          bounds: DURATION_BOUNDS,
          counts: new Array(DURATION_BOUNDS.length + 1).fill(0),
          sum: 0,
          count: 0,
        },
      };
      this.#series.set(key, s);
    }
    const d = Number(c.endNs - c.startNs) * 1e-9;
    let i = 0;
    while (i < DURATION_BOUNDS.length && d > DURATION_BOUNDS[i]) i++;
    s.duration.counts[i]++;
    s.duration.sum += d;
    s.duration.count++;
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
