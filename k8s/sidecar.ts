/**
 * Which containers of a pod are sidecars. `envoy` and `demo` modes match
 * exactly what those setups deploy; `blur` (the default) scores names,
 * images and well-known proxy ports of the common meshes and proxies, and
 * calls a container a sidecar only when the evidence is clear and at least
 * one other container remains a service.
 */

import { KupodError } from "../base/errors.ts";
import type { Role } from "./target.ts";
import type { ContainerSpec } from "./types.ts";

/** How sidecars are told from services: Istio's Envoy, the old demo's `sidecar-proxy`, or any known proxy. */
export type SidecarMode = "envoy" | "demo" | "blur";

const ENVOY_NAMES = /^(istio-proxy|envoy|envoy-sidecar)$/;
const ENVOY_IMAGES = /(istio\/proxyv2|envoyproxy\/envoy|\/envoy:|\/proxyv2:)/;

/** Names of sidecar containers of the meshes and proxies in common use. */
const SIDECAR_NAMES = [
  /^istio-proxy$/,
  /^envoy(-sidecar)?$/,
  /^linkerd-proxy$/,
  /^sidecar-proxy$/,
  /^consul-dataplane$/,
  /^kuma-sidecar$/,
  /^daprd$/,
  /(^|-)sidecar$/,
  /(^|-)proxy$/,
];
const SIDECAR_IMAGES = [
  /istio\/proxyv2/,
  /envoyproxy\/envoy/,
  /linkerd\/proxy/,
  /hashicorp\/consul-dataplane/,
  /kumahq\/kuma-dp/,
  /dapr\/daprd/,
  /(^|\/)nginx(:|@|$)/,
  /(^|\/)haproxy(:|@|$)/,
  /(^|\/)traefik(:|@|$)/,
];
/** Inbound/outbound capture ports of Istio (15001, 15006, 15090) and Linkerd (4140, 4143, 4191). */
const SIDECAR_PORTS = new Set([15001, 15006, 15090, 4140, 4143, 4191]);

function blurScore(c: ContainerSpec): number {
  let score = 0;
  if (SIDECAR_NAMES.some((re) => re.test(c.name))) score += 2;
  if (SIDECAR_IMAGES.some((re) => re.test(c.image))) score += 2;
  if (c.ports?.some((p) => SIDECAR_PORTS.has(p.containerPort))) score += 1;
  return score;
}

/** The role of each container, in the pod's order. */
export function sidecarRoles(containers: readonly ContainerSpec[], mode: SidecarMode): Role[] {
  switch (mode) {
    case "envoy":
      return containers.map((c) =>
        ENVOY_NAMES.test(c.name) || ENVOY_IMAGES.test(c.image) ? "sidecar" : "service"
      );
    case "demo":
      return containers.map((c) => (c.name === "sidecar-proxy" ? "sidecar" : "service"));
    case "blur": {
      const scores = containers.map(blurScore);
      const roles: Role[] = scores.map((s) => (s >= 2 ? "sidecar" : "service"));
      // A pod of proxies only: the one that looks least like a sidecar is the service.
      if (containers.length > 1 && !roles.includes("service")) {
        roles[scores.indexOf(Math.min(...scores))] = "service";
      }
      if (containers.length === 1) roles[0] = "service";
      return roles;
    }
  }
}

/**
 * Applies `--imagename`: only containers whose image contains `image` stay
 * services; sidecars stay; other containers are not observed.
 */
export function selectByImage(
  containers: readonly ContainerSpec[],
  roles: readonly Role[],
  image: string,
): boolean[] {
  if (!image) return containers.map(() => true);
  const keep = containers.map((c, i) => roles[i] === "sidecar" || c.image.includes(image));
  if (!containers.some((c, i) => roles[i] === "service" && c.image.includes(image))) {
    throw new KupodError(
      `no container with image "${image}" (images: ${containers.map((c) => c.image).join(", ")})`,
    );
  }
  return keep;
}

/** Process names of the common sidecar proxies, for targets found without Kubernetes. */
const ENVOY_PROCESSES = /^(envoy|pilot-agent)$/;
const SIDECAR_PROCESSES =
  /^(envoy|pilot-agent|linkerd2-proxy|nginx|haproxy|traefik|consul-dataplane|kuma-dp|daprd)$/;

/** Roles of local containers named after their processes, with the same rules as the modes above. */
export function processRoles(names: readonly string[], mode: SidecarMode): Role[] {
  const re = mode === "envoy" ? ENVOY_PROCESSES : mode === "demo" ? /^$/ : SIDECAR_PROCESSES;
  const roles: Role[] = names.map((n) => (re.test(n) ? "sidecar" : "service"));
  // a lone proxy is the service being watched
  if (!roles.includes("service") && roles.length) roles[0] = "service";
  return roles;
}
