/**
 * The Grafana dashboards in dashboards/: their JSON passes the structural check (which fails on
 * broken copies), is what scripts/gen_dashboards.ts makes, and the provisioning files point at
 * them. Grafana cannot be installed here, so the queries are run the way Grafana would run them:
 * a real kupod (`monitor all` with socket redirection) watches a test pod found through the
 * Kubernetes API stand-in, HTTP (errors and aborted requests included), gRPC (a failing call
 * included), refused connections and direct disk I/O go through the pod, a real Prometheus
 * scrapes kupod every second, and every variable query and every panel query, with the
 * variables substituted, must return data.
 */

import { parse as parseYaml } from "yaml";
import { serviceName } from "../exporters/otlp.ts";
import type { TcpCloseEvent } from "../probes/events.ts";
import { dashboards } from "../scripts/gen_dashboards.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import {
  dashboardProblems,
  type Json,
  panelQueries,
  panelsOf,
  referencedVariables,
  substitute,
  variableQuery,
  variablesOf,
} from "./helpers/dashboards.ts";
import { KubeEnv } from "./helpers/kube.ts";
import { createTestPod, type TestContainer, type TestPod } from "./helpers/pod.ts";
import { cgroupDirs, inContainer } from "./helpers/pod_exec.ts";
import { httpExchange, httpGet } from "./helpers/pod_http.ts";
import { freePort, kupodChild, ROOT } from "./helpers/process.ts";
import { promQuery, type ServerProcess, startPrometheus, waitFor } from "./helpers/prom.ts";

const DIR = `${ROOT}dashboards/`;

function committed(): Map<string, Json> {
  const out = new Map<string, Json>();
  for (const e of Deno.readDirSync(DIR)) {
    if (e.isFile && e.name.endsWith(".json")) {
      out.set(e.name, JSON.parse(Deno.readTextFileSync(DIR + e.name)));
    }
  }
  return out;
}

Deno.test("dashboards: every committed dashboard passes the structural check", () => {
  const all = committed();
  assertEquals(
    [...all.keys()].sort(),
    [
      "kupod-http-grpc.json",
      "kupod-packet-path.json",
      "kupod-pod-overview.json",
      "kupod-resources.json",
      "kupod-sockets-sidecar.json",
    ],
  );
  const uids = new Set<unknown>();
  for (const [file, d] of all) {
    assertEquals(dashboardProblems(d), [], file);
    assert(!uids.has(d.uid), `${file}: uid ${d.uid} used twice`);
    uids.add(d.uid);
    assert(panelQueries(d).length >= 10, `${file}: ${panelQueries(d).length} queries`);
  }
});

Deno.test("dashboards: the committed files are what the generator makes", () => {
  const fresh = dashboards();
  const files = committed();
  assertEquals([...files.keys()].sort(), [...fresh.keys()].sort());
  for (const [file, d] of fresh) {
    assertEquals(files.get(file), d, `${file} is stale: run scripts/gen_dashboards.ts`);
  }
});

/** The overview dashboard after `change`, and what the check says of it. */
function broken(change: (d: Json, panels: Json[]) => void): string[] {
  const d = structuredClone(committed().get("kupod-pod-overview.json")!);
  change(d, panelsOf(d));
  return dashboardProblems(d);
}

/** The first panel with queries, and its first query. */
function firstQuery(panels: Json[]): [Json, Json] {
  const p = panels.find((p) => (p.targets as Json[] | undefined)?.length)!;
  return [p, (p.targets as Json[])[0]];
}

function assertFlags(problems: string[], pattern: RegExp): void {
  assert(problems.some((p) => pattern.test(p)), `no problem ~ ${pattern} in ${problems}`);
}

Deno.test("dashboards: the structural check names each kind of breakage", () => {
  assertEquals(broken(() => {}), [], "the unchanged copy passes");
  assertFlags(
    broken((_, ps) => (ps[2].id = ps[1].id)),
    /^duplicate panel id \d+$/,
  );
  assertFlags(
    broken((_, ps) => {
      const [, t] = firstQuery(ps);
      t.expr = `${t.expr} * $replicas`;
    }),
    /undefined variable \$replicas/,
  );
  assertFlags(
    broken((_, ps) => ((ps[1].gridPos as Json).w = 30)),
    /invalid gridPos/,
  );
  assertFlags(
    broken((_, ps) => (ps[2].gridPos = { ...(ps[1].gridPos as Json) })),
    /overlap/,
  );
  assertFlags(
    broken((_, ps) => (firstQuery(ps)[0].datasource = { type: "prometheus", uid: "P1809F7CD" })),
    /datasource is not the datasource variable/,
  );
  assertFlags(
    broken((_, ps) => {
      const [, t] = firstQuery(ps);
      t.expr = String(t.expr).replace('pod="$pod"', 'pod="web-0"');
    }),
    /hard-coded pod="web-0"/,
  );
  assertFlags(
    broken((d) =>
      variablesOf(d).push({
        name: "node",
        type: "query",
        datasource: { type: "prometheus", uid: "${datasource}" },
        query: "label_values(kupod_build_info, instance)",
      })
    ),
    /variable node is never used/,
  );
  assertFlags(
    broken((d) => ((d.templating as Json).list = variablesOf(d).filter((v) => v.name !== "pod"))),
    /undefined variable \$pod/,
  );
  assertFlags(
    broken((d) => (variablesOf(d).find((v) => v.name === "pod")!.current = { value: "web-0" })),
    /variable pod has a saved value/,
  );
  assertFlags(
    broken((_, ps) => (firstQuery(ps)[0].repeat = "pod")),
    /repeats for single-valued \$pod/,
  );
  assertFlags(
    broken((d) => {
      (d.templating as Json).list = variablesOf(d).filter((v) => v.name !== "datasource");
    }),
    /no datasource variable/,
  );
});

Deno.test("dashboards: the Jaeger link searches the pod's traces in the dashboard's time range", () => {
  const withLink = [...committed()].filter(([, d]) =>
    ((d.links ?? []) as Json[]).some((l) => l.title === "Traces in Jaeger")
  );
  assertEquals(withLink.map(([f]) => f).sort(), [
    "kupod-http-grpc.json",
    "kupod-pod-overview.json",
    "kupod-sockets-sidecar.json",
  ]);
  for (const [file, d] of withLink) {
    const link = ((d.links ?? []) as Json[]).find((l) => l.title === "Traces in Jaeger")!;
    const url = new URL(substitute(String(link.url), {
      jaeger: "http://jaeger.example:16686",
      namespace: "shop",
      pod: "web-0",
      __from: "1700000000000",
      __to: "1700000360000",
    }));
    const q = url.searchParams;
    assertEquals(url.pathname, "/search", file);
    // the service of the pod's inbound connection traces; Jaeger takes µs
    const inbound = { pod: "web-0", direction: "inbound" } as TcpCloseEvent;
    assertEquals(
      [q.get("service"), q.get("start"), q.get("end"), JSON.parse(q.get("tags")!)],
      [serviceName(inbound), "1700000000000000", "1700000360000000", {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "web-0",
      }],
      file,
    );
  }
});

Deno.test("dashboards: the provisioning files provide the dashboards folder and a Prometheus", () => {
  const providers = parseYaml(Deno.readTextFileSync(`${DIR}provisioning/dashboards.yaml`)) as {
    apiVersion: number;
    providers: { type: string; options: { path: string } }[];
  };
  assertEquals(providers.apiVersion, 1);
  assertEquals(providers.providers.map((p) => p.type), ["file"]);
  assert(providers.providers[0].options.path.startsWith("/"), "an absolute path");
  const sources = parseYaml(Deno.readTextFileSync(`${DIR}provisioning/datasources.yaml`)) as {
    apiVersion: number;
    datasources: { type: string; url: string; isDefault?: boolean }[];
  };
  assertEquals(sources.apiVersion, 1);
  const prom = sources.datasources.filter((s) => s.type === "prometheus");
  assertEquals(prom.length, 1);
  assert(prom[0].isDefault && /^https?:\/\//.test(prom[0].url), JSON.stringify(prom[0]));
});

// ---------------------------------------------------------------------------------------------
// Every query against a real Prometheus that scraped a real kupod watching a pod with traffic

const NODE = "node-a";
const NAMESPACE = "shop-dash";
const POD = "web-0";
/** Debian's python3, which python3-grpcio (scripts/setup) installs into. */
const PEER = `${ROOT}tests/fixtures/grpc_peer.py`;
const GRPC_CALLS = 30;

/**
 * Queries (panel title and refId) that return series of zeros here, and why: nothing in this
 * test makes TCP retransmit or reset, the kernel throttle or OOM-kill, or the veth fail. Every
 * other query must show some of the traffic.
 */
const ZERO_HERE: Record<string, string> = {
  "CPU throttling A": "no CPU quota on the test pod",
  "CPU throttling B": "no CPU quota on the test pod",
  "OOM kills A": "no OOM kill",
  "OOM kills B": "no OOM kill",
  "Network errors and drops/s A": "a veth without errors",
  "Network errors and drops/s B": "a veth without errors",
  "Retransmits and resets/s A": "no loss between the namespaces",
  "Retransmits and resets/s B": "every connection ends with a FIN",
  "Redirect errors/s A": "both ends of each local connection are redirected",
  "Calls with an unknown method, calls not framed/s A": "every gRPC channel starts after kupod",
  "Calls with an unknown method, calls not framed/s B": "every call's writes fit the capture",
  "Events/s by probe B": "no event lost",
};

/**
 * A v1 blkio cgroup for `c`, kubelet-shaped like its other cgroups (the test pod has none), with
 * a throttle rule far above any real rate on the device of the temp dir: v1 blkio counts a
 * cgroup's I/O only for devices with such a rule. Removed on dispose, with the parents it made.
 */
function blkioCgroup(c: TestContainer): { dir: string; device: string } & Disposable {
  const root = "/sys/fs/cgroup/blkio";
  assert(
    existsSync(`${root}/cgroup.procs`),
    "needs the v1 blkio hierarchy (hybrid cgroups, as on the test machines)",
  );
  const made: string[] = [];
  let dir = root;
  for (const part of c.cgroupV2Path.split("/").filter(Boolean)) {
    dir += `/${part}`;
    try {
      Deno.mkdirSync(dir);
      made.push(dir);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
  const dispose = () => {
    for (const d of made.reverse()) {
      try {
        Deno.removeSync(d);
      } catch {
        // a parent another pod uses now
      }
    }
  };
  try {
    const device = wholeDisk(Deno.statSync(Deno.env.get("TMPDIR") ?? "/tmp").dev);
    const huge = 2 ** 40; // bytes/s: counts without ever holding back
    Deno.writeTextFileSync(`${dir}/blkio.throttle.read_bps_device`, `${device} ${huge}`);
    Deno.writeTextFileSync(`${dir}/blkio.throttle.write_bps_device`, `${device} ${huge}`);
    return { dir, device, [Symbol.dispose]: dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}

function existsSync(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** "major:minor" of the disk holding a file system's device (its parent when a partition). */
function wholeDisk(dev: number): string {
  const major = Math.floor(dev / 256) & 0xfff, minor = (dev & 0xff) | ((dev >>> 12) & ~0xff);
  const sys = `/sys/dev/block/${major}:${minor}`;
  return existsSync(`${sys}/partition`)
    ? Deno.readTextFileSync(`${sys}/../dev`).trim()
    : `${major}:${minor}`;
}

/** Writes and reads back 4 MiB with O_DIRECT from a process of `c` that is in `blkio` too. */
async function directIo(pod: TestPod, c: TestContainer, blkio: string): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "kupodt-io-" });
  try {
    const join = [...cgroupDirs(c), blkio].map((d) => `echo $$ > '${d}/cgroup.procs'`).join("; ");
    const io =
      `timeout 30 dd if=/dev/zero of=${tmp}/f bs=64k count=64 oflag=direct status=none && ` +
      `timeout 30 dd if=${tmp}/f of=/dev/null bs=64k iflag=direct status=none`;
    const out = await new Deno.Command("sh", {
      args: ["-c", `${join}; exec ip netns exec ${pod.netns} sh -c '${io}'`],
      stderr: "piped",
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** One round of traffic through the pod: every kind each panel shows. */
async function traffic(pod: TestPod, grpcPort: string): Promise<void> {
  const proxy = pod.container("proxy").port, ip = pod.podIP, host = `${ip}:${proxy}`;
  const codes = (rs: { status: number }[]) => rs.map((r) => r.status);
  // a client that gives up before the answer: the sidecar's request without a response
  const quitter = await Deno.connect({ hostname: ip, port: proxy });
  await quitter.write(
    new TextEncoder().encode(`GET /slow?delay_ms=400 HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
  );
  await new Promise((r) => setTimeout(r, 50));
  quitter.close();
  // (nginx drops its upstream connection with it: the requests below open the one that stays)
  await new Promise((r) => setTimeout(r, 500));
  // keep-alive and fresh connections through the sidecar, two routes and a slow one
  assertEquals(
    codes((await httpGet(ip, proxy, { count: 20, keepAlive: true, path: "/orders/4711" })).replies),
    new Array(20).fill(200),
  );
  assertEquals(codes((await httpGet(ip, proxy, { count: 10 })).replies), new Array(10).fill(200));
  await httpGet(ip, proxy, { count: 3, keepAlive: true, path: "/slow?delay_ms=120" });
  // a body each way, and errors: 400 and 405 from the service, 501 from the sidecar itself
  const upload = "x".repeat(20_000);
  const replies = await httpExchange(ip, proxy, [
    `POST /upload/9 HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${upload.length}\r\n\r\n${upload}`,
    `GET /?size=-1 HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
    `DELETE /orders/4711 HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
  ]);
  assertEquals(codes(replies), [201, 400, 405]);
  const unknownCoding = await httpExchange(ip, proxy, [
    `POST /upload/9 HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: gzip\r\n\r\n`,
  ]);
  assertEquals(codes(unknownCoding), [501]);
  // connections to a port nobody listens on: the pod's kernel drops them (no socket)
  for (let i = 0; i < 5; i++) {
    try {
      (await Deno.connect({ hostname: ip, port: 1 })).close();
      throw new Error("port 1 of the pod answered");
    } catch (e) {
      if (!(e instanceof Deno.errors.ConnectionRefused)) throw e;
    }
  }
  // gRPC from the sidecar container to the service container, one call failing (NOT_FOUND)
  await using client = inContainer(pod, pod.container("proxy"), [
    "/usr/bin/python3",
    PEER,
    "client",
    grpcPort,
    String(GRPC_CALLS),
  ]);
  const status = await client.wait();
  assertEquals(status.code, 0, client.stderr.join("\n"));
}

async function value(prom: ServerProcess, q: string): Promise<number | undefined> {
  return (await promQuery(prom, q))[0]?.value;
}

/**
 * What a query variable lists, as Grafana makes the list: `label_values(selector, label)` from
 * Prometheus's label values API; `query_result(expr)` from each result of the instant query as
 * the text `{label="value",...} value time`, taken through the variable's regex.
 */
async function variableValues(prom: ServerProcess, v: Json, query: string): Promise<string[]> {
  const labels = /^label_values\((.+),\s*(\w+)\)$/.exec(query);
  if (labels) {
    const res = await fetch(
      `${prom.url}/api/v1/label/${labels[2]}/values?match[]=${encodeURIComponent(labels[1])}`,
    );
    const body = await res.json() as { status: string; data: string[]; error?: string };
    assert(body.status === "success", `${query}: ${body.error}`);
    return body.data.sort();
  }
  const result = /^query_result\((.+)\)$/.exec(query);
  assert(result, `neither label_values nor query_result: ${query}`);
  const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(result[1])}`);
  const body = await res.json() as {
    status: string;
    error?: string;
    data: { result: { metric: Record<string, string>; value: [number, string] }[] };
  };
  assert(body.status === "success", `${query}: ${body.error}`);
  const regex = /^\/(.*)\/([a-z]*)$/.exec(String(v.regex ?? ""));
  assert(regex, `${v.name}: a query_result variable needs a /regex/`);
  const re = new RegExp(regex[1], regex[2]);
  const texts = body.data.result.map((r) =>
    `{${Object.entries(r.metric).map(([k, x]) => `${k}="${x}"`).join(",")}} ` +
    `${r.value[1]} ${r.value[0] * 1000}`
  );
  return [...new Set(texts.map((t) => re.exec(t)?.[1]).filter((x) => x !== undefined))].sort();
}

/** An instant query's samples (values as Prometheus prints them, NaN included), or its error. */
async function instant(prom: ServerProcess, q: string): Promise<number[] | string> {
  const res = await fetch(`${prom.url}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = await res.json() as {
    status: string;
    error?: string;
    data?: { result: { value: [number, string] }[] };
  };
  if (body.status !== "success") return body.error ?? `HTTP ${res.status}`;
  return body.data!.result.map((r) => Number(r.value[1]));
}

Deno.test("dashboards: every panel query returns data from a real kupod run over a pod with traffic", async () => {
  const started = Date.now();
  await using pod = await createTestPod({
    name: POD,
    namespace: NAMESPACE,
    labels: { app: "web-dash" },
    nodeName: NODE,
  });
  const app = pod.container("app");
  using blkio = blkioCgroup(app);
  // a memory limit for the limit column (v1 here; the test pod has no v2 memory controller)
  assert(app.cgroupV1Paths.memory, "needs the v1 memory hierarchy (hybrid cgroups)");
  Deno.writeTextFileSync(`${app.cgroupV1Paths.memory}/memory.limit_in_bytes`, String(2 ** 30));
  await using kube = await KubeEnv.start();
  kube.api.upsertPod(pod.podJson(NODE));
  await using server = inContainer(pod, app, ["/usr/bin/python3", PEER, "server"]);
  const grpcPort = (await server.waitForLine(/^listening \d+/)).split(" ")[1];
  const port = freePort();
  await using kupod = kupodChild([
    "monitor",
    "all",
    "--pod",
    POD,
    "--namespace",
    NAMESPACE,
    "--kubeconfig",
    kube.kubeconfig("cert"),
    "--nodename",
    NODE,
    "--with-sockops",
    "--quiet",
    "--exporter-address",
    "127.0.0.1",
    "--exporter-port",
    String(port),
  ]);
  // loading every probe takes a while on a busy machine
  await kupod.waitForLine(/started!/, 60_000);
  {
    await using prom = await startPrometheus(`127.0.0.1:${port}`, "1s");
    await waitFor(
      "Prometheus scraping kupod",
      async () => (await value(prom, 'up{job="kupod"}')) === 1 || undefined,
    );
    // two rounds some scrapes apart: every counter exists before it grows, so each rate has data
    const trafficStart = Date.now();
    for (let round = 1; round <= 2; round++) {
      await traffic(pod, grpcPort);
      await directIo(pod, app, blkio.dir);
      const unary = `sum(rpc_server_duration_seconds_count{rpc_method="Unary"})`;
      await waitFor(
        `round ${round} of gRPC calls in Prometheus`,
        async () => (await value(prom, unary)) === round * GRPC_CALLS || undefined,
        20_000,
      );
      await new Promise((r) => setTimeout(r, 2500));
    }
    // the rate window reaches back over both rounds, as $__rate_interval would over a view of them
    const windowLength = `${Math.ceil((Date.now() - trafficStart) / 1000) + 10}s`;

    const builtIns = { __rate_interval: windowLength, __range: windowLength, __interval: "1s" };
    const failures: string[] = [];
    const lists: Record<string, string[]> = {};
    for (const [file, d] of committed()) {
      // the variables as Grafana fills them: each list from the one before
      const values: Record<string, string> = { ...builtIns };
      for (const v of variablesOf(d)) {
        if (v.type !== "query") continue;
        const name = String(v.name);
        const listed = await variableValues(prom, v, substitute(variableQuery(v), values));
        lists[name] = listed;
        if (name === "hop") {
          assert(listed.length >= 3, `${file}: hops ${listed}`);
          assert(listed.every((h) => / → /.test(h)), `${file}: hops ${listed}`);
        } else {
          const want = name === "namespace"
            ? [NAMESPACE]
            : name === "pod"
            ? [POD]
            : ["app", "proxy"];
          assertEquals(listed, want, `${file}: variable ${name}`);
        }
        // multi-value variables reach Prometheus as Grafana's regex of the selected values
        values[name] = v.multi ? `(${listed.join("|")})` : listed[0];
      }
      for (const q of panelQueries(d)) {
        // a repeated panel: one copy per value, each with that value alone
        const copies = q.repeat ? lists[q.repeat].map((x) => ({ [q.repeat!]: x })) : [{}];
        const results: (number[] | string)[] = [];
        let expr = "";
        for (const copy of copies) {
          expr = substitute(q.expr, { ...values, ...copy });
          const left = referencedVariables(expr);
          assertEquals(left, [], `${file} "${q.panel}" ${q.refId}: variables left in ${expr}`);
          results.push(await instant(prom, expr));
        }
        const what = `${file} "${q.panel}" ${q.refId}`;
        const samples = results.filter((r) => typeof r !== "string") as number[][];
        const error = results.find((r) => typeof r === "string");
        if (error !== undefined) failures.push(`${what}: error ${error}: ${expr}`);
        else if (samples.some((r) => !r.length)) failures.push(`${what}: no series: ${expr}`);
        else if (samples.some((r) => !r.some(Number.isFinite))) {
          failures.push(`${what}: only NaN: ${expr}`);
        } else if (!samples.flat().some((v) => v > 0) && !ZERO_HERE[`${q.panel} ${q.refId}`]) {
          failures.push(`${what}: only zeros, the traffic did not reach it: ${expr}`);
        }
      }
    }
    assertEquals(failures, [], "panel queries without data");
  }
  // a clean stop (on failure, disposal kills it)
  kupod.kill("SIGTERM");
  const status = await kupod.wait();
  assertEquals(status.code, 0, `kupod exit; stderr: ${kupod.stderr.slice(-10).join(" | ")}`);
  console.log(`dashboards end to end: ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
