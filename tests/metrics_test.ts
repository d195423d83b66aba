/**
 * KupodMetrics: known events in, exact exposition values out; bounded labels; and the output
 * passes `promtool check metrics` (Debian's prometheus package).
 */

import { KupodMetrics } from "../exporters/metrics.ts";
import { VERSION } from "../base/version.ts";
import type {
  KupodEvent,
  SidecarTimingEvent,
  TcpCloseEvent,
  TcpCounts,
  TcpEvent,
  TcpRetransmitEvent,
  TcpStatsEvent,
} from "../probes/events.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { parseExposition, promtoolCheck, seriesKey } from "./helpers/prom.ts";
import { log2Counts, NS, tcpCounts, tcpStats as statsOf, US } from "./helpers/tcp_stats.ts";

type Who = { namespace?: string; pod?: string; container?: string };
const POD = { namespace: "shop", pod: "web-0", container: "app" };
const TS = "2025-01-01T00:00:00.000Z";

let port = 40000;
function endpoints(pid = 100) {
  return {
    ts: TS,
    pid,
    comm: "server",
    family: "ipv4" as const,
    saddr: "10.1.0.2",
    sport: 8080,
    daddr: "10.1.0.3",
    dport: port++,
    conn_id: `ffff${port.toString(16)}`,
  };
}

function open(
  type: "tcp_accept" | "tcp_connect",
  who: Who = POD,
  pid?: number,
): TcpEvent {
  return { ...endpoints(pid), type, ...who };
}

function close(fields: Partial<TcpCloseEvent>, who: Who = POD): TcpCloseEvent {
  return {
    ...endpoints(),
    ...who,
    type: "tcp_close",
    direction: "inbound",
    start_ts: TS,
    established_ts: TS,
    closing_ts: TS,
    duration_seconds: 0,
    bytes_sent: 0,
    bytes_received: 0,
    rtt_seconds: 0,
    retransmits: 0,
    exchanges: 0,
    ...fields,
  };
}

function sidecar(process_seconds: number, to_service_seconds: number): SidecarTimingEvent {
  return {
    ts: TS,
    type: "sidecar_timing",
    namespace: "shop",
    pod: "web-0",
    container: "app",
    pid: 7,
    sidecar_container: "proxy",
    service_container: "app",
    process_seconds,
    to_service_seconds,
  };
}

function retransmit(): TcpRetransmitEvent {
  return { ...endpoints(), ...POD, type: "tcp_retransmit", state: "ESTABLISHED" };
}

const counts = tcpCounts;

function tcpStats(connections: TcpCounts[], who: Who = POD): TcpStatsEvent {
  return statsOf(connections, who);
}

async function exposition(metrics: KupodMetrics): Promise<Map<string, number>> {
  return parseExposition(await metrics.text());
}

Deno.test("connections are counted by direction, per namespace, pod and container", async () => {
  const metrics = new KupodMetrics();
  metrics.event(tcpStats([
    counts({ direction: "inbound", opened: 3 }),
    counts({ direction: "outbound", opened: 2 }),
    counts({ container: "proxy", direction: "outbound", opened: 1 }),
    counts({ container: "", direction: "inbound", opened: 1 }), // in the pod's netns only
  ]));
  // single connections were counted by the kernel already
  metrics.event(open("tcp_accept"));
  metrics.event(open("tcp_connect"));
  const s = await exposition(metrics);
  const name = "kupod_tcp_connections_total";
  assertEquals(s.get(seriesKey(name, { ...POD, direction: "inbound" })), 3);
  assertEquals(s.get(seriesKey(name, { ...POD, direction: "outbound" })), 2);
  assertEquals(s.get(seriesKey(name, { ...POD, container: "proxy", direction: "outbound" })), 1);
  assertEquals(s.get(seriesKey(name, { ...POD, container: "", direction: "inbound" })), 1);
  assertEquals([...s.keys()].filter((k) => k.startsWith(`${name}{`)).length, 4);
});

Deno.test("tcp_stats are running totals: the last report is shown, not added up", async () => {
  const metrics = new KupodMetrics();
  metrics.event(tcpStats([counts({ opened: 5, closed: 4, bytes_sent: 400 })]));
  metrics.event(tcpStats([counts({ opened: 7, closed: 6, bytes_sent: 600 })]));
  const s = await exposition(metrics);
  assertEquals(
    s.get(seriesKey("kupod_tcp_connections_total", { ...POD, direction: "inbound" })),
    7,
  );
  assertEquals(s.get(seriesKey("kupod_tcp_sent_bytes_total", POD)), 600);
});

Deno.test("closed connections: bytes, retransmits, long connections, rtt and duration histograms", async () => {
  const metrics = new KupodMetrics();
  metrics.event(tcpStats([
    counts({
      direction: "inbound",
      closed: 1,
      bytes_sent: 100,
      bytes_received: 2000,
      retransmits: 1,
      long_connections: 1,
      rtt: log2Counts([200], US),
      duration: log2Counts([3000], US),
    }),
    counts({
      direction: "outbound",
      closed: 1,
      bytes_sent: 50,
      bytes_received: 25,
      retransmits: 2,
      rtt: log2Counts([20_000], US),
      duration: log2Counts([2_000_000], US),
    }),
  ]));
  metrics.event(close({ bytes_sent: 1_000_000 })); // per-connection events add nothing
  metrics.event(retransmit());
  const s = await exposition(metrics);

  // one series per container: inbound and outbound add up
  assertEquals(s.get(seriesKey("kupod_tcp_sent_bytes_total", POD)), 150);
  assertEquals(s.get(seriesKey("kupod_tcp_received_bytes_total", POD)), 2025);
  assertEquals(s.get(seriesKey("kupod_tcp_retransmits_total", POD)), 3);
  assertEquals(s.get(seriesKey("kupod_long_connections_total", POD)), 1);

  const le = (k: number) => String(2 ** k * US);
  const bucket = (name: string, l: string) => s.get(seriesKey(`${name}_bucket`, { ...POD, le: l }));
  const rtt = "kupod_tcp_rtt_seconds";
  assertEquals(s.get(seriesKey(`${rtt}_count`, POD)), 2);
  assertEquals(s.get(seriesKey(`${rtt}_sum`, POD)), (200 + 20_000) * US);
  // 200 µs is in [2^7, 2^8) µs, 20 ms in [2^14, 2^15)
  assertEquals([bucket(rtt, le(7)), bucket(rtt, le(8)), bucket(rtt, le(14))], [0, 1, 1]);
  assertEquals([bucket(rtt, le(15)), bucket(rtt, le(20)), bucket(rtt, "+Inf")], [2, 2, 2]);
  assertEquals(bucket(rtt, le(2)), undefined, "rtt buckets start at 8 µs");
  assertEquals(bucket(rtt, le(21)), undefined, "rtt buckets end at ~1 s");

  const dur = "kupod_tcp_connection_duration_seconds";
  assertEquals(s.get(seriesKey(`${dur}_count`, POD)), 2);
  assertEquals(s.get(seriesKey(`${dur}_sum`, POD)), (3000 + 2_000_000) * US);
  // 3 ms is in [2^11, 2^12) µs, 2 s in [2^20, 2^21)
  assertEquals([bucket(dur, le(11)), bucket(dur, le(12)), bucket(dur, le(21))], [0, 1, 2]);
  assertEquals(bucket(dur, le(32)), 2, "duration buckets reach ~72 min");
});

Deno.test("sidecar timings come from the kernel's histograms, labelled with the sidecar container", async () => {
  const metrics = new KupodMetrics();
  metrics.event({
    ts: "2026-11-27T15:00:00.000000Z",
    type: "sidecar_stats",
    namespace: "shop",
    pod: "web-0",
    sidecars: [{
      container: "proxy",
      process: log2Counts([30_000, 4_000_000], NS),
      to_service: log2Counts([400_000, 7_000_000_000], NS),
    }],
  });
  // per-request events (--verbose) are not counted again
  metrics.event(sidecar(0.00003, 0.0004));
  const s = await exposition(metrics);
  const labels = { namespace: "shop", pod: "web-0", container: "proxy" };
  const proc = "kupod_sidecar_process_duration_seconds";
  const toService = "kupod_sidecar_to_service_duration_seconds";
  assertEquals(s.get(seriesKey(`${proc}_count`, labels)), 2);
  assertEquals(s.get(seriesKey(`${proc}_sum`, labels)), (30_000 + 4_000_000) * NS);
  assertEquals(s.get(seriesKey(`${toService}_count`, labels)), 2);
  assertEquals(s.get(seriesKey(`${toService}_sum`, labels)), (400_000 + 7_000_000_000) * NS);
  const le = (k: number) => String(2 ** k / 1e9);
  const bucket = (name: string, l: string) =>
    s.get(seriesKey(`${name}_bucket`, { ...labels, le: l }));
  // 30 µs is in [2^14, 2^15) ns, 4 ms in [2^21, 2^22)
  assertEquals([bucket(proc, le(14)), bucket(proc, le(15)), bucket(proc, le(22))], [0, 1, 2]);
  // 7 s is beyond the last bound (2^30 ns): only +Inf has it
  assertEquals([bucket(toService, le(30)), bucket(toService, "+Inf")], [1, 2]);
  assert(
    ![...s.keys()].some((k) => k.includes(`container="app"`) && k.startsWith("kupod_sidecar")),
    "sidecar histograms are labelled with the sidecar, not the service",
  );
  const check = await promtoolCheck(await metrics.text());
  assert(check.ok, check.output);
});

Deno.test("self metrics: probe stats set from cumulative counts, build info", async () => {
  const metrics = new KupodMetrics();
  metrics.setProbeStats("socket", { events: 10, lost: 2n });
  metrics.setProbeStats("socket", { events: 15, lost: 2n });
  metrics.setProbeStats("stack", { events: 0, lost: 0n });
  let s = await exposition(metrics);
  assertEquals(s.get(seriesKey("kupod_events_total", { probe: "socket" })), 15);
  assertEquals(s.get(seriesKey("kupod_events_lost_total", { probe: "socket" })), 2);
  assertEquals(s.get(seriesKey("kupod_events_total", { probe: "stack" })), 0);
  assertEquals(
    s.get(seriesKey("kupod_build_info", { version: VERSION, deno: Deno.version.deno })),
    1,
  );
  metrics.setProbeStats("socket", { events: 40, lost: 5n });
  s = await exposition(metrics);
  assertEquals(s.get(seriesKey("kupod_events_total", { probe: "socket" })), 40);
  assertEquals(s.get(seriesKey("kupod_events_lost_total", { probe: "socket" })), 5);
});

Deno.test("labels stay bounded: many pids, ports and peers make one series", async () => {
  const metrics = new KupodMetrics();
  const events: KupodEvent[] = [];
  for (let i = 0; i < 2000; i++) {
    events.push(open(i % 2 ? "tcp_accept" : "tcp_connect", POD, 1000 + i));
    events.push(close({ bytes_sent: 1, rtt_seconds: 0.001, duration_seconds: 0.01 }));
  }
  events.push(tcpStats([
    counts({ direction: "inbound", opened: 1000, closed: 1000, bytes_sent: 1000 }),
    counts({ direction: "outbound", opened: 1000, closed: 1000, bytes_sent: 1000 }),
  ]));
  for (const e of events) metrics.event(e);
  const text = await metrics.text();
  const s = parseExposition(text);
  const allowed = new Set(["namespace", "pod", "container", "direction", "probe", "le"]);
  allowed.add("version").add("deno");
  for (const key of s.keys()) {
    for (const [, label] of key.matchAll(/([a-z_]+)="/g)) {
      assert(allowed.has(label), `unexpected label ${label} in ${key}`);
    }
  }
  const count = (prefix: string) => [...s.keys()].filter((k) => k.startsWith(prefix)).length;
  assertEquals(count("kupod_tcp_connections_total{"), 2);
  assertEquals(count("kupod_tcp_sent_bytes_total{"), 1);
  assertEquals(count("kupod_tcp_rtt_seconds_count{"), 1);
  assertEquals(count("kupod_tcp_rtt_seconds_bucket{"), 20 - 3 + 1 + 1);
  assertEquals(s.get(seriesKey("kupod_tcp_sent_bytes_total", POD)), 2000);
  assert(!/\b(pid|port|sport|dport|saddr|daddr|conn_id)="/.test(text), "no per-connection label");
});

Deno.test("every metric has HELP and TYPE, and promtool check metrics passes", async () => {
  const metrics = new KupodMetrics();
  // label values with characters the format must escape
  const weird = { namespace: 'we"ird', pod: "back\\slash" };
  metrics.event(tcpStats([
    counts({ container: "x", opened: 1, closed: 1, bytes_sent: 5, long_connections: 1 }),
    counts({ container: "", direction: "outbound", opened: 1 }),
  ], weird));
  metrics.event({
    ts: TS,
    type: "sidecar_stats",
    ...weird,
    sidecars: [{
      container: "proxy",
      process: log2Counts([100_000], NS),
      to_service: log2Counts([1_000_000], NS),
    }],
  });
  metrics.setProbeStats("socket", { events: 4, lost: 0n });
  const text = await metrics.text();
  const names = [
    "kupod_tcp_connections_total",
    "kupod_tcp_sent_bytes_total",
    "kupod_tcp_received_bytes_total",
    "kupod_tcp_retransmits_total",
    "kupod_tcp_rtt_seconds",
    "kupod_tcp_connection_duration_seconds",
    "kupod_sidecar_process_duration_seconds",
    "kupod_sidecar_to_service_duration_seconds",
    "kupod_long_connections_total",
    "kupod_tcp_resets_total",
    "kupod_events_total",
    "kupod_events_lost_total",
    "kupod_build_info",
  ];
  for (const name of names) {
    assert(new RegExp(`^# HELP ${name} \\S`, "m").test(text), `HELP for ${name}`);
    assert(new RegExp(`^# TYPE ${name} (counter|histogram|gauge)$`, "m").test(text), name);
  }
  const s = parseExposition(text);
  assertEquals(
    s.get(seriesKey("kupod_tcp_connections_total", {
      namespace: 'we"ird',
      pod: "back\\slash",
      container: "x",
      direction: "inbound",
    })),
    1,
  );
  const check = await promtoolCheck(text);
  assert(check.ok, `promtool check metrics failed:\n${check.output}\n--- exposition:\n${text}`);
  assertEquals(check.output, "", "promtool has no lint remarks");
});
