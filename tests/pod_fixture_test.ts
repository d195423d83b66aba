/**
 * The test-pod fixture (tests/helpers/pod.ts) checked from the outside: traffic from the host
 * through the nginx sidecar to the service, processes in their kubelet-shaped cgroups and in
 * the pod's network namespace, the veth's peer in that namespace, no route but the pod's own,
 * restarts with new ids and cgroups, and nothing left after dispose — also when creation
 * fails half-way.
 */

import { exists } from "../k8s/files.ts";
import { parseKubeletCgroup } from "../k8s/kubelet_cgroup.ts";
import { netnsInode, parseProcCgroup, processExists } from "../k8s/proc.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { run } from "./helpers/netns.ts";
import {
  createTestPod,
  type MadeKind,
  podBody,
  type TestContainer,
  type TestPod,
} from "./helpers/pod.ts";
import { httpGet, type HttpRun } from "./helpers/pod_http.ts";

const N = 25;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** N requests to the pod's `port`, fresh connections or one kept alive; every reply exact. */
async function assertServes(
  pod: TestPod,
  port: number,
  size: number,
  keepAlive: boolean,
): Promise<HttpRun> {
  const r = await httpGet(pod.podIP, port, { count: N, keepAlive });
  assertEquals(r.connections, keepAlive ? 1 : N, "connections");
  const body = podBody(size);
  for (const reply of r.replies) {
    assertEquals(reply.status, 200, "status");
    assertEquals(reply.headers["x-served-by"], "app", "x-served-by");
    assertEquals(reply.headers["content-length"], String(size), "content-length");
    assert(sameBytes(reply.body, body), `body of ${reply.body.length} bytes differs`);
  }
  return r;
}

/** The container's processes are in its cgroups (v2 and every v1) and in the pod's netns. */
function assertPlaced(pod: TestPod, c: TestContainer, processes: number): void {
  const pids = c.pids();
  assertEquals(pids.length, processes, `${c.name} processes ${pids}`);
  assert(pids.includes(c.mainPid), `${c.name} main pid ${c.mainPid} in ${pids}`);
  for (const pid of pids) {
    const cg = parseProcCgroup(Deno.readTextFileSync(`/proc/${pid}/cgroup`));
    assertEquals(cg.v2, c.cgroupV2Path, `pid ${pid} v2 cgroup`);
    for (const key of Object.keys(c.cgroupV1Paths)) {
      assertEquals(cg.v1[key], c.cgroupV2Path, `pid ${pid} ${key} cgroup`);
    }
    assertEquals(netnsInode(pid), pod.netnsInode, `pid ${pid} netns`);
  }
  assertEquals(c.cgroupV2Id, Deno.statSync(c.cgroupV2Dir).ino, "cgroup id");
  const parsed = parseKubeletCgroup(c.cgroupV2Path)!;
  assertEquals(
    [parsed.podUid, parsed.qos, parsed.runtime, parsed.containerId, parsed.podPath],
    [pod.uid, pod.qosClass, "containerd", c.id, pod.cgroupPodPath],
  );
}

/** Everything a pod made (its onMade reports), to check after dispose. */
class Made {
  readonly items: { kind: MadeKind; name: string }[] = [];
  readonly netnsInodes: number[] = [];
  readonly onMade = (kind: MadeKind, name: string): void => {
    this.items.push({ kind, name });
    if (kind === "netns") this.netnsInodes.push(Deno.statSync(`/run/netns/${name}`).ino!);
  };
  of(kind: MadeKind): string[] {
    return this.items.filter((i) => i.kind === kind).map((i) => i.name);
  }
}

/** Pids of the processes whose network namespace has inode `inode`. */
function inNetns(inode: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (netnsInode(Number(e.name)) === inode) out.push(Number(e.name));
    } catch {
      // exited while listing
    }
  }
  return out;
}

async function assertGone(m: Made): Promise<void> {
  assertEquals(m.of("pid").map(Number).filter((p) => processExists(p)), [], "processes left");
  for (const inode of m.netnsInodes) assertEquals(inNetns(inode), [], "processes in the netns");
  const namespaces = await run("ip", ["netns", "list"]);
  for (const ns of m.of("netns")) {
    assert(!exists(`/run/netns/${ns}`) && !namespaces.includes(ns), `netns ${ns} left`);
  }
  for (const veth of m.of("veth")) assert(!exists(`/sys/class/net/${veth}`), `veth ${veth} left`);
  assertEquals(m.of("cgroup").filter(exists), [], "cgroup dirs left");
  assertEquals(m.of("tmp").filter(exists), [], "temp dirs left");
}

Deno.test("pod: nginx sidecar in front of an HTTP service, placed, restarted, removed", async () => {
  const m = new Made();
  const t0 = performance.now();
  const pod = await createTestPod({
    onMade: m.onMade,
    name: "shop-7d9f",
    namespace: "shop",
    labels: { app: "shop", tier: "web" },
    nodeName: "node-a",
    containers: [
      { name: "proxy", kind: "nginx-proxy", role: "sidecar", port: 8080, image: "nginx:1.22" },
      { name: "app", kind: "http", role: "service", port: 9090, bodySize: 4096 },
    ],
  });
  const created = performance.now() - t0;
  try {
    assert(/^kupodt-[0-9a-f]{8}$/.test(pod.netns), pod.netns);
    assert(/^veth[0-9a-f]{8}$/.test(pod.hostVeth), pod.hostVeth);
    assert(/^10\.213\.\d+\.\d+$/.test(pod.podIP), pod.podIP);
    assertEquals(pod.netnsInode, Deno.statSync(`/run/netns/${pod.netns}`).ino);
    const [proxy, app] = [pod.container("proxy"), pod.container("app")];
    assert(/^[0-9a-f]{64}$/.test(app.id) && proxy.id !== app.id, "ids");
    assertEquals(app.runtimeId, `containerd://${app.id}`);

    // Traffic from the host: through nginx, fresh connections and one kept alive; directly.
    const fresh = await assertServes(pod, 8080, 4096, false);
    const kept = await assertServes(pod, 8080, 4096, true);
    const upstream = new Set([...fresh.replies, ...kept.replies].map((r) => r.headers["x-peer"]));
    assertEquals(upstream.size, 1, `nginx keeps one upstream connection: ${[...upstream]}`);
    assert([...upstream][0].startsWith("127.0.0.1:"), "nginx reaches the service at 127.0.0.1");
    const direct = await assertServes(pod, 9090, 4096, false);
    assert(direct.replies.every((r) => r.headers["x-peer"].startsWith(`${pod.hostIP}:`)), "peer");
    assertEquals((await httpGet(pod.podIP, 8080, { path: "/?size=7" })).replies[0].body.length, 7);
    const viaFetch = await fetch(pod.url(8080, "/?size=33"), { headers: { connection: "close" } });
    assertEquals((await viaFetch.bytes()).length, 33, "fetch of url()");

    // Processes: in their cgroups (v2 and v1) and in the pod's netns; nginx = master + worker.
    assertPlaced(pod, app, 1);
    assertPlaced(pod, proxy, 2);

    // The host veth's peer is eth0 in the pod's netns.
    const host = JSON.parse(await run("ip", ["-j", "link", "show", pod.hostVeth]))[0];
    const ids = JSON.parse(await run("ip", ["-j", "netns", "list"])) as {
      name: string;
      id?: number;
    }[];
    assertEquals(ids.find((n) => n.name === pod.netns)?.id, host.link_netnsid, "peer netns id");
    const eth0 = JSON.parse(await run("ip", ["-n", pod.netns, "-j", "link", "show", "eth0"]))[0];
    assertEquals([eth0.link_index, host.link_index], [host.ifindex, eth0.ifindex], "peer ifindex");

    // Routes: the connected /30 on each side and nothing else; IPv6 off.
    const subnet = pod.podIP.replace(/\d+$/, (d) => String(Number(d) & ~3)) + "/30";
    const podRoutes = JSON.parse(await run("ip", ["-n", pod.netns, "-j", "-4", "route", "show"]));
    assertEquals(podRoutes.map((r: { dst: string; dev: string }) => [r.dst, r.dev]), [[
      subnet,
      "eth0",
    ]]);
    assertEquals(JSON.parse(await run("ip", ["-n", pod.netns, "-j", "-6", "route", "show"])), []);
    const hostRoutes = JSON.parse(
      await run("ip", ["-j", "-4", "route", "show", "dev", pod.hostVeth]),
    );
    assertEquals(hostRoutes.map((r: { dst: string }) => r.dst), [subnet]);
    const addrs = JSON.parse(await run("ip", ["-n", pod.netns, "-j", "addr", "show", "eth0"]))[0];
    assertEquals(
      addrs.addr_info.map((a: { local: string; prefixlen: number }) => `${a.local}/${a.prefixlen}`),
      [`${pod.podIP}/30`],
    );

    // The pod object as the API server would return it.
    const json = pod.podJson();
    assertEquals(json.metadata, {
      name: "shop-7d9f",
      namespace: "shop",
      uid: pod.uid,
      labels: { app: "shop", tier: "web" },
      resourceVersion: pod.resourceVersion,
      creationTimestamp: pod.creationTimestamp,
    });
    assert(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(json.metadata.creationTimestamp!), "time");
    assertEquals(json.spec, {
      nodeName: "node-a",
      containers: [
        { name: "proxy", image: "nginx:1.22", ports: [{ containerPort: 8080, protocol: "TCP" }] },
        {
          name: "app",
          image: "registry.example/kupod/http-service:1.0",
          ports: [{ containerPort: 9090, protocol: "TCP" }],
        },
      ],
    });
    assertEquals(pod.podJson("node-b").spec.nodeName, "node-b");
    const { containerStatuses, ...status } = json.status;
    assertEquals(status, {
      phase: "Running",
      podIP: pod.podIP,
      podIPs: [{ ip: pod.podIP }],
      hostIP: pod.hostIP,
      qosClass: "Burstable",
    });
    assertEquals(
      containerStatuses!.map((s) => [s.name, s.containerID, s.ready, s.restartCount]),
      [["app", app.runtimeId, true, 0], ["proxy", proxy.runtimeId, true, 0]],
    );
    assert(containerStatuses!.every((s) => s.state?.running?.startedAt), "running");
    assert(/^nginx@sha256:[0-9a-f]{64}$/.test(containerStatuses![1].imageID!), "imageID");

    // Restarts: new id, new cgroup dirs, new processes in them; the old ones gone.
    for (const [c, processes] of [[app, 1], [proxy, 2]] as const) {
      const old = { id: c.id, dirs: [c.cgroupV2Dir, ...Object.values(c.cgroupV1Paths)] };
      const oldPids = c.pids(), oldVersion = Number(pod.resourceVersion);
      const t1 = performance.now();
      assertEquals(await pod.restartContainer(c.name), c);
      console.log(`restart ${c.name}: ${(performance.now() - t1).toFixed(0)} ms`);
      assert(c.id !== old.id && /^[0-9a-f]{64}$/.test(c.id), "new id");
      assertEquals(c.restartCount, 1);
      assertEquals(oldPids.filter((p) => processExists(p)), [], "old processes");
      assertEquals(old.dirs.filter(exists), [], "old cgroup dirs");
      assert(!oldPids.includes(c.mainPid), "new main pid");
      assertPlaced(pod, c, processes);
      assert(Number(pod.resourceVersion) > oldVersion, "resourceVersion bumped");
      const st = pod.podJson().status.containerStatuses!.find((s) => s.name === c.name)!;
      assertEquals([st.containerID, st.restartCount, st.ready], [c.runtimeId, 1, true]);
      await assertServes(pod, 8080, 4096, false);
      await assertServes(pod, 8080, 4096, true);
    }
  } finally {
    const t2 = performance.now();
    await pod.dispose();
    console.log(
      `pod create ${created.toFixed(0)} ms, dispose ${(performance.now() - t2).toFixed(0)} ms`,
    );
  }
  await assertGone(m);
  await pod.dispose(); // idempotent
  await pod[Symbol.asyncDispose]();
  assertEquals(m.of("netns"), [pod.netns]);
  assertEquals(m.of("veth"), [pod.hostVeth]);
  assertEquals(m.of("pid").length, 3 + 1 + 2, "pids made: 3 at start, 1 + 2 on restarts");
});

Deno.test("pod: two pods at once do not collide, and cannot reach each other", async () => {
  const ma = new Made(), mb = new Made();
  const containers = (bodySize: number) => [
    { name: "proxy", kind: "nginx-proxy" as const, port: 8080 },
    { name: "app", kind: "http" as const, port: 9090, bodySize },
  ];
  const [a, b] = await Promise.all([
    createTestPod({ containers: containers(100), onMade: ma.onMade }),
    createTestPod({ containers: containers(200), onMade: mb.onMade, upstreamKeepAlive: false }),
  ]);
  try {
    for (
      const k of ["name", "uid", "netns", "netnsInode", "hostVeth", "podIP", "hostIP"] as const
    ) {
      assert(a[k] !== b[k], `${k} differs`);
    }
    const bDirs = mb.of("cgroup");
    assertEquals(ma.of("cgroup").filter((d) => bDirs.includes(d)), [], "shared cgroup dirs");
    const [ra, rb] = await Promise.all([
      assertServes(a, 8080, 100, false),
      assertServes(b, 8080, 200, false),
    ]);
    assertEquals(new Set(ra.replies.map((r) => r.headers["x-peer"])).size, 1, "a: upstream kept");
    assertEquals(new Set(rb.replies.map((r) => r.headers["x-peer"])).size, N, "b: upstream fresh");
    await assertServes(b, 8080, 200, true);
    for (const [from, to] of [[a, b], [b, a]]) {
      const out = await new Deno.Command("ip", {
        args: ["-n", from.netns, "route", "get", to.podIP],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert(!out.success, `${from.netns} has a route to ${to.podIP}`);
    }
  } finally {
    await Promise.all([a.dispose(), b.dispose()]);
  }
  await assertGone(ma);
  await assertGone(mb);
});

Deno.test("pod: Guaranteed and BestEffort pods get the kubelet's cgroup paths", async () => {
  for (const qosClass of ["Guaranteed", "BestEffort"] as const) {
    await using pod = await createTestPod({
      qosClass,
      containers: [{ name: "app", kind: "http", port: 9090, bodySize: 10 }],
    });
    const app = pod.container("app");
    const u = pod.uid.replaceAll("-", "_");
    const slice = qosClass === "Guaranteed"
      ? `/kubepods.slice/kubepods-pod${u}.slice`
      : `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u}.slice`;
    assertEquals(pod.cgroupPodPath, slice);
    assertEquals(app.cgroupV2Path, `${slice}/cri-containerd-${app.id}.scope`);
    assertPlaced(pod, app, 1);
    assertEquals(pod.podJson().status.qosClass, qosClass);
    await assertServes(pod, 9090, 10, true);
  }
});

Deno.test("pod: a creation failing half-way leaves nothing behind", async () => {
  const m = new Made();
  let error = "";
  try {
    const pod = await createTestPod({
      containers: [
        { name: "app", kind: "http", port: 9090 },
        { name: "clash", kind: "http", port: 9090 }, // cannot bind: the port is taken
      ],
      onMade: m.onMade,
    });
    await pod.dispose();
  } catch (e) {
    error = (e as Error).message;
  }
  assert(/container (app|clash) exited/.test(error), `expected a start failure, got: ${error}`);
  for (const kind of ["tmp", "netns", "veth", "cgroup", "pid"] as const) {
    assert(m.of(kind).length > 0, `nothing of kind ${kind} was made: not half-way`);
  }
  await assertGone(m);
});

Deno.test("pod: every sidecar kind starts with upstream keep-alive on and off", async () => {
  const kinds = ["nginx-proxy", "haproxy-proxy", "nginx-grpc-proxy", "haproxy-grpc-proxy"] as const;
  for (const kind of kinds) {
    for (const upstreamKeepAlive of [true, false]) {
      // the sidecar's own config is what is checked: it must start and listen (creation waits)
      await using pod = await createTestPod({
        upstreamKeepAlive,
        containers: [
          { name: "proxy", kind, port: 8080, upstreamPort: 9090 },
          { name: "app", kind: "http", port: 9090 },
        ],
      });
      assert(pod.container("proxy").running, `${kind}, keep-alive ${upstreamKeepAlive}`);
      if (!kind.includes("grpc")) await assertServes(pod, 8080, 1024, upstreamKeepAlive);
    }
  }
});
