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
import { socketJson, startKupod } from "./helpers/process.ts";
import { assertSidecarTraffic, count, eventsAfter, N } from "./helpers/traffic.ts";

async function withPod(fn: (pod: TestPod) => Promise<void>): Promise<void> {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  await fn(pod);
  assertEquals(await waitNoKupodPrograms(), []);
}

Deno.test("targets: --veth alone attributes the pod's traffic to sidecar and service", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(socketJson("--veth", pod.hostVeth));
    assert(kupod.stderr.some((l) => l.includes(`veth ${pod.hostVeth}`)), kupod.stderr.join("|"));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --netns by name gives the same attribution", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(socketJson("--netns", pod.netns));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --cgroup of the pod covers each container's cgroup", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(socketJson("--cgroup", pod.cgroupPodPath));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    assertSidecarTraffic(pod, await eventsAfter(kupod));
  }));

Deno.test("targets: --pid of the service sees only the service", () =>
  withPod(async (pod) => {
    const app = pod.container("app");
    await using kupod = await startKupod(socketJson("--pid", String(app.mainPid)));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    const evs = await eventsAfter(kupod);
    assertEquals(evs.length, N);
    assertEquals(count(evs, "tcp_accept", evs[0].container!), N);
    assert(evs.every((e) => e.role === "service" && e.pid === app.mainPid), "all the service's");
  }));
