/** Targets without Kubernetes: a process tree (--pid). Veth, netns and cgroup targets build on this. */

import { KupodError } from "../cli/errors.ts";
import { cgroupId, cgroupMounts } from "./cgroupfs.ts";
import { comm, descendants, netnsInode, parseProcCgroup, processExists } from "./proc.ts";
import type { Target } from "./target.ts";

/** Process `pid` and its descendants, as one container named after the process. */
export function resolvePid(pid: number, proc = "/proc"): Target {
  if (!processExists(pid, proc)) throw new KupodError(`process ${pid} does not exist`);
  const cgroups = parseProcCgroup(Deno.readTextFileSync(`${proc}/${pid}/cgroup`));
  const mounts = cgroupMounts();
  let id = 0n;
  try {
    id = cgroupId(mounts, cgroups.v2);
  } catch {
    // the process's cgroup is not visible from here (other cgroup namespace)
  }
  return {
    kind: "pid",
    namespace: "",
    pod: "",
    node: Deno.hostname(),
    podIP: "",
    hostIP: "",
    netnsInode: netnsInode(pid, proc),
    veth: "",
    containers: [{
      name: comm(pid, proc),
      image: "",
      role: "service",
      runtimeId: "",
      cgroupId: id,
      cgroupPath: cgroups.v2,
      cgroupV1Paths: cgroups.v1,
      pids: descendants(pid, proc),
    }],
  };
}
