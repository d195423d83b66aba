/** Where the cgroup hierarchies are mounted (v2 at /sys/fs/cgroup or /sys/fs/cgroup/unified, v1 per controller). */

import { mountsOfType } from "../bpf/preflight.ts";

export interface CgroupMounts {
  /** cgroup2 mount point, "" when none. */
  v2: string;
  /** v1 mount point per controller ("memory" → "/sys/fs/cgroup/memory"). */
  v1: Record<string, string>;
}

/** Mount options of a v1 cgroup mount that are not controllers. */
const V1_NOT_CONTROLLERS = new Set([
  "rw",
  "ro",
  "relatime",
  "noatime",
  "nosuid",
  "nodev",
  "noexec",
  "xattr",
  "noprefix",
  "clone_children",
  "cpuset_v2_mode",
  "favordynmods",
  "none",
  "all",
]);

export function cgroupMounts(
  mountinfo = Deno.readTextFileSync("/proc/self/mountinfo"),
): CgroupMounts {
  const v2 = mountsOfType(mountinfo, "cgroup2")[0] ?? "";
  const v1: Record<string, string> = {};
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const [fstype, , superOpts] = line.slice(sep + 3).split(" ");
    if (fstype !== "cgroup") continue;
    const mountPoint = line.slice(0, sep).split(" ")[4];
    for (const opt of superOpts.split(",")) {
      if (V1_NOT_CONTROLLERS.has(opt) || opt.startsWith("release_agent")) continue;
      v1[opt.replace(/^name=/, "")] ??= mountPoint;
    }
  }
  return { v2, v1 };
}

/** Where to find the host's files: fixture trees in tests, the real ones otherwise. */
export interface HostRoots {
  /** The proc filesystem ("/proc"). */
  proc?: string;
  /** Text of the mountinfo to read the cgroup mounts from; default `${proc}/self/mountinfo`. */
  mountinfo?: string;
  /** Prefix for every mount point found in the mountinfo ("" = the real root). */
  root?: string;
}

/** The cgroup mounts of `roots` (mount points prefixed with `roots.root`). */
export function cgroupMountsAt(roots: HostRoots = {}): CgroupMounts {
  const proc = roots.proc ?? "/proc";
  const m = cgroupMounts(roots.mountinfo ?? Deno.readTextFileSync(`${proc}/self/mountinfo`));
  const root = roots.root ?? "";
  if (!root) return m;
  const v1: Record<string, string> = {};
  for (const [ctrl, at] of Object.entries(m.v1)) v1[ctrl] = root + at;
  return { v2: m.v2 ? root + m.v2 : "", v1 };
}

/** cgroup v2 id of `path` (relative to the v2 mount): the inode of its directory. */
export function cgroupId(mounts: CgroupMounts, path: string): bigint {
  if (!mounts.v2 || !path) return 0n;
  return BigInt(Deno.statSync(`${mounts.v2}${path === "/" ? "" : path}`).ino ?? 0);
}

/** `mount` + `path` (a cgroup path as /proc/<pid>/cgroup shows it, "/" = the root). */
export function cgroupDir(mount: string, path: string): string {
  return path === "/" || path === "" ? mount : `${mount}${path}`;
}

export function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

export interface WalkLimits {
  /** Deepest level searched below the start (1 = its children). */
  maxDepth?: number;
  /** Most directories listed; the search stops there. */
  maxDirs?: number;
  /** Stop after this many matches. */
  maxMatches?: number;
  /** Directories not to search below (by name), e.g. other pods' cgroups. */
  prune?: (name: string) => boolean;
}

/**
 * Breadth-first search below `base` for directories whose name satisfies `match`, shallowest
 * first; neither a match nor a directory `limits.prune` names is searched below. Paths are
 * relative to `base` ("/a/b"). Bounded by depth, by the number of directories listed and by
 * the number of matches.
 */
export function findCgroupDirs(
  base: string,
  match: (name: string) => boolean,
  limits: WalkLimits = {},
): string[] {
  const maxDepth = limits.maxDepth ?? 8, maxDirs = limits.maxDirs ?? 20_000;
  const maxMatches = limits.maxMatches ?? Infinity;
  const out: string[] = [];
  let level = [""], listed = 0;
  for (let depth = 1; depth <= maxDepth && level.length; depth++) {
    const next: string[] = [];
    for (const rel of level) {
      if (listed++ >= maxDirs) return out;
      let entries: Iterable<Deno.DirEntry>;
      try {
        entries = Deno.readDirSync(base + rel);
      } catch {
        continue; // removed while walking
      }
      for (const e of entries) {
        if (!e.isDirectory) continue;
        const path = `${rel}/${e.name}`;
        if (match(e.name)) {
          out.push(path);
          if (out.length >= maxMatches) return out;
        } else if (depth < maxDepth && !limits.prune?.(e.name)) next.push(path);
      }
    }
    level = next;
  }
  return out;
}

function readProcs(file: string, into: Set<number>): void {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch {
    return; // the cgroup went away
  }
  for (const line of text.split("\n")) if (line) into.add(Number(line));
}

/**
 * Every process in cgroup directory `dir` and its sub-cgroups (down to `maxDepth` levels), from
 * cgroup.procs, sorted. Reading again picks up processes started since.
 */
export function cgroupProcs(dir: string, maxDepth = 6): number[] {
  const pids = new Set<number>();
  const walk = (d: string, depth: number) => {
    readProcs(`${d}/cgroup.procs`, pids);
    if (depth >= maxDepth) return;
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(d);
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory) walk(`${d}/${e.name}`, depth + 1);
  };
  walk(dir, 0);
  return [...pids].sort((a, b) => a - b);
}
