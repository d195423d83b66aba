/**
 * Container attribution from the node's cgroup filesystems, without any runtime API: a pod's
 * containers → their cgroups (v2 path and id, v1 paths) → their pids; and the reverse, a pid or
 * a cgroup → pod uid, QoS class, runtime and container id when the cgroup is kubelet-shaped.
 */

import { KupodError } from "../base/errors.ts";
import {
  cgroupDir,
  type CgroupMounts,
  cgroupMountsAt,
  cgroupProcs,
  findCgroupDirs,
  type HostRoots,
  isDir,
  type WalkLimits,
} from "./cgroupfs.ts";
import {
  isAnyPodCgroupName,
  isPodCgroupName,
  type KubeletCgroup,
  parseKubeletCgroup,
  usualPodPaths,
} from "./kubelet_cgroup.ts";
import { comm, descendants, parseProcCgroup, type ProcCgroups, processExists } from "./proc.ts";
import { isContainerCgroupName, parseContainerId } from "./runtime_id.ts";
import type { Container, Role } from "./target.ts";
import type { ContainerSpec, ContainerStatus, Pod } from "./types.ts";

export interface AttributionOptions extends HostRoots {
  /** The cgroup mounts; found from `proc`/`mountinfo`/`root` when absent. */
  mounts?: CgroupMounts;
  /** Bounds of the search for a pod's cgroup below each hierarchy's root. */
  limits?: WalkLimits;
}

/** A cgroup in every hierarchy: v2 path ("" when none) and v1 paths by controller. */
export interface CgroupPaths {
  /** Relative to the cgroup2 mount, "" when not found there. */
  v2: string;
  /** Relative to each controller's mount; controllers where it was not found are absent. */
  v1: Record<string, string>;
}

/** v1 controllers in the order their paths are trusted to show a process's container. */
const V1_PREFERENCE = ["pids", "memory", "cpu", "cpuacct", "systemd", "blkio", "devices"];

function mountsOf(opts: AttributionOptions): CgroupMounts {
  return opts.mounts ?? cgroupMountsAt(opts);
}

/** v1 controllers grouped by mount point (co-mounted controllers share one tree). */
function v1Trees(mounts: CgroupMounts): Map<string, string[]> {
  const trees = new Map<string, string[]>();
  for (const [ctrl, at] of Object.entries(mounts.v1)) {
    const list = trees.get(at) ?? [];
    list.push(ctrl);
    trees.set(at, list);
  }
  return trees;
}

function inode(dir: string): bigint {
  try {
    return BigInt(Deno.statSync(dir).ino ?? 0);
  } catch {
    return 0n; // gone meanwhile
  }
}

/**
 * A directory in one hierarchy: the first of `hints` that exists, else a bounded breadth-first
 * search from the root for a directory named as `match` says. "" when nowhere.
 */
function locate(
  mount: string,
  hints: string[],
  match: (name: string) => boolean,
  limits: WalkLimits | undefined,
): string {
  for (const h of hints) {
    if (h && h !== "/" && match(h.slice(h.lastIndexOf("/") + 1)) && isDir(cgroupDir(mount, h))) {
      return h;
    }
  }
  return findCgroupDirs(mount, match, { prune: isAnyPodCgroupName, ...limits, maxMatches: 1 })[0] ??
    "";
}

function forEachHierarchy(
  mounts: CgroupMounts,
  find: (mount: string, known: string[]) => string,
): CgroupPaths {
  const out: CgroupPaths = { v2: "", v1: {} };
  const known: string[] = [];
  if (mounts.v2) {
    out.v2 = find(mounts.v2, known);
    if (out.v2) known.push(out.v2);
  }
  for (const [mount, ctrls] of v1Trees(mounts)) {
    const path = find(mount, known);
    if (!path) continue;
    if (!known.includes(path)) known.push(path);
    for (const c of ctrls) out.v1[c] = path;
  }
  return out;
}

/**
 * The cgroup of pod `uid` in every hierarchy: tried first where a pod of QoS class `qos` would
 * be (and where `hints` say), then searched for by name (both spellings of the uid) anywhere
 * below each hierarchy's root, which finds it below a --cgroup-root or a minikube/kind node too.
 */
export function findPodCgroup(
  uid: string,
  opts: AttributionOptions & { qos?: string; hints?: string[] } = {},
): CgroupPaths {
  const usual = usualPodPaths(uid, opts.qos);
  return forEachHierarchy(
    mountsOf(opts),
    (mount, known) =>
      locate(
        mount,
        [...(opts.hints ?? []), ...known, ...usual],
        (n) => isPodCgroupName(n, uid),
        opts.limits,
      ),
  );
}

/**
 * The cgroup of container `id` inside pod cgroup `pod` (in each hierarchy where the pod's was
 * found): a child of the pod's cgroup (or a grandchild) named after the id.
 */
export function findContainerCgroup(
  pod: CgroupPaths,
  id: string,
  opts: AttributionOptions & { hints?: string[] } = {},
): CgroupPaths {
  const mounts = mountsOf(opts);
  const podPathIn = (mount: string): string => {
    if (mount === mounts.v2) return pod.v2;
    const ctrl = Object.keys(mounts.v1).find((c) => mounts.v1[c] === mount && pod.v1[c]);
    return ctrl ? pod.v1[ctrl] : "";
  };
  return forEachHierarchy(mounts, (mount, known) => {
    const podPath = podPathIn(mount);
    if (!podPath || !id) return "";
    const base = cgroupDir(mount, podPath);
    const hints = [...(opts.hints ?? []), ...known]
      .filter((h) => h.startsWith(`${podPath}/`))
      .map((h) => h.slice(podPath.length));
    for (const h of hints) if (isDir(base + h)) return podPath + h;
    const rel = findCgroupDirs(base, (n) => isContainerCgroupName(n, id), {
      maxDepth: 2,
      maxMatches: 1,
    })[0];
    return rel ? podPath + rel : "";
  });
}

/** Every pid in the container's cgroup and below: v2 when known, else a v1 controller's. */
export function containerPids(
  c: Pick<Container, "cgroupPath" | "cgroupV1Paths">,
  opts: AttributionOptions = {},
): number[] {
  const mounts = mountsOf(opts);
  if (c.cgroupPath && mounts.v2) return cgroupProcs(cgroupDir(mounts.v2, c.cgroupPath));
  const ctrls = Object.keys(c.cgroupV1Paths).filter((k) => mounts.v1[k]);
  ctrls.sort((a, b) => rank(a) - rank(b));
  const ctrl = ctrls[0];
  return ctrl ? cgroupProcs(cgroupDir(mounts.v1[ctrl], c.cgroupV1Paths[ctrl])) : [];
}

function rank(ctrl: string): number {
  const i = V1_PREFERENCE.indexOf(ctrl);
  return i < 0 ? V1_PREFERENCE.length : i;
}

/**
 * Re-reads every container's pids (the watcher calls this periodically so processes started
 * later are observed), updating `containers` in place. Returns the pids that appeared and the
 * ones that went.
 */
export function refreshPids(
  containers: Container[],
  opts: AttributionOptions = {},
): { added: number[]; removed: number[] } {
  const mounts = mountsOf(opts);
  const added: number[] = [], removed: number[] = [];
  for (const c of containers) {
    if (!c.cgroupPath && !Object.keys(c.cgroupV1Paths).length) continue;
    const now = containerPids(c, { ...opts, mounts });
    const before = new Set(c.pids), after = new Set(now);
    for (const p of now) if (!before.has(p)) added.push(p);
    for (const p of c.pids) if (!after.has(p)) removed.push(p);
    c.pids = now;
  }
  return { added, removed };
}

// ---------------------------------------------------------------------------------------------
// Pod → containers

export interface ContainerCgroup extends CgroupPaths {
  /** Container name in the pod spec. */
  name: string;
  /** "containerd", "docker", "cri-o" (scheme of containerID), "" before the container exists. */
  runtime: string;
  runtimeId: string;
  /** cgroup v2 id (inode of the v2 directory), 0n when not in a kubelet-made v2 cgroup. */
  cgroupId: bigint;
}

export interface PodCgroups {
  uid: string;
  /** The pod's own cgroup. */
  pod: CgroupPaths;
  containers: ContainerCgroup[];
}

/** Status of every container (regular and init) by name. */
function statusesOf(pod: Pod): Map<string, ContainerStatus> {
  const status = pod.status as Pod["status"] & { initContainerStatuses?: ContainerStatus[] };
  const out = new Map<string, ContainerStatus>();
  for (const s of status.initContainerStatuses ?? []) out.set(s.name, s);
  for (const s of status.containerStatuses ?? []) out.set(s.name, s);
  return out;
}

/**
 * The containers to observe: every container of the spec, and the init containers running now
 * (restartable "native sidecar" init containers among them).
 */
function observedSpecs(pod: Pod, statuses: Map<string, ContainerStatus>): ContainerSpec[] {
  const inits = (pod.spec.initContainers ?? []).filter((c) => {
    const s = statuses.get(c.name);
    return s?.containerID && s.state?.running;
  });
  return [...inits, ...pod.spec.containers];
}

/** The cgroups of the pod and of each of its containers (empty paths where not found). */
export function podCgroups(pod: Pod, opts: AttributionOptions = {}): PodCgroups {
  const mounts = mountsOf(opts);
  const o = { ...opts, mounts };
  const uid = pod.metadata.uid;
  const paths = findPodCgroup(uid, { ...o, qos: pod.status.qosClass });
  const statuses = statusesOf(pod);
  const containers = observedSpecs(pod, statuses).map((spec): ContainerCgroup => {
    const rid = parseContainerId(statuses.get(spec.name)?.containerID);
    const cg = rid ? findContainerCgroup(paths, rid.id, o) : { v2: "", v1: {} };
    return {
      name: spec.name,
      runtime: rid?.runtime ?? "",
      runtimeId: rid?.id ?? "",
      v2: cg.v2,
      v1: cg.v1,
      cgroupId: cg.v2 ? inode(cgroupDir(mounts.v2, cg.v2)) : 0n,
    };
  });
  return { uid, pod: paths, containers };
}

/**
 * The containers of `pod` as probes consume them, with their current pids. Throws when the pod
 * has a started container but no cgroup on this node (kupod must run on the pod's node, with
 * the host's cgroup filesystem). Containers not started yet, or whose cgroup is gone (a restart
 * the pod object does not show yet), have no cgroup and no pids.
 */
export function podContainers(
  pod: Pod,
  opts: AttributionOptions & { role?: (containerName: string) => Role } = {},
): Container[] {
  const mounts = mountsOf(opts);
  const cgs = podCgroups(pod, { ...opts, mounts });
  const started = cgs.containers.some((c) => c.runtimeId);
  if (started && !cgs.pod.v2 && !Object.keys(cgs.pod.v1).length) {
    const where = [mounts.v2, ...new Set(Object.values(mounts.v1))].filter(Boolean).join(", ");
    throw new KupodError(
      `no cgroup of pod ${pod.metadata.namespace ?? ""}/${pod.metadata.name} (uid ${cgs.uid}) ` +
        `under ${where || "any cgroup mount"}: is it on this node?`,
    );
  }
  const images = new Map(
    [...(pod.spec.initContainers ?? []), ...pod.spec.containers].map((c) => [c.name, c.image]),
  );
  return cgs.containers.map((c) => {
    const container: Container = {
      name: c.name,
      image: images.get(c.name) ?? "",
      role: opts.role?.(c.name) ?? "service",
      runtimeId: c.runtimeId,
      cgroupId: c.cgroupId,
      cgroupPath: c.v2,
      cgroupV1Paths: c.v1,
      pids: [],
    };
    container.pids = containerPids(container, { ...opts, mounts });
    return container;
  });
}

// ---------------------------------------------------------------------------------------------
// Reverse: pid or cgroup → container, without Kubernetes

export interface LocalContainer {
  container: Container;
  /** Pod uid, QoS class, runtime and container id when the cgroup is kubelet-shaped. */
  kubelet: KubeletCgroup | null;
}

/** The kubelet shape of a process's cgroups: from v2 first, else from a v1 controller. */
export function kubeletOfProcess(cg: ProcCgroups): KubeletCgroup | null {
  const v2 = cg.v2 ? parseKubeletCgroup(cg.v2) : null;
  if (v2) return v2;
  const ctrls = Object.keys(cg.v1).sort((a, b) => rank(a) - rank(b));
  for (const c of ctrls) {
    const k = parseKubeletCgroup(cg.v1[c]);
    if (k) return k;
  }
  return null;
}

function readCgroups(pid: number, proc: string): ProcCgroups {
  try {
    return parseProcCgroup(Deno.readTextFileSync(`${proc}/${pid}/cgroup`));
  } catch {
    return { v2: "", v1: {} }; // exited meanwhile
  }
}

function commOr(pid: number | undefined, proc: string, fallback: string): string {
  if (pid === undefined) return fallback;
  try {
    return comm(pid, proc);
  } catch {
    return fallback;
  }
}

/**
 * The container of a kubelet-shaped cgroup, in every hierarchy (`hints`: the paths already
 * known, tried before any search). Named after its first process.
 */
function kubeletContainer(
  k: KubeletCgroup,
  hints: string[],
  mounts: CgroupMounts,
  opts: AttributionOptions,
): Container {
  const o = { ...opts, mounts };
  const podHints = hints.map((h) => parseKubeletCgroup(h)?.podPath ?? "").filter(Boolean);
  const pod = findPodCgroup(k.podUid, { ...o, qos: k.qos, hints: podHints });
  const containerHints = hints
    .map((h) => parseKubeletCgroup(h))
    .filter((p) => p?.containerId === k.containerId)
    .map((p) => p!.containerPath);
  const cg = findContainerCgroup(pod, k.containerId, { ...o, hints: containerHints });
  const c: Container = {
    name: "",
    image: "",
    role: "service",
    runtimeId: k.containerId,
    cgroupId: cg.v2 ? inode(cgroupDir(mounts.v2, cg.v2)) : 0n,
    cgroupPath: cg.v2,
    cgroupV1Paths: cg.v1,
    pids: [],
  };
  c.pids = containerPids(c, o);
  c.name = commOr(c.pids[0], opts.proc ?? "/proc", k.containerId.slice(0, 12));
  return c;
}

/**
 * What `--pid` observes. In a kubelet-shaped cgroup (with a container id), the process's whole
 * container; otherwise (or when that cgroup is not visible under the mounts) the process itself
 * and its descendants, in its own cgroups.
 */
export function attributePid(pid: number, opts: AttributionOptions = {}): LocalContainer {
  const proc = opts.proc ?? "/proc";
  if (!processExists(pid, proc)) throw new KupodError(`process ${pid} does not exist`);
  const mounts = mountsOf(opts);
  const cg = readCgroups(pid, proc);
  const k = kubeletOfProcess(cg);
  if (k?.containerId) {
    const c = kubeletContainer(k, [cg.v2, ...Object.values(cg.v1)], mounts, opts);
    // Found in some hierarchy: the container. Else (another cgroup namespace's view, say) the
    // process itself, still with what its cgroup names.
    if (c.cgroupPath || Object.keys(c.cgroupV1Paths).length) return { container: c, kubelet: k };
  }
  let id = 0n;
  if (cg.v2 && mounts.v2) id = inode(cgroupDir(mounts.v2, cg.v2));
  return {
    container: {
      name: commOr(pid, proc, String(pid)),
      image: "",
      role: "service",
      runtimeId: k?.containerId ?? "",
      cgroupId: id,
      cgroupPath: cg.v2,
      cgroupV1Paths: cg.v1,
      pids: descendants(pid, proc),
    },
    kubelet: k,
  };
}

/**
 * What `--cgroup` observes. `path` is relative to the cgroup2 mount ("/kubepods.slice/..."), or
 * absolute below a cgroup mount ("/sys/fs/cgroup/memory/kubepods/..."). A kubelet-shaped path
 * naming a container gives the whole container in every hierarchy; any other cgroup is observed
 * as it is (with the same path in the v1 hierarchies where it exists).
 */
export function attributeCgroup(path: string, opts: AttributionOptions = {}): LocalContainer {
  const mounts = mountsOf(opts);
  const clean = ("/" + path.replace(/\/+$/, "")).replace(/\/+/g, "/");
  // Where to look: the mount the path is under, else every hierarchy (v2 first).
  const homes: { mount: string; ctrl: string; rel: string }[] = [];
  const under = (m: string) => m && (clean === m || clean.startsWith(`${m}/`));
  if (under(mounts.v2)) {
    homes.push({ mount: mounts.v2, ctrl: "", rel: clean.slice(mounts.v2.length) });
  }
  for (const [c, m] of Object.entries(mounts.v1)) {
    if (under(m)) homes.push({ mount: m, ctrl: c, rel: clean.slice(m.length) });
  }
  if (!homes.length) {
    if (mounts.v2) homes.push({ mount: mounts.v2, ctrl: "", rel: clean });
    const ctrls = Object.keys(mounts.v1).sort((a, b) => rank(a) - rank(b));
    for (const c of ctrls) homes.push({ mount: mounts.v1[c], ctrl: c, rel: clean });
  }
  const home = homes.find((h) => isDir(cgroupDir(h.mount, h.rel || "/")));
  if (!home) {
    const where = homes.length ? homes.map((h) => h.mount).join(", ") : "any cgroup mount";
    throw new KupodError(`cgroup ${path} does not exist under ${where}`);
  }
  const rel = home.rel || "/", ctrl = home.ctrl;
  const k = parseKubeletCgroup(rel);
  if (k?.containerId) {
    return { container: kubeletContainer(k, [rel], mounts, opts), kubelet: k };
  }
  const v1: Record<string, string> = {};
  for (const [c, m] of Object.entries(mounts.v1)) {
    if (c === ctrl || isDir(cgroupDir(m, rel))) v1[c] = rel;
  }
  const v2 = ctrl ? (mounts.v2 && isDir(cgroupDir(mounts.v2, rel)) ? rel : "") : rel;
  const container: Container = {
    name: rel === "/" ? "/" : rel.slice(rel.lastIndexOf("/") + 1),
    image: "",
    role: "service",
    runtimeId: "",
    cgroupId: v2 ? inode(cgroupDir(mounts.v2, v2)) : 0n,
    cgroupPath: v2,
    cgroupV1Paths: v1,
    pids: [],
  };
  container.pids = ctrl
    ? cgroupProcs(cgroupDir(home.mount, rel))
    : containerPids(container, { ...opts, mounts });
  return { container, kubelet: k };
}

/**
 * The containers of a set of processes (all the processes of a network namespace, for
 * `--netns` and `--veth`): processes in a kubelet-shaped container cgroup are grouped by
 * container, with all of that container's pids; the others by cgroup, with just the given pids.
 * Ordered by first pid.
 */
export function attributePids(pids: number[], opts: AttributionOptions = {}): LocalContainer[] {
  const proc = opts.proc ?? "/proc";
  const mounts = mountsOf(opts);
  const groups = new Map<string, { pids: number[]; cg: ProcCgroups; k: KubeletCgroup | null }>();
  for (const pid of [...pids].sort((a, b) => a - b)) {
    const cg = readCgroups(pid, proc);
    const k = kubeletOfProcess(cg);
    const key = k?.containerId
      ? `k:${k.podUid}/${k.containerId}`
      : `c:${cg.v2}|${JSON.stringify(cg.v1)}`;
    const g = groups.get(key);
    if (g) g.pids.push(pid);
    else groups.set(key, { pids: [pid], cg, k });
  }
  const out: LocalContainer[] = [];
  for (const { pids: own, cg, k } of groups.values()) {
    if (k?.containerId) {
      const c = kubeletContainer(k, [cg.v2, ...Object.values(cg.v1)], mounts, opts);
      if (!c.pids.length) c.pids = own;
      out.push({ container: c, kubelet: k });
      continue;
    }
    out.push({
      container: {
        name: commOr(own[0], proc, String(own[0])),
        image: "",
        role: "service",
        runtimeId: "",
        cgroupId: cg.v2 && mounts.v2 ? inode(cgroupDir(mounts.v2, cg.v2)) : 0n,
        cgroupPath: cg.v2,
        cgroupV1Paths: cg.v1,
        pids: own,
      },
      kubelet: k,
    });
  }
  return out;
}
