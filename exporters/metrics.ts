/**
 * kupod's Prometheus metrics: their definitions (names, HELP, labels, buckets) and the sink that
 * turns probe events into them.
 *
 * Labels are bounded: `namespace`, `pod`, `container` (plus `direction` on connections and `probe`
 * on self metrics) — never a pid, a URL or a port. An event that lacks one of the three carries it
 * as the empty string (`container=""`), which Prometheus treats as an absent label.
 *
 * Values come from what the kernel counted, reported by the probes as running totals:
 * - `tcp_stats`: per container and direction, connections opened (accepted: inbound, connected:
 *   outbound), and of those closed the bytes sent and received, retransmits, resets, long
 *   connections (more than one request/response exchange), the RTT at close and the lifetime;
 * - `sidecar_stats`: the sidecar's processing time and the time from the sidecar to the service,
 *   counted in the kernel per request, labelled with the sidecar container;
 * - per-connection and per-request events (`tcp_accept`, `tcp_connect`, `tcp_close`,
 *   `tcp_retransmit`, `sidecar_timing`) count nothing here: the kernel counted each already, also
 *   those the ring had no room for;
 * - `stack_stats`: the stack probe's cumulative kernel counts (packets per hook, hop latency
 *   histograms, drops per reason, packets and bytes of the pod's veth), shown as they are;
 * - `packet` (sampled hops) counts nothing: `stack_stats` already has every packet.
 *
 * @example
 * ```ts
 * import { KupodMetrics } from "./metrics.ts";
 * const metrics = new KupodMetrics();
 * const none = { count: 0, sum_seconds: 0, unit_seconds: 1e-6, slots: [] };
 * metrics.event({
 *   ts: "2025-01-01T00:00:00Z", type: "tcp_stats", namespace: "default", pod: "web",
 *   connections: [{
 *     container: "app", direction: "inbound", opened: 1, closed: 0, bytes_sent: 0,
 *     bytes_received: 0, retransmits: 0, long_connections: 0, rtt: none, duration: none,
 *   }],
 * });
 * console.log(await metrics.text()); // kupod_tcp_connections_total{...,direction="inbound"} 1
 * ```
 */

import { VERSION } from "../base/version.ts";
import type { ProbeName } from "../probes/probe.ts";
import { registerGrpcMetrics } from "./grpc_metrics.ts";
import { registerHttpMetrics } from "./http_metrics.ts";
import { registerResourcesMetrics } from "./resources_metrics.ts";
import { registerSockopsMetrics } from "./sockops_metrics.ts";
import { Registry } from "./registry.ts";
import {
  addLog2,
  Log2Histogram,
  type Log2Series,
  shownCounter,
  shownGauge,
} from "./shown_metrics.ts";
import type {
  EventSink,
  GrpcStatsEvent,
  HttpStatsEvent,
  KupodEvent,
  Log2Counts,
  ResourcesStatsEvent,
  SidecarStatsEvent,
  SockopsStatsEvent,
  StackStatsEvent,
  TcpCounts,
  TcpStatsEvent,
} from "../probes/events.ts";
import type { ProbeStats } from "../probes/probe.ts";

/** What the HTTP exporter and the Pushgateway pusher need: the text exposition format. */
export interface ExpositionSource {
  /** Content-Type of `text()`: the Prometheus text format 0.0.4. */
  readonly contentType: string;
  /** Every metric in the text exposition format. */
  text(): Promise<string>;
}

const POD_LABELS = ["namespace", "pod", "container"] as const;
type PodLabel = typeof POD_LABELS[number];
type PodLabels = Record<PodLabel, string>;

/** The metrics of one kupod run, fed by probe events; an {@link EventSink}. */
export class KupodMetrics implements EventSink, ExpositionSource {
  /** The registry holding every kupod metric (and nothing else). */
  readonly registry: Registry = new Registry();

  /** The socket probe's kernel counts of connections, as last reported. */
  #tcp: TcpStatsEvent | undefined;
  /** The socket probe's kernel-counted sidecar timings, as last reported. */
  #sidecars: SidecarStatsEvent | undefined;
  /** The stack probe's cumulative kernel counts, as last reported. */
  #stack: StackStatsEvent | undefined;
  /** The HTTP probe's request counts, as last reported. */
  #http: HttpStatsEvent | undefined;
  /** The resources probe's readings, as last reported. */
  #resources: ResourcesStatsEvent | undefined;
  /** The gRPC counts, as last reported. */
  #grpc: GrpcStatsEvent | undefined;
  /** The sockops redirection's counts, as last reported. */
  #sockops: SockopsStatsEvent | undefined;
  /** Cumulative probe counters, as last reported by setProbeStats. */
  readonly #probeStats = new Map<string, { events: number; lost: number }>();

  /** `build` overrides the kupod_build_info labels (kupod's VERSION, this Deno's version). */
  constructor(build: { version?: string; deno?: string } = {}) {
    const registry = this.registry;
    this.#tcpMetrics(registry);
    this.#stackMetrics(registry);
    registerHttpMetrics(registry, () => this.#http);
    registerResourcesMetrics(registry, () => this.#resources);
    registerSockopsMetrics(registry, () => this.#sockops);
    registerGrpcMetrics(registry, () => this.#grpc);

    const stats = this.#probeStats;
    shownCounter(
      registry,
      "kupod_events_total",
      "Events decoded by a probe and handed to the sinks.",
      ["probe"],
      () => [...stats].map(([probe, s]) => [{ probe }, s.events]),
    );
    shownCounter(
      registry,
      "kupod_events_lost_total",
      "Events of a probe the kernel dropped because its ring buffer was full.",
      ["probe"],
      () => [...stats].map(([probe, s]) => [{ probe }, s.lost]),
    );
    const info = { version: build.version ?? VERSION, deno: build.deno ?? Deno.version.deno };
    shownGauge(
      registry,
      "kupod_build_info",
      "Always 1; labelled with the kupod version and the Deno runtime running it.",
      ["version", "deno"],
      () => [[info, 1]],
    );
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counts one event into the metrics it feeds. */
  event(e: KupodEvent): void {
    switch (e.type) {
      case "tcp_stats":
        this.#tcp = e;
        return;
      case "sidecar_stats":
        this.#sidecars = e;
        return;
      case "stack_stats":
        this.#stack = e;
        return;
      case "http_stats":
        this.#http = e;
        return;
      case "resources_stats":
        this.#resources = e;
        return;
      case "sockops_stats":
        this.#sockops = e;
        return;
      case "grpc_stats":
        this.#grpc = e;
        return;
      default:
        return; // single connections, requests and packets: counted in the kernel already
    }
  }

  /** Socket metrics: shown from the last tcp_stats and sidecar_stats (the kernel's totals). */
  #tcpMetrics(registry: Registry): void {
    const conns = () => this.#tcp?.connections ?? [];
    const labels = (c: TcpCounts) => ({ ...podLabels(this.#tcp!), container: c.container });
    const counter = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      values: () => [Record<L, string>, number][],
    ) => shownCounter(registry, name, help, labelNames, values);
    const perContainer = (pick: (c: TcpCounts) => number) => () => {
      // inbound and outbound are one series here
      const sums = new Map<string, [PodLabels, number]>();
      for (const c of conns()) {
        const l = labels(c);
        const k = l.container;
        sums.set(k, [l, (sums.get(k)?.[1] ?? 0) + pick(c)]);
      }
      return [...sums.values()];
    };
    counter(
      "kupod_tcp_connections_total",
      "TCP connections opened: accepted (inbound) or connected (outbound).",
      [...POD_LABELS, "direction"],
      () => conns().map((c) => [{ ...labels(c), direction: c.direction }, c.opened]),
    );
    counter(
      "kupod_tcp_sent_bytes_total",
      "Bytes the application sent on TCP connections, counted when the connection closes.",
      POD_LABELS,
      perContainer((c) => c.bytes_sent),
    );
    counter(
      "kupod_tcp_received_bytes_total",
      "Bytes the application received on TCP connections, counted when the connection closes.",
      POD_LABELS,
      perContainer((c) => c.bytes_received),
    );
    counter(
      "kupod_tcp_retransmits_total",
      "TCP segments retransmitted, counted when the connection closes.",
      POD_LABELS,
      perContainer((c) => c.retransmits),
    );
    counter(
      "kupod_tcp_resets_total",
      "TCP connections that ended with a reset, sent (an abort) or received.",
      POD_LABELS,
      perContainer((c) => c.resets),
    );
    counter(
      "kupod_long_connections_total",
      "Closed TCP connections that carried more than one request/response exchange.",
      POD_LABELS,
      perContainer((c) => c.long_connections),
    );
    const perContainerHist = (pick: (c: TcpCounts) => Log2Counts) => () => {
      const sums = new Map<string, Log2Series>();
      for (const c of conns()) {
        const l = labels(c);
        const h = pick(c);
        const s = sums.get(l.container);
        if (s) addLog2(s, h);
        else sums.set(l.container, { labels: l, ...h, slots: [...h.slots] });
      }
      return [...sums.values()];
    };
    const log2 = (name: string, help: string, exps: [number, number], series: () => Log2Series[]) =>
      registry.register(new Log2Histogram(name, help, exps, series));
    // µs slots: 8 µs (same host) .. ~1 s (a congested long path)
    log2(
      "kupod_tcp_rtt_seconds",
      "Smoothed round-trip time of TCP connections at close.",
      [3, 20],
      perContainerHist((c) => c.rtt),
    );
    // µs slots: 128 µs (a local one-shot) .. ~72 min (a long-lived keep-alive)
    log2(
      "kupod_tcp_connection_duration_seconds",
      "Lifetime of TCP connections, from connect or accept to close.",
      [7, 32],
      perContainerHist((c) => c.duration),
    );
    // ns slots: ~1 µs .. ~1.07 s
    const sidecarSeries = (which: "process" | "to_service") => () =>
      (this.#sidecars?.sidecars ?? []).map((s) => ({
        labels: { ...podLabels(this.#sidecars!), container: s.container },
        ...s[which],
      }));
    log2(
      "kupod_sidecar_process_duration_seconds",
      "Time a request spends in the sidecar, from reading it to writing it upstream.",
      [10, 30],
      sidecarSeries("process"),
    );
    log2(
      "kupod_sidecar_to_service_duration_seconds",
      "Time from the sidecar writing a request upstream to the service reading it.",
      [10, 30],
      sidecarSeries("to_service"),
    );
  }

  /** Stack metrics: shown from the last stack_stats, which holds the kernel's running totals. */
  #stackMetrics(registry: Registry): void {
    const latest = () => this.#stack;
    const shown = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      values: (e: StackStatsEvent) => [Record<L, string>, number][],
    ) => {
      const e = () => latest();
      shownCounter(registry, name, help, labelNames, () => (e() ? values(e()!) : []));
    };
    const pod = (e: StackStatsEvent) => ({ namespace: e.namespace ?? "", pod: e.pod ?? "" });
    shown(
      "kupod_stack_packets_total",
      "Packets of the pod seen at each hook of the network stack.",
      ["namespace", "pod", "hook"],
      (e) => Object.entries(e.hooks).map(([hook, c]) => [{ ...pod(e), hook }, c.packets]),
    );
    shown(
      "kupod_stack_drops_total",
      "Packets of the pod the kernel dropped, by drop reason (enum skb_drop_reason).",
      ["namespace", "pod", "reason"],
      (e) => Object.entries(e.drops).map(([reason, n]) => [{ ...pod(e), reason }, n]),
    );
    const nic = (pick: (c: { packets: number; bytes: number }) => number) =>
    (
      e: StackStatsEvent,
    ): [Record<"namespace" | "pod" | "interface" | "direction", string>, number][] =>
      e.interface
        ? (["rx", "tx"] as const).map((direction) => [
          { ...pod(e), interface: e.interface, direction },
          pick(e.nic[direction]),
        ])
        : [];
    const nicLabels = ["namespace", "pod", "interface", "direction"] as const;
    shown(
      "kupod_nic_packets_total",
      "Packets on the pod's host-side veth: rx from the pod, tx to the pod.",
      nicLabels,
      nic((c) => c.packets),
    );
    shown(
      "kupod_nic_bytes_total",
      "Bytes on the pod's host-side veth: rx from the pod, tx to the pod.",
      nicLabels,
      nic((c) => c.bytes),
    );
    shown(
      "kupod_stack_path_traced_seconds_total",
      "Seconds the packet path (hooks after the veth's TC, hop latencies) was traced: the path's counts per traced second are its rates.",
      ["namespace", "pod"],
      (e) => [[pod(e), e.path_traced_seconds]],
    );
    shownGauge(
      registry,
      "kupod_stack_path_duty_cycle_ratio",
      "Share of the time the packet path is traced (--stack-duty-cycle).",
      ["namespace", "pod"],
      () => latest() ? [[pod(latest()!), latest()!.path_duty_cycle]] : [],
    );
    shown(
      "kupod_stack_packets_vanished_total",
      "Followed packets that were freed without a tracepoint, aged out or displaced in the tracking table.",
      ["namespace", "pod"],
      (e) => [[pod(e), e.vanished]],
    );
    registry.register(
      new Log2Histogram(
        "kupod_stack_hop_latency_seconds",
        "Time a packet of the pod takes from one hook of the network stack to the next (sampled packets).",
        [10, 30], // ns slots: ~1 µs .. ~1.07 s
        () =>
          (latest()?.hops ?? []).map((h) => ({
            labels: { ...pod(latest()!), from: h.from, to: h.to },
            count: h.count,
            sum_seconds: h.sum_seconds,
            unit_seconds: 1e-9,
            slots: h.slots,
          })),
      ),
    );
  }

  /** Nothing is buffered: every event is in the registry once event() returns. */
  flush(): void {}

  /**
   * Sets the self metrics of `probe` from its cumulative counts (the monitor calls this before
   * each scrape and push). A probe's counts only grow; the counters show them as they are.
   */
  setProbeStats(probe: ProbeName, stats: ProbeStats): void {
    this.#probeStats.set(probe, { events: stats.events, lost: Number(stats.lost) });
  }
}

function podLabels(e: KupodEvent): PodLabels {
  return { namespace: e.namespace ?? "", pod: e.pod ?? "", container: e.container ?? "" };
}
