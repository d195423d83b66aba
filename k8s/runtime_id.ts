/**
 * Container runtime ids: as the kubelet reports them (containerStatuses[].containerID) and as
 * they appear in the names of the containers' cgroups.
 */

/** The runtimes kupod knows by name; any other scheme is carried through as given. */
export type KnownRuntime = "containerd" | "docker" | "cri-o";

export interface RuntimeId {
  /** "containerd", "docker", "cri-o", another runtime's scheme as given, or "" when not known. */
  runtime: string;
  /** The id without the scheme (64 hex digits for the known runtimes). */
  id: string;
}

/**
 * Parses containerStatuses[].containerID: "containerd://<id>", "docker://<id>", "cri-o://<id>"
 * (any other "<scheme>://<id>" too). Null when absent, as before the container exists.
 */
export function parseContainerId(containerID: string | undefined): RuntimeId | null {
  const m = containerID?.trim().match(/^([a-z][a-z0-9+.-]*):\/\/([A-Za-z0-9][A-Za-z0-9_.-]*)$/);
  return m ? { runtime: m[1], id: m[2] } : null;
}

/**
 * Prefixes of a container's cgroup name below its pod's cgroup, by runtime. With the systemd
 * driver the name is "<prefix>-<id>.scope"; with the cgroupfs driver it is the bare id
 * (containerd, docker) or "crio-<id>" (CRI-O).
 */
const PREFIX_RUNTIME: Record<string, KnownRuntime> = {
  "cri-containerd": "containerd",
  "containerd": "containerd",
  "docker": "docker",
  "crio": "cri-o",
};

/** CRI-O's per-container conmon process sits in "crio-conmon-<id>.scope": not the container. */
const HELPER_PREFIXES = new Set(["crio-conmon"]);

const CONTAINER_CGROUP = /^(?:([a-z][a-z0-9-]*?)-)?([0-9a-f]{64})(?:\.scope)?$/;

/**
 * Runtime and id from the name of a container's cgroup directory ("cri-containerd-<id>.scope",
 * "docker-<id>.scope", "crio-<id>.scope", "crio-<id>", "<id>"); runtime "" for a bare id, which
 * the cgroupfs driver gives every runtime but CRI-O. Null when the name carries no container id
 * or names a runtime helper (CRI-O's conmon scope).
 */
export function parseContainerCgroupName(name: string): RuntimeId | null {
  const m = name.match(CONTAINER_CGROUP);
  if (!m) return null;
  const prefix = m[1] ?? "";
  if (HELPER_PREFIXES.has(prefix)) return null;
  return { runtime: prefix ? (PREFIX_RUNTIME[prefix] ?? prefix) : "", id: m[2] };
}

/** Whether the cgroup directory `name` is the one of container `id` (any runtime's spelling). */
export function isContainerCgroupName(name: string, id: string): boolean {
  if (!id || !name.includes(id)) return false;
  const base = name.endsWith(".scope") ? name.slice(0, -".scope".length) : name;
  if (base === id) return true;
  if (!base.endsWith(`-${id}`)) return false;
  return !HELPER_PREFIXES.has(base.slice(0, -id.length - 1));
}
