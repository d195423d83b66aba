/**
 * Fidelity of the API stand-in, judged by the real kubectl: if kubectl lists, selects, watches
 * and reports errors from it as from a cluster, the shapes kupod's client reads are the real ones.
 * kubectl comes from Debian's kubernetes-client (scripts/setup installs it); $KUBECTL overrides.
 * Without kubectl these tests fail, they do not skip.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { KubeEnv, samplePods, USERS } from "./helpers/kube.ts";
import { Child } from "./helpers/process.ts";

const KUBECTL = Deno.env.get("KUBECTL") || "kubectl";

let checked: Promise<void> | undefined;

/** Fails (clearly) when kubectl cannot run here. */
function requireKubectl(): Promise<void> {
  checked ??= (async () => {
    try {
      const out = await new Deno.Command(KUBECTL, {
        args: ["version", "--client"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim());
    } catch (err) {
      throw new Error(
        `kubectl is needed for these tests and "${KUBECTL}" does not run (${err}): ` +
          `install Debian's kubernetes-client (scripts/setup does) or set KUBECTL`,
      );
    }
  })();
  return checked;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `kubectl --kubeconfig <kubeconfig> <args>` with its cache inside the env dir. */
async function kubectl(env: KubeEnv, kubeconfig: string, args: string[]): Promise<Run> {
  await requireKubectl();
  const out = await new Deno.Command(KUBECTL, {
    args: ["--kubeconfig", kubeconfig, "--request-timeout=10s", ...args],
    env: { HOME: env.dir, KUBECONFIG: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function ok(env: KubeEnv, kubeconfig: string, args: string[]): Promise<string> {
  const r = await kubectl(env, kubeconfig, args);
  assert(r.code === 0, `kubectl ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A printed table as rows of cells (header first). */
function table(text: string): string[][] {
  return text.trim().split("\n").map((l) => l.trim().split(/\s{2,}/));
}

/** The first `n` cells of each row. */
function cells(text: string, n: number): string[][] {
  return table(text).map((r) => r.slice(0, n));
}

Deno.test("kubectl: get pods -o json and get pod -o json show the API's objects", async () => {
  await using env = await KubeEnv.start();
  const k = env.kubeconfig("cert");
  const list = JSON.parse(await ok(env, k, ["get", "pods", "-n", "shop", "-o", "json"]));
  assertEquals(list.kind, "List");
  assertEquals(list.items.map((p: { metadata: { name: string } }) => p.metadata.name), [
    "web-0",
    "web-1",
    "db-0",
  ]);
  for (const item of list.items) {
    assertEquals([item.kind, item.apiVersion], ["Pod", "v1"]);
    assert(/^\d+$/.test(item.metadata.resourceVersion) && item.metadata.uid, "real metadata");
  }
  const pod = JSON.parse(await ok(env, k, ["get", "pod", "web-0", "-n", "shop", "-o", "json"]));
  assertEquals(pod.kind, "Pod");
  assertEquals(pod.metadata.labels, { app: "web", tier: "frontend" });
  assertEquals(pod.spec.nodeName, "node-a");
  assertEquals(pod.status.podIP, "10.244.1.10");
  assertEquals(pod.status.containerStatuses[0].containerID, "containerd://web0aa");
  const v = JSON.parse(await ok(env, k, ["version", "-o", "json"]));
  assertEquals(v.serverVersion.gitVersion, "v1.29.4");
});

Deno.test("kubectl: get pods prints the server-side table, with label selectors", async () => {
  await using env = await KubeEnv.start();
  const k = env.kubeconfig("cert", { namespace: "shop" });
  assertEquals(cells(await ok(env, k, ["get", "pods"]), 4), [
    ["NAME", "READY", "STATUS", "RESTARTS"],
    ["web-0", "2/2", "Running", "1"],
    ["web-1", "2/2", "Running", "1"],
    ["db-0", "0/2", "Pending", "0"],
  ]);
  assertEquals(cells(await ok(env, k, ["get", "pods", "-l", "app=web"]), 3), [
    ["NAME", "READY", "STATUS"],
    ["web-0", "2/2", "Running"],
    ["web-1", "2/2", "Running"],
  ]);
  assertEquals(
    cells(await ok(env, k, ["get", "pods", "-l", "tier in (frontend,backend),!canary"]), 1),
    [["NAME"], ["web-0"], ["db-0"]],
  );
  // AGE (column 5) moves on between runs: compare the others.
  const wide = table(await ok(env, k, ["get", "pods", "-l", "app!=web", "-o", "wide"]));
  assertEquals(wide.map((r) => [...r.slice(0, 4), ...r.slice(5, 7)]), [
    ["NAME", "READY", "STATUS", "RESTARTS", "IP", "NODE"],
    ["db-0", "0/2", "Pending", "0", "10.244.1.12", "node-a"],
  ]);
  assert(/^\d+s$/.test(wide[1][4]), `AGE ${wide[1][4]}`);
  const none = await kubectl(env, k, ["get", "pods", "-l", "app=nothing"]);
  assertEquals([none.code, none.stdout, none.stderr.trim()], [
    0,
    "",
    "No resources found in shop namespace.",
  ]);
});

Deno.test("kubectl: --field-selector spec.nodeName and status.phase", async () => {
  await using env = await KubeEnv.start();
  const k = env.kubeconfig("token");
  assertEquals(
    cells(await ok(env, k, ["get", "pods", "-A", "--field-selector", "spec.nodeName=node-a"]), 2),
    [["NAMESPACE", "NAME"], ["shop", "web-0"], ["shop", "db-0"], ["kube-system", "coredns-0"]],
  );
  assertEquals(
    cells(
      await ok(env, k, ["get", "pods", "-n", "shop", "--field-selector", "spec.nodeName=node-a"]),
      1,
    ),
    [["NAME"], ["web-0"], ["db-0"]],
  );
  assertEquals(
    cells(
      await ok(env, k, ["get", "pods", "-n", "shop", "--field-selector", "status.phase!=Running"]),
      1,
    ),
    [["NAME"], ["db-0"]],
  );
  const bad = await kubectl(env, k, ["get", "pods", "--field-selector", "spec.color=red"]);
  assertEquals(bad.code, 1);
  assert(
    /^Error from server \(BadRequest\): .*field label not supported: spec\.color$/.test(
      bad.stderr.trim(),
    ),
    bad.stderr,
  );
});

Deno.test("kubectl: get nodes", async () => {
  await using env = await KubeEnv.start();
  const k = env.kubeconfig("cert-data");
  const t = table(await ok(env, k, ["get", "nodes"]));
  assertEquals(t.map((r) => [r[0], r[1], r[2], r[4]]), [
    ["NAME", "STATUS", "ROLES", "VERSION"],
    ["node-a", "Ready", "control-plane", "v1.29.4"],
    ["node-b", "Ready", "<none>", "v1.29.4"],
  ]);
  const wide = table(await ok(env, k, ["get", "node", "node-b", "-o", "wide"]));
  assertEquals([wide[0][5], wide[1][5], wide[0].at(-1), wide[1].at(-1)], [
    "INTERNAL-IP",
    "192.168.50.11",
    "CONTAINER-RUNTIME",
    "containerd://1.7.13",
  ]);
});

Deno.test("kubectl: errors as the API words them", async () => {
  await using env = await KubeEnv.start({ forbidden: [USERS.basic] });
  const k = env.kubeconfig("cert", { namespace: "shop" });
  const nf = await kubectl(env, k, ["get", "pod", "web-9"]);
  assertEquals([nf.code, nf.stderr.trim()], [
    1,
    'Error from server (NotFound): pods "web-9" not found',
  ]);
  const ns = await kubectl(env, k, ["get", "pod", "web-0", "-n", "nowhere"]);
  assertEquals(ns.stderr.trim(), 'Error from server (NotFound): namespaces "nowhere" not found');
  const fb = await kubectl(env, env.kubeconfig("basic"), ["get", "pod", "web-0", "-n", "shop"]);
  assertEquals(
    fb.stderr.trim(),
    'Error from server (Forbidden): pods "web-0" is forbidden: User "basic-user" cannot get ' +
      'resource "pods" in API group "" in the namespace "shop"',
  );
  const wrong = env.write(
    "wrong.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("token")).replace(/token: .*/, "token: not-a-token"),
  );
  const un = await kubectl(env, wrong, ["get", "pods", "-n", "shop"]);
  assertEquals([un.code, un.stderr.trim()], [
    1,
    "error: You must be logged in to the server (Unauthorized)",
  ]);
});

Deno.test("kubectl: every kubeconfig variant the tests write authenticates", async () => {
  await using env = await KubeEnv.start();
  for (
    const [variant, user] of [
      ["cert", USERS.cert],
      ["cert-data", USERS.cert],
      ["token", USERS.token],
      ["token-file", USERS.tokenFile],
      ["basic", USERS.basic],
      ["exec", USERS.exec],
    ] as const
  ) {
    const k = env.kubeconfig(variant, {
      namespace: "shop",
      // kubectl 1.20 knows exec plugins up to v1beta1.
      exec: { apiVersion: "client.authentication.k8s.io/v1beta1" },
    });
    env.api.requests.length = 0;
    assertEquals(
      (await ok(env, k, ["get", "pod", "web-0", "-o", "name"])).trim(),
      "pod/web-0",
      variant,
    );
    assertEquals(env.api.requests.at(-1)!.user, user, variant);
  }
  assert(env.pluginRuns().length >= 1, "kubectl ran the exec plugin");
});

Deno.test("kubectl: get pods -w shows what upsertPod and deletePod emit", async () => {
  await using env = await KubeEnv.start();
  await requireKubectl();
  const k = env.kubeconfig("cert", { namespace: "shop" });
  await using watch = new Child(KUBECTL, ["--kubeconfig", k, "get", "pods", "-w"], {
    env: { HOME: env.dir, KUBECONFIG: "" },
  });
  await watch.waitForLine(/^db-0\s+0\/2\s+Pending/);
  const opened = Date.now() + 10_000;
  while (env.api.watchCount === 0 && Date.now() < opened) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assertEquals(env.api.watchCount, 1, "kubectl opened a watch");
  const pod = samplePods()[0];
  pod.metadata.name = "web-2";
  env.api.upsertPod(pod);
  await watch.waitForLine(/^web-2\s+2\/2\s+Running\s+1\s+/);
  pod.status.phase = "Failed";
  pod.status.containerStatuses = [];
  env.api.upsertPod(pod);
  await watch.waitForLine(/^web-2\s+0\/2\s+Failed\s+0\s+/);
  const other = samplePods()[3]; // kube-system: not watched
  other.metadata.name = "coredns-1";
  env.api.upsertPod(other);
  env.api.deletePod("shop", "web-1");
  const deadline = Date.now() + 10_000;
  while (watch.stdout.length < 7 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const watchReq = env.api.requests.find((r) => r.query.watch)!;
  assertEquals(watchReq.path, "/api/v1/namespaces/shop/pods");
  assert(/as=Table/.test(watchReq.accept), "kubectl asked for server-side tables");
  const printed = watch.stdout.map((l) => l.split(/\s+/)[0]);
  assertEquals(printed, ["NAME", "web-0", "web-1", "db-0", "web-2", "web-2", "web-1"]);
});
