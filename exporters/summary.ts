/**
 * Summaries of what the pod did over a window (the terminal's periodic block, the JSON `summary`
 * event, the live view), made from the probes' cumulative `*_stats` events: a reading keeps the
 * latest of each, and the summary of a window is the difference of two readings.
 */

import type {
  BucketCounts,
  EventSink,
  GrpcStatsEvent,
  HttpStatsEvent,
  KupodEvent,
  Log2Counts,
  ResourcesStatsEvent,
  SidecarStatsEvent,
  SockopsStatsEvent,
  StackStatsEvent,
  SummaryEvent,
  TcpStatsEvent,
} from "../probes/events.ts";
import {
  addBuckets,
  addLog2,
  bucketDelta,
  bucketPercentiles,
  emptyBuckets,
  log2Delta,
  log2Percentiles,
} from "./quantiles.ts";

/** The latest cumulative counts of each probe. */
export interface Stats {
  tcp?: TcpStatsEvent;
  sidecars?: SidecarStatsEvent;
  stack?: StackStatsEvent;
  http?: HttpStatsEvent;
  grpc?: GrpcStatsEvent;
  resources?: ResourcesStatsEvent;
  sockops?: SockopsStatsEvent;
}

/** The counts at one moment (performance.now() milliseconds). */
export interface Reading {
  at: number;
  stats: Stats;
}

/**
 * Stack hooks in the order a packet into the pod passes them: the host veth's egress, the veth
 * transmit (whose peer receives it: netif_rx inside net_dev_start_xmit), then the pod's stack.
 * The device hooks are on both legs: their counts are of both directions.
 */
export const PATH_IN = [
  "tc_egress",
  "net_dev_queue",
  "net_dev_start_xmit",
  "netif_rx",
  "net_dev_xmit",
  "napi_gro_receive",
  "netif_receive_skb",
  "nf_pre_routing",
  "nf_local_in",
  "nf_forward",
  "tcp_recv",
  "deliver",
] as const;
/** Stack hooks in the order a packet out of the pod passes them, up to the host veth's ingress. */
export const PATH_OUT = [
  "tcp_send",
  "nf_local_out",
  "nf_post_routing",
  "net_dev_queue",
  "net_dev_start_xmit",
  "netif_rx",
  "net_dev_xmit",
  "netif_receive_skb",
  "tc_ingress",
] as const;
/** Where followed packets end. */
export const PATH_END = ["consume", "drop"] as const;

/** Hooks in path order: into the pod, then the hooks only the way out has, then the ends. */
function hookRank(hook: string): number {
  const order: readonly string[] = [
    ...PATH_IN,
    ...PATH_OUT.filter((h) => !(PATH_IN as readonly string[]).includes(h)),
    ...PATH_END,
  ];
  const i = order.indexOf(hook);
  return i < 0 ? order.length : i;
}

/** A hop in path order: along the way in, then along the way out, then the rest. */
function hopRank(from: string, to: string): number {
  for (const [offset, leg] of [[0, PATH_IN], [100, PATH_OUT]] as const) {
    const f = (leg as readonly string[]).indexOf(from), t = (leg as readonly string[]).indexOf(to);
    if (f >= 0 && t > f) return offset + t;
  }
  return 200 + hookRank(to);
}

/** Keeps the latest `*_stats` event of each probe; an {@link EventSink}. */
export class SummarySource implements EventSink {
  #latest: Stats = {};
  /**
   * The counts at the start: none, as the probes count from zero, except the resources the
   * kernel accounted since each container started: their first reading.
   */
  readonly started: Reading = { at: performance.now(), stats: {} };

  event(e: KupodEvent): void {
    switch (e.type) {
      case "tcp_stats":
        this.#latest.tcp = e;
        return;
      case "sidecar_stats":
        this.#latest.sidecars = e;
        return;
      case "stack_stats":
        this.#latest.stack = e;
        return;
      case "http_stats":
        this.#latest.http = e;
        return;
      case "grpc_stats":
        this.#latest.grpc = e;
        return;
      case "resources_stats":
        this.#latest.resources = e;
        this.started.stats.resources ??= structuredClone(e);
        return;
      case "sockops_stats":
        this.#latest.sockops = e;
        return;
    }
  }

  flush(): void {}

  /** The counts now, copied: the user-space probes update their series in place. */
  reading(): Reading {
    return { at: performance.now(), stats: structuredClone(this.#latest) };
  }
}

/** What happened between two readings (`from` = SummarySource.started: the whole run). */
export function summarize(
  from: Reading,
  to: Reading,
  window: SummaryEvent["window"],
): SummaryEvent {
  const seconds = Math.max((to.at - from.at) / 1000, 1e-3);
  const a = from.stats, b = to.stats;
  const any = b.tcp ?? b.stack ?? b.http ?? b.grpc ?? b.resources ?? b.sidecars ?? b.sockops;
  const summary: SummaryEvent = {
    ts: new Date().toISOString(),
    type: "summary",
    ...(any?.namespace !== undefined && { namespace: any.namespace }),
    ...(any?.pod !== undefined && { pod: any.pod }),
    window,
    window_seconds: round(seconds, 3),
  };
  if (b.tcp || b.sidecars) summary.socket = socketSummary(a, b, seconds);
  if (b.stack) summary.stack = stackSummary(a.stack, b.stack, seconds);
  if (b.http) summary.http = httpSummary(a.http, b.http, seconds);
  if (b.grpc) summary.grpc = grpcSummary(a.grpc, b.grpc, seconds);
  if (b.resources) summary.resources = resourcesSummary(a.resources, b.resources, seconds);
  if (b.sockops) summary.sockops = sockopsSummary(a.sockops, b.sockops, seconds);
  return summary;
}

function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

const perSecond = (n: number, seconds: number) => round(n / seconds);

type SocketSummary = NonNullable<SummaryEvent["socket"]>;

function socketSummary(a: Stats, b: Stats, seconds: number): SocketSummary {
  const byContainer = new Map<string, SocketSummary["containers"][number]>();
  const rtts = new Map<string, Log2Counts>();
  const before = new Map(
    (a.tcp?.connections ?? []).map((c) => [`${c.container}\0${c.direction}`, c]),
  );
  for (const c of b.tcp?.connections ?? []) {
    const p = before.get(`${c.container}\0${c.direction}`);
    const row = byContainer.get(c.container) ?? {
      container: c.container,
      accepted_per_second: 0,
      connected_per_second: 0,
      accepted_total: 0,
      connected_total: 0,
      closed_total: 0,
      sent_bytes_per_second: 0,
      received_bytes_per_second: 0,
      retransmits: 0,
      resets: 0,
      rtt: { count: 0, p50_seconds: 0, p99_seconds: 0 },
    };
    byContainer.set(c.container, row);
    const opened = perSecond(c.opened - (p?.opened ?? 0), seconds);
    if (c.direction === "inbound") {
      row.accepted_per_second = opened;
      row.accepted_total = c.opened;
    } else {
      row.connected_per_second = opened;
      row.connected_total = c.opened;
    }
    row.closed_total += c.closed;
    row.sent_bytes_per_second += perSecond(c.bytes_sent - (p?.bytes_sent ?? 0), seconds);
    row.received_bytes_per_second += perSecond(
      c.bytes_received - (p?.bytes_received ?? 0),
      seconds,
    );
    row.retransmits += c.retransmits - (p?.retransmits ?? 0);
    row.resets += c.resets - (p?.resets ?? 0);
    const rtt = log2Delta(c.rtt, p?.rtt);
    const both = rtts.get(c.container);
    if (both) addLog2(both, rtt);
    else rtts.set(c.container, { ...rtt, slots: [...rtt.slots] });
  }
  for (const [container, rtt] of rtts) byContainer.get(container)!.rtt = log2Percentiles(rtt);
  const sidecarsBefore = new Map((a.sidecars?.sidecars ?? []).map((s) => [s.container, s]));
  const sidecars = (b.sidecars?.sidecars ?? []).map((s) => {
    const p = sidecarsBefore.get(s.container);
    const process = log2Delta(s.process, p?.process);
    return {
      container: s.container,
      requests_per_second: perSecond(process.count, seconds),
      requests_total: s.process.count,
      process: log2Percentiles(process),
      to_service: log2Percentiles(log2Delta(s.to_service, p?.to_service)),
    };
  });
  return { containers: [...byContainer.values()], sidecars };
}

function stackSummary(
  a: StackStatsEvent | undefined,
  b: StackStatsEvent,
  seconds: number,
): NonNullable<SummaryEvent["stack"]> {
  const hooks = Object.entries(b.hooks)
    .map(([hook, c]) => ({
      hook,
      packets: c.packets - (a?.hooks[hook]?.packets ?? 0),
      packets_total: c.packets,
    }))
    .sort((x, y) => hookRank(x.hook) - hookRank(y.hook) || x.hook.localeCompare(y.hook));
  const hopsBefore = new Map((a?.hops ?? []).map((h) => [`${h.from}>${h.to}`, h]));
  const hops = b.hops
    .map((h) => {
      const p = hopsBefore.get(`${h.from}>${h.to}`);
      const d = log2Delta(
        { count: h.count, sum_seconds: h.sum_seconds, unit_seconds: 1e-9, slots: h.slots },
        p && { count: p.count, sum_seconds: p.sum_seconds, unit_seconds: 1e-9, slots: p.slots },
      );
      return { from: h.from, to: h.to, ...log2Percentiles(d) };
    })
    .filter((h) => h.count > 0)
    .sort((x, y) => hopRank(x.from, x.to) - hopRank(y.from, y.to));
  const drops = Object.entries(b.drops)
    .map(([reason, n]) => ({ reason, packets: n - (a?.drops[reason] ?? 0), packets_total: n }))
    .sort((x, y) => y.packets - x.packets || y.packets_total - x.packets_total);
  const nic = (d: "rx" | "tx", f: "packets" | "bytes") =>
    perSecond(b.nic[d][f] - (a?.nic[d][f] ?? 0), seconds);
  return {
    interface: b.interface,
    nic: {
      rx_packets_per_second: nic("rx", "packets"),
      tx_packets_per_second: nic("tx", "packets"),
      rx_bytes_per_second: nic("rx", "bytes"),
      tx_bytes_per_second: nic("tx", "bytes"),
      rx_packets_total: b.nic.rx.packets,
      tx_packets_total: b.nic.tx.packets,
    },
    hooks,
    hops,
    drops,
    path_traced_seconds: b.path_traced_seconds - (a?.path_traced_seconds ?? 0),
    path_duty_cycle: b.path_duty_cycle,
  };
}

/** Series of one key summed over the rest of their labels (status, error). */
function grouped<S, K extends string>(
  series: S[],
  key: (s: S) => K,
): Map<K, S[]> {
  const groups = new Map<K, S[]>();
  for (const s of series) {
    const k = key(s);
    const group = groups.get(k);
    if (group) group.push(s);
    else groups.set(k, [s]);
  }
  return groups;
}

/** The difference of one grouped histogram between two readings, summed over its series. */
function windowBuckets<S>(
  now: S[],
  before: Map<string, S>,
  id: (s: S) => string,
  pick: (s: S) => BucketCounts,
  keep: (s: S) => boolean = () => true,
): BucketCounts {
  const into = emptyBuckets(now.length ? pick(now[0]).bounds : []);
  for (const s of now) {
    if (!keep(s)) continue;
    const p = before.get(id(s));
    addBuckets(into, bucketDelta(pick(s), p && pick(p)));
  }
  return into;
}

function httpSummary(
  a: HttpStatsEvent | undefined,
  b: HttpStatsEvent,
  seconds: number,
): NonNullable<SummaryEvent["http"]> {
  type S = HttpStatsEvent["series"][number];
  const id = (s: S) => [s.container, s.side, s.method, s.route, s.status, s.error].join("\0");
  const before = new Map((a?.series ?? []).map((s) => [id(s), s]));
  const groups = grouped(b.series, (s) => [s.container, s.side, s.method, s.route].join("\0"));
  const routes = [...groups.values()].map((series) => {
    const { container, side, method, route } = series[0];
    const all = windowBuckets(series, before, id, (s) => s.duration);
    const failed = windowBuckets(
      series,
      before,
      id,
      (s) => s.duration,
      (s) => s.status >= 500 || s.error !== "",
    );
    return {
      spent: all.sum,
      container,
      side,
      method,
      route,
      requests_per_second: perSecond(all.count, seconds),
      requests_total: series.reduce((n, s) => n + s.duration.count, 0),
      errors: failed.count,
      latency: bucketPercentiles(all),
    };
  });
  return { routes: bySpentTime(routes) };
}

/**
 * Rows ordered by the time requests spent in them over the window, the busiest and the slowest
 * first (a slow endpoint stays visible beside a busy fast one); the order key is dropped.
 */
function bySpentTime<R extends { spent: number }>(rows: R[]): Omit<R, "spent">[] {
  return rows.sort((x, y) => y.spent - x.spent).map(({ spent: _, ...row }) => row);
}

function grpcSummary(
  a: GrpcStatsEvent | undefined,
  b: GrpcStatsEvent,
  seconds: number,
): NonNullable<SummaryEvent["grpc"]> {
  type S = GrpcStatsEvent["series"][number];
  const id = (s: S) => [s.container, s.side, s.service, s.method, s.grpc_status].join("\0");
  const before = new Map((a?.series ?? []).map((s) => [id(s), s]));
  const groups = grouped(b.series, (s) => [s.container, s.side, s.service, s.method].join("\0"));
  const methods = [...groups.values()].map((series) => {
    const { container, side, service, method } = series[0];
    const all = windowBuckets(series, before, id, (s) => s.duration);
    // a status the capture could not read (indexed before kupod joined) is not a failure
    const failed = windowBuckets(series, before, id, (s) => s.duration, (s) => s.grpc_status > 0);
    return {
      spent: all.sum,
      container,
      side,
      service,
      method,
      calls_per_second: perSecond(all.count, seconds),
      calls_total: series.reduce((n, s) => n + s.duration.count, 0),
      errors: failed.count,
      latency: bucketPercentiles(all),
    };
  });
  return {
    methods: bySpentTime(methods),
    unknown_method_calls: b.unknown_method_calls - (a?.unknown_method_calls ?? 0),
    unseen_calls: b.unseen_calls - (a?.unseen_calls ?? 0),
  };
}

function resourcesSummary(
  a: ResourcesStatsEvent | undefined,
  b: ResourcesStatsEvent,
  seconds: number,
): NonNullable<SummaryEvent["resources"]> {
  const before = new Map((a?.containers ?? []).map((c) => [c.container, c]));
  const io = (
    c: ResourcesStatsEvent["containers"][number] | undefined,
    f: "read_bytes" | "write_bytes",
  ) => (c?.io ?? []).reduce((n, d) => n + d[f], 0);
  const containers = b.containers.map((c) => {
    // a container first seen in this window has no rate yet: its counts began before kupod
    const p = before.get(c.container) ?? c;
    return {
      container: c.container,
      cpu_cores: round((c.cpu_seconds - (p?.cpu_seconds ?? 0)) / seconds, 3),
      cpu_throttled_periods: c.cfs_throttled_periods - (p?.cfs_throttled_periods ?? 0),
      memory_working_set_bytes: c.memory_working_set_bytes,
      memory_limit_bytes: c.memory_limit_bytes,
      io_read_bytes_per_second: perSecond(io(c, "read_bytes") - io(p, "read_bytes"), seconds),
      io_write_bytes_per_second: perSecond(io(c, "write_bytes") - io(p, "write_bytes"), seconds),
      threads: c.threads,
      runqueue: log2Percentiles(log2Delta(c.runqueue, p?.runqueue)),
      oom_kills: c.oom_kills - (p?.oom_kills ?? 0),
    };
  });
  const ifBefore = new Map((a?.interfaces ?? []).map((i) => [i.interface, i]));
  const interfaces = b.interfaces.map((i) => {
    const p = ifBefore.get(i.interface) ?? i;
    return {
      interface: i.interface,
      rx_bytes_per_second: perSecond(i.rx_bytes - (p?.rx_bytes ?? 0), seconds),
      tx_bytes_per_second: perSecond(i.tx_bytes - (p?.tx_bytes ?? 0), seconds),
      rx_dropped: i.rx_dropped - (p?.rx_dropped ?? 0),
      tx_dropped: i.tx_dropped - (p?.tx_dropped ?? 0),
    };
  });
  return { containers, interfaces };
}

function sockopsSummary(
  a: SockopsStatsEvent | undefined,
  b: SockopsStatsEvent,
  seconds: number,
): NonNullable<SummaryEvent["sockops"]> {
  const total = (e: SockopsStatsEvent | undefined, f: "redirected_bytes" | "redirect_errors") =>
    (e?.containers ?? []).reduce((n, c) => n + c[f], 0);
  return {
    sockets: b.sockets,
    redirected_bytes_per_second: perSecond(
      total(b, "redirected_bytes") - total(a, "redirected_bytes"),
      seconds,
    ),
    redirected_bytes_total: total(b, "redirected_bytes"),
    redirect_errors: total(b, "redirect_errors") - total(a, "redirect_errors"),
  };
}
