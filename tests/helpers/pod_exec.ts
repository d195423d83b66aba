/** Running a command as a process of a test pod's container. */

import type { TestContainer, TestPod } from "./pod.ts";
import { Child } from "./process.ts";

/** The container's cgroup directories, v2 and v1: writing a pid to their cgroup.procs moves it in. */
export function cgroupDirs(c: TestContainer): string[] {
  return [c.cgroupV2Dir, ...Object.values(c.cgroupV1Paths)].filter(Boolean);
}

/**
 * The command line that runs `args` in the pod's network namespace after joining the container's
 * cgroups, so that its sockets and its CPU and memory are the container's. The cgroups are joined
 * first: `ip netns exec` mounts a sysfs of the namespace's own, without the cgroup trees, and a
 * socket keeps the cgroup it was made in.
 */
export function inContainerArgs(pod: TestPod, c: TestContainer, args: string[]): string[] {
  const join = cgroupDirs(c).map((d) => `echo $$ > '${d}/cgroup.procs'`).join("; ");
  return ["sh", "-c", `${join}; exec ip netns exec ${pod.netns} "$@"`, "sh", ...args];
}

/** `args` as a process of the container (see inContainerArgs); `stdin` pipes its input. */
export function inContainer(
  pod: TestPod,
  c: TestContainer,
  args: string[],
  opts: { stdin?: boolean } = {},
): Child {
  const [cmd, ...rest] = inContainerArgs(pod, c, args);
  return new Child(cmd, rest, opts);
}
