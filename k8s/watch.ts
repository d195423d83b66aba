/**
 * Keeps a pod Target current while kupod runs: container restarts and pod
 * re-creation through the API's watch, processes started later by re-reading
 * the containers' cgroups.
 */

import type { TargetRequest } from "./request.ts";
import { refreshPids } from "./containers.ts";
import { type KubeSession, podTarget } from "./pod_target.ts";
import { pollTarget, type TargetChange, type TargetWatch } from "./poll.ts";
import type { Target } from "./target.ts";
import type { Pod } from "./types.ts";

function containerIds(p: Pod): string {
  return [p.metadata.uid, ...(p.status.containerStatuses ?? []).map((s) => s.containerID ?? "")]
    .join(",");
}

/** Follows pod `initial` by name: restarts give new container ids, re-creation a new uid. */
export function watchPod(
  session: KubeSession,
  req: TargetRequest,
  initial: Pod,
  initialTarget: Target,
  onChange: TargetChange,
  onError: (e: unknown) => void,
): TargetWatch {
  const abort = new AbortController();
  const ns = initial.metadata.namespace ?? req.namespace;
  let current = containerIds(initial);
  let target = initialTarget;
  const events = (async () => {
    try {
      for await (
        const ev of session.client.watchPods(
          ns,
          { fieldSelector: `metadata.name=${initial.metadata.name}` },
          abort.signal,
        )
      ) {
        const pod = ev.object;
        if (ev.type === "DELETED") {
          onChange({ ...target, containers: [] }, `pod ${ns}/${pod.metadata.name} was deleted`);
          current = "";
          continue;
        }
        if (ev.type !== "ADDED" && ev.type !== "MODIFIED") continue;
        if (pod.status.phase !== "Running") continue;
        const ids = containerIds(pod);
        if (ids === current) continue;
        const started = (pod.status.containerStatuses ?? []).every((s) =>
          !s.containerID || s.state?.running
        );
        if (!started) continue;
        target = await podTarget(pod, req, session.node);
        current = ids;
        onChange(target, `pod ${ns}/${pod.metadata.name} changed (restart or re-creation)`);
      }
    } catch (e) {
      if (!abort.signal.aborted) onError(e);
    }
  })();
  // processes started later in the same containers (the cgroup filter needs nothing, pid
  // filters on cgroup v1-only hosts do)
  const pids = pollTarget(
    target,
    () => {
      const next = { ...target, containers: target.containers.map((c) => ({ ...c })) };
      refreshPids(next.containers);
      return next;
    },
    (t, why) => {
      target = t;
      onChange(t, why);
    },
    onError,
    5000,
  );
  return {
    async stop() {
      abort.abort();
      await pids.stop();
      await events;
    },
  };
}
