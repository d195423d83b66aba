/**
 * Fills an object's in-kernel target filter (bpf/include/filter.h) from a
 * Target. The filter kind follows the target: a process tree filters by pid
 * (the kernel adds forked children itself), pods and cgroups by cgroup id,
 * netns and veth targets by network namespace.
 */

import type { BpfObject, RodataValue } from "../bpf/object.ts";
import { type BpfMap, u32Key, u64Key } from "../bpf/map.ts";
import type { Target } from "../k8s/target.ts";

const NO_CONTAINER = 0xffffffff;
/** ROLE_* of bpf/include/filter.h */
const ROLE_SERVICE = 0;
const ROLE_SIDECAR = 1;

export interface FilterMode {
  pid: boolean;
  cgroup: boolean;
  netns: boolean;
  /** The netns admits, cgroups only name containers (--veth, --netns). */
  requireNetns: boolean;
}

export function filterMode(target: Target): FilterMode {
  // Without a cgroup v2 id (a cgroup v1-only host), a container is followed by its pids.
  const byPid = target.containers.some((c) => !c.cgroupId);
  switch (target.kind) {
    case "pid":
      return { pid: true, cgroup: false, netns: false, requireNetns: false };
    case "pod":
    case "cgroup":
      return { pid: byPid, cgroup: true, netns: false, requireNetns: false };
    case "netns":
    case "veth":
      // the netns admits every process of the pod; cgroups name their containers
      return { pid: false, cgroup: true, netns: true, requireNetns: true };
  }
}

/** The rodata switches of filter.h for `mode`. */
export function filterRodata(mode: FilterMode): Record<string, RodataValue> {
  return {
    filter_by_pid: mode.pid,
    filter_by_cgroup: mode.cgroup,
    filter_by_netns: mode.netns,
    require_netns: mode.requireNetns,
  };
}

/**
 * Writes the target's keys into the loaded object's filter maps, then removes keys no longer in
 * it: programs run while this goes on, and a key the old and the new target share is never
 * missing meanwhile (a connection claimed then would be lost for good).
 */
export function applyFilter(obj: BpfObject, mode: FilterMode, target: Target): void {
  // roles first, so a container is never seen before its role is known
  const roles = obj.map("target_roles");
  target.containers.slice(0, roles.maxEntries).forEach((c, i) =>
    roles.update(u32Key(i), u32Key(c.role === "sidecar" ? ROLE_SIDECAR : ROLE_SERVICE))
  );
  if (mode.pid) {
    // Pids are only added: the kernel removes exited processes and adds forked ones.
    const pids = obj.map("target_pids");
    target.containers.forEach((c, i) => {
      for (const pid of c.pids) pids.update(u32Key(pid), u32Key(i));
    });
  }
  if (mode.cgroup) {
    const wanted = new Map<bigint, number>();
    target.containers.forEach((c, i) => c.cgroupId && wanted.set(c.cgroupId, i));
    replaceKeys(obj.map("target_cgroups"), [...wanted].map(([id, i]) => [u64Key(id), u32Key(i)]));
  }
  // a pod's sockets are all in its netns; a process tree's or a cgroup's may be anywhere
  const podNetns = target.kind === "pid" || target.kind === "cgroup" ? 0 : target.netnsInode;
  obj.map("target_sock_netns").update(u32Key(0), u32Key(podNetns));
  if (mode.netns) {
    const entries: [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>][] = target.netnsInode
      ? [[u32Key(target.netnsInode), u32Key(NO_CONTAINER)]]
      : [];
    replaceKeys(obj.map("target_netns"), entries);
  }
}

/** Makes a hash map hold exactly `entries`: every one written first, then the others deleted. */
function replaceKeys(
  map: BpfMap,
  entries: [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>][],
): void {
  for (const [key, value] of entries) map.update(key, value);
  const kept = new Set(entries.map(([key]) => key.join()));
  for (const key of [...map.keys()]) if (!kept.has(key.join())) map.delete(key);
}
