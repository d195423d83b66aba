/**
 * Local targets (--veth, --netns, --cgroup, --pid) against a test pod with
 * an nginx sidecar in front of an HTTP service: every accept and connect of
 * known traffic is attributed to the right container and role, with exact
 * counts, and no kubeconfig is involved.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import type { Child } from "./helpers/process.ts";
import { startKupod } from "./helpers/process.ts";

interface Event {
  type: string;
  pid: number;
  comm: string;
  container?: string;
  role?: string;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
}

const N = 12;

async function eventsAfter(kupod: Child): Promise<Event[]> {
  await new Promise((r) => setTimeout(r, 300));
  kupod.kill("SIGTERM");
  const status = await kupod.wait();
  assertEquals(status.code, 0, `exit; stderr: ${kupod.stderr.join(" | ")}`);
  return kupod.stdout.map((l) => JSON.parse(l) as Event);
}

function count(evs: Event[], type: string, container: string): number {
  return evs.filter((e) => e.type === type && e.container === container).length;
}

/** What N fresh requests through the sidecar must produce, upstream keep-alive off. */
function assertSidecarTraffic(pod: TestPod, evs: Event[]): void {
  const proxy = pod.container("proxy"), app = pod.container("app");
  const sidecar = evs.filter((e) => e.role === "sidecar");
  const service = evs.filter((e) => e.role === "service");
  assertEquals(sidecar.length + service.length, evs.length, "every event has a role");
  // nginx: N accepts from the host, N connects to the service
  const accepts = sidecar.filter((e) => e.type === "tcp_accept");
  assertEquals(accepts.length, N, "sidecar accepts");
  for (const e of accepts) {
    assertEquals([e.saddr, e.sport, e.daddr], [pod.podIP, proxy.port, pod.hostIP]);
  }
  const connects = sidecar.filter((e) => e.type === "tcp_connect");
  assertEquals(connects.length, N, "sidecar connects");
  for (const e of connects) assertEquals([e.daddr, e.dport], ["127.0.0.1", app.port]);
  // the service: N accepts from the sidecar, nothing else
  assertEquals(service.length, N, "service events");
  for (const e of service) {
    assertEquals([e.type, e.sport], ["tcp_accept", app.port]);
    assert(app.pids().includes(e.pid), `service pid ${e.pid}`);
  }
  assertEquals(new Set(sidecar.map((e) => e.container)).size, 1, "one sidecar container");
}

async function withPod(fn: (pod: TestPod) => Promise<void>): Promise<void> {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  await fn(pod);
  assertEquals(await waitNoKupodPrograms(), []);
}

Deno.test("targets: --veth alone attributes the pod's traffic to sidecar and service", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod([
      "monitor",
      "kernel",
      "socket",
      "--veth",
      pod.hostVeth,
      "--output",
      "json",
    ]);
    assert(kupod.stderr.some((l) => l.includes(`veth ${pod.hostVeth}`)), kupod.stderr.join("|"));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --netns by name gives the same attribution", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod([
      "monitor",
      "kernel",
      "socket",
      "--netns",
      pod.netns,
      "--output",
      "json",
    ]);
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --cgroup of the pod covers each container's cgroup", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod([
      "monitor",
      "kernel",
      "socket",
      "--cgroup",
      pod.cgroupPodPath,
      "--output",
      "json",
    ]);
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --pid of the service sees only the service", () =>
  withPod(async (pod) => {
    const app = pod.container("app");
    await using kupod = await startKupod([
      "monitor",
      "kernel",
      "socket",
      "--pid",
      String(app.mainPid),
      "--output",
      "json",
    ]);
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    const evs = await eventsAfter(kupod);
    assertEquals(evs.length, N);
    assertEquals(count(evs, "tcp_accept", evs[0].container!), N);
    assert(evs.every((e) => e.role === "service" && e.pid === app.mainPid), "all the service's");
  }));
