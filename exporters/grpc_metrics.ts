/**
 * gRPC metrics with OpenTelemetry's RPC semantic-convention names and attributes as Prometheus
 * spells them (`rpc.server.duration` → `rpc_server_duration_seconds`, `rpc.system`,
 * `rpc.service`, `rpc.method`, `rpc.grpc.status_code`; `rpc.server.request.size` →
 * `rpc_server_request_size_bytes`, per message), plus kupod's pod labels and the count of calls
 * whose method could not be known. Shown from the last `grpc_stats`.
 */

import type { Registry } from "./registry.ts";
import type { BucketCounts, GrpcCounts, GrpcStatsEvent } from "../probes/events.ts";
import { BucketHistogram, type BucketSeries, shownCounter } from "./shown_metrics.ts";

/** Registers the gRPC metrics; `latest` gives the last grpc_stats (or none yet). */
export function registerGrpcMetrics(
  registry: Registry,
  latest: () => GrpcStatsEvent | undefined,
): void {
  for (const side of ["server", "client"] as const) {
    const series = (pick: (s: GrpcCounts) => BucketCounts) => (): BucketSeries[] => {
      const e = latest();
      if (!e) return [];
      return e.series.filter((s) => s.side === side).map((s) => ({
        labels: {
          namespace: e.namespace ?? "",
          pod: e.pod ?? "",
          container: s.container,
          rpc_system: "grpc",
          rpc_service: s.service,
          rpc_method: s.method,
          rpc_grpc_status_code: s.grpc_status < 0 ? "" : String(s.grpc_status),
        },
        h: pick(s),
      }));
    };
    const calls = side === "server" ? "served" : "made";
    registry.register(
      new BucketHistogram(
        `rpc_${side}_duration_seconds`,
        `Duration of gRPC calls ${calls} by the container.`,
        series((s) => s.duration),
      ),
    );
    for (const dir of ["request", "response"] as const) {
      registry.register(
        new BucketHistogram(
          `rpc_${side}_${dir}_size_bytes`,
          `Size of the ${dir} messages of gRPC calls ${calls} by the container (as sent: compressed if they were).`,
          series((s) => s[`${dir}_message_bytes`]),
        ),
      );
    }
  }
  shownCounter(
    registry,
    "kupod_grpc_unknown_method_calls_total",
    "gRPC calls whose method could not be known (headers compressed against a table never seen).",
    ["namespace", "pod"],
    () => {
      const e = latest();
      return e
        ? [[{ namespace: e.namespace ?? "", pod: e.pod ?? "" }, e.unknown_method_calls]]
        : [];
    },
  );
  shownCounter(
    registry,
    "kupod_grpc_unseen_calls_total",
    "gRPC calls and HTTP/2 requests opened in bytes the capture could not frame (writes longer " +
      "than it copies, records lost to a full ring): counted, not reported one by one.",
    ["namespace", "pod"],
    () => {
      const e = latest();
      return e ? [[{ namespace: e.namespace ?? "", pod: e.pod ?? "" }, e.unseen_calls]] : [];
    },
  );
}
