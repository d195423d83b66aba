/**
 * --pod and --pod-label against the Kubernetes API stand-in and a test pod
 * (nginx sidecar in front of an HTTP service): attribution with exact counts,
 * every bad input refused in one line, and a container restart followed.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { kupodPrograms, waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { closedPort, KubeEnv } from "./helpers/kube.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { kupodChild, startKupod } from "./helpers/process.ts";
import { assertSidecarTraffic, eventsAfter, explained, N } from "./helpers/traffic.ts";

const NODE = "node-a";

async function podAndApi(): Promise<
  { pod: TestPod; kube: KubeEnv; kubeconfig: string } & AsyncDisposable
> {
  const pod = await createTestPod({
    name: "web-0",
    namespace: "shop-kp",
    labels: { app: "web-kp" },
    nodeName: NODE,
    upstreamKeepAlive: false,
  });
  try {
    const kube = await KubeEnv.start();
    kube.api.upsertPod(pod.podJson(NODE));
    return {
      pod,
      kube,
      kubeconfig: kube.kubeconfig("cert"),
      [Symbol.asyncDispose]: async () => {
        await kube[Symbol.asyncDispose]();
        await pod[Symbol.asyncDispose]();
      },
    };
  } catch (e) {
    await pod[Symbol.asyncDispose]();
    throw e;
  }
}

function monitorArgs(kubeconfig: string, ...target: string[]): string[] {
  return [
    "monitor",
    "kernel",
    "socket",
    ...target,
    "--kubeconfig",
    kubeconfig,
    "--nodename",
    NODE,
    "--output",
    "json",
  ];
}

Deno.test("pod: --pod attributes every accept and connect to its container and role", async () => {
  await using env = await podAndApi();
  const { pod } = env;
  await using kupod = await startKupod(
    monitorArgs(env.kubeconfig, "--pod", "web-0", "--namespace", "shop-kp"),
  );
  assert(kupod.stderr.some((l) => l.startsWith("[PREFLIGHT] Kubernetes")), kupod.stderr.join("|"));
  const run = await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
  assertEquals(run.replies.map((r) => r.status), new Array(N).fill(200), "the requests");
  const evs = await eventsAfter(kupod);
  explained(kupod, evs, () => assertSidecarTraffic(pod, evs));
  for (const e of evs) {
    assertEquals([e.namespace, e.pod], ["shop-kp", "web-0"]);
    assertEquals(e.container, e.role === "sidecar" ? "proxy" : "app");
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("pod: --pod-label finds the same pod", async () => {
  await using env = await podAndApi();
  await using kupod = await startKupod(
    monitorArgs(env.kubeconfig, "--pod-label", "app=web-kp", "--namespace", "shop-kp"),
  );
  const run = await httpGet(env.pod.podIP, env.pod.container("proxy").port, {
    count: N,
    keepAlive: false,
  });
  assertEquals(run.replies.map((r) => r.status), new Array(N).fill(200), "the requests");
  const evs = await eventsAfter(kupod);
  explained(kupod, evs, () => assertSidecarTraffic(env.pod, evs));
  assert(evs.every((e) => e.pod === "web-0"), "pod name on every event");
});

Deno.test("pod: a restarted container is followed without reloading", async () => {
  await using env = await podAndApi();
  const { pod } = env;
  await using kupod = await startKupod(
    monitorArgs(env.kubeconfig, "--pod", "web-0", "--namespace", "shop-kp"),
  );
  const oldPid = pod.container("app").mainPid;
  await httpGet(pod.podIP, pod.container("proxy").port, { count: 5, keepAlive: false });
  const app = await pod.restartContainer("app");
  env.kube.api.upsertPod(pod.podJson(NODE));
  await kupod.waitForLine(/target changed/);
  await httpGet(pod.podIP, pod.container("proxy").port, { count: 7, keepAlive: false });
  const evs = await eventsAfter(kupod);
  const service = evs.filter((e) => e.role === "service" && e.type === "tcp_accept");
  assertEquals(service.filter((e) => e.pid === oldPid).length, 5, "before the restart");
  assertEquals(service.filter((e) => app.pids().includes(e.pid)).length, 7, "after the restart");
  assert(service.every((e) => e.container === "app"), "all attributed to app");
});

/** The socket probe's programs (other kupod objects may be loaded by concurrent runs). */
async function socketPrograms(): Promise<string[]> {
  return (await kupodPrograms()).filter((n) => /^kupod_(sk_state|accept4?|fork|exit)$/.test(n));
}

async function refused(args: string[], pattern: RegExp): Promise<void> {
  const before = await socketPrograms();
  // --duration bounds a run that wrongly starts
  const kupod = kupodChild([...args, "--duration", "5"]);
  const status = await kupod.wait();
  assertEquals(status.code, 1, `exit code; stderr ${kupod.stderr.join(" | ")}`);
  assertEquals(kupod.stderr.filter((l) => l.startsWith("Error:")).length, 1, "one error line");
  const line = kupod.stderr.find((l) => l.startsWith("Error:"))!;
  assert(pattern.test(line), `${line} !~ ${pattern}`);
  assertEquals(kupod.stdout.filter((l) => l.startsWith("{")), [], "no events");
  assertEquals(await socketPrograms(), before, "nothing attached");
}

Deno.test("pod: bad targets are refused in one line", async () => {
  await using env = await podAndApi();
  const k = env.kubeconfig;
  await refused(
    monitorArgs(k, "--pod", "nope", "--namespace", "shop-kp"),
    /pod "nope" not found in namespace "shop-kp"/,
  );
  await refused(
    monitorArgs(k, "--pod", "web-1", "--namespace", "shop"),
    /runs on node node-b, not on this node/,
  );
  await refused(monitorArgs(k, "--pod", "db-0", "--namespace", "shop"), /Pending, not Running/);
  await refused(
    monitorArgs(k, "--pod-label", "app=none", "--namespace", "shop-kp"),
    /no Running pod with labels app=none/,
  );
  // two Running pods carry the label on this node
  env.kube.api.upsertPod({
    ...env.pod.podJson(NODE),
    metadata: { ...env.pod.podJson(NODE).metadata, name: "web-9", uid: crypto.randomUUID() },
  });
  await refused(
    monitorArgs(k, "--pod-label", "app=web-kp", "--namespace", "shop-kp"),
    /match 2 Running pods .*web-0, web-9|web-9, web-0/,
  );
  const badToken = env.kube.write(
    "bad-token.kubeconfig",
    (await Deno.readTextFile(env.kube.kubeconfig("token"))).replace(/token: .*/, "token: wrong"),
  );
  await refused(
    monitorArgs(badToken, "--pod", "web-0", "--namespace", "shop-kp"),
    /401 Unauthorized/,
  );
  const unreachable = env.kube.write(
    "unreachable.kubeconfig",
    (await Deno.readTextFile(k)).replace(
      /https:\/\/127\.0\.0\.1:\d+/,
      `https://127.0.0.1:${closedPort()}`,
    ),
  );
  await refused(monitorArgs(unreachable, "--pod", "web-0"), /cannot reach the Kubernetes API/);
  await refused(
    monitorArgs("/nonexistent/kubeconfig", "--pod", "web-0"),
    /\/nonexistent\/kubeconfig/,
  );
});
