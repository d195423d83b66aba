/** The Target: what every probe observes. Probes never talk to Kubernetes; they get this. */

export type Role = "sidecar" | "service";

export interface Container {
  /** Container name in the pod spec, or the process name for a local target. */
  name: string;
  image: string;
  role: Role;
  /** Runtime id without the scheme ("containerd://" etc.), "" when unknown. */
  runtimeId: string;
  /** cgroup v2 id (inode of the cgroup v2 directory), 0n when the process has none. */
  cgroupId: bigint;
  /** cgroup v2 path relative to the cgroup2 mount, "" when none. */
  cgroupPath: string;
  /** cgroup v1 paths by controller ("memory" → "/kubepods/..."). */
  cgroupV1Paths: Record<string, string>;
  pids: number[];
}

export type TargetKind = "pod" | "pid" | "cgroup" | "netns" | "veth";

export interface Target {
  kind: TargetKind;
  namespace: string;
  pod: string;
  node: string;
  podIP: string;
  hostIP: string;
  /** Inode of the pod's network namespace, 0 when unknown. */
  netnsInode: number;
  /** Host-side veth of the pod, "" when unknown. */
  veth: string;
  containers: Container[];
}

/** How events name a container: the fields of the JSON contract. */
export interface Attribution {
  namespace?: string;
  pod?: string;
  container?: string;
  role?: Role;
}

/** Attribution for container index `index` of `target` (u32 -1 = only the pod matched). */
export function attribution(target: Target, index: number): Attribution {
  const out: Attribution = {};
  if (target.namespace) out.namespace = target.namespace;
  if (target.pod) out.pod = target.pod;
  const c = target.containers[index];
  if (c) {
    out.container = c.name;
    out.role = c.role;
  }
  return out;
}
