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
import { Child, connectTimes, DENO, ROOT, socketJson, startKupod } from "./helpers/process.ts";
import { assertSidecarTraffic, count, eventsAfter, N } from "./helpers/traffic.ts";
import { netnsTargetRefresher, resolveVeth } from "../k8s/local.ts";
import type { Target } from "../k8s/target.ts";

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

Deno.test("targets: --veth admits by netns even when the pod shares the host's cgroup", async () => {
  // a pod without container cgroups: its server sits in this test's own cgroup
  const tag = Deno.pid % 100000;
  const ns = `kpv${tag}`, veth = `vethkpv${tag}`;
  const run = (args: string[]) => new Deno.Command("ip", { args, stderr: "null" }).output();
  let server: Child | undefined;
  try {
    await run(["netns", "add", ns]);
    await run(["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    await run(["addr", "add", "10.214.250.1/30", "dev", veth]);
    await run(["link", "set", veth, "up"]);
    await run(["-n", ns, "addr", "add", "10.214.250.2/30", "dev", "eth0"]);
    await run(["-n", ns, "link", "set", "eth0", "up"]);
    server = new Child("ip", [
      "netns",
      "exec",
      ns,
      DENO,
      "run",
      "--allow-net",
      `${ROOT}tests/fixtures/tcp_server.ts`,
      "10.214.250.2",
    ]);
    const port = Number((await server.waitForLine(/^listening \d+/)).split(" ")[1]);
    await using kupod = await startKupod(socketJson("--veth", veth));
    await connectTimes("10.214.250.2", port, 6); // from the host, same cgroup as the server
    const evs = await eventsAfter(kupod);
    assertEquals(evs.map((e) => e.type), Array(6).fill("tcp_accept"), "only the pod's accepts");
  } finally {
    await server?.[Symbol.asyncDispose]();
    await run(["link", "del", veth]);
    await run(["netns", "del", ns]);
  }
});

Deno.test("targets: a polled --veth target re-reads processes each time, its network only when the veth changes", () =>
  withPod(async (pod) => {
    // the veth as the refresher sees it: a copy of its sysfs numbers, changed below
    const sys = await Deno.makeTempDir({ prefix: "kupod-sys-" });
    using _sys = { [Symbol.dispose]: () => Deno.removeSync(sys, { recursive: true }) };
    await Deno.mkdir(`${sys}/${pod.hostVeth}`);
    for (const f of ["ifindex", "iflink"]) {
      await Deno.copyFile(`/sys/class/net/${pod.hostVeth}/${f}`, `${sys}/${pod.hostVeth}/${f}`);
    }
    let full = 0;
    const refresh = netnsTargetRefresher(
      () => {
        full++;
        return resolveVeth(pod.hostVeth);
      },
      "blur",
      "",
      sys,
    );
    const first = await refresh();
    const pids = (t: Target) => t.containers.flatMap((c) => c.pids).sort((a, b) => a - b);
    assertEquals(
      (await refresh()).containers.map((c) => c.name),
      first.containers.map((c) => c.name),
    );
    assertEquals(full, 1, "same veth: the network is not read again");
    // a process that joins the pod is seen at the next poll, still without reading the network
    await using joined = new Child("ip", ["netns", "exec", pod.netns, "sleep", "60"]);
    for (let i = 0; i < 50 && !pids(await refresh()).includes(joined.pid); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const next = await refresh();
    assert(pids(next).includes(joined.pid), `pid ${joined.pid} in ${pids(next)}`);
    assertEquals([next.netnsInode, next.veth, next.podIP], [
      first.netnsInode,
      first.veth,
      first.podIP,
    ]);
    assertEquals(full, 1);
    // a veth of that name with another ifindex is a new pod: resolved again
    await Deno.writeTextFile(`${sys}/${pod.hostVeth}/ifindex`, "999999\n");
    await refresh();
    assertEquals(full, 2, "the veth changed: resolved again");
  }));
