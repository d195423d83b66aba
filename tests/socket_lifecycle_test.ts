/**
 * Connection closes and sidecar timing with --verbose, from real requests
 * through a test pod's nginx sidecar: exact counts, byte counts consistent
 * with the requests sent, phase times in order, one timing sample per request.
 */

import { resolveVeth } from "../k8s/local.ts";
import type { SidecarTimingEvent, TcpCloseEvent } from "../probes/events.ts";
import { SocketProbe } from "../probes/socket.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { socketJson, startKupod } from "./helpers/process.ts";
import { exporterUrl, sleep } from "./helpers/stack.ts";
import { eventsAfter } from "./helpers/traffic.ts";

type Close = TcpCloseEvent;
type Timing = SidecarTimingEvent;

const N = 10;
const MANY = 3000;

function tally(values: number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

/** Where the events' times leave the largest gap, and how long it is. */
function largestGap(evs: { ts: string }[]): string {
  const t = evs.map((e) => Date.parse(e.ts)).sort((a, b) => a - b);
  let at = 0;
  for (let i = 1; i < t.length; i++) if (t[i] - t[i - 1] > t[at + 1] - t[at]) at = i - 1;
  return t.length < 2
    ? "no gap"
    : `${t.at(-1)! - t[0]} ms from first to last, largest gap ${t[at + 1] - t[at]} ms after #${at}`;
}

function requestBytes(host: string, port: number): number {
  return new TextEncoder().encode(
    `GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUser-Agent: kupod-test\r\nConnection: close\r\n\r\n`,
  ).length;
}

Deno.test("lifecycle: closes carry bytes, RTT and ordered phases; one sidecar timing per request", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  const proxy = pod.container("proxy");
  await using kupod = await startKupod(socketJson("--veth", pod.hostVeth, "--verbose"));
  const run = await httpGet(pod.podIP, proxy.port, { count: N, keepAlive: false });
  const evs = (await eventsAfter(kupod)) as unknown as (Close | Timing | { type: string })[];
  const closes = evs.filter((e): e is Close => e.type === "tcp_close");
  const inbound = closes.filter((c) => c.role === "sidecar" && c.direction === "inbound");
  const upstream = closes.filter((c) => c.role === "sidecar" && c.direction === "outbound");
  const service = closes.filter((c) => c.role === "service");
  assertEquals([inbound.length, upstream.length, service.length], [N, N, N], "closes");
  const req = requestBytes(pod.podIP, proxy.port);
  const bodies = run.replies.map((r) => r.body.length);
  for (const c of inbound) {
    assertEquals(c.bytes_received, req, "sidecar received the request exactly");
    assert(c.bytes_sent > bodies[0], `sidecar sent ${c.bytes_sent} > body ${bodies[0]}`);
    assertEquals(c.exchanges, 1, "one request per connection");
  }
  for (const c of [...inbound, ...upstream, ...service]) {
    const t = [c.start_ts, c.established_ts, c.closing_ts, c.ts].map(Date.parse);
    assert(t[0] <= t[1] && t[1] <= t[2] && t[2] <= t[3], `phases in order ${JSON.stringify(c)}`);
    assert(c.rtt_seconds > 0 && c.rtt_seconds < 1, `rtt ${c.rtt_seconds}`);
    assertEquals(c.retransmits, 0);
  }
  // what the sidecar sent upstream is what the service received
  const up = upstream.map((c) => c.bytes_sent).sort();
  const svc = service.map((c) => c.bytes_received).sort();
  assertEquals(up, svc, "upstream bytes = service bytes");
  const timings = evs.filter((e): e is Timing => e.type === "sidecar_timing");
  assertEquals(timings.length, N, "one timing per request");
  for (const t of timings) {
    assertEquals([t.sidecar_container, t.service_container], ["nginx", "deno"]);
    assert(t.process_seconds > 0 && t.process_seconds < 1, `process ${t.process_seconds}`);
    assert(
      t.to_service_seconds > 0 && t.to_service_seconds < 1,
      `to service ${t.to_service_seconds}`,
    );
  }
});

Deno.test("lifecycle: with upstream keep-alive every request is still timed once", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: true });
  const proxy = pod.container("proxy");
  await using kupod = await startKupod(socketJson("--veth", pod.hostVeth, "--verbose"));
  const url = await exporterUrl(kupod);
  const fresh = await httpGet(pod.podIP, proxy.port, { count: N, keepAlive: false });
  // enough requests that a service reading a forward before the sidecar's write returns shows
  const kept = await httpGet(pod.podIP, proxy.port, { count: MANY, keepAlive: true });
  const metrics = await (await fetch(`${url}/metrics`)).text();
  const evs = (await eventsAfter(kupod)) as unknown as { type: string; role?: string }[];
  const timings = evs.filter((e) => e.type === "sidecar_timing") as unknown as Timing[];
  const accepts = evs.filter((e) => e.type === "tcp_accept" && e.role === "service").length;
  // a failure says whether requests failed (a reply nginx made itself is never forwarded), the
  // upstream connection changed, the kernel counted what was not printed (a scrape reads its
  // histograms then), or forwards went untimed, and whether in one stretch or throughout
  const statuses = tally([...fresh.replies, ...kept.replies].map((r) => r.status));
  const why = () =>
    `statuses ${JSON.stringify(statuses)}, service accepts ${accepts}, timings ${timings.length}` +
    `, kernel ${/^kupod_sidecar_process_duration_seconds_count\{.*\} (\d+)/m.exec(metrics)?.[1]}` +
    `, ${largestGap(timings)}` +
    `\nkupod: ${kupod.stderr.filter((l) => !l.startsWith("[INFO]")).join(" | ").slice(-600)}` +
    `\nnginx: ${proxy.output().slice(-400)}`;
  assertEquals(statuses, { 200: N + MANY }, `statuses; ${why()}`);
  assertEquals(timings.length, N + MANY, `timings; ${why()}`);
  // one upstream connection carried all requests: the service accepted once
  assertEquals(accepts, 1, `service accepts; ${why()}`);
});

Deno.test("lifecycle: a keep-alive connection's close counts its exchanges and exact bytes", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: true });
  const proxy = pod.container("proxy");
  await using kupod = await startKupod(socketJson("--veth", pod.hostVeth, "--verbose"));
  const run = await httpGet(pod.podIP, proxy.port, { count: N, keepAlive: true });
  const evs = (await eventsAfter(kupod)) as unknown as (Close | { type: string })[];
  const inbound = evs.filter((e): e is Close =>
    e.type === "tcp_close" && (e as Close).role === "sidecar" &&
    (e as Close).direction === "inbound"
  );
  assertEquals(inbound.length, 1, "the client's one connection closed");
  assertEquals(inbound[0].exchanges, N, "one exchange per request");
  assertEquals(inbound[0].bytes_received, run.bytesSent, "what the client sent");
  assertEquals(inbound[0].bytes_sent, run.bytesReceived, "what the client received");
});

/** A test pod with a socket probe on it, its writes taken where `sendHook` says. */
async function probedPod(upstreamKeepAlive: boolean, sendHook: "start" | "returned") {
  const pod = await createTestPod({ upstreamKeepAlive });
  try {
    const probe = SocketProbe.start(await resolveVeth(pod.hostVeth), {
      event() {},
      flush() {},
    }, { openEvents: false, sendHook });
    return {
      pod,
      probe,
      async [Symbol.asyncDispose]() {
        await probe[Symbol.asyncDispose]();
        await pod[Symbol.asyncDispose]();
      },
    };
  } catch (e) {
    await pod[Symbol.asyncDispose]();
    throw e;
  }
}

Deno.test("lifecycle: writes taken where they return, as on kernels before 6.16, count the same", async () => {
  for (const sendHook of ["start", "returned"] as const) {
    await using t = await probedPod(false, sendHook);
    const { pod, probe } = t;
    const proxy = pod.container("proxy");
    const run = await httpGet(pod.podIP, proxy.port, { count: N, keepAlive: true });
    // the kernel's counters take a connection's bytes at its close: wait for nginx's to close
    const inbound = () =>
      probe.tcpStats().connections.find((c) =>
        c.container === "nginx" && c.direction === "inbound"
      );
    for (let i = 0; i < 50 && inbound()?.closed !== 1; i++) await sleep(100);
    const c = inbound();
    assertEquals([c?.opened, c?.closed], [1, 1], `${sendHook}: the client's connection`);
    assertEquals(c?.bytes_received, run.bytesSent, `${sendHook}: what the client sent`);
    assertEquals(c?.bytes_sent, run.bytesReceived, `${sendHook}: what the client received`);
    // a fresh upstream connection per request: each one a first write, each request timed once
    const timed = probe.sidecarStats().sidecars.map((s) => [s.container, s.process.count]);
    assertEquals(timed, [["nginx", N]], `${sendHook}: sidecar timings`);
    const service = probe.tcpStats().connections.filter((c) => c.container === "deno");
    assertEquals(service.map((c) => [c.direction, c.opened]), [["inbound", N]], sendHook);
  }
});

Deno.test("lifecycle: writes taken where they return time every forward of a busy upstream connection once", async () => {
  for (const sendHook of ["start", "returned"] as const) {
    await using t = await probedPod(true, sendHook);
    const { pod, probe } = t;
    const proxy = pod.container("proxy");
    // over loopback the service often reads a forward before the sidecar's write returns
    const run = await httpGet(pod.podIP, proxy.port, { count: MANY, keepAlive: true });
    assertEquals(tally(run.replies.map((r) => r.status)), { 200: MANY }, sendHook);
    const timed = probe.sidecarStats().sidecars.map((s) => [s.container, s.process.count]);
    assertEquals(timed, [["nginx", MANY]], `${sendHook}: sidecar timings`);
  }
});
