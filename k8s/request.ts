/** What target resolution is asked to find: the shape `resolveTarget` takes. */

import type { SidecarMode } from "./sidecar.ts";

/**
 * A pod (Kubernetes: `pod` or `podLabel`), or a local target (`veth`, `netns`, `cgroup`, `pid`).
 * Empty strings and 0 mean "not given" or "discover".
 */
export interface TargetRequest {
  pod: string;
  /** A label selector matching exactly one Running pod of this node. */
  podLabel: string;
  /** "" = default */
  namespace: string;
  /** "" = $NODE_NAME, else the node named like this host, else the one with its addresses. */
  nodeName: string;
  /** "" = found as kubectl finds it. */
  kubeconfig: string;
  /** The node is a container (minikube, kind): skip the node check. */
  forceMinikube: boolean;
  veth: string;
  /** A path or an `ip netns` name. */
  netns: string;
  cgroup: string;
  pid: number;
  sidecarMode: SidecarMode;
  /** Keeps only the service containers whose image contains this text (sidecars stay). */
  imageName: string;
}

/** A full request from the fields given; the rest are "not given". */
export function targetRequest(given: Partial<TargetRequest>): TargetRequest {
  return {
    pod: "",
    podLabel: "",
    namespace: "default",
    nodeName: "",
    kubeconfig: "",
    forceMinikube: false,
    veth: "",
    netns: "",
    cgroup: "",
    pid: 0,
    sidecarMode: "blur",
    imageName: "",
    ...given,
  };
}
