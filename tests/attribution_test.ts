/**
 * Container attribution: runtime ids, kubelet cgroup shapes both ways, pods → cgroups → pids on
 * fixture trees (tests/fixtures/attribution/<case>/: a proc tree with mountinfo and
 * /proc/<pid>/cgroup, and cgroup hierarchies with cgroup.procs), then live on this machine: a
 * kubelet-shaped cgroup with a real process in it, and a pod-like network namespace.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { run } from "./helpers/netns.ts";
import { rmdirCgroup } from "./helpers/pod_cgroup.ts";
import { KupodError } from "../base/errors.ts";
import { cgroupMounts, cgroupMountsAt, cgroupProcs, findCgroupDirs } from "../k8s/cgroupfs.ts";
import {
  attributeCgroup,
  attributePid,
  attributePids,
  findPodCgroup,
  podCgroups,
  podContainers,
  refreshPids,
} from "../k8s/containers.ts";
import { isPodCgroupName, parseKubeletCgroup, usualPodPaths } from "../k8s/kubelet_cgroup.ts";
import {
  defaultRouteInterfaces,
  hostInterfaceByIndex,
  type IpRunner,
  netnsByName,
  netnsNetwork,
  parseIpAddrShow,
  podInterface,
  podNetwork,
  vethNetns,
} from "../k8s/podnet.ts";
import { pidsByNetns } from "../k8s/proc.ts";
import {
  isContainerCgroupName,
  parseContainerCgroupName,
  parseContainerId,
} from "../k8s/runtime_id.ts";
import type { Pod } from "../k8s/types.ts";

const FIXTURES = new URL("./fixtures/attribution/", import.meta.url).pathname;
const hex = (tag: string) => (tag + "0".repeat(64)).slice(0, 64);
const UB = "0b000000-0000-4000-8000-00000000000b";
const UG = "06000000-0000-4000-8000-000000000006";
const UE = "0e000000-0000-4000-8000-00000000000e";
const und = (u: string) => u.replaceAll("-", "_");
const BURSTABLE = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${und(UB)}.slice`;
const GUARANTEED = `/kubepods.slice/kubepods-pod${und(UG)}.slice`;
const BESTEFFORT = `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${
  und(UE)
}.slice`;

/** Options reading fixture case `name`: its proc tree, mount points below its root. */
function fixture(name: string) {
  const root = `${FIXTURES}${name}`;
  return { proc: `${root}/proc`, root };
}

function pods(name: string): Pod[] {
  return JSON.parse(Deno.readTextFileSync(`${FIXTURES}${name}/pods.json`));
}

function ino(path: string): bigint {
  return BigInt(Deno.statSync(path).ino!);
}

function assertThrowsKupod(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    assert(e instanceof KupodError, `expected KupodError, got ${e}`);
    assert(pattern.test(e.message), `message ${JSON.stringify(e.message)} !~ ${pattern}`);
    assert(!e.message.includes("\n"), "one-line message");
    return;
  }
  throw new Error("expected a KupodError");
}

// ---------------------------------------------------------------------------------------------
// Runtime ids and cgroup names

Deno.test("runtime ids: containerID of each runtime, absent, malformed", () => {
  const id = hex("ab");
  assertEquals(parseContainerId(`containerd://${id}`), { runtime: "containerd", id });
  assertEquals(parseContainerId(`docker://${id}`), { runtime: "docker", id });
  assertEquals(parseContainerId(`cri-o://${id}`), { runtime: "cri-o", id });
  assertEquals(parseContainerId(`katacontainers://${id}`), { runtime: "katacontainers", id });
  assertEquals(parseContainerId(undefined), null);
  assertEquals(parseContainerId(""), null);
  assertEquals(parseContainerId(id), null);
  assertEquals(parseContainerId("containerd://"), null);
  assertEquals(parseContainerId("containerd://../x"), null);
});

Deno.test("runtime ids: container cgroup names of every runtime and driver", () => {
  const id = hex("cd");
  assertEquals(parseContainerCgroupName(`cri-containerd-${id}.scope`), {
    runtime: "containerd",
    id,
  });
  assertEquals(parseContainerCgroupName(`docker-${id}.scope`), { runtime: "docker", id });
  assertEquals(parseContainerCgroupName(`crio-${id}.scope`), { runtime: "cri-o", id });
  assertEquals(parseContainerCgroupName(`crio-${id}`), { runtime: "cri-o", id });
  assertEquals(parseContainerCgroupName(id), { runtime: "", id });
  assertEquals(parseContainerCgroupName(`crio-conmon-${id}.scope`), null);
  assertEquals(parseContainerCgroupName("container"), null);
  assertEquals(parseContainerCgroupName(`kubepods-pod${und(UB)}.slice`), null);
  assert(isContainerCgroupName(`cri-containerd-${id}.scope`, id));
  assert(isContainerCgroupName(id, id));
  assert(isContainerCgroupName(`crio-${id}`, id));
  assert(!isContainerCgroupName(`crio-conmon-${id}.scope`, id));
  assert(!isContainerCgroupName(`cri-containerd-${hex("ce")}.scope`, id));
  assert(!isContainerCgroupName(`x${id}`, id));
  assert(!isContainerCgroupName("anything", ""));
});

Deno.test("kubelet cgroups: every shape parses to pod uid, QoS, runtime, container id", () => {
  const id = hex("77");
  const cases: [string, Record<string, string> | null][] = [
    [`${BURSTABLE}/cri-containerd-${id}.scope`, {
      podUid: UB,
      qos: "Burstable",
      driver: "systemd",
      runtime: "containerd",
      podPath: BURSTABLE,
    }],
    [`${GUARANTEED}/docker-${id}.scope`, {
      podUid: UG,
      qos: "Guaranteed",
      driver: "systemd",
      runtime: "docker",
      podPath: GUARANTEED,
    }],
    [`${BESTEFFORT}/crio-${id}.scope/container`, {
      podUid: UE,
      qos: "BestEffort",
      driver: "systemd",
      runtime: "cri-o",
      podPath: BESTEFFORT,
    }],
    [`/kubepods/burstable/pod${UB}/${id}`, {
      podUid: UB,
      qos: "Burstable",
      driver: "cgroupfs",
      runtime: "",
      podPath: `/kubepods/burstable/pod${UB}`,
    }],
    [`/kubepods/pod${UG}/crio-${id}`, {
      podUid: UG,
      qos: "Guaranteed",
      driver: "cgroupfs",
      runtime: "cri-o",
      podPath: `/kubepods/pod${UG}`,
    }],
    [`/docker/${hex("99")}/kubepods/besteffort/pod${UE}/${id}`, {
      podUid: UE,
      qos: "BestEffort",
      driver: "cgroupfs",
      runtime: "",
      podPath: `/docker/${hex("99")}/kubepods/besteffort/pod${UE}`,
    }],
    [
      `/system.slice/docker-${
        hex("98")
      }.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${
        und(UB)
      }.slice/cri-containerd-${id}.scope`,
      {
        podUid: UB,
        qos: "Burstable",
        driver: "systemd",
        runtime: "containerd",
        podPath: `/system.slice/docker-${
          hex("98")
        }.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${
          und(UB)
        }.slice`,
      },
    ],
    // A static pod's uid: 32 hex digits without dashes.
    [`/kubepods/burstable/pod0123456789abcdef0123456789abcdef/${id}`, {
      podUid: "0123456789abcdef0123456789abcdef",
      qos: "Burstable",
      driver: "cgroupfs",
      runtime: "",
      podPath: "/kubepods/burstable/pod0123456789abcdef0123456789abcdef",
    }],
    ["/system.slice/containerd.service", null],
    ["/user.slice/user-0.slice/session-1.scope", null],
    ["/", null],
    [`/burstable/pod${UB}/${id}`, null], // cgroupfs shape without kubepods
    [`/docker/${id}`, null],
  ];
  for (const [path, want] of cases) {
    const got = parseKubeletCgroup(path);
    if (!want) {
      assertEquals(got, null, path);
      continue;
    }
    assert(got, `${path} not recognised`);
    for (const [k, v] of Object.entries(want)) {
      assertEquals((got as unknown as Record<string, string>)[k], v, `${k} of ${path}`);
    }
    assertEquals(got.containerId, id, `container id of ${path}`);
    assert(path.startsWith(got.containerPath) && got.containerPath.includes(id), path);
  }
  // Pod level and runtime helpers: pod known, no container.
  const pod = parseKubeletCgroup(`${BURSTABLE}`)!;
  assertEquals([pod.podUid, pod.containerId, pod.containerPath], [UB, "", ""]);
  const conmon = parseKubeletCgroup(`${BESTEFFORT}/crio-conmon-${id}.scope`)!;
  assertEquals([conmon.podUid, conmon.qos, conmon.containerId], [UE, "BestEffort", ""]);
});

Deno.test("kubelet cgroups: pod directory names by uid, usual places by QoS first", () => {
  assert(isPodCgroupName(`pod${UB}`, UB));
  assert(isPodCgroupName(`kubepods-burstable-pod${und(UB)}.slice`, UB));
  assert(isPodCgroupName(`kubepods-pod${und(UB)}.slice`, UB));
  assert(isPodCgroupName(`kubelet-kubepods-besteffort-pod${und(UB)}.slice`, UB));
  assert(!isPodCgroupName(`kubepods-burstable-pod${und(UG)}.slice`, UB));
  assert(!isPodCgroupName(`kubepods-burstable-pod${UB}.slice`, UB)); // dashes: not systemd's
  assert(!isPodCgroupName(`pod${und(UB)}`, UB));
  const usual = usualPodPaths(UG, "Guaranteed");
  assertEquals(usual.slice(0, 2), [
    `/kubepods.slice/kubepods-pod${und(UG)}.slice`,
    `/kubepods/pod${UG}`,
  ]);
  assertEquals(usual.length, 6);
});

// ---------------------------------------------------------------------------------------------
// Mounts

Deno.test("cgroup mounts: pure v2, pure v1 with co-mounted and named hierarchies, hybrid", () => {
  const v2 = cgroupMountsAt({ ...fixture("containerd-systemd-v2"), root: "" });
  assertEquals(v2, { v2: "/sys/fs/cgroup", v1: {} });
  const v1 = cgroupMountsAt({ ...fixture("containerd-cgroupfs-v1"), root: "" });
  assertEquals(v1, {
    v2: "",
    v1: {
      systemd: "/sys/fs/cgroup/systemd",
      cpu: "/sys/fs/cgroup/cpu,cpuacct",
      cpuacct: "/sys/fs/cgroup/cpu,cpuacct",
      memory: "/sys/fs/cgroup/memory",
      pids: "/sys/fs/cgroup/pids",
    },
  });
  const hybrid = cgroupMountsAt({ ...fixture("docker-systemd-hybrid"), root: "/r" });
  assertEquals(hybrid.v2, "/r/sys/fs/cgroup/unified");
  assertEquals(Object.keys(hybrid.v1).sort(), ["cpuset", "memory", "pids", "systemd"]);
  // This machine's own mountinfo parses too.
  const here = cgroupMounts();
  assert(here.v2 || Object.keys(here.v1).length, "no cgroup mount found on this machine");
  assert(!("xattr" in here.v1) && !("rw" in here.v1));
});

// ---------------------------------------------------------------------------------------------
// Pods → containers on fixture trees

Deno.test("pods: containerd + systemd + v2, Burstable / Guaranteed / BestEffort", () => {
  const fx = fixture("containerd-systemd-v2");
  const v2 = `${fx.root}/sys/fs/cgroup`;
  const [web, db, batch] = pods("containerd-systemd-v2");

  const cs = podContainers(web, { ...fx, role: (n) => n === "proxy" ? "sidecar" : "service" });
  // The running native-sidecar init container first, then the spec's containers; the
  // completed init container is not observed.
  assertEquals(cs.map((c) => [c.name, c.role, c.image]), [
    ["proxy", "sidecar", "example/proxy:1"],
    ["app", "service", "example/app:1"],
    ["later", "service", "example/later:1"],
  ]);
  const [proxy, app, later] = cs;
  assertEquals(app.runtimeId, hex("a1"));
  assertEquals(app.cgroupPath, `${BURSTABLE}/cri-containerd-${hex("a1")}.scope`);
  assertEquals(app.cgroupId, ino(`${v2}${app.cgroupPath}`));
  assertEquals(app.cgroupV1Paths, {});
  assertEquals(app.pids, [201, 205]);
  // Sub-cgroups of a container are part of it.
  assertEquals(proxy.cgroupPath, `${BURSTABLE}/cri-containerd-${hex("a2")}.scope`);
  assertEquals(proxy.pids, [210, 211]);
  // Not started yet: no id, no cgroup, no pids.
  assertEquals([later.runtimeId, later.cgroupPath, later.cgroupId, later.pids], ["", "", 0n, []]);

  const g = podContainers(db, fx)[0];
  assertEquals(g.cgroupPath, `${GUARANTEED}/cri-containerd-${hex("b1")}.scope`);
  assertEquals([g.pids, g.cgroupId], [[300], ino(`${v2}${g.cgroupPath}`)]);
  const e = podContainers(batch, fx)[0];
  assertEquals(e.cgroupPath, `${BESTEFFORT}/cri-containerd-${hex("c1")}.scope`);
  assertEquals(e.pids, [400]);

  // The QoS class in the status is only a hint: a wrong one still finds the pod.
  const wrong = structuredClone(db);
  wrong.status.qosClass = "BestEffort";
  assertEquals(podContainers(wrong, fx)[0].cgroupPath, g.cgroupPath);
  const pc = podCgroups(web, fx);
  assertEquals(pc.pod, { v2: BURSTABLE, v1: {} });
  assertEquals(pc.containers.map((c) => c.runtime), ["containerd", "containerd", ""]);
});

Deno.test("pods: containerd + cgroupfs driver + v1 only", () => {
  const fx = fixture("containerd-cgroupfs-v1");
  const [web, cache, job] = pods("containerd-cgroupfs-v1");
  const expect = [
    [web, `/kubepods/burstable/pod${UB}/${hex("d1")}`, 601],
    [cache, `/kubepods/pod${UG}/${hex("d2")}`, 602],
    [job, `/kubepods/besteffort/pod${UE}/${hex("d3")}`, 603],
  ] as const;
  for (const [pod, path, pid] of expect) {
    const [c] = podContainers(pod, fx);
    assertEquals([c.cgroupPath, c.cgroupId], ["", 0n], pod.metadata.name);
    assertEquals(c.cgroupV1Paths, {
      systemd: path,
      cpu: path,
      cpuacct: path,
      memory: path,
      pids: path,
    });
    assertEquals(c.pids, [pid]);
  }
});

Deno.test("pods: docker + systemd driver on a hybrid host (v1 controllers and unified v2)", () => {
  const fx = fixture("docker-systemd-hybrid");
  const [api] = pods("docker-systemd-hybrid");
  const [c] = podContainers(api, fx);
  const path = `${BURSTABLE}/docker-${hex("e1")}.scope`;
  assertEquals(c.runtimeId, hex("e1"));
  assertEquals(c.cgroupPath, path);
  assertEquals(c.cgroupId, ino(`${fx.root}/sys/fs/cgroup/unified${path}`));
  // cpuset keeps every process at its root: no pod there, so no path for it.
  assertEquals(c.cgroupV1Paths, { systemd: path, memory: path, pids: path });
  assertEquals(c.pids, [701, 702]);
});

Deno.test("pods: cri-o + systemd + v2, the container's processes one level down, conmon apart", () => {
  const fx = fixture("crio-systemd-v2");
  const [py] = pods("crio-systemd-v2");
  const [c] = podContainers(py, fx);
  assertEquals(c.cgroupPath, `${BESTEFFORT}/crio-${hex("f1")}.scope`);
  assertEquals(c.pids, [801]); // not conmon (800)
  assertEquals(podCgroups(py, fx).containers[0].runtime, "cri-o");
});

Deno.test("pods: nested below a minikube node (hybrid) and a kind node with --cgroup-root", () => {
  const mk = fixture("minikube-nested");
  const [coredns] = pods("minikube-nested");
  const [c] = podContainers(coredns, mk);
  const node = hex("99");
  const v1 = `/docker/${node}/kubepods/besteffort/pod${UE}/${hex("10")}`;
  const v2 = `/system.slice/docker-${node}.scope/kubepods/besteffort/pod${UE}/${hex("10")}`;
  assertEquals(c.cgroupPath, v2);
  assertEquals(c.cgroupId, ino(`${mk.root}/sys/fs/cgroup/unified${v2}`));
  assertEquals(c.cgroupV1Paths, { systemd: v1, memory: v1, pids: v1 });
  assertEquals(c.pids, [900]);

  const kind = fixture("kind-nested-v2");
  const [etcd] = pods("kind-nested-v2");
  const [k] = podContainers(etcd, kind);
  assertEquals(
    k.cgroupPath,
    `/system.slice/docker-${
      hex("98")
    }.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod${
      und(UG)
    }.slice/cri-containerd-${hex("20")}.scope`,
  );
  assertEquals(k.pids, [950]);
  // The search is bounded: too shallow a search does not find it, and says so in one line.
  assertThrowsKupod(
    () => podContainers(etcd, { ...kind, limits: { maxDepth: 3 } }),
    /no cgroup of pod default\/etcd \(uid 06000000-.*\) under .*: is it on this node\?/,
  );
  assertEquals(findPodCgroup(UG, { ...kind, limits: { maxDirs: 2 } }).v2, "");
});

Deno.test("pods: a pod of another node is an error, a pod not started yet is not", () => {
  const fx = fixture("containerd-systemd-v2");
  const other = structuredClone(pods("containerd-systemd-v2")[0]);
  other.metadata.uid = "ffffffff-0000-4000-8000-000000000000";
  assertThrowsKupod(() => podContainers(other, fx), /no cgroup of pod default\/web/);
  const pending = structuredClone(other);
  pending.status.containerStatuses = [];
  delete (pending.status as Record<string, unknown>).initContainerStatuses;
  assertEquals(podContainers(pending, fx).map((c) => [c.name, c.pids]), [["app", []], [
    "later",
    [],
  ]]);
});

Deno.test("pids: re-reading picks up processes started later and drops exited ones", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "kupod-attr-" });
  try {
    await run("cp", ["-a", `${FIXTURES}containerd-systemd-v2/.`, tmp]);
    const fx = { proc: `${tmp}/proc`, root: tmp };
    const cs = podContainers(pods("containerd-systemd-v2")[0], fx);
    const app = cs[1];
    assertEquals(app.pids, [201, 205]);
    assertEquals(refreshPids(cs, fx), { added: [], removed: [] });
    const dir = `${tmp}/sys/fs/cgroup${app.cgroupPath}`;
    Deno.writeTextFileSync(`${dir}/cgroup.procs`, "201\n230\n");
    Deno.mkdirSync(`${dir}/late`);
    Deno.writeTextFileSync(`${dir}/late/cgroup.procs`, "231\n");
    assertEquals(refreshPids(cs, fx), { added: [230, 231], removed: [205] });
    assertEquals(app.pids, [201, 230, 231]);
    assertEquals(cgroupProcs(dir, 0), [201, 230]); // depth 0: the dir itself only
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Reverse attribution on fixture trees

Deno.test("reverse: a pid in a kubelet cgroup is its whole container, in every hierarchy", () => {
  const fx = fixture("containerd-systemd-v2");
  const { container, kubelet } = attributePid(205, fx);
  assertEquals(kubelet?.podUid, UB);
  assertEquals(kubelet?.qos, "Burstable");
  assertEquals(kubelet?.runtime, "containerd");
  assertEquals(container.runtimeId, hex("a1"));
  assertEquals(container.cgroupPath, `${BURSTABLE}/cri-containerd-${hex("a1")}.scope`);
  assertEquals(container.cgroupId, ino(`${fx.root}/sys/fs/cgroup${container.cgroupPath}`));
  assertEquals(container.pids, [201, 205]);
  assertEquals(container.name, "app"); // the container's first process

  // From a sub-cgroup of the container: the container.
  const sub = attributePid(211, fx);
  assertEquals(sub.container.cgroupPath, `${BURSTABLE}/cri-containerd-${hex("a2")}.scope`);
  assertEquals(sub.container.pids, [210, 211]);

  const v1 = fixture("containerd-cgroupfs-v1");
  const r = attributePid(602, v1);
  assertEquals([r.kubelet?.podUid, r.kubelet?.qos, r.kubelet?.driver], [
    UG,
    "Guaranteed",
    "cgroupfs",
  ]);
  assertEquals(r.container.cgroupV1Paths.memory, `/kubepods/pod${UG}/${hex("d2")}`);
  assertEquals([r.container.cgroupPath, r.container.pids], ["", [602]]);

  const hybrid = attributePid(701, fixture("docker-systemd-hybrid"));
  assertEquals(hybrid.kubelet?.runtime, "docker");
  assertEquals(hybrid.container.pids, [701, 702]);
  assertEquals(Object.keys(hybrid.container.cgroupV1Paths).sort(), ["memory", "pids", "systemd"]);

  const mk = attributePid(900, fixture("minikube-nested"));
  assertEquals([mk.kubelet?.qos, mk.container.runtimeId], ["BestEffort", hex("10")]);
  assert(mk.container.cgroupPath.startsWith(`/system.slice/docker-${hex("99")}.scope/`));
});

Deno.test("reverse: a pid outside any container is the process and its descendants", () => {
  const fx = fixture("containerd-systemd-v2");
  const { container, kubelet } = attributePid(150, fx);
  assertEquals(kubelet, null);
  assertEquals([container.name, container.cgroupPath, container.pids], ["bash", "/user.slice", [
    150,
    151,
  ]]);
  assertEquals(container.cgroupId, ino(`${fx.root}/sys/fs/cgroup/user.slice`));
  // CRI-O's conmon: pod known, no container: the process itself.
  const conmon = attributePid(800, fixture("crio-systemd-v2"));
  assertEquals([conmon.kubelet?.podUid, conmon.kubelet?.containerId], [UE, ""]);
  assertEquals([conmon.container.runtimeId, conmon.container.pids], ["", [800, 801]]);
  const crio = attributePid(801, fixture("crio-systemd-v2"));
  assertEquals([crio.kubelet?.runtime, crio.container.runtimeId], ["cri-o", hex("f1")]);
  assertEquals(crio.container.cgroupPath, `${BESTEFFORT}/crio-${hex("f1")}.scope`);
  // Kubelet-shaped, but the cgroup is nowhere under the mounts (another cgroup namespace's
  // view): the process itself, with what its cgroup names.
  const unseen = attributePid(250, fx);
  assertEquals([unseen.kubelet?.podUid, unseen.kubelet?.qos], [
    "ffffffff-0000-4000-8000-000000000001",
    "BestEffort",
  ]);
  assertEquals([unseen.container.runtimeId, unseen.container.pids], [hex("dd".repeat(32)), [250]]);
  assertEquals([unseen.container.name, unseen.container.cgroupId], ["other-ns", 0n]);
  assertThrowsKupod(() => attributePid(4242, fx), /process 4242 does not exist/);
});

Deno.test("reverse: --cgroup by v2-relative path, by absolute v1 path, non-kubelet cgroups", () => {
  const fx = fixture("docker-systemd-hybrid");
  const path = `${BURSTABLE}/docker-${hex("e1")}.scope`;
  const rel = attributeCgroup(path, fx);
  assertEquals([rel.kubelet?.podUid, rel.container.runtimeId], [UB, hex("e1")]);
  assertEquals(rel.container.cgroupPath, path);
  assertEquals(rel.container.pids, [701, 702]);
  const abs = attributeCgroup(`${fx.root}/sys/fs/cgroup/memory${path}/`, fx);
  assertEquals(abs.container, rel.container);

  const plain = attributeCgroup("/system.slice/docker.service", fx);
  assertEquals(plain.kubelet, null);
  assertEquals([plain.container.name, plain.container.pids], ["docker.service", [90]]);
  assertEquals(Object.keys(plain.container.cgroupV1Paths).sort(), ["memory", "pids", "systemd"]);

  // Only in v1 (cgroupfs driver, no v2): found there.
  const v1 = fixture("containerd-cgroupfs-v1");
  const only = attributeCgroup(`/kubepods/besteffort/pod${UE}/${hex("d3")}`, v1);
  assertEquals([only.kubelet?.qos, only.container.pids], ["BestEffort", [603]]);
  assertThrowsKupod(() => attributeCgroup("/nope.slice", fx), /cgroup \/nope.slice does not exist/);
});

Deno.test("reverse: the processes of a netns grouped by container", () => {
  const fx = fixture("containerd-systemd-v2");
  const groups = attributePids([211, 200, 201, 150], fx);
  assertEquals(groups.map((g) => [g.container.name, g.container.runtimeId, g.container.pids]), [
    ["bash", "", [150]],
    ["pause", hex("a0"), [200]],
    ["app", hex("a1"), [201, 205]],
    ["envoy", hex("a2"), [210, 211]],
  ]);
});

Deno.test("bounded walk: breadth-first, shallowest match, matches not descended", () => {
  const fx = fixture("kind-nested-v2");
  const base = `${fx.root}/sys/fs/cgroup`;
  assertEquals(findCgroupDirs(base, (n) => n.endsWith(".scope")), [
    `/system.slice/docker-${hex("98")}.scope`,
  ]);
  assertEquals(findCgroupDirs(base, (n) => n.startsWith("cri-"), { maxDepth: 5 }), []);
  assertEquals(findCgroupDirs(base, (n) => n.startsWith("cri-")).length, 1);
});

// ---------------------------------------------------------------------------------------------
// Network: parsers and the veth search with a fake `ip`

const POD_IP_ADDR =
  `1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
3: eth0@if17: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP group default
    link/ether 6a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff link-netnsid 0
    inet 10.244.1.5/24 brd 10.244.1.255 scope global eth0
       valid_lft forever preferred_lft forever
    inet6 fd00:10:244:1::5/64 scope global
       valid_lft forever preferred_lft forever
    inet6 fe80::681b:2cff:fe3d:4e5f/64 scope link
       valid_lft forever preferred_lft forever
`;

Deno.test("net: ip addr / ip -o link output parses, the pod interface is chosen", () => {
  const ifaces = parseIpAddrShow(POD_IP_ADDR);
  assertEquals(ifaces.map((i) => [i.index, i.name, i.peerIndex, i.linkNetnsId]), [
    [1, "lo", 0, -1],
    [3, "eth0", 17, 0],
  ]);
  assertEquals(ifaces[1].addrs.map((a) => a.scope), ["global", "global", "link"]);
  const oneLine = parseIpAddrShow(
    "19: kth@if18: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT" +
      " group default qlen 1000\\    link/ether aa:7c:5a:72:8b:63 brd ff:ff:ff:ff:ff:ff link-netns kt1\n" +
      "20: va@vb: <BROADCAST,MULTICAST,M-DOWN> mtu 1500 qdisc noop state DOWN\\    link/ether x\n",
  );
  assertEquals(oneLine.map((i) => [i.name, i.peerIndex, i.peerName, i.linkNetns]), [
    ["kth", 18, "", "kt1"],
    ["va", 0, "vb", ""],
  ]);
  const [lo, eth0] = ifaces;
  const net1 = { ...eth0, index: 4, name: "net1", peerIndex: 0 };
  const net2 = { ...eth0, index: 5, name: "net2", peerIndex: 9 };
  assertEquals(podInterface([lo, net1, eth0])?.name, "eth0");
  assertEquals(podInterface([lo, net1, net2], ["net1"])?.name, "net1");
  assertEquals(podInterface([lo, net1, net2])?.name, "net2");
  assertEquals(podInterface([lo, net1])?.name, "net1");
  assertEquals(podInterface([lo]), undefined);
});

/** A fake host: /proc with a few processes in two namespaces, /sys/class/net, a fake `ip`. */
async function fakeHost(tmp: string) {
  const mk = (p: string, text = "") => {
    Deno.mkdirSync(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(p, text);
  };
  // Namespace files: regular files, one inode per namespace (links share it).
  mk(`${tmp}/ns/host`);
  mk(`${tmp}/ns/pod`);
  mk(`${tmp}/ns/other`);
  mk(`${tmp}/ns/mtu`);
  const procs = [[1, "host"], [10, "pod"], [11, "pod"], [20, "other"], [30, "mtu"]] as const;
  for (const [pid, ns] of procs) {
    Deno.mkdirSync(`${tmp}/proc/${pid}/ns`, { recursive: true });
    await Deno.link(`${tmp}/ns/${ns}`, `${tmp}/proc/${pid}/ns/net`);
  }
  Deno.mkdirSync(`${tmp}/proc/self/ns`, { recursive: true });
  await Deno.link(`${tmp}/ns/host`, `${tmp}/proc/self/ns/net`);
  // dev_snmp6: the pod's namespace has ifindex 3, the other one 7; the host's has none.
  mk(`${tmp}/proc/10/net/dev_snmp6/eth0`, "ifIndex\t3\nIp6InReceives\t0\n");
  mk(`${tmp}/proc/20/net/dev_snmp6/eth0`, "ifIndex\t7\n");
  // An MTU below 1280: no IPv6 on eth0 (ifindex 4), so no dev_snmp6 entry for it.
  mk(`${tmp}/proc/30/net/dev_snmp6/lo`, "ifIndex\t1\n");
  mk(`${tmp}/proc/10/net/route`, "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n");
  // Host interfaces: veth 17 ↔ pod eth0 3; a decoy 18 whose peer index differs.
  const hostIfaces = [["eth0", 2, 2], ["cali17", 17, 3], ["cali18", 18, 5], ["cali19", 19, 4]];
  for (const [name, index, link] of hostIfaces) {
    mk(`${tmp}/sys/${name}/ifindex`, `${index}\n`);
    mk(`${tmp}/sys/${name}/iflink`, `${link}\n`);
  }
  const calls: string[] = [];
  const ip: IpRunner = (ns, args) => {
    calls.push(`${ns ?? "-"} ${args.join(" ")}`);
    if (ns === null) {
      return Promise.resolve(
        "17: cali17@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450\n    link/ether ee:ee link-netnsid 1\n",
      );
    }
    if (ns.endsWith("/30/ns/net")) {
      return Promise.resolve(
        "4: eth0@if19: <BROADCAST,UP,LOWER_UP> mtu 1200\n    inet 10.9.9.9/32 scope global eth0\n",
      );
    }
    return Promise.resolve(ns.endsWith("/10/ns/net") ? POD_IP_ADDR : "");
  };
  return { ip, calls, proc: `${tmp}/proc`, sysClassNet: `${tmp}/sys` };
}

Deno.test("net: pid → netns, IPs, host veth; veth → netns and its pids (fake ip)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "kupod-net-" });
  try {
    const host = await fakeHost(tmp);
    const opts = { ...host, netnsDirs: [`${tmp}/run-netns`] };
    const net = await podNetwork(10, opts);
    assertEquals(net.netnsInode, Deno.statSync(`${tmp}/ns/pod`).ino);
    assertEquals([net.iface, net.ifindex, net.ips], ["eth0", 3, [
      "10.244.1.5",
      "fd00:10:244:1::5",
    ]]);
    assertEquals([net.veth, net.vethIndex, net.hostNetwork], ["cali17", 17, false]);
    // Both directions must agree: ifindexes are per namespace.
    assertEquals(hostInterfaceByIndex(17, 3, host.sysClassNet), "cali17");
    assertEquals(hostInterfaceByIndex(18, 3, host.sysClassNet), ""); // its peer is ifindex 5
    assertEquals(hostInterfaceByIndex(0, 3, host.sysClassNet), "");
    const hostNet = await podNetwork(1, opts);
    assertEquals([hostNet.hostNetwork, hostNet.veth, hostNet.ips], [true, "", []]);

    host.calls.length = 0;
    const peer = await vethNetns("cali17", opts);
    assertEquals([peer.netnsInode, peer.pids, peer.peer, peer.peerIndex], [
      net.netnsInode,
      [10, 11],
      "eth0",
      3,
    ]);
    assertEquals(peer.ips, ["10.244.1.5", "fd00:10:244:1::5"]);
    // Narrowed by dev_snmp6: only the pod's namespace was entered.
    assertEquals(host.calls, ["- link show dev cali17", `${tmp}/proc/10/ns/net addr show`]);

    // Nothing to narrow by: every other namespace is read, the right one found.
    host.calls.length = 0;
    const mtu = await vethNetns("cali19", opts);
    assertEquals([mtu.pids, mtu.peer, mtu.ips], [[30], "eth0", ["10.9.9.9"]]);
    assertEquals(host.calls.length, 4); // link show + the three other namespaces

    await assertRejectsKupod(() => vethNetns("cali18", opts), /peer of cali18 \(ifindex 5\)/);
    await assertRejectsKupod(() => vethNetns("eth0", opts), /eth0 has no peer interface/);
    await assertRejectsKupod(() => vethNetns("nope0", opts), /no network interface nope0/);
    await assertRejectsKupod(() => podNetwork(99, opts), /process 99 does not exist/);
    assertEquals(netnsByName(`${tmp}/proc/11/ns/net`, opts).pids, [10, 11]);
    assertThrowsKupod(() => netnsByName("absent", opts), /no network namespace absent/);
    assertEquals(defaultRouteInterfaces(10, host.proc), []);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

async function assertRejectsKupod(fn: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof KupodError, `expected KupodError, got ${e}`);
    assert(pattern.test(e.message), `message ${JSON.stringify(e.message)} !~ ${pattern}`);
    return;
  }
  throw new Error("expected a KupodError");
}

// ---------------------------------------------------------------------------------------------
// Live on this machine (root): a kubelet-shaped cgroup with a real process; a pod-like netns

const live = Deno.uid?.() === 0;

async function waitFor<T>(fn: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test({
  name: "live: a process moved into a kubelet-shaped cgroup (v2 + v1) is attributed",
  ignore: !live || !cgroupMounts().v2,
  async fn() {
    const mounts = cgroupMounts();
    const uid = crypto.randomUUID();
    const id = [...crypto.getRandomValues(new Uint8Array(32))]
      .map((b) => b.toString(16).padStart(2, "0")).join("");
    const podRel = `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${
      und(uid)
    }.slice`;
    const rel = `${podRel}/cri-containerd-${id}.scope`;
    const hierarchies = [mounts.v2, ...["memory", "pids"].map((c) => mounts.v1[c]).filter(Boolean)];
    const made: string[] = []; // every dir this test made, outermost first
    const children: Deno.ChildProcess[] = [];
    try {
      for (const mount of hierarchies) {
        let dir = mount;
        for (const seg of rel.split("/").slice(1)) {
          dir += `/${seg}`;
          try {
            Deno.mkdirSync(dir);
            made.push(dir);
          } catch (e) {
            if (!(e instanceof Deno.errors.AlreadyExists)) throw e; // shared QoS parents
          }
        }
      }
      const spawnInto = () => {
        const child = new Deno.Command("sleep", { args: ["60"], stdout: "null", stderr: "null" })
          .spawn();
        children.push(child);
        for (const m of hierarchies) {
          Deno.writeTextFileSync(`${m}${rel}/cgroup.procs`, `${child.pid}\n`);
        }
        return child.pid;
      };
      const first = spawnInto();

      const pod: Pod = {
        metadata: { name: "live", namespace: "kupodt", uid },
        spec: { containers: [{ name: "sleeper", image: "busybox" }] },
        status: {
          qosClass: "Burstable",
          containerStatuses: [{
            name: "sleeper",
            image: "busybox",
            containerID: `containerd://${id}`,
            ready: true,
            restartCount: 0,
          }],
        },
      };
      const t0 = performance.now();
      const [c] = podContainers(pod);
      const ms = performance.now() - t0;
      assertEquals(c.cgroupPath, rel);
      assertEquals(c.cgroupId, ino(`${mounts.v2}${rel}`));
      assertEquals(c.runtimeId, id);
      assertEquals(c.pids, [first]);
      for (const ctrl of ["memory", "pids"]) {
        if (mounts.v1[ctrl]) assertEquals(c.cgroupV1Paths[ctrl], rel, ctrl);
      }
      console.log(`  podContainers: ${ms.toFixed(2)} ms`);

      // A process started later is picked up by re-reading.
      const second = spawnInto();
      assertEquals(refreshPids([c]), { added: [second], removed: [] });

      const byPid = attributePid(first);
      assertEquals([byPid.kubelet?.podUid, byPid.kubelet?.qos, byPid.kubelet?.runtime], [
        uid,
        "Burstable",
        "containerd",
      ]);
      assertEquals(byPid.container.cgroupId, c.cgroupId);
      assertEquals(byPid.container.pids, [first, second].sort((a, b) => a - b));
      assertEquals(byPid.container.name, "sleep");
      const byCgroup = attributeCgroup(`${mounts.v2}${rel}`);
      assertEquals(byCgroup.container.cgroupV1Paths, c.cgroupV1Paths);
      assertEquals(byCgroup.container.runtimeId, id);
    } finally {
      for (const child of children) {
        try {
          child.kill("SIGKILL");
        } catch {
          // gone already
        }
        await child.status;
      }
      for (const dir of made.reverse()) {
        // Shared parents another test still uses stay: only this test's own dirs must go.
        await (dir.includes(uid) ? rmdirCgroup(dir) : Deno.remove(dir).catch(() => {}));
      }
    }
    for (const m of hierarchies) {
      let gone = false;
      try {
        Deno.statSync(`${m}${podRel}`);
      } catch {
        gone = true;
      }
      assert(gone, `${m}${podRel} left behind`);
    }
  },
});

Deno.test({
  name: "live: pod-like netns — pid → netns, veth, IPs; veth → netns, pids; name → pids",
  ignore: !live,
  async fn() {
    const ns = `kupodt-${Deno.pid}`;
    const host = `kpt${Deno.pid}h`, peer = `kpt${Deno.pid}p`;
    const octet = Deno.pid % 250 + 1;
    const v4 = `10.199.${octet}.2`, v6 = `fd00:6b75:706f:${octet.toString(16)}::2`;
    let sleeper: Deno.ChildProcess | undefined;
    try {
      await run("ip", ["netns", "add", ns]);
      await run("ip", ["link", "add", host, "type", "veth", "peer", "name", peer]);
      await run("ip", ["link", "set", peer, "netns", ns]);
      await run("ip", ["-n", ns, "link", "set", peer, "name", "eth0"]);
      await run("ip", ["-n", ns, "addr", "add", `${v4}/24`, "dev", "eth0"]);
      await run("ip", ["-n", ns, "addr", "add", `${v6}/64`, "dev", "eth0", "nodad"]);
      await run("ip", ["-n", ns, "link", "set", "eth0", "up"]);
      await run("ip", ["-n", ns, "link", "set", "lo", "up"]);
      await run("ip", ["link", "set", host, "up"]);
      sleeper = new Deno.Command("ip", {
        args: ["netns", "exec", ns, "sleep", "60"],
        stdout: "null",
        stderr: "null",
      }).spawn();
      const pid = sleeper.pid;
      const nsIno = Deno.statSync(`/run/netns/${ns}`).ino!;
      // `ip netns exec` execs the command in place: the same pid, once in the namespace.
      await waitFor(
        () => Deno.statSync(`/proc/${pid}/ns/net`).ino === nsIno ? true : undefined,
        "the sleep to enter the namespace",
      );
      const vethIndex = Number(Deno.readTextFileSync(`/sys/class/net/${host}/ifindex`));

      let t0 = performance.now();
      const net = await podNetwork(pid);
      const tPod = performance.now() - t0;
      assertEquals(net.netnsInode, nsIno);
      assertEquals([net.iface, net.veth, net.vethIndex, net.hostNetwork], [
        "eth0",
        host,
        vethIndex,
        false,
      ]);
      assertEquals(net.ips, [v4, v6]);

      t0 = performance.now();
      const back = await vethNetns(host);
      const tVeth = performance.now() - t0;
      assertEquals([back.netnsInode, back.peer, back.peerIndex], [nsIno, "eth0", net.ifindex]);
      assertEquals(back.pids, [pid]);
      assertEquals(back.ips, [v4, v6]);

      t0 = performance.now();
      const named = netnsByName(ns);
      const tName = performance.now() - t0;
      assertEquals([named.netnsInode, named.nsPath, named.pids], [nsIno, `/run/netns/${ns}`, [
        pid,
      ]]);
      const byPath = await netnsNetwork(named.nsPath);
      assertEquals([byPath.veth, byPath.ips], [host, [v4, v6]]);
      assertEquals(pidsByNetns().get(nsIno), [pid]);

      // The sleep outside any container: itself, in the netns's process groups.
      assertEquals(attributePids(named.pids).map((g) => g.container.pids), [[pid]]);

      // Not a veth, and kupod's own namespace.
      await assertRejectsKupod(() => vethNetns("lo"), /no peer interface/);
      const self = await podNetwork(Deno.pid);
      assertEquals([self.hostNetwork, self.veth], [true, ""]);
      console.log(
        `  podNetwork ${tPod.toFixed(1)} ms, vethNetns ${tVeth.toFixed(1)} ms, ` +
          `netnsByName ${tName.toFixed(2)} ms`,
      );
    } finally {
      if (sleeper) {
        try {
          sleeper.kill("SIGKILL");
        } catch {
          // gone already
        }
        await sleeper.status;
      }
      await run("ip", ["link", "del", host]).catch(() => {});
      await run("ip", ["netns", "del", ns]).catch(() => {});
    }
    const links = await run("ip", ["-o", "link", "show"]);
    assert(!links.includes(host), `${host} left behind`);
    assert(!(await run("ip", ["netns", "list"])).includes(ns), `netns ${ns} left behind`);
  },
});
