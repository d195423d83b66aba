/** Where the cgroup hierarchies are mounted (v2 at /sys/fs/cgroup or /sys/fs/cgroup/unified, v1 per controller). */

import { mountsOfType } from "../bpf/preflight.ts";

export interface CgroupMounts {
  /** cgroup2 mount point, "" when none. */
  v2: string;
  /** v1 mount point per controller ("memory" → "/sys/fs/cgroup/memory"). */
  v1: Record<string, string>;
}

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
      if (opt === "rw" || opt === "ro" || opt === "relatime" || opt.startsWith("release_agent")) {
        continue;
      }
      v1[opt.replace(/^name=/, "")] ??= mountPoint;
    }
  }
  return { v2, v1 };
}

/** cgroup v2 id of `path` (relative to the v2 mount): the inode of its directory. */
export function cgroupId(mounts: CgroupMounts, path: string): bigint {
  if (!mounts.v2 || !path) return 0n;
  return BigInt(Deno.statSync(`${mounts.v2}${path === "/" ? "" : path}`).ino ?? 0);
}
