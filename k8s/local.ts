/**
 * Targets without Kubernetes: a process tree (--pid), a cgroup (--cgroup), a
 * network namespace (--netns) or the host side of a pod's veth (--veth).
 * Processes in kubelet-shaped cgroups are grouped into their containers.
 */

import { KupodError } from "../base/errors.ts";
import type { SidecarMode } from "./sidecar.ts";
import { cgroupDir, cgroupMountsAt, cgroupProcs } from "./cgroupfs.ts";
import { attributeCgroup, attributePid, attributePids, type LocalContainer } from "./containers.ts";
import {
  netnsByName,
  netnsNetwork,
  netnsPaths,
  type NetnsRef,
  readNum,
  vethNetns,
} from "./podnet.ts";
import { descendants, netnsInode, nsInode, pidsByNetns } from "./proc.ts";
import { processRoles } from "./sidecar.ts";
import type { Container, Target, TargetKind } from "./target.ts";

function localTarget(kind: TargetKind, containers: Container[], fields: Partial<Target>): Target {
  return {
    kind,
    namespace: "",
    pod: "",
    node: Deno.hostname(),
    podIP: "",
    hostIP: "",
    netnsInode: 0,
    veth: "",
    containers,
    ...fields,
  };
}

/** Containers of a set of local processes, with sidecars recognised by process name. */
function withRoles(found: LocalContainer[], mode: SidecarMode): Container[] {
  const containers = found.map((f) => f.container);
  const roles = processRoles(containers.map((c) => c.name), mode);
  containers.forEach((c, i) => (c.role = roles[i]));
  return containers;
}

/** Process `pid` and its descendants (forked ones join in the kernel). */
export function resolvePid(pid: number, mode: SidecarMode = "blur", proc = "/proc"): Target {
  const found = attributePid(pid, { proc });
  // --pid means this process tree, not every process of its container
  found.container.pids = descendants(pid, proc);
  return localTarget("pid", withRoles([found], mode), { netnsInode: netnsInode(pid, proc) });
}

/** Every process in cgroup `path` and below, one container per cgroup that holds processes. */
export function resolveCgroup(path: string, mode: SidecarMode = "blur"): Target {
  const top = attributeCgroup(path);
  const mounts = cgroupMountsAt();
  const dir = top.container.cgroupPath && mounts.v2
    ? cgroupDir(mounts.v2, top.container.cgroupPath)
    : "";
  const below = dir ? attributePids(cgroupProcs(dir)) : [];
  // the cgroup itself stays first, so processes that join it later are attributed too
  const others = below.filter((b) => b.container.cgroupId !== top.container.cgroupId);
  return localTarget("cgroup", withRoles([top, ...others], mode), {});
}

async function netnsTarget(
  kind: "netns" | "veth",
  ref: NetnsRef,
  mode: SidecarMode,
  veth = "",
): Promise<Target> {
  const net = await netnsNetwork(ref.nsPath);
  if (net.hostNetwork) {
    throw new KupodError(`${ref.nsPath} is the host's own network namespace: give a pod's`);
  }
  const containers = ref.pids.length ? withRoles(attributePids(ref.pids), mode) : [];
  return localTarget(kind, containers, {
    netnsInode: ref.netnsInode,
    veth: veth || net.veth,
    podIP: net.ips[0] ?? "",
  });
}

/** Every process in a network namespace given by path or `ip netns` name. */
export function resolveNetns(nameOrPath: string, mode: SidecarMode = "blur"): Promise<Target> {
  return netnsTarget("netns", netnsByName(nameOrPath), mode);
}

/**
 * Re-reads a --netns or --veth target while kupod runs: `full` resolves it, and is called again
 * only when the namespace or the veth is no longer the one last resolved (the host veth's
 * ifindex or peer changed, the namespace --netns names is another one, the namespace has no
 * process left). Otherwise only the processes in the namespace are listed, and their
 * containers are attributed again (cgroup hierarchies searched) only when a process came, went
 * or changed cgroup: no `ip` run inside the namespace (a process started per poll, the agent's
 * largest idle cost) and no cgroup search per poll (its largest cost under load).
 */
export function netnsTargetRefresher(
  full: () => Promise<Target>,
  mode: SidecarMode,
  netnsName = "",
  sysClassNet = "/sys/class/net",
): () => Promise<Target> {
  const nsPaths = netnsName ? netnsPaths(netnsName) : [];
  let last: Target | undefined;
  let lastKey = "";
  const key = (t: Target) => {
    const veth = t.veth ? `${sysClassNet}/${t.veth}` : "";
    return [
      nsPaths.length ? nsPaths.map((p) => nsInode(p)).find((i) => i) : t.netnsInode,
      veth ? readNum(`${veth}/ifindex`) : 0,
      veth ? readNum(`${veth}/iflink`) : 0,
    ].join(":");
  };
  // the processes of the last poll with their /proc/<pid>/cgroup: unchanged, so are the containers
  let lastProcs = "";
  const procs = (pids: number[]) => {
    try {
      return pids.map((p) => `${p}:${Deno.readTextFileSync(`/proc/${p}/cgroup`)}`).join("\n");
    } catch {
      return ""; // one exited meanwhile
    }
  };
  return async () => {
    if (last && key(last) === lastKey) {
      const pids = pidsByNetns().get(last.netnsInode);
      // a namespace without processes may be gone: only `full` can tell
      if (pids?.length) {
        const now = procs(pids);
        if (now && now === lastProcs) return last;
        lastProcs = now;
        last = { ...last, containers: withRoles(attributePids(pids), mode) };
        return last;
      }
    }
    last = await full();
    lastKey = key(last);
    lastProcs = "";
    return last;
  };
}

/** The pod behind the host side of a veth: its network namespace and the processes in it. */
export async function resolveVeth(veth: string, mode: SidecarMode = "blur"): Promise<Target> {
  const peer = await vethNetns(veth);
  return netnsTarget("veth", peer, mode, veth);
}
