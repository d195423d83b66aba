/**
 * The HTTP probe's metrics, with OpenTelemetry's HTTP semantic-convention names and attributes
 * as Prometheus spells them (`http.server.request.duration` → `http_server_request_duration_seconds`,
 * `http.request.method` → `http_request_method`, ...), plus kupod's pod labels. Shown from the last
 * `http_stats`, the probe's running totals.
 */

import type { Registry } from "./registry.ts";
import type { BucketCounts, HttpCounts, HttpStatsEvent } from "../probes/events.ts";
import { BucketHistogram, type BucketSeries } from "./shown_metrics.ts";

/** Registers the HTTP metrics; `latest` gives the last http_stats (or none yet). */
export function registerHttpMetrics(
  registry: Registry,
  latest: () => HttpStatsEvent | undefined,
): void {
  const series = (side: HttpCounts["side"], pick: (s: HttpCounts) => BucketCounts) => () => {
    const e = latest();
    if (!e) return [];
    const pod = { namespace: e.namespace ?? "", pod: e.pod ?? "" };
    return e.series.filter((s) => s.side === side).map((s) => ({
      labels: {
        ...pod,
        container: s.container,
        http_request_method: s.method,
        http_response_status_code: s.status ? String(s.status) : "",
        http_route: s.route,
        error_type: s.error,
      },
      h: pick(s),
    }));
  };
  const add = (name: string, help: string, s: () => BucketSeries[]) =>
    registry.register(new BucketHistogram(name, help, s));
  for (const side of ["server", "client"] as const) {
    const who = side === "server" ? "served by" : "made by";
    add(
      `http_${side}_request_duration_seconds`,
      `Duration of HTTP requests ${who} the container, from the request's first byte to the response's last.`,
      series(side, (s) => s.duration),
    );
    add(
      `http_${side}_request_body_size_bytes`,
      `Body sizes of HTTP requests ${who} the container.`,
      series(side, (s) => s.request_bytes),
    );
    add(
      `http_${side}_response_body_size_bytes`,
      `Body sizes of the responses to HTTP requests ${who} the container.`,
      series(side, (s) => s.response_bytes),
    );
  }
}
