/**
 * Following a target while kupod runs: every change is handed to
 * `onChange`, which updates the probes' in-kernel filter maps. Local targets
 * (--cgroup, --netns, --veth) are re-read periodically from /proc and cgroups.
 */

import type { Target } from "./target.ts";

export type TargetChange = (target: Target, why: string) => void;

export interface TargetWatch {
  stop(): Promise<void>;
}

/** What identifies the kernel-side view of a target: netns, veth, cgroup ids and pids. */
export function fingerprint(t: Target): string {
  return JSON.stringify([
    t.netnsInode,
    t.veth,
    t.containers.map((c) => [c.name, `${c.cgroupId}`, c.pids]),
  ]);
}

/** Re-reads the target every `intervalMs` with `resolve`, reporting changes. */
export function pollTarget(
  initial: Target,
  resolve: () => Promise<Target> | Target,
  onChange: TargetChange,
  onError: (e: unknown) => void,
  intervalMs = 2000,
): TargetWatch {
  let last = fingerprint(initial);
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const next = await resolve();
      const fp = fingerprint(next);
      if (fp !== last) {
        last = fp;
        onChange(next, "processes or containers changed");
      }
    } catch (e) {
      onError(e);
    } finally {
      busy = false;
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Promise.resolve();
    },
  };
}
