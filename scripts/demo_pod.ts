/**
 * The demo: a pod built from kernel parts (network namespace, veth, kubelet-shaped cgroups) with
 * an nginx sidecar in front of an HTTP service and a gRPC server and client inside; HTTP traffic
 * from the node through the sidecar (keep-alive, a slow endpoint, some errors) and gRPC calls in
 * the pod (one failing method); `kupod monitor all` on it, its summaries on the terminal (its
 * lines per request and per connection counted, not shown) and its live view on the exporter
 * port. Everything is removed when it ends (Ctrl-C too).
 *
 * Args: <seconds> <exporter port>.
 */

import { createTestPod } from "../tests/helpers/pod.ts";
import { inContainer } from "../tests/helpers/pod_exec.ts";
import { ROOT } from "../tests/helpers/process.ts";

const seconds = Number(Deno.args[0] ?? 30);
const port = Number(Deno.args[1] ?? 8765);
const PEER = `${ROOT}tests/fixtures/grpc_peer.py`;
/** Debian's Python, which has python3-grpcio (another python3 may come first on PATH). */
const PYTHON = "/usr/bin/python3";

const stopped = new AbortController();
const stop = () => stopped.abort();
for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, stop);

await using pod = await createTestPod({ name: "demo-0", namespace: "demo" });
await using grpcServer = inContainer(pod, pod.container("app"), [PYTHON, PEER, "server"]);
const grpcPort = Number((await grpcServer.waitForLine(/^listening \d+/)).split(" ")[1]);

console.error(
  `[demo] pod demo/demo-0: veth ${pod.hostVeth}, IP ${pod.podIP}; nginx sidecar :8080 in front ` +
    `of the service :9090, a gRPC server and client inside; traffic for ${seconds} s`,
);
const kupod = new Deno.Command(`${ROOT}kupod`, {
  args: [
    "monitor",
    "all",
    "--veth",
    pod.hostVeth,
    "--exporter-port",
    String(port),
    "--interval",
    "5",
    "--duration",
    String(seconds),
  ],
  stdin: "null",
  stdout: "piped",
  stderr: "piped",
}).spawn();

/** A line per request, connection or container reading: the demo shows the summaries instead. */
const EVENT_LINE = /^\d\d:\d\d:\d\d\.\d+Z? +(http|grpc|tcp_accept|tcp_connect|resources) /;
let hidden = 0;

/** kupod's lines to ours (`filter` drops some); resolves once the live view's URL went by. */
async function relay(
  from: ReadableStream<Uint8Array>,
  to: typeof Deno.stdout,
  started?: () => void,
): Promise<void> {
  const encoder = new TextEncoder();
  let rest = "";
  for await (const text of from.pipeThrough(new TextDecoderStream())) {
    const lines = (rest + text).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      if (EVENT_LINE.test(line)) {
        hidden++;
        continue;
      }
      to.writeSync(encoder.encode(line + "\n"));
      if (started && line.startsWith("Live view at: ")) {
        console.error("[demo] open the live view above in a browser on this node");
        started();
      }
    }
  }
  started?.();
}
let started!: () => void;
const ready = new Promise<void>((r) => (started = r));
const relayed = Promise.all([
  relay(kupod.stdout, Deno.stdout, started),
  relay(kupod.stderr, Deno.stderr, started),
]);
await ready;

const base = `http://${pod.podIP}:8080`;
/** Requests through the sidecar at `perSecond`, until the demo ends. */
async function load(perSecond: number, path: () => string, init?: RequestInit): Promise<void> {
  while (!stopped.signal.aborted) {
    const t = performance.now();
    try {
      await (await fetch(base + path(), { ...init, signal: stopped.signal })).arrayBuffer();
    } catch { /* the demo is ending */ }
    await new Promise((r) =>
      setTimeout(r, Math.max(0, 1000 / perSecond - (performance.now() - t)))
    );
  }
}
/** The gRPC client in the sidecar's container, a round of calls every 2 s. */
async function grpcCalls(): Promise<void> {
  while (!stopped.signal.aborted) {
    await using client = inContainer(pod, pod.container("proxy"), [
      PYTHON,
      PEER,
      "client",
      String(grpcPort),
      "20",
    ]);
    await client.wait();
    await new Promise((r) => setTimeout(r, 2000));
  }
}

const traffic = Promise.all([
  load(40, () => `/api/items/${Math.floor(Math.random() * 1000)}?size=2048`),
  load(10, () => `/api/users/${crypto.randomUUID()}?size=512`),
  load(2, () => "/api/report?delay_ms=250&size=65536"), // the slow endpoint
  load(3, () => "/api/checkout?status=503&size=64"), // failing
  load(2, () => "/api/missing?status=404&size=16"),
  load(5, () => "/api/orders", { method: "POST", body: "x".repeat(300) }),
  grpcCalls(),
]);

const status = await kupod.status;
stop();
await Promise.all([traffic, relayed]);
console.error(
  `[demo] ${hidden} lines per request, connection and container reading were left out above`,
);
for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, stop);
if (!status.success) Deno.exitCode = status.code;
