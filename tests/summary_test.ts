/**
 * Summaries: percentiles and window differences from known histograms and counts, then the real
 * CLI on a test pod with known traffic: the periodic and the closing summary (JSON and text) show
 * exactly what was sent, the same numbers as /metrics; `--quiet` and `--interval 0` print none.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { startKupod } from "./helpers/process.ts";
import {
  exporterUrl,
  INTO_POD,
  OUT_OF_POD,
  ping,
  sleep,
  stackCounts,
  stopAndWait,
} from "./helpers/stack.ts";
import { bucketQuantile, log2Quantile } from "../exporters/quantiles.ts";
import { type Reading, summarize } from "../exporters/summary.ts";
import { summaryLines } from "../exporters/summary_text.ts";
import type { Log2Counts, SummaryEvent, TcpCounts } from "../probes/events.ts";

const NS = 1e-9;

function log2(values: number[], unit = NS): Log2Counts {
  const slots = new Array(32).fill(0);
  for (const v of values) slots[Math.floor(Math.log2(Math.max(v, 1)))]++;
  return {
    count: values.length,
    sum_seconds: values.reduce((a, b) => a + b, 0) * unit,
    unit_seconds: unit,
    slots,
  };
}

Deno.test("summary: percentiles interpolate inside log2 slots and fixed buckets", () => {
  // 100 values in [1024, 2048) ns: the median is half way through the slot
  assertEquals(log2Quantile(log2(new Array(100).fill(1500)), 0.5), 1536 * NS);
  // 99 fast (slot [8,16)) and 1 slow (slot [4096, 8192)): p99 is the top of the fast slot
  const mixed = log2([...new Array(99).fill(10), 5000]);
  assertEquals(log2Quantile(mixed, 0.99), 16 * NS);
  assertEquals(log2Quantile(mixed, 1), 8192 * NS);
  assertEquals(log2Quantile(log2([]), 0.5), 0);
  const b = { bounds: [0.1, 0.2, 0.4], counts: [0, 10, 0, 0], sum: 1.5, count: 10 };
  assertEquals(bucketQuantile(b, 0.5), 0.15000000000000002);
  assertEquals(
    bucketQuantile({ ...b, counts: [0, 0, 0, 10] }, 0.5),
    0.4,
    "+Inf answers the last bound",
  );
});

function tcp(
  container: string,
  direction: "inbound" | "outbound",
  opened: number,
  rtts: number[],
): TcpCounts {
  return {
    container,
    direction,
    opened,
    closed: opened,
    bytes_sent: opened * 100,
    bytes_received: opened * 10,
    retransmits: 0,
    long_connections: 0,
    resets: 0,
    rtt: log2(rtts, 1e-6),
    duration: log2([], 1e-6),
  };
}

function reading(at: number, opened: number, rtts: number[], packets: number): Reading {
  return {
    at,
    stats: {
      tcp: {
        ts: "2026-01-01T00:00:00Z",
        type: "tcp_stats",
        namespace: "shop",
        pod: "web-0",
        connections: [tcp("proxy", "inbound", opened, rtts), tcp("proxy", "outbound", 1, [])],
      },
      stack: {
        ts: "2026-01-01T00:00:00Z",
        type: "stack_stats",
        interface: "veth0",
        nic: { rx: { packets, bytes: packets * 60 }, tx: { packets, bytes: packets * 60 } },
        hooks: { tc_egress: { packets, bytes: 0 }, nf_local_in: { packets, bytes: 0 } },
        hops: [],
        drops: { no_socket: packets / 10 },
        tracked: 0,
        ended: 0,
        vanished: 0,
        sampled: 0,
        path_duty_cycle: 0.1,
        path_traced_seconds: at / 1000 * 0.1,
      },
    },
  };
}

Deno.test("summary: a window is the difference of two readings, the run counts from the start", () => {
  const start: Reading = { at: 0, stats: {} };
  const first = reading(2000, 10, new Array(10).fill(100), 100);
  const second = reading(4000, 30, [...new Array(10).fill(100), ...new Array(20).fill(3000)], 300);
  const window = summarize(first, second, "interval");
  assertEquals(window.window_seconds, 2);
  assertEquals(window.namespace, "shop");
  const proxy = window.socket!.containers[0];
  assertEquals(proxy.container, "proxy");
  assertEquals([proxy.accepted_per_second, proxy.accepted_total], [10, 30], "20 accepts in 2 s");
  assertEquals([proxy.connected_per_second, proxy.connected_total], [0, 1]);
  assertEquals(proxy.sent_bytes_per_second, 20 * 100 / 2);
  // only the window's 20 slow RTTs ([2048, 4096) µs): the 10 fast ones are before it
  assertEquals(proxy.rtt.count, 20);
  assertEquals(proxy.rtt.p50_seconds, 3072e-6);
  const stack = window.stack!;
  assertEquals(stack.nic.rx_packets_per_second, 100);
  assertEquals(stack.nic.rx_packets_total, 300);
  assertEquals(stack.hooks.map((h) => [h.hook, h.packets, h.packets_total]), [
    ["tc_egress", 200, 300],
    ["nf_local_in", 200, 300],
  ], "in path order");
  assertEquals(stack.drops, [{ reason: "no_socket", packets: 20, packets_total: 30 }]);
  assertEquals(stack.path_traced_seconds.toFixed(3), "0.200", "a tenth of the 2 s window");

  const run = summarize(start, second, "run");
  assertEquals(run.socket!.containers[0].accepted_per_second, 7.5, "30 accepts in 4 s");
  assertEquals(run.socket!.containers[0].rtt.count, 30);
  const text = summaryLines(run).join("\n");
  assert(text.startsWith("── shop/web-0: whole run, 4.0 s"), text);
  assert(/into pod +tc_egress 300 › nf_local_in 300/.test(text), text);
  assert(/drops +no_socket 30/.test(text), text);
  assert(/path +traced 0\.4 s of this summary \(--stack-duty-cycle 0\.1\)/.test(text), text);
  assert(/proxy +7\.5 +0\.3 +775B\/s/.test(text), text);
});

const N = 7;

Deno.test("summary: the CLI prints summaries of the pod's real traffic, exact, and one for the whole run", async () => {
  await using pod = await createTestPod();
  const kupod = await startKupod([
    "monitor",
    "kernel",
    "all",
    "--veth",
    pod.hostVeth,
    "--stack-protocol",
    "icmp",
    "--stack-address",
    pod.podIP,
    "--output",
    "json",
    "--interval",
    "1",
  ]);
  try {
    const url = await exporterUrl(kupod);
    await ping(pod.podIP, N);
    const http = await httpGet(pod.podIP, 8080, { count: N });
    assertEquals(http.replies.map((r) => r.status), new Array(N).fill(200));
    await sleep(2500); // the counts read, and at least one summary after the traffic
    const metrics = await stackCounts(url);
    await stopAndWait(kupod);

    const summaries = kupod.stdout.map((l) => JSON.parse(l)).filter((e) =>
      e.type === "summary"
    ) as SummaryEvent[];
    const intervals = summaries.filter((s) => s.window === "interval");
    assert(intervals.length >= 2, `one summary a second: ${intervals.length}`);
    assertEquals(summaries.at(-1)!.window, "run", "the last one covers the run");
    const run = summaries.at(-1)!;

    // N echo requests in and N replies out, selected by protocol and address: exact at each hook
    const total = (s: SummaryEvent, hook: string) =>
      s.stack!.hooks.find((h) => h.hook === hook)?.packets_total ?? 0;
    assertEquals(run.stack!.nic.tx_packets_total, N, "requests to the pod");
    assertEquals(run.stack!.nic.rx_packets_total, N, "replies from the pod");
    for (const hook of ["tc_egress", "nf_pre_routing", "nf_local_in"]) {
      assertEquals(total(run, hook), N, hook);
    }
    for (const hook of ["nf_local_out", "nf_post_routing", "tc_ingress"]) {
      assertEquals(total(run, hook), N, hook);
    }
    const shared = [...INTO_POD].filter((h) => (OUT_OF_POD as readonly string[]).includes(h));
    for (const hook of shared) assertEquals(total(run, hook), 2 * N, `${hook}: both ways`);
    // the window differences add up to the totals the last interval saw
    const windows = intervals.reduce(
      (n, s) => n + (s.stack!.hooks.find((h) => h.hook === "tc_egress")?.packets ?? 0),
      0,
    );
    assertEquals(windows, N, "tc_egress over every interval");
    // the numbers /metrics shows
    assertEquals(total(run, "tc_egress"), metrics.hooks.tc_egress);
    assertEquals(run.stack!.nic.rx_packets_total, metrics.nic.rx);

    // the N HTTP requests through the nginx sidecar: N accepted by it, N requests timed in it
    // (a pod found by its veth names its containers by their processes: nginx, deno)
    const proxy = run.socket!.containers.find((c) => c.container === "nginx");
    assertEquals(proxy?.accepted_total, N, "accepts of the sidecar");
    const sidecar = run.socket!.sidecars.find((s) => s.container === "nginx");
    assertEquals(sidecar?.requests_total, N, "requests through the sidecar");
    assert(
      sidecar!.process.p50_seconds > 0 &&
        sidecar!.process.p99_seconds >= sidecar!.process.p50_seconds,
    );
    assert(run.resources!.containers.some((c) => c.container === "deno"), "the resources table");
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
});

Deno.test("summary: text blocks on stdout; none with --quiet or --interval 0", async () => {
  await using pod = await createTestPod();
  const run = async (extra: string[]) => {
    const kupod = await startKupod([
      "monitor",
      "kernel",
      "stack",
      "--veth",
      pod.hostVeth,
      "--stack-protocol",
      "icmp",
      "--stack-address",
      pod.podIP,
      ...extra,
    ]);
    try {
      await ping(pod.podIP, N);
      await sleep(1500);
      await stopAndWait(kupod);
      return kupod.stdout;
    } finally {
      await kupod[Symbol.asyncDispose]();
    }
  };
  const text = (await run(["--interval", "1"])).join("\n");
  const blocks = text.split(/^── /m).slice(1);
  assert(blocks.length >= 2, text);
  const last = blocks.at(-1)!;
  assert(/: whole run, /.test(last), last);
  assert(
    new RegExp(`into pod +tc_egress ${N} › net_dev_queue ${2 * N} .* nf_local_in ${N}`).test(last),
    last,
  );
  assert(new RegExp(`out of pod +nf_local_out ${N} › .* tc_ingress ${N}`).test(last), last);
  assert(new RegExp(`from pod \\d+(\\.\\d)? pkt/s`).test(last), last);
  const summaryLine = (l: string) => l.startsWith("── ") || / › /.test(l);
  assertEquals((await run(["--interval", "1", "--quiet"])).filter(summaryLine), [], "--quiet");
  assertEquals((await run(["--interval", "0"])).filter(summaryLine), [], "--interval 0");
});

Deno.test("summary: HTTP routes and gRPC methods summed over statuses, errors counted", () => {
  const bounds = [0.005, 0.01, 0.025];
  const h = (counts: number[]) => ({
    bounds,
    counts,
    sum: 0,
    count: counts.reduce((a, b) => a + b, 0),
  });
  const size = h([0, 0, 0, 0]);
  const route = (status: number, error: string, counts: number[]) => ({
    container: "app",
    side: "server" as const,
    method: "GET",
    route: "/users/*",
    status,
    error,
    duration: h(counts),
    request_bytes: size,
    response_bytes: size,
  });
  const at = (ms: number, ok: number[], failed: number[], closed: number[]): Reading => ({
    at: ms,
    stats: {
      http: {
        ts: "2026-01-01T00:00:00Z",
        type: "http_stats",
        series: [route(200, "", ok), route(503, "", failed), route(0, "no_response", closed)],
      },
      grpc: {
        ts: "2026-01-01T00:00:00Z",
        type: "grpc_stats",
        unknown_method_calls: 2,
        unseen_calls: ms / 250,
        series: [0, 14].map((grpc_status) => ({
          container: "app",
          side: "client" as const,
          service: "shop.Cart",
          method: "Add",
          grpc_status,
          duration: h(grpc_status ? [0, 0, 3, 0] : [5, 0, 0, 0]),
          request_message_bytes: size,
          response_message_bytes: size,
        })),
      },
    },
  });
  const s = summarize(
    at(0, [10, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]),
    at(1000, [10, 80, 0, 0], [0, 0, 8, 0], [0, 0, 0, 2]),
    "interval",
  );
  const r = s.http!.routes[0];
  assertEquals(s.http!.routes.length, 1, "one row for the route, whatever the status");
  assertEquals([r.requests_per_second, r.requests_total, r.errors], [90, 100, 10]);
  // 80 of 90 in (5, 10] ms: the median is inside that bucket
  assertEquals(Math.round(r.latency.p50_seconds * 1e6), 7813);
  const g = s.grpc!.methods[0];
  assertEquals([g.calls_total, g.errors, g.calls_per_second], [8, 0, 0], "no calls in the window");
  assertEquals(s.grpc!.unknown_method_calls, 0);
  assertEquals(s.grpc!.unseen_calls, 4, "calls counted without being framed, in the window");
  const text = summaryLines(s).join("\n");
  assert(/http +container +side +request/.test(text), text);
  assert(/app +server +GET \/users\/\* +90 +10 +7\.81ms/.test(text), text);
  assert(/grpc +no calls/.test(text), text);
});

Deno.test("summary: gRPC errors are the calls with a status other than OK, not those whose status is unread", () => {
  const h = (count: number) => ({ bounds: [0.01], counts: [count, 0], sum: 0, count });
  const at = (ms: number, calls: Record<number, number>): Reading => ({
    at: ms,
    stats: {
      grpc: {
        ts: "2026-01-01T00:00:00Z",
        type: "grpc_stats",
        unknown_method_calls: 0,
        unseen_calls: 0,
        series: Object.entries(calls).map(([status, n]) => ({
          container: "app",
          side: "server" as const,
          service: "shop.Cart",
          method: "Add",
          grpc_status: Number(status),
          duration: h(n),
          request_message_bytes: h(0),
          response_message_bytes: h(0),
        })),
      },
    },
  });
  // OK, UNAVAILABLE, and a status indexed before kupod joined (-1)
  const s = summarize(
    at(0, { 0: 1, 14: 1, [-1]: 1 }),
    at(1000, { 0: 6, 14: 4, [-1]: 5 }),
    "interval",
  );
  const g = s.grpc!.methods[0];
  assertEquals([g.calls_total, g.calls_per_second, g.errors], [15, 12, 3]);
});
