/** Running a command as a process of a test pod's container. */

import type { TestContainer, TestPod } from "./pod.ts";
import { Child } from "./process.ts";

/**
 * `args` in the pod's network namespace, after joining the container's cgroups (v2 and v1), so
 * that its sockets and its CPU and memory are the container's. The cgroups are joined first:
 * `ip netns exec` mounts a sysfs of the namespace's own, without the cgroup trees, and a socket
 * keeps the cgroup it was made in.
 */
export function inContainer(pod: TestPod, c: TestContainer, args: string[]): Child {
  const dirs = [c.cgroupV2Dir, ...Object.values(c.cgroupV1Paths)].filter(Boolean);
  const join = dirs.map((d) => `echo $$ > '${d}/cgroup.procs'`).join("; ");
  return new Child("sh", ["-c", `${join}; exec ip netns exec ${pod.netns} "$@"`, "sh", ...args]);
}
