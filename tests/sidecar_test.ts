/** Sidecar detection per --sidecar-mode, and --imagename selection. */

import { selectByImage, sidecarRoles } from "../k8s/sidecar.ts";
import { KupodError } from "../base/errors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const c = (name: string, image: string, ports: number[] = []) => ({
  name,
  image,
  ports: ports.map((containerPort) => ({ containerPort })),
});

const istio = [
  c("web", "shop/web:1.2", [8080]),
  c("istio-proxy", "docker.io/istio/proxyv2:1.22.0", [15090]),
];
const linkerd = [
  c("linkerd-proxy", "cr.l5d.io/linkerd/proxy:stable-2.14", [4143, 4191]),
  c("api", "api:3"),
];
const demo = [c("sidecar-proxy", "nginx:1.25", [80]), c("service", "demo/app:1")];

Deno.test("sidecar: envoy mode marks istio-proxy / envoy only", () => {
  assertEquals(sidecarRoles(istio, "envoy"), ["service", "sidecar"]);
  assertEquals(sidecarRoles([c("envoy", "envoyproxy/envoy:v1.30"), c("app", "app")], "envoy"), [
    "sidecar",
    "service",
  ]);
  assertEquals(sidecarRoles(linkerd, "envoy"), ["service", "service"]);
});

Deno.test("sidecar: demo mode marks the old demo's sidecar-proxy", () => {
  assertEquals(sidecarRoles(demo, "demo"), ["sidecar", "service"]);
  assertEquals(sidecarRoles(istio, "demo"), ["service", "service"]);
});

Deno.test("sidecar: blur mode recognises the common meshes and proxies", () => {
  assertEquals(sidecarRoles(istio, "blur"), ["service", "sidecar"]);
  assertEquals(sidecarRoles(linkerd, "blur"), ["sidecar", "service"]);
  assertEquals(sidecarRoles(demo, "blur"), ["sidecar", "service"]);
  assertEquals(
    sidecarRoles([c("proxy", "haproxy:2.6"), c("a", "a:1"), c("b", "b:1")], "blur"),
    ["sidecar", "service", "service"],
  );
});

Deno.test("sidecar: blur never leaves a pod without a service", () => {
  assertEquals(sidecarRoles([c("nginx-proxy", "nginx:1.25")], "blur"), ["service"]);
  assertEquals(
    sidecarRoles(
      [c("nginx", "nginx:1.25"), c("istio-proxy", "istio/proxyv2:1.22", [15001])],
      "blur",
    ),
    ["service", "sidecar"],
  );
});

Deno.test("sidecar: --imagename keeps matching services and every sidecar", () => {
  const pod = [
    c("istio-proxy", "istio/proxyv2:1.22"),
    c("web", "shop/web:1"),
    c("cache", "redis:7"),
  ];
  const roles = sidecarRoles(pod, "blur");
  assertEquals(selectByImage(pod, roles, "shop/web"), [true, true, false]);
  assertEquals(selectByImage(pod, roles, ""), [true, true, true]);
  try {
    selectByImage(pod, roles, "nope");
    throw new Error("no throw");
  } catch (e) {
    assert(e instanceof KupodError && /no container with image "nope"/.test(e.message), String(e));
  }
});
