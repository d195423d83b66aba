/**
 * `--pod` / `--pod-label`: find exactly one Running pod on this node through
 * the Kubernetes API and turn it into a Target (containers with roles,
 * cgroups, pids, netns, veth, IPs). Loaded only when Kubernetes is used.
 */

import { KupodError } from "../base/errors.ts";
import type { TargetRequest } from "./request.ts";
import type { ClusterAccess } from "./access.ts";
import { describeCluster, KubeClient } from "./client.ts";
import { podContainers } from "./containers.ts";
import { discoverAccess } from "./kubeconfig.ts";
import { podNetwork } from "./podnet.ts";
import { selectByImage, sidecarRoles } from "./sidecar.ts";
import type { Target } from "./target.ts";
import type { Node, Pod } from "./types.ts";

export interface KubeSession extends Disposable {
  client: KubeClient;
  access: ClusterAccess;
  /** The node kupod runs on, as the API names it. */
  node: string;
}

/** Connects to the API and finds this node's name; `log` receives the [PREFLIGHT] lines. */
export async function connect(
  req: TargetRequest,
  log: (line: string) => void,
): Promise<KubeSession> {
  const access = discoverAccess({ kubeconfig: req.kubeconfig || undefined });
  const client = new KubeClient(access);
  try {
    log(describeCluster(access, await client.version()));
    const node = req.nodeName || await thisNode(client);
    log(
      `node ${node}${req.forceMinikube ? " (minikube: pods of any node are looked up here)" : ""}`,
    );
    return { client, access, node, [Symbol.dispose]: () => client[Symbol.dispose]() };
  } catch (e) {
    client[Symbol.dispose]();
    throw e;
  }
}

/**
 * This node's name: $NODE_NAME (a DaemonSet sets it from spec.nodeName), else the node named
 * like this host, else the node whose addresses are this host's.
 */
async function thisNode(client: KubeClient): Promise<string> {
  const env = Deno.env.get("NODE_NAME");
  if (env) return env;
  const host = Deno.hostname().toLowerCase();
  const nodes: Node[] = (await client.listNodes()).items;
  if (nodes.some((n) => n.metadata.name === host)) return host;
  const local = new Set(Deno.networkInterfaces().map((i) => i.address));
  const byAddress = nodes.find((n) => n.status?.addresses?.some((a) => local.has(a.address)));
  if (byAddress) return byAddress.metadata.name;
  throw new KupodError(
    `cannot tell which node this is (host ${host}, nodes ${
      nodes.map((n) => n.metadata.name).join(", ")
    }): give --nodename`,
  );
}

function isRunning(p: Pod): boolean {
  return p.status.phase === "Running";
}

/** The one pod the flags name, checked to be Running on this node. */
export async function findPod(session: KubeSession, req: TargetRequest): Promise<Pod> {
  const ns = req.namespace || "default";
  let pod: Pod;
  if (req.pod) {
    pod = await session.client.getPod(ns, req.pod);
  } else {
    const list = await session.client.listPods(ns, { labelSelector: req.podLabel });
    const here = list.items.filter((p) => req.forceMinikube || p.spec.nodeName === session.node);
    const running = here.filter(isRunning);
    if (!running.length) {
      const elsewhere = list.items.map((p) =>
        `${p.metadata.name} (${p.spec.nodeName ?? "unscheduled"}, ${p.status.phase})`
      );
      throw new KupodError(
        `no Running pod with labels ${req.podLabel} in namespace ${ns} on node ${session.node}` +
          (elsewhere.length ? `; found ${elsewhere.join(", ")}` : ""),
      );
    }
    if (running.length > 1) {
      throw new KupodError(
        `labels ${req.podLabel} match ${running.length} Running pods on node ${session.node}: ${
          running.map((p) => p.metadata.name).join(", ")
        }; pick one with --pod`,
      );
    }
    pod = running[0];
  }
  const name = `${ns}/${pod.metadata.name}`;
  if (!req.forceMinikube && pod.spec.nodeName !== session.node) {
    throw new KupodError(
      `pod ${name} runs on node ${pod.spec.nodeName ?? "(none yet)"}, not on this node ` +
        `(${session.node}): run kupod there`,
    );
  }
  if (!isRunning(pod)) {
    throw new KupodError(
      `pod ${name} is ${pod.status.phase ?? "in an unknown phase"}, not Running`,
    );
  }
  return pod;
}

/** The Target of a Running pod of this node: API facts plus cgroups, pids and network found here. */
export async function podTarget(pod: Pod, req: TargetRequest, node: string): Promise<Target> {
  const specs = pod.spec.containers;
  const roles = sidecarRoles(specs, req.sidecarMode);
  const keep = selectByImage(specs, roles, req.imageName);
  const roleOf = new Map(specs.map((c, i) => [c.name, roles[i]]));
  const all = podContainers(pod, { role: (name) => roleOf.get(name) ?? "service" });
  const containers = all.filter((c) => {
    const i = specs.findIndex((s) => s.name === c.name);
    return i < 0 ? true : keep[i];
  });
  const firstPid = containers.flatMap((c) => c.pids)[0];
  const net = firstPid ? await podNetwork(firstPid) : undefined;
  if (req.veth && net && net.veth !== req.veth) {
    throw new KupodError(
      `--veth ${req.veth} is not the veth of pod ${pod.metadata.name} (${net.veth || "none"})`,
    );
  }
  return {
    kind: "pod",
    namespace: pod.metadata.namespace ?? req.namespace,
    pod: pod.metadata.name,
    node,
    podIP: pod.status.podIP ?? net?.ips[0] ?? "",
    hostIP: pod.status.hostIP ?? "",
    netnsInode: net?.netnsInode ?? 0,
    veth: net?.veth ?? "",
    containers,
  };
}
