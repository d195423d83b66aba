/**
 * kupod's Prometheus metrics: their definitions (names, HELP, labels, buckets) and the sink that
 * turns probe events into them.
 *
 * Labels are bounded: `namespace`, `pod`, `container` (plus `direction` on connections and `probe`
 * on self metrics) — never a pid, a URL or a port. An event that lacks one of the three carries it
 * as the empty string (`container=""`), which Prometheus treats as an absent label.
 *
 * Values come from the events one by one:
 * - `tcp_accept` / `tcp_connect`: one connection, inbound / outbound;
 * - `tcp_close`: bytes sent and received, retransmits, the RTT at close, the connection's
 *   duration, and one long connection when it carried more than one request/response exchange;
 * - `sidecar_stats`: the sidecar's processing time and the time from the sidecar to the service,
 *   counted in the kernel per request, labelled with the sidecar container (`sidecar_timing`
 *   events, sent one per request only in --verbose, are not counted again);
 * - `tcp_retransmit` counts nothing here: its retransmits are in the `tcp_close` that follows, and
 *   counting both would count them twice;
 * - `stack_stats`: the stack probe's cumulative kernel counts (packets per hook, hop latency
 *   histograms, drops per reason, packets and bytes of the pod's veth), shown as they are;
 * - `packet` (sampled hops) counts nothing: `stack_stats` already has every packet.
 *
 * @example
 * ```ts
 * import { KupodMetrics } from "./metrics.ts";
 * const metrics = new KupodMetrics();
 * metrics.event({
 *   ts: "2025-01-01T00:00:00Z", type: "tcp_accept", namespace: "default", pod: "web",
 *   container: "app", family: "ipv4", saddr: "10.0.0.2", sport: 80, daddr: "10.0.0.3",
 *   dport: 40000, conn_id: "1",
 * });
 * console.log(await metrics.text()); // kupod_tcp_connections_total{...,direction="inbound"} 1
 * ```
 */

import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { VERSION } from "../cli/version.ts";
import type { ProbeName } from "../cli/options.ts";
import type {
  EventSink,
  KupodEvent,
  SidecarStatsEvent,
  StackStatsEvent,
  TcpCloseEvent,
} from "../probes/events.ts";
import type { ProbeStats } from "../probes/probe.ts";

/** What the HTTP exporter and the Pushgateway pusher need: the text exposition format. */
export interface ExpositionSource {
  /** Content-Type of `text()`: the Prometheus text format 0.0.4. */
  readonly contentType: string;
  /** Every metric in the text exposition format. */
  text(): Promise<string>;
}

/** Round-trip times: 10 µs (same host) .. 1 s (a congested long path). */
export const RTT_BUCKETS: readonly number[] = [
  0.00001,
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
];

/** Connection lifetimes: 100 µs (a local one-shot) .. 1 h (a long-lived keep-alive). */
export const CONNECTION_DURATION_BUCKETS: readonly number[] = [
  0.0001,
  0.0005,
  0.001,
  0.005,
  0.01,
  0.05,
  0.1,
  0.5,
  1,
  5,
  10,
  30,
  60,
  300,
  900,
  3600,
];

const POD_LABELS = ["namespace", "pod", "container"] as const;
type PodLabel = typeof POD_LABELS[number];
type PodLabels = Record<PodLabel, string>;

/** The metrics of one kupod run, fed by probe events; an {@link EventSink}. */
export class KupodMetrics implements EventSink, ExpositionSource {
  /** The prom-client registry holding every kupod metric (and nothing else). */
  readonly registry: Registry = new Registry();

  readonly #connections: Counter<PodLabel | "direction">;
  readonly #sentBytes: Counter<PodLabel>;
  readonly #receivedBytes: Counter<PodLabel>;
  readonly #retransmits: Counter<PodLabel>;
  readonly #longConnections: Counter<PodLabel>;
  readonly #rtt: Histogram<PodLabel>;
  readonly #connectionDuration: Histogram<PodLabel>;
  /** The socket probe's kernel-counted sidecar timings, as last reported. */
  #sidecars: SidecarStatsEvent | undefined;
  /** The stack probe's cumulative kernel counts, as last reported. */
  #stack: StackStatsEvent | undefined;
  /** Cumulative probe counters, as last reported by setProbeStats. */
  readonly #probeStats = new Map<string, { events: number; lost: number }>();

  /** `build` overrides the kupod_build_info labels (kupod's VERSION, this Deno's version). */
  constructor(build: { version?: string; deno?: string } = {}) {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: readonly number[]) =>
      new Histogram<PodLabel>({
        name,
        help,
        labelNames: POD_LABELS,
        buckets: [...buckets],
        registers,
      });

    this.#connections = counter(
      "kupod_tcp_connections_total",
      "TCP connections opened: accepted (inbound) or connected (outbound).",
      [...POD_LABELS, "direction"],
    );
    this.#sentBytes = counter(
      "kupod_tcp_sent_bytes_total",
      "Bytes sent on TCP connections, counted when the connection closes.",
      POD_LABELS,
    );
    this.#receivedBytes = counter(
      "kupod_tcp_received_bytes_total",
      "Bytes received on TCP connections, counted when the connection closes.",
      POD_LABELS,
    );
    this.#retransmits = counter(
      "kupod_tcp_retransmits_total",
      "TCP segments retransmitted, counted when the connection closes.",
      POD_LABELS,
    );
    this.#rtt = histogram(
      "kupod_tcp_rtt_seconds",
      "Smoothed round-trip time of TCP connections at close.",
      RTT_BUCKETS,
    );
    this.#connectionDuration = histogram(
      "kupod_tcp_connection_duration_seconds",
      "Lifetime of TCP connections, from connect or accept to close.",
      CONNECTION_DURATION_BUCKETS,
    );
    // counted per request in the kernel (log2 buckets), reported as sidecar_stats
    const sidecarSeries = (which: "process" | "to_service") => () =>
      (this.#sidecars?.sidecars ?? []).map((s) => ({
        labels: { ...podLabels(this.#sidecars!), container: s.container },
        count: s[which].count,
        sum: s[which].sum_seconds,
        slots: s[which].slots,
      }));
    this.registry.registerMetric(
      new Log2Histogram(
        "kupod_sidecar_process_duration_seconds",
        "Time a request spends in the sidecar, from reading it to writing it upstream.",
        sidecarSeries("process"),
      ) as never,
    );
    this.registry.registerMetric(
      new Log2Histogram(
        "kupod_sidecar_to_service_duration_seconds",
        "Time from the sidecar writing a request upstream to the service reading it.",
        sidecarSeries("to_service"),
      ) as never,
    );
    this.#longConnections = counter(
      "kupod_long_connections_total",
      "Closed TCP connections that carried more than one request/response exchange.",
      POD_LABELS,
    );

    this.#stackMetrics(registers);

    const stats = this.#probeStats;
    new Counter<"probe">({
      name: "kupod_events_total",
      help: "Events decoded by a probe and handed to the sinks.",
      labelNames: ["probe"],
      registers,
      collect() {
        this.reset();
        for (const [probe, s] of stats) this.inc({ probe }, s.events);
      },
    });
    new Counter<"probe">({
      name: "kupod_events_lost_total",
      help: "Events of a probe the kernel dropped because its ring buffer was full.",
      labelNames: ["probe"],
      registers,
      collect() {
        this.reset();
        for (const [probe, s] of stats) this.inc({ probe }, s.lost);
      },
    });
    new Gauge<"version" | "deno">({
      name: "kupod_build_info",
      help: "Always 1; labelled with the kupod version and the Deno runtime running it.",
      labelNames: ["version", "deno"],
      registers,
    }).set({ version: build.version ?? VERSION, deno: build.deno ?? Deno.version.deno }, 1);
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
      case "tcp_accept":
        this.#connections.inc({ ...podLabels(e), direction: "inbound" });
        return;
      case "tcp_connect":
        this.#connections.inc({ ...podLabels(e), direction: "outbound" });
        return;
      case "tcp_close":
        return this.#close(e);
      case "sidecar_timing":
        return; // one per request in --verbose; sidecar_stats counts every request
      case "sidecar_stats":
        this.#sidecars = e;
        return;
      case "tcp_retransmit":
        return; // counted by the tcp_close that follows
      case "stack_stats":
        this.#stack = e;
        return;
      case "packet":
        return; // sampled; stack_stats counts every packet
    }
  }

  /** Stack metrics: shown from the last stack_stats, which holds the kernel's running totals. */
  #stackMetrics(registers: Registry[]): void {
    const latest = () => this.#stack;
    const shown = <L extends string>(
      name: string,
      help: string,
      labelNames: readonly L[],
      values: (e: StackStatsEvent) => [Record<L, string>, number][],
    ) =>
      new Counter<L>({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          const e = latest();
          if (e) { for (const [labels, n] of values(e)) this.inc(labels as never, n); }
        },
      });
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
      "kupod_stack_packets_vanished_total",
      "Followed packets that were freed without a tracepoint or aged out of the tracking map.",
      ["namespace", "pod"],
      (e) => [[pod(e), e.vanished]],
    );
    registers[0].registerMetric(
      new Log2Histogram(
        "kupod_stack_hop_latency_seconds",
        "Time a packet of the pod takes from one hook of the network stack to the next.",
        () =>
          (latest()?.hops ?? []).map((h) => ({
            labels: { ...pod(latest()!), from: h.from, to: h.to },
            count: h.count,
            sum: h.sum_seconds,
            slots: h.slots,
          })),
      ) as never,
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

  #close(e: TcpCloseEvent): void {
    const labels = podLabels(e);
    addCount(this.#sentBytes, labels, e.bytes_sent);
    addCount(this.#receivedBytes, labels, e.bytes_received);
    addCount(this.#retransmits, labels, e.retransmits);
    observe(this.#rtt, labels, e.rtt_seconds);
    observe(this.#connectionDuration, labels, e.duration_seconds);
    if (e.exchanges > 1) this.#longConnections.inc(labels);
  }
}

function podLabels(e: KupodEvent): PodLabels {
  return { namespace: e.namespace ?? "", pod: e.pod ?? "", container: e.container ?? "" };
}

/** Adds a count from an event; a broken value (negative, NaN) is not one to add. */
function addCount(c: Counter<PodLabel>, labels: PodLabels, n: number): void {
  // inc(0) still creates the series, so a closed connection shows up as a 0 rather than nothing
  if (Number.isFinite(n) && n >= 0) c.inc(labels, n);
}

function observe(h: Histogram<PodLabel>, labels: PodLabels, seconds: number): void {
  if (Number.isFinite(seconds) && seconds >= 0) h.observe(labels, seconds);
}

/** Upper bounds of the hop latency buckets: 2^10 ns (~1 µs) .. 2^30 ns (~1.07 s). */
const LOG2_BOUNDS = Array.from({ length: 21 }, (_, i) => 10 + i);

interface Log2Series {
  labels: Record<string, string>;
  count: number;
  sum: number;
  /** slots[i]: observations in [2^i, 2^(i+1)) ns. */
  slots: number[];
}

/**
 * A histogram whose buckets were counted in the kernel (log2 of nanoseconds) and arrive as running
 * totals: prom-client's Histogram only takes single observations, so this renders the series
 * itself in the shape the registry prints (`_bucket{le}`, `_sum`, `_count`).
 */
class Log2Histogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  constructor(
    readonly name: string,
    readonly help: string,
    readonly series: () => Log2Series[],
  ) {}

  get(): {
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { metricName: string; labels: Record<string, string | number>; value: number }[];
  } {
    const values = [];
    for (const s of this.series()) {
      for (const k of LOG2_BOUNDS) {
        let below = 0;
        for (let i = 0; i < k && i < s.slots.length; i++) below += s.slots[i];
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { ...s.labels, le: 2 ** k / 1e9 },
          value: below,
        });
      }
      values.push({
        metricName: `${this.name}_bucket`,
        labels: { ...s.labels, le: "+Inf" },
        value: s.count,
      });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }

  reset(): void {}
}
