/**
 * `monitor user all --pod A --grpcpod B` (the seed's own example): HTTP of one pod and gRPC of
 * another in one run, found through the Kubernetes API, each probe reporting only its pod.
 */

import type { GrpcEvent, HttpEvent } from "../probes/events.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { KubeEnv } from "./helpers/kube.ts";
import { createTestPod } from "./helpers/pod.ts";
import { inContainer } from "./helpers/pod_exec.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { ROOT, startKupod } from "./helpers/process.ts";

const NODE = "node-a";
const NS = "shop-gp";
const PEER = `${ROOT}tests/fixtures/grpc_peer.py`;

Deno.test("grpc: --grpcpod watches gRPC on another pod than --pod's HTTP, in one run", async () => {
  await using web = await createTestPod({ name: "httpserver", namespace: NS, nodeName: NODE });
  await using orders = await createTestPod({ name: "grpcserver", namespace: NS, nodeName: NODE });
  await using kube = await KubeEnv.start();
  kube.api.upsertPod(web.podJson(NODE));
  kube.api.upsertPod(orders.podJson(NODE));
  await using server = inContainer(orders, orders.container("app"), [
    "/usr/bin/python3",
    PEER,
    "server",
  ]);
  const port = (await server.waitForLine(/^listening \d+/)).split(" ")[1];
  await using kupod = await startKupod([
    "monitor",
    "user",
    "all",
    "--pod",
    "httpserver",
    "--grpcpod",
    "grpcserver",
    "--namespace",
    NS,
    "--kubeconfig",
    kube.kubeconfig("cert"),
    "--nodename",
    NODE,
    "--output",
    "json",
  ]);
  assert(kupod.stderr.some((l) => l.includes("gRPC: ")), kupod.stderr.join("|"));
  const N = 12;
  // HTTP into both pods, gRPC in the second: only web's HTTP and orders' gRPC are watched
  await httpGet(web.podIP, 8080, { count: N });
  await httpGet(orders.podIP, 8080, { count: N });
  await using client = inContainer(orders, orders.container("proxy"), [
    "/usr/bin/python3",
    PEER,
    "client",
    port,
    String(N),
  ]);
  assertEquals((await client.wait()).code, 0, client.stderr.join("\n"));
  const events = () => kupod.stdout.map((l) => JSON.parse(l) as HttpEvent | GrpcEvent);
  for (let i = 0; i < 100 && events().length < 3 * N + 2 * (N + 4); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 300));
  const http = events().filter((e) => e.type === "http");
  const grpc = events().filter((e) => e.type === "grpc");
  // each request: served by nginx, called upstream by nginx, served by the app
  assertEquals(http.length, 3 * N, "web's requests, three legs each");
  assert(http.every((e) => e.pod === "httpserver" && e.namespace === NS), "HTTP of web only");
  assertEquals(grpc.length, 2 * (N + 4), "orders' calls, both sides");
  assert(grpc.every((e) => e.pod === "grpcserver" && e.namespace === NS), "gRPC of orders only");
});
