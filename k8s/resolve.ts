/** From a target request (a pod, or a veth, netns, cgroup or pid) to the one Target the probes get. */

import { KupodError } from "../base/errors.ts";
import { type TargetRequest, targetRequest } from "./request.ts";
import {
  netnsTargetRefresher,
  resolveCgroup,
  resolveNetns,
  resolvePid,
  resolveVeth,
} from "./local.ts";
import type { Target } from "./target.ts";
import { pollTarget, type TargetChange, type TargetWatch } from "./poll.ts";

/** Refuses a run without any target flag, before anything is checked or loaded. */
export function requireTarget(given: Partial<TargetRequest>): void {
  const opts = targetRequest(given);
  if (!opts.pid && !opts.pod && !opts.podLabel && !opts.veth && !opts.netns && !opts.cgroup) {
    throw new KupodError(
      "no target: give --pod or --pod-label (Kubernetes), or --pid, --cgroup, --netns or --veth",
    );
  }
}

/** A resolved target, and how to keep it current while kupod runs. */
export interface Resolution extends Disposable {
  target: Target;
  /** Starts following changes; `onChange` gets each new Target. */
  watch(onChange: TargetChange, onError: (e: unknown) => void): TargetWatch;
}

const NO_WATCH: TargetWatch = { stop: () => Promise.resolve() };

/**
 * Resolves a target request (fields not given are "not given"); `preflight` receives the
 * Kubernetes [PREFLIGHT] lines.
 */
export async function resolveTarget(
  given: Partial<TargetRequest>,
  preflight: (line: string) => void = () => {},
): Promise<Resolution> {
  const opts = targetRequest(given);
  requireTarget(opts);
  if (opts.pod || opts.podLabel) return await resolvePodTarget(opts, preflight);
  if (opts.pid) {
    // forked processes join in the kernel; nothing to poll
    return {
      target: resolvePid(opts.pid, opts.sidecarMode),
      watch: () => NO_WATCH,
      [Symbol.dispose]() {},
    };
  }
  const pod = async () => {
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
  };
  const again = opts.cgroup
    ? () => Promise.resolve(resolveCgroup(opts.cgroup, opts.sidecarMode))
    : netnsTargetRefresher(pod, opts.sidecarMode, opts.netns);
  const target = await again();
  return {
    target,
    watch: (onChange, onError) => pollTarget(target, again, onChange, onError),
    [Symbol.dispose]() {},
  };
}

/** Kubernetes code is loaded only when a pod is the target. */
async function resolvePodTarget(
  opts: TargetRequest,
  preflight: (line: string) => void,
): Promise<Resolution> {
  const { connect, findPod, podTarget } = await import("./pod_target.ts");
  const { watchPod } = await import("./watch.ts");
  const session = await connect(opts, preflight);
  try {
    const pod = await findPod(session, opts);
    const target = await podTarget(pod, opts, session.node);
    return {
      target,
      watch: (onChange, onError) => watchPod(session, opts, pod, target, onChange, onError),
      [Symbol.dispose]: () => session[Symbol.dispose](),
    };
  } catch (e) {
    session[Symbol.dispose]();
    throw e;
  }
}

/** The [INFO] lines describing a target. */
export function describeTarget(t: Target): string[] {
  const lines: string[] = [];
  if (t.pod) lines.push(`pod ${t.namespace}/${t.pod} on node ${t.node}`);
  if (t.podIP) lines.push(`pod IP ${t.podIP}, host IP ${t.hostIP}`);
  if (t.netnsInode) lines.push(`netns ${t.netnsInode}${t.veth ? `, veth ${t.veth}` : ""}`);
  for (const c of t.containers) {
    const what = [c.image, c.runtimeId && c.runtimeId.slice(0, 12)].filter(Boolean).join(", ");
    const cg = c.cgroupPath ? `, cgroup ${c.cgroupPath}` : "";
    lines.push(`${c.role} ${c.name}${what ? ` (${what})` : ""}: pids ${c.pids.join(",")}${cg}`);
  }
  return lines;
}
