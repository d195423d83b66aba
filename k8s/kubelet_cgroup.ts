/**
 * The shapes of the cgroups the kubelet makes for pods, read both ways: from a pod uid to the
 * names its cgroup may have, and from any cgroup path back to pod uid, QoS class, runtime and
 * container id.
 *
 * systemd driver:  .../kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
 *                  cri-containerd-<id>.scope | docker-<id>.scope | crio-<id>.scope
 *                  (Guaranteed: kubepods.slice/kubepods-pod<uid_>.slice; with --cgroup-root=/x
 *                  every slice is prefixed: x.slice/x-kubepods.slice/x-kubepods-pod<uid_>.slice)
 * cgroupfs driver: .../kubepods/burstable/pod<uid>/<id> | kubepods/pod<uid>/<id> |
 *                  kubepods/besteffort/pod<uid>/<id> (CRI-O: crio-<id>)
 * `<uid_>` is the pod uid with "-" replaced by "_" (systemd reserves "-" for nesting). Either
 * shape may sit below anything: a --cgroup-root, a minikube or kind node's own cgroup
 * ("/docker/<node-id>/kubepods/...", "/system.slice/docker-<node-id>.scope/kubepods/...").
 */

import { parseContainerCgroupName } from "./runtime_id.ts";

export type QosClass = "Guaranteed" | "Burstable" | "BestEffort";

export interface KubeletCgroup {
  /** The pod uid as in metadata.uid (with "-"). */
  podUid: string;
  qos: QosClass;
  driver: "systemd" | "cgroupfs";
  /** The pod's cgroup: the leading part of the parsed path. */
  podPath: string;
  /** "containerd", "docker", "cri-o", "" when the name does not say (cgroupfs driver). */
  runtime: string;
  /** "" when the path is the pod's own cgroup or a runtime helper's (CRI-O's conmon). */
  containerId: string;
  /** The container's cgroup (podPath + its name), "" without a container. */
  containerPath: string;
}

const SYSTEMD_POD =
  /^(?:[\w.:-]+-)?kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]{8,})\.slice$/;
const CGROUPFS_POD = /^pod([0-9a-f-]{8,})$/;

const QOS: Record<string, QosClass> = { burstable: "Burstable", besteffort: "BestEffort" };

function podSegment(
  segs: string[],
  i: number,
): { uid: string; qos: QosClass; driver: "systemd" | "cgroupfs" } | null {
  const seg = segs[i];
  const s = seg.match(SYSTEMD_POD);
  if (s) {
    return {
      uid: s[2].replaceAll("_", "-"),
      qos: QOS[s[1] ?? ""] ?? "Guaranteed",
      driver: "systemd",
    };
  }
  const c = seg.match(CGROUPFS_POD);
  if (!c) return null;
  // cgroupfs: only below "kubepods" (directly: Guaranteed) or "kubepods/<qos>".
  const parent = segs[i - 1];
  if (parent === "kubepods") return { uid: c[1], qos: "Guaranteed", driver: "cgroupfs" };
  if (segs[i - 2] === "kubepods" && QOS[parent]) {
    return { uid: c[1], qos: QOS[parent], driver: "cgroupfs" };
  }
  return null;
}

/**
 * Pod uid, QoS class, runtime and container id from a cgroup path (v2 or any v1 controller,
 * as /proc/<pid>/cgroup shows it). Null when the path is not kubelet-shaped. Paths deeper than
 * the container (a runtime's sub-cgroup such as CRI-O's ".../crio-<id>.scope/container") are
 * attributed to the container.
 */
export function parseKubeletCgroup(path: string): KubeletCgroup | null {
  const segs = path.split("/");
  for (let i = 1; i < segs.length; i++) {
    const pod = podSegment(segs, i);
    if (!pod) continue;
    const podPath = segs.slice(0, i + 1).join("/");
    const next = segs[i + 1];
    const c = next === undefined ? null : parseContainerCgroupName(next);
    return {
      podUid: pod.uid,
      qos: pod.qos,
      driver: pod.driver,
      podPath,
      runtime: c?.runtime ?? "",
      containerId: c?.id ?? "",
      containerPath: c ? `${podPath}/${next}` : "",
    };
  }
  return null;
}

/** Whether the cgroup directory `name` is the cgroup of pod `uid` (either driver's spelling). */
export function isPodCgroupName(name: string, uid: string): boolean {
  if (name === `pod${uid}`) return true;
  const m = name.match(SYSTEMD_POD);
  return m !== null && m[2] === uid.replaceAll("-", "_");
}

/** Whether the cgroup directory `name` is some pod's cgroup (pods never nest in pods). */
export function isAnyPodCgroupName(name: string): boolean {
  return SYSTEMD_POD.test(name) || CGROUPFS_POD.test(name);
}

/**
 * The usual places of pod `uid`'s cgroup relative to the hierarchy root, QoS class `qos` (when
 * known) first: tried before any search.
 */
export function usualPodPaths(uid: string, qos?: string): string[] {
  const u = uid.replaceAll("-", "_");
  const byQos: Record<QosClass, string[]> = {
    Guaranteed: [`/kubepods.slice/kubepods-pod${u}.slice`, `/kubepods/pod${uid}`],
    Burstable: [
      `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${u}.slice`,
      `/kubepods/burstable/pod${uid}`,
    ],
    BestEffort: [
      `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${u}.slice`,
      `/kubepods/besteffort/pod${uid}`,
    ],
  };
  const order: QosClass[] = ["Burstable", "BestEffort", "Guaranteed"];
  if (qos && qos in byQos) order.unshift(qos as QosClass);
  return [...new Set(order.flatMap((q) => byQos[q]))];
}
