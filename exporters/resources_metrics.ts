/**
 * The resources probe's metrics under cAdvisor's names and labels (`namespace`, `pod`,
 * `container`, `interface`, `device`), so that dashboards written for the kubelet's cAdvisor
 * work unchanged; plus what cAdvisor does not have (run-queue latency, OOM kills seen in BPF).
 * Shown from the last `resources_stats`. Network counters belong to the pod (its containers
 * share one network namespace) and carry `container=""`, as cAdvisor's do.
 */

import type { Registry } from "./registry.ts";
import { deviceName } from "../k8s/cgroup_usage.ts";
import type { ContainerResources, InterfaceCounts, ResourcesStatsEvent } from "../probes/events.ts";
import { Log2Histogram, shownCounter, shownGauge } from "./shown_metrics.ts";

type Labels = Record<string, string>;

/** Registers the resources metrics; `latest` gives the last resources_stats (or none yet). */
export function registerResourcesMetrics(
  registry: Registry,
  latest: () => ResourcesStatsEvent | undefined,
): void {
  const pod = (e: ResourcesStatsEvent) => ({ namespace: e.namespace ?? "", pod: e.pod ?? "" });
  const perContainer = (pick: (c: ContainerResources) => number) => (): [Labels, number][] => {
    const e = latest();
    return e ? e.containers.map((c) => [{ ...pod(e), container: c.container }, pick(c)]) : [];
  };
  const names: string[] = ["namespace", "pod", "container"];
  const counter = (name: string, help: string, pick: (c: ContainerResources) => number) =>
    shownCounter(registry, name, help, names, perContainer(pick));
  const gauge = (name: string, help: string, pick: (c: ContainerResources) => number) =>
    shownGauge(registry, name, help, names, perContainer(pick));

  counter(
    "container_cpu_usage_seconds_total",
    "Cumulative CPU time consumed.",
    (c) => c.cpu_seconds,
  );
  counter(
    "container_cpu_user_seconds_total",
    "Cumulative user CPU time.",
    (c) => c.cpu_user_seconds,
  );
  counter(
    "container_cpu_system_seconds_total",
    "Cumulative system CPU time.",
    (c) => c.cpu_system_seconds,
  );
  counter(
    "container_cpu_cfs_periods_total",
    "Elapsed enforcement periods of the CPU quota.",
    (c) => c.cfs_periods,
  );
  counter(
    "container_cpu_cfs_throttled_periods_total",
    "Enforcement periods in which the container was throttled.",
    (c) => c.cfs_throttled_periods,
  );
  counter(
    "container_cpu_cfs_throttled_seconds_total",
    "Time the container was throttled.",
    (c) => c.cfs_throttled_seconds,
  );
  gauge(
    "container_memory_working_set_bytes",
    "Memory in use minus inactive file pages (what the kubelet evicts on).",
    (c) => c.memory_working_set_bytes,
  );
  gauge(
    "container_memory_usage_bytes",
    "Memory in use, page cache included.",
    (c) => c.memory_usage_bytes,
  );
  gauge("container_memory_rss", "Anonymous memory.", (c) => c.memory_rss_bytes);
  gauge("container_memory_cache", "Page cache memory.", (c) => c.memory_cache_bytes);
  gauge(
    "container_spec_memory_limit_bytes",
    "Memory limit of the container (0: none).",
    (c) => c.memory_limit_bytes,
  );
  counter(
    "container_oom_events_total",
    "Processes of the container killed by the OOM killer (the cgroup's count).",
    (c) => c.oom_events,
  );
  gauge("container_threads", "Threads in the container.", (c) => c.threads);
  counter(
    "kupod_container_oom_kills_total",
    "OOM killer victims in the container, seen by kupod's BPF probe while it ran.",
    (c) => c.oom_kills,
  );

  const io = (pick: (d: ContainerResources["io"][number]) => number) => (): [Labels, number][] => {
    const e = latest();
    if (!e) return [];
    return e.containers.flatMap((c) =>
      c.io.map((d): [Labels, number] => [
        { ...pod(e), container: c.container, device: `/dev/${deviceName(d.device)}` },
        pick(d),
      ])
    );
  };
  const ioNames = [...names, "device"];
  shownCounter(
    registry,
    "container_fs_reads_bytes_total",
    "Bytes read from the device.",
    ioNames,
    io((d) => d.read_bytes),
  );
  shownCounter(
    registry,
    "container_fs_writes_bytes_total",
    "Bytes written to the device.",
    ioNames,
    io((d) => d.write_bytes),
  );
  shownCounter(
    registry,
    "container_fs_reads_total",
    "Reads completed on the device.",
    ioNames,
    io((d) => d.reads),
  );
  shownCounter(
    registry,
    "container_fs_writes_total",
    "Writes completed on the device.",
    ioNames,
    io((d) => d.writes),
  );

  const net = (pick: (i: InterfaceCounts) => number) => (): [Labels, number][] => {
    const e = latest();
    return e
      ? e.interfaces.map((i) => [{ ...pod(e), container: "", interface: i.interface }, pick(i)])
      : [];
  };
  const netNames = [...names, "interface"];
  for (const [dir, prefix] of [["receive", "rx"], ["transmit", "tx"]] as const) {
    const field = (what: string) => `${prefix}_${what}` as keyof InterfaceCounts;
    const of = (what: string) => (i: InterfaceCounts) => i[field(what)] as number;
    shownCounter(
      registry,
      `container_network_${dir}_bytes_total`,
      `Bytes ${dir}d by the pod's interface.`,
      netNames,
      net(of("bytes")),
    );
    shownCounter(
      registry,
      `container_network_${dir}_packets_total`,
      `Packets ${dir}d by the pod's interface.`,
      netNames,
      net(of("packets")),
    );
    shownCounter(
      registry,
      `container_network_${dir}_errors_total`,
      `Errors while the pod's interface ${dir}d.`,
      netNames,
      net(of("errors")),
    );
    shownCounter(
      registry,
      `container_network_${dir}_packets_dropped_total`,
      `Packets dropped while the pod's interface ${dir}d.`,
      netNames,
      net(of("dropped")),
    );
  }

  // ns slots: 1 µs .. ~4 s
  registry.register(
    new Log2Histogram(
      "kupod_container_runqueue_latency_seconds",
      "Time the container's threads waited on a run queue, from wake-up or preemption to running.",
      [10, 32],
      () => {
        const e = latest();
        return e
          ? e.containers.map((c) => ({
            labels: { ...pod(e), container: c.container },
            ...c.runqueue,
          }))
          : [];
      },
    ),
  );
}
