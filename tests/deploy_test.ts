/**
 * The ways operators run kupod, checked: deploy/systemd/kupod.service passes
 * `systemd-analyze verify` and kupod works under exactly its capability bounding set (and not
 * without CAP_SYS_ADMIN or CAP_SYS_PTRACE, where they are needed); deploy/kubernetes/kupod.yaml
 * parses, kubectl accepts it against the API stand-in, and kupod started as the DaemonSet starts
 * it (its args, NODE_NAME, the service account's files and KUBERNETES_SERVICE_*) finds its pod
 * and counts it exactly. Every run uses the release file, as the unit and the image do.
 */

import { parseAllDocuments } from "yaml";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { KubeEnv, TOKENS } from "./helpers/kube.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { parseExposition, seriesKey } from "./helpers/prom.ts";
import { Child, freePort, ROOT } from "./helpers/process.ts";
import { eventsAfter, N } from "./helpers/traffic.ts";
import { releaseFile } from "../scripts/release/build.ts";

const UNIT = `${ROOT}deploy/systemd/kupod.service`;
const ENV_FILE = `${ROOT}deploy/systemd/kupod.env`;
const MANIFEST = `${ROOT}deploy/kubernetes/kupod.yaml`;
const KUBECTL = Deno.env.get("KUBECTL") || "kubectl";
const text = new TextDecoder();

async function run(cmd: string, args: string[], env?: Record<string, string>) {
  const out = await new Deno.Command(cmd, { args, env, stdout: "piped", stderr: "piped" })
    .output();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** A unit file's `key=` values, in order. */
function unitValues(unit: string, key: string): string[] {
  return unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) =>
    l.slice(key.length + 1)
  );
}

/** The unit's capability bounding set as setpriv takes it: "-all,+bpf,+perfmon,...". */
function boundingSet(unit: string, without: string[] = []): string {
  const caps = unitValues(unit, "CapabilityBoundingSet").join(" ").split(/\s+/).filter((c) => c)
    .map((c) => c.replace(/^CAP_/, "").toLowerCase()).filter((c) => !without.includes(c));
  return ["-all", ...caps.map((c) => `+${c}`)].join(",");
}

/** setpriv with the unit's bounding set (minus `without`) and no new privileges, then `argv`. */
function asService(unit: string, argv: string[], without: string[] = []): [string, string[]] {
  return ["setpriv", ["--bounding-set", boundingSet(unit, without), "--no-new-privs", ...argv]];
}

Deno.test("systemd: systemd-analyze verify accepts the unit with its environment file", async () => {
  const file = await releaseFile();
  const root = await Deno.makeTempDir({ prefix: "kupod-systemd-" });
  try {
    // a root with the system's units, the unit, /etc/default/kupod and the release file
    for (const d of ["etc/systemd/system", "etc/default", "usr/local/bin", "usr/lib/systemd"]) {
      await Deno.mkdir(`${root}/${d}`, { recursive: true });
    }
    const cp = await run("cp", ["-r", "/usr/lib/systemd/system", `${root}/usr/lib/systemd/`]);
    assertEquals(cp.code, 0, cp.stderr);
    await Deno.copyFile(UNIT, `${root}/etc/systemd/system/kupod.service`);
    await Deno.copyFile(ENV_FILE, `${root}/etc/default/kupod`);
    await Deno.copyFile(file, `${root}/usr/local/bin/kupod`);
    await Deno.chmod(`${root}/usr/local/bin/kupod`, 0o755);
    const verify = () =>
      run("systemd-analyze", ["verify", `--root=${root}`, "/etc/systemd/system/kupod.service"]);
    const ok = await verify();
    assertEquals([ok.code, ok.stderr], [0, ""], "no error or warning");

    // the check has teeth: without the binary it names the problem
    await Deno.remove(`${root}/usr/local/bin/kupod`);
    const missing = await verify();
    assert(missing.code !== 0, "a unit whose binary is missing fails");
    assert(missing.stderr.includes("/usr/local/bin/kupod"), missing.stderr);
  } finally {
    await Deno.remove(root, { recursive: true });
  }

  const unit = await Deno.readTextFile(UNIT);
  assertEquals(unitValues(unit, "ExecStart"), ["/usr/local/bin/kupod $KUPOD_ARGS"]);
  assertEquals(unitValues(unit, "EnvironmentFile"), ["/etc/default/kupod"]);
  assertEquals(unitValues(unit, "Restart"), ["on-failure"]);
  assertEquals(unitValues(unit, "KillSignal"), ["SIGTERM"]);
  const env = await Deno.readTextFile(ENV_FILE);
  const args = unitValues(env, "KUPOD_ARGS");
  assertEquals(args.length, 1, "one active KUPOD_ARGS");
  assert(args[0].startsWith("monitor kernel all "), args[0]);
});

Deno.test("systemd: with only the unit's capabilities kupod monitors a pod and stops on SIGTERM", async () => {
  const file = await releaseFile();
  const unit = await Deno.readTextFile(UNIT);
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  const cache = await Deno.makeTempDir({ prefix: "kupod-systemd-cache-" });
  const env = { KUPOD_CACHE_DIR: cache };
  const port = () => ["--exporter-address", "127.0.0.1", "--exporter-port", String(freePort())];
  try {
    // every kernel probe, sockops included, then the user-space probes
    const [cmd, argv] = asService(unit, [
      file,
      ...["monitor", "kernel", "all", "--veth", pod.hostVeth, "--with-sockops"],
      ...["--output", "json", "--interval", "0", ...port()],
    ]);
    const kernel = new Child(cmd, argv, { env });
    try {
      await kernel.waitForLine(/Sockops redirection started!/, 60000);
      await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
      const evs = await eventsAfter(kernel); // SIGTERM, exit 0
      const of = (type: string, role: string) =>
        evs.filter((e) => e.type === type && e.role === role).length;
      assertEquals(of("tcp_accept", "sidecar"), N, "sidecar accepts");
      assertEquals(of("tcp_connect", "sidecar"), N, "sidecar connects");
      assertEquals(of("tcp_accept", "service"), N, "service accepts");
      assertEquals(evs.length, 3 * N, "nothing else");
    } finally {
      await kernel[Symbol.asyncDispose]();
    }
    const app = pod.container("app").mainPid;
    const [ucmd, uargv] = asService(unit, [
      file,
      ...["monitor", "user", "all", "--pid", String(app), "--interval", "0", ...port()],
    ]);
    const user = new Child(ucmd, uargv, { env });
    try {
      await user.waitForLine(/started!/, 30000);
      user.kill("SIGTERM");
      assertEquals((await user.wait()).code, 0, user.stderr.join(" | "));
    } finally {
      await user[Symbol.asyncDispose]();
    }
    assertEquals(await waitNoKupodPrograms(), []);

    // where the unit's two broadest capabilities are needed
    const without = async (cap: string, args: string[]) => {
      const [c, a] = asService(unit, [file, ...args, "--duration", "5", ...port()], [cap]);
      const r = await run(c, a, env);
      assertEquals(r.code, 1, `without ${cap}: ${r.stderr}`);
      return r.stderr.split("\n").filter((l) => l.startsWith("Error:"));
    };
    const noAdmin = await without("sys_admin", [
      "monitor",
      "kernel",
      "stack",
      "--veth",
      pod.hostVeth,
    ]);
    assertEquals(noAdmin.length, 1, `${noAdmin}`);
    assert(/no network namespace reachable/.test(noAdmin[0]), noAdmin[0]);
    const noPtrace = await without("sys_ptrace", [
      "monitor",
      "kernel",
      "socket",
      "--pid",
      `${app}`,
    ]);
    assertEquals(noPtrace.length, 1, `${noPtrace}`);
    assert(/Permission denied.*\/proc\/\d+\/ns\/net/.test(noPtrace[0]), noPtrace[0]);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  // deno-lint-ignore no-explicit-any
  [k: string]: any;
}

async function manifests(): Promise<K8sObject[]> {
  const docs = parseAllDocuments(await Deno.readTextFile(MANIFEST));
  for (const d of docs) assertEquals(d.errors.map(String), [], "YAML errors");
  return docs.map((d) => d.toJS() as K8sObject);
}

function daemonSet(objects: K8sObject[]): K8sObject {
  const ds = objects.find((o) => o.kind === "DaemonSet");
  assert(ds, "a DaemonSet");
  return ds;
}

Deno.test("kubernetes: the manifests: read-only RBAC, NODE_NAME, host paths, least privilege", async () => {
  const objects = await manifests();
  assertEquals(objects.map((o) => `${o.kind}/${o.metadata.name}`), [
    "Namespace/kupod",
    "ServiceAccount/kupod",
    "ClusterRole/kupod",
    "ClusterRoleBinding/kupod",
    "DaemonSet/kupod",
  ]);
  const role = objects.find((o) => o.kind === "ClusterRole")!;
  assertEquals(role.rules, [
    { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] },
    { apiGroups: [""], resources: ["nodes"], verbs: ["get"] },
  ]);
  const binding = objects.find((o) => o.kind === "ClusterRoleBinding")!;
  assertEquals(binding.subjects, [{ kind: "ServiceAccount", name: "kupod", namespace: "kupod" }]);
  assertEquals(binding.roleRef.name, "kupod");

  const spec = daemonSet(objects).spec.template.spec;
  assertEquals(spec.serviceAccountName, "kupod");
  assertEquals([spec.hostPID, spec.hostNetwork], [true, true]);
  const [c] = spec.containers;
  assertEquals(c.env, [
    { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
  ]);
  assertEquals(c.securityContext.privileged, false);
  assertEquals(c.securityContext.allowPrivilegeEscalation, false);
  assertEquals(c.securityContext.capabilities, {
    drop: ["ALL"],
    add: ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"],
  });
  // the same capabilities as the systemd unit's
  const unitCaps = unitValues(await Deno.readTextFile(UNIT), "CapabilityBoundingSet")[0]
    .split(" ").map((x) => x.replace(/^CAP_/, ""));
  assertEquals(c.securityContext.capabilities.add, unitCaps);
  const hostPaths = Object.fromEntries(
    spec.volumes.filter((v: K8sObject) => v.hostPath).map((v: K8sObject) => [
      v.name,
      v.hostPath.path,
    ]),
  );
  const mounts = Object.fromEntries(
    c.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]),
  );
  for (const path of ["/sys/fs/bpf", "/sys/kernel/tracing", "/sys/fs/cgroup"]) {
    const name = Object.keys(hostPaths).find((n) => hostPaths[n] === path);
    assert(name, `hostPath ${path}`);
    assertEquals(mounts[name], path, `${path} mounted where it is on the host`);
  }
});

/**
 * A front for the API stand-in with the discovery of the kinds the manifests use that the
 * stand-in (core/v1 pods and nodes) does not serve: Namespace and ServiceAccount in core/v1,
 * apps/v1 and rbac.authorization.k8s.io/v1. Every other request goes to the stand-in as sent.
 */
function discoveryFront(env: KubeEnv): { url: string } & AsyncDisposable {
  const groups = {
    "apps": { resources: [{ name: "daemonsets", kind: "DaemonSet", namespaced: true }] },
    "rbac.authorization.k8s.io": {
      resources: [
        { name: "clusterroles", kind: "ClusterRole", namespaced: false },
        { name: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: false },
      ],
    },
  };
  const verbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
  const CORE_EXTRA = [["namespaces", "Namespace", false], [
    "serviceaccounts",
    "ServiceAccount",
    true,
  ]];
  const client = Deno.createHttpClient({ caCerts: [env.pki.caPem] });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: env.pki.serverCertPem,
    key: env.pki.serverKeyPem,
    onListen: () => {},
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/apis") {
      return Response.json({
        kind: "APIGroupList",
        apiVersion: "v1",
        groups: Object.keys(groups).map((name) => ({
          name,
          versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
          preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
        })),
      });
    }
    const group = /^\/apis\/([^/]+)\/v1$/.exec(path)?.[1] as keyof typeof groups | undefined;
    if (group && groups[group]) {
      return Response.json({
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: `${group}/v1`,
        resources: groups[group].resources.map((r) => ({ ...r, singularName: "", verbs })),
      });
    }
    const upstream = await fetch(`${env.api.url}${path}${new URL(req.url).search}`, {
      headers: req.headers,
      client,
    });
    if (path === "/api/v1" && upstream.ok) {
      // core/v1 as the stand-in serves it, plus the two kinds the manifests add
      const list = await upstream.json();
      const names = new Set(list.resources.map((r: { name: string }) => r.name));
      for (const [name, kind, namespaced] of CORE_EXTRA) {
        if (!names.has(name)) {
          list.resources.push({ name, kind, namespaced, singularName: "", verbs });
        }
      }
      return Response.json(list);
    }
    return new Response(upstream.body, { status: upstream.status, headers: upstream.headers });
  });
  return {
    url: `https://127.0.0.1:${server.addr.port}`,
    [Symbol.asyncDispose]: async () => {
      await server.shutdown();
      client.close();
    },
  };
}

Deno.test("kubernetes: kubectl create --dry-run=client -o yaml takes the manifests as written", async () => {
  await using env = await KubeEnv.start();
  await using front = discoveryFront(env);
  const kubeconfig = env.kubeconfig("token", { server: front.url, file: "front.kubeconfig" });
  const r = await run(KUBECTL, [
    "--kubeconfig",
    kubeconfig,
    "--request-timeout=10s",
    "create",
    "--dry-run=client",
    "--validate=false",
    "-o",
    "yaml",
    "-f",
    MANIFEST,
  ], { HOME: env.dir, KUBECONFIG: "" });
  assertEquals(r.code, 0, r.stderr);
  // kubectl prints the objects it would create: the same objects, field for field
  const printed = parseAllDocuments(r.stdout).map((d) => d.toJS() as K8sObject);
  const items: K8sObject[] = printed.length === 1 && printed[0].kind === "List"
    ? printed[0].items
    : printed;
  // keys in one order: kubectl prints them sorted
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k as keyof typeof v])]))
      : v;
  const strip = (o: K8sObject) => canonical(o);
  assertEquals(items.map(strip), (await manifests()).map(strip));
  assert(env.api.requests.some((q) => q.path === "/api/v1"), "kubectl asked the stand-in");
});

Deno.test("kubernetes: kupod started as the DaemonSet starts it finds its pod on its node", async () => {
  const file = await releaseFile();
  const ds = daemonSet(await manifests());
  const container = ds.spec.template.spec.containers[0];
  const node = "node-a";
  // the pod the manifest's args name, on this node
  const args: string[] = container.args;
  const flag = (name: string) => args[args.indexOf(name) + 1];
  const [labelKey, labelValue] = flag("--pod-label").split("=");
  await using pod = await createTestPod({
    name: "web-0",
    namespace: flag("--namespace"),
    labels: { [labelKey]: labelValue },
    nodeName: node,
    upstreamKeepAlive: false,
  });
  await using kube = await KubeEnv.start();
  kube.api.upsertPod(pod.podJson(node));

  // $(NODE_NAME) as the kubelet expands it, from the downward API's spec.nodeName
  const env: Record<string, string> = { NODE_NAME: node };
  const expanded = args.map((a) => a.replace(/\$\((\w+)\)/g, (_m, v) => env[v] ?? `$(${v})`));
  const port = freePort();
  const work = await Deno.makeTempDir({ prefix: "kupod-daemonset-" });
  try {
    const sa = `${work}/serviceaccount`;
    await Deno.mkdir(sa);
    await Deno.writeTextFile(`${sa}/token`, TOKENS.token);
    await Deno.writeTextFile(`${sa}/ca.crt`, kube.pki.caPem);
    await Deno.writeTextFile(`${sa}/namespace`, ds.metadata.namespace ?? "default");
    await Deno.mkdir(`${work}/cache`);
    await Deno.copyFile(file, `${work}/kupod`);
    await Deno.chmod(`${work}/kupod`, 0o755);
    // the container's view: the service account's files where Kubernetes mounts them, the
    // cache on the manifest's hostPath, KUBERNETES_SERVICE_* as the kubelet sets them
    const script = [
      "set -euo pipefail",
      "mount -t tmpfs kupod-var /var",
      "mkdir -p /var/run/secrets/kubernetes.io/serviceaccount /var/cache/kupod",
      'mount --bind "$1/serviceaccount" /var/run/secrets/kubernetes.io/serviceaccount',
      'mount --bind "$1/cache" /var/cache/kupod',
      'exec "$1/kupod" "${@:2}"',
    ].join("\n");
    const kupod = new Child("env", [
      "-i",
      "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      "KUBERNETES_SERVICE_HOST=127.0.0.1",
      `KUBERNETES_SERVICE_PORT=${new URL(kube.api.url).port}`,
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "bash",
      "-c",
      script,
      "daemonset",
      work,
      ...expanded,
      ...["--exporter-address", "127.0.0.1", "--exporter-port", String(port)],
    ]);
    try {
      await kupod.waitForLine(/started!/, 60000);
      assert(kube.api.requests.some((q) => q.user === "token-user"), "the token was sent");
      await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
      await new Promise((r) => setTimeout(r, 2500)); // two reads of the kernel counts
      const metrics = parseExposition(
        await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
      );
      const conns = (container: string, direction: string) =>
        metrics.get(seriesKey("kupod_tcp_connections_total", {
          namespace: pod.namespace,
          pod: "web-0",
          container,
          direction,
        }));
      assertEquals(conns("proxy", "inbound"), N, "the sidecar's accepts");
      assertEquals(conns("proxy", "outbound"), N, "the sidecar's upstream connects");
      assertEquals(conns("app", "inbound"), N, "the service's accepts");
      kupod.kill("SIGTERM");
      assertEquals((await kupod.wait()).code, 0, kupod.stderr.join(" | "));
    } finally {
      await kupod[Symbol.asyncDispose]();
    }
  } finally {
    await Deno.remove(work, { recursive: true });
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
