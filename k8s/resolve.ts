/** From the command line's target flags to the one Target the probes get. */

import { KupodError } from "../cli/errors.ts";
import type { MonitorOptions } from "../cli/options.ts";
import { resolveCgroup, resolveNetns, resolvePid, resolveVeth } from "./local.ts";
import type { Target } from "./target.ts";

/** Refuses a run without any target flag, before anything is checked or loaded. */
export function requireTarget(opts: MonitorOptions): void {
  if (!opts.pid && !opts.pod && !opts.podLabel && !opts.veth && !opts.netns && !opts.cgroup) {
    throw new KupodError(
      "no target: give --pod or --pod-label (Kubernetes), or --pid, --cgroup, --netns or --veth",
    );
  }
}

export async function resolveTarget(opts: MonitorOptions): Promise<Target> {
  requireTarget(opts);
  if (opts.pod || opts.podLabel) {
    throw new KupodError(
      "Kubernetes targets (--pod, --pod-label) are not supported yet: use --pid, --cgroup, --netns or --veth",
    );
  }
  if (opts.pid) return resolvePid(opts.pid, opts.sidecarMode);
  if (opts.cgroup) return resolveCgroup(opts.cgroup, opts.sidecarMode);
  if (opts.netns) {
    const target = await resolveNetns(opts.netns, opts.sidecarMode);
    if (opts.veth && target.veth !== opts.veth) {
      throw new KupodError(
        `--veth ${opts.veth} is not the veth of netns ${opts.netns} (that is ${
          target.veth || "none"
        })`,
      );
    }
    return target;
  }
  return await resolveVeth(opts.veth, opts.sidecarMode);
}

/** The [INFO] lines describing a target. */
export function describeTarget(t: Target): string[] {
  const lines: string[] = [];
  if (t.pod) lines.push(`pod ${t.namespace}/${t.pod} on node ${t.node}`);
  if (t.podIP) lines.push(`pod IP ${t.podIP}, host IP ${t.hostIP}`);
  if (t.netnsInode) lines.push(`netns ${t.netnsInode}${t.veth ? `, veth ${t.veth}` : ""}`);
  for (const c of t.containers) {
    const cg = c.cgroupPath ? `, cgroup ${c.cgroupPath}` : "";
    lines.push(`${c.role} ${c.name}: pids ${c.pids.join(",")}${cg}`);
  }
  return lines;
}
