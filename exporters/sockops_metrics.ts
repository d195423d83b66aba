/** The sockops redirection's metrics, shown from the last `sockops_stats`. */

import type { Registry } from "./registry.ts";
import type { SockopsStatsEvent } from "../probes/events.ts";
import { shownCounter, shownGauge } from "./shown_metrics.ts";

/** Registers the sockops metrics; `latest` gives the last sockops_stats (or none yet). */
export function registerSockopsMetrics(
  registry: Registry,
  latest: () => SockopsStatsEvent | undefined,
): void {
  const labels = ["namespace", "pod", "container"];
  const pod = (e: SockopsStatsEvent) => ({ namespace: e.namespace ?? "", pod: e.pod ?? "" });
  const per = (pick: (c: SockopsStatsEvent["containers"][number]) => number) => () => {
    const e = latest();
    return e
      ? e.containers.map((c): [Record<string, string>, number] => [
        { ...pod(e), container: c.container },
        pick(c),
      ])
      : [];
  };
  shownGauge(
    registry,
    "kupod_sockops_sockets",
    "Sockets of the pod's local connections in the redirection map now.",
    labels,
    () => {
      const e = latest();
      return e ? [[{ ...pod(e), container: "" }, e.sockets]] : [];
    },
  );
  shownCounter(
    registry,
    "kupod_sockops_redirected_bytes_total",
    "Bytes a container sent straight to the peer socket (sk_msg redirect), skipping the stack.",
    labels,
    per((c) => c.redirected_bytes),
  );
  shownCounter(
    registry,
    "kupod_sockops_redirect_errors_total",
    "Sends of a redirected socket whose peer was not in the map: they took the normal path.",
    labels,
    per((c) => c.redirect_errors),
  );
}
