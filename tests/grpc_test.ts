/**
 * The gRPC probe with a real gRPC stack (grpc C-core through python3-grpcio, its own HPACK with
 * the dynamic table and Huffman): a server in the test pod's service container, a client in its
 * sidecar container, over the pod's loopback. Every call is reported exactly once from each side
 * with service, method, kind, status and message counts, concurrent calls included.
 */

import type { GrpcEvent, GrpcStatsEvent, KupodEvent } from "../probes/events.ts";
import { HttpProbe } from "../probes/http.ts";
import { resolveVeth } from "../k8s/local.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { inContainer } from "./helpers/pod_exec.ts";
import { type Child, freePort, ROOT, watchGrpc } from "./helpers/process.ts";
import { parseExposition, seriesKey } from "./helpers/prom.ts";
import { mirrored } from "./helpers/http_mirror.ts";
import { hasFeature } from "../bpf/preflight.ts";
import { startOtlpReceiver } from "./fixtures/otlp_receiver.ts";

const PEER = `${ROOT}tests/fixtures/grpc_peer.py`;
/** The pod's own connections are framed at their client end only (bpf/http_mirror.h). */
const MIRROR = hasFeature("tcp_send_start");
/** Debian's python3, which python3-grpcio (scripts/setup) installs into. */
const PYTHON = "/usr/bin/python3";

/** tests/fixtures/grpc_peer.py with `args`, as a process of the pod's `container`. */
function peer(pod: TestPod, container: string, args: string[], opts: { stdin?: boolean } = {}) {
  return inContainer(pod, pod.container(container), [PYTHON, PEER, ...args], opts);
}

/** The gRPC server in the pod's service container, once it listens, and its port. */
async function grpcServer(pod: TestPod): Promise<{ server: Child; port: string }> {
  const server = peer(pod, "app", ["server"]);
  try {
    return { server, port: (await server.waitForLine(/^listening \d+/)).split(" ")[1] };
  } catch (e) {
    await server[Symbol.asyncDispose]();
    throw e;
  }
}

/** kupod stopped as an operator stops it, with its closing lines. */
async function stopped(kupod: Child): Promise<void> {
  kupod.kill("SIGTERM");
  assertEquals((await kupod.wait()).code, 0, kupod.stderr.join("\n"));
}

/** The grpc events kupod printed once `n` arrived (or 10 s passed), and any extra soon after. */
async function grpcEvents(kupod: Child, n: number): Promise<GrpcEvent[]> {
  const calls = () =>
    kupod.stdout.filter((l) => l.includes('"type":"grpc"')).map((l) => JSON.parse(l) as GrpcEvent);
  for (let i = 0; i < 100 && calls().length < n; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 300));
  return calls();
}

Deno.test("grpc: unary (sequential and concurrent), streaming kinds and a failure, both sides", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    const exporter = freePort();
    await using kupod = await watchGrpc(pod.hostVeth, [
      "--exporter-address",
      "127.0.0.1",
      "--exporter-port",
      String(exporter),
    ]);
    const N = 30;
    await using client = peer(pod, "proxy", ["client", port, String(N)]);
    const status = await client.wait();
    assertEquals(status.code, 0, client.stderr.join("\n"));
    const evs = await grpcEvents(kupod, 2 * (N + 4));
    const server_ = evs.filter((e) => e.side === "server"),
      client_ = evs.filter((e) => e.side === "client");
    assertEquals([server_.length, client_.length], [N + 4, N + 4], JSON.stringify(evs.slice(0, 3)));
    assert(
      server_.every((e) => e.role === "service") && client_.every((e) => e.role === "sidecar"),
      "roles",
    );
    for (const side of [server_, client_]) {
      const by = (m: string) => side.filter((e) => e.method === m);
      assert(
        side.every((e) => e.service === "test.Echo"),
        `services: ${
          side.map((e) => `${e.side} ${e.service}/${e.method} ${e.grpc_status}`).join(", ")
        }`,
      );
      assertEquals(by("Unary").length, N);
      assert(
        by("Unary").every((e) =>
          e.kind === "unary" && e.grpc_status === 0 &&
          e.request_messages === 1 && e.response_messages === 1 && e.outcome === "complete"
        ),
        "unary",
      );
      assertEquals(
        by("ServerStream").map((e) => [e.kind, e.request_messages, e.response_messages]),
        [["server_stream", 1, 5]],
      );
      assertEquals(
        by("ClientStream").map((e) => [e.kind, e.request_messages, e.response_messages]),
        [["client_stream", 4, 1]],
      );
      assertEquals(by("Bidi").map((e) => [e.kind, e.request_messages, e.response_messages]), [[
        "bidi",
        3,
        3,
      ]]);
      assertEquals(by("Fail").map((e) => e.grpc_status), [5]);
    }
    const m = parseExposition(await (await fetch(`http://127.0.0.1:${exporter}/metrics`)).text());
    const count = [...m].filter(([k]) =>
      k.startsWith("rpc_server_duration_seconds_count{") &&
      k.includes('rpc_method="Unary"')
    ).reduce((n, [, v]) => n + v, 0);
    assertEquals(count, N);
    assertEquals(
      m.get(seriesKey("kupod_grpc_unknown_method_calls_total", { namespace: "", pod: "" })),
      0,
    );
    // every message's size, both sides: N-10 "hello i", 10 of 100+i bytes, "s", "a".."d",
    // "1".."3", "?" asked; the same echoed, five 2-byte stream messages, "abcd", "1".."3"
    const sum = (name: string) =>
      [...m].filter(([k]) => k.startsWith(`${name}{`)).reduce((n, [, v]) => n + v, 0);
    const hello = Array.from({ length: N - 10 }, (_, i) => `hello ${i}`.length)
      .reduce((a, b) => a + b, 0);
    const big = Array.from({ length: 10 }, (_, i) => 100 + i).reduce((a, b) => a + b, 0);
    for (const side of ["server", "client"]) {
      assertEquals(sum(`rpc_${side}_request_size_bytes_count`), N + 9, `${side} requests`);
      assertEquals(sum(`rpc_${side}_request_size_bytes_sum`), hello + big + 1 + 4 + 3 + 1);
      assertEquals(sum(`rpc_${side}_response_size_bytes_count`), N + 9, `${side} responses`);
      assertEquals(sum(`rpc_${side}_response_size_bytes_sum`), hello + big + 10 + 4 + 3);
    }
    await stopped(kupod);
    if (MIRROR) {
      // the channel opens with its preface: the service's end mirrors the sidecar's from its
      // first or second call on, so every call is the service's from the sidecar's framing
      assertEquals(mirrored(kupod, true), { reported: N + 4, lost: 0 });
    }
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("grpc: a channel opened before kupod started: calls counted exactly, methods unknown until the table shows them", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    const K = 5, N = 20;
    // calls 50 ms apart: the probe reads its ring while they go on (see the mirror below)
    await using client = peer(pod, "proxy", ["later", port, String(K), String(N), "0.05"], {
      stdin: true,
    });
    await client.waitForLine(/^paused$/);
    const exporter = freePort();
    await using kupod = await watchGrpc(pod.hostVeth, [
      "--exporter-address",
      "127.0.0.1",
      "--exporter-port",
      String(exporter),
    ]);
    await client.writeLine("go");
    await client.waitForLine(/^done$/);
    const evs = await grpcEvents(kupod, 2 * (N + 2));
    for (const side of ["server", "client"]) {
      const mine = evs.filter((e) => e.side === side);
      assertEquals(mine.length, N + 2, `${side}: every call after the start, none before`);
      // C-core indexed /test.Echo/Unary before kupod saw the channel: never guessed
      const unary = mine.slice(0, N);
      assert(
        unary.every((e) => e.service === "unknown" && e.method === "unknown"),
        `${side}: the old method stays unknown`,
      );
      // so is the "grpc-status: 0" of the trailers, which C-core indexed on the first call:
      // complete calls with the status not known (-1), known to be gRPC by their framing
      assert(
        unary.every((e) =>
          e.grpc_status === -1 && e.kind === "unary" && e.outcome === "complete" &&
          e.request_messages === 1 && e.response_messages === 1
        ),
        `${side}: statuses`,
      );
      // methods first sent after the start are in the table kupod rebuilt; a status too
      assertEquals(
        mine.slice(N).map((e) => [e.service, e.method, e.grpc_status, e.response_messages]),
        [["test.Echo", "ServerStream", -1, 5], ["test.Echo", "Fail", 5, 0]],
        side,
      );
    }
    const m = parseExposition(await (await fetch(`http://127.0.0.1:${exporter}/metrics`)).text());
    assertEquals(
      m.get(seriesKey("kupod_grpc_unknown_method_calls_total", { namespace: "", pod: "" })),
      2 * N,
      "calls with the method unknown, both sides",
    );
    await stopped(kupod);
    if (MIRROR) {
      // no preface seen: the sidecar's end is known to be the client once its first request
      // was framed, and the service's end mirrors it from a later call on
      const m = mirrored(kupod, true);
      assertEquals(m.lost, 0);
      assert(m.reported >= N / 2, `mirrored ${m.reported} of ${N + 2}`);
    }
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

/**
 * The probe itself (not the command line: its ring's size is the test's) on `pod`, reading while
 * N calls go from the sidecar to the service (grpc_peer.py burst, with its `args`), and the count
 * of calls it could not frame.
 */
async function burstThroughProbe(
  pod: TestPod,
  port: string,
  N: number,
  opts: { ringBytes?: number; h2Pieces?: number; args?: string[] } = {},
) {
  return await grpcThroughProbe(pod, async () => {
    await using client = peer(pod, "proxy", ["burst", port, String(N), ...opts.args ?? []]);
    await client.waitForLine(/^done$/);
  }, opts);
}

/**
 * The probe itself on `pod` while `traffic` runs, with the calls it reported, the count of calls
 * it could not frame, the records its ring lost, the holes found in the byte streams and the
 * bytes of control frames the kernel left out.
 */
async function grpcThroughProbe(
  pod: TestPod,
  traffic: () => Promise<void>,
  opts: { ringBytes?: number; h2Pieces?: number } = {},
) {
  const events: GrpcEvent[] = [];
  let unseen = 0;
  const sink = {
    event: (e: KupodEvent) => {
      if (e.type === "grpc") events.push(e as GrpcEvent);
      if (e.type === "grpc_stats") unseen = (e as GrpcStatsEvent).unseen_calls;
    },
    flush: () => {},
  };
  const target = await resolveVeth(pod.hostVeth);
  const probe = HttpProbe.start(target, sink, {
    http: false,
    grpc: true,
    ringBytes: opts.ringBytes,
    h2Pieces: opts.h2Pieces,
  });
  try {
    await traffic();
  } finally {
    await probe.stop();
  }
  return {
    events,
    unseen,
    lost: probe.stats().lost,
    holes: probe.holes,
    skipped: probe.controlSkipped,
  };
}

Deno.test("grpc: a channel older than kupod first seen in a call longer than the kernel copies: HTTP/2 by the kernel's verdict, every call from there reported or counted", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    const K = 3, N = 20, FIRST = 256 * 1024;
    // the first call after the start carries a message longer than the kernel copies of a call:
    // each end's first record is whole frames cut short, which alone does not show HTTP/2
    await using client = peer(pod, "proxy", [
      "later",
      port,
      String(K),
      String(N),
      "0.05",
      String(FIRST),
    ], { stdin: true });
    await client.waitForLine(/^paused$/);
    const r = await grpcThroughProbe(pod, async () => {
      await client.writeLine("go");
      await client.waitForLine(/^done$/);
    });
    assertEquals([r.lost, r.holes], [0n, 0], "nothing lost from the ring");
    // the peers' ping acknowledgements and window updates went out in no record, and left no hole
    assert(r.skipped > 0, "control frames left out in the kernel");
    // framing is found at the first call after the long one (its request read whole): from
    // there every call is reported, or counted where the first one read went by unframed at
    // an end; the long call itself, before any frame was found, is the connection's past
    const large = r.events.filter((e) => e.request_bytes >= FIRST);
    assertEquals(large.map((e) => e.side), [], "the long call is not guessed");
    for (const side of ["server", "client"]) {
      const mine = r.events.filter((e) => e.side === side);
      assert(mine.length >= N, `${side}: ${mine.length} calls reported`);
      assert(mine.every((e) => e.outcome === "complete"), `${side}: complete calls`);
    }
    assertEquals(r.events.length + r.unseen, 2 * (N + 2), `${r.events.length} reported`);
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("grpc: records a full ring dropped are found as holes in the byte streams (none without loss); nothing read across them", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    const N = 200;
    // with room: the streams' sequence numbers meet call after call, every call exact
    const whole = await burstThroughProbe(pod, port, N);
    assertEquals([whole.lost, whole.holes], [0n, 0], "nothing lost, no hole");
    for (const side of ["server", "client"]) {
      const mine = whole.events.filter((e) => e.side === side);
      const methods = (m: string, status: number) =>
        mine.filter((e) => e.method === m && e.grpc_status === status).length;
      // the burst's calls and the 5 after it (4 Unary, 1 Fail)
      assertEquals([mine.length, methods("Unary", 0), methods("Fail", 5)], [
        N + 5,
        N * 4 / 5 + 4,
        N / 5 + 1,
      ]);
    }
    // 16 KiB of ring, read every 50 ms, for ~7 KB of records every few ms: records are lost, and
    // the calls after the pause, read in time, start past the holes they left
    const cut = await burstThroughProbe(pod, port, N, { ringBytes: 1 << 14 });
    assert(cut.lost > 0n, "the small ring overflowed");
    assert(cut.holes > 0, "holes found in the byte streams");
    // a Fail is NOT_FOUND, a Unary OK: a method or status read through a hole would break that
    // (-1: the status was in a table entry the hole took)
    const guessed = cut.events.filter((e) =>
      !(e.method === "unknown" ||
        e.method === "Unary" && (e.grpc_status === 0 || e.grpc_status === -1) ||
        e.method === "Fail" && (e.grpc_status === 5 || e.grpc_status === -1))
    );
    assertEquals(guessed.map((e) => `${e.side} ${e.method} ${e.grpc_status}`), [], "none guessed");
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("grpc: calls in writes longer than the capture copies are counted unseen: every call reported or counted", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    // 200 calls of 3 KB at once: each end writes many calls' frames in one call, of which the
    // kernel copies here only the first 4 KiB (one record a call: writes of this burst are
    // sometimes all under the default 64 KiB); the calls whose request headers lay beyond are
    // not framed
    const N = 200;
    const r = await burstThroughProbe(pod, port, N, { args: [String(N), "3000"], h2Pieces: 1 });
    assertEquals([r.lost, r.holes], [0n, 0], "nothing lost from the ring");
    assert(r.unseen > 0, "calls went by unframed");
    // the burst and the 5 calls after it, on each side: reported one by one, or counted
    assertEquals(r.events.length + r.unseen, 2 * (N + 5), `${r.events.length} reported`);
    // the calls after it are framed again (their methods may be unknown: the table desynced)
    for (const side of ["server", "client"]) {
      assert(r.events.filter((e) => e.side === side).length >= 5, `${side}: the late calls`);
    }
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("grpc: a span per call joins the caller's trace from traceparent or grpc-trace-bin; authority, user agent, deadline", async () => {
  {
    await using pod = await createTestPod();
    const { server, port } = await grpcServer(pod);
    await using _server = server;
    const receiver = startOtlpReceiver();
    try {
      await using kupod = await watchGrpc(pod.hostVeth, ["--otlp-endpoint", receiver.url]);
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736", parent = "00f067aa0ba902b7";
      await using client = peer(pod, "proxy", ["traced", port, traceId, parent]);
      assertEquals((await client.wait()).code, 0, client.stderr.join("\n"));
      const evs = await grpcEvents(kupod, 6);
      assertEquals(evs.length, 6, "three calls, both sides");
      for (const e of evs) {
        assertEquals(e.authority, `127.0.0.1:${port}`);
        assert(e.user_agent?.startsWith("grpc-python/"), `user agent ${e.user_agent}`);
        // the 5 s deadline as the client sent it (C-core rounds it up to its unit)
        assert(e.timeout_seconds! > 4 && e.timeout_seconds! < 5.5, `timeout ${e.timeout_seconds}`);
      }
      assertEquals(
        evs.map((e) => [e.trace_id, e.parent_span_id]).filter(([t]) => t).length,
        4,
        "the traceparent and the grpc-trace-bin call, both sides",
      );
      const spans = await receiver.waitForSpans(6);
      assertEquals(spans.length, 6);
      assert(spans.every((s) => s.name === "test.Echo/Unary"), spans.map((s) => s.name).join());
      const joined = spans.filter((s) => s.traceId === traceId);
      assertEquals(joined.length, 4);
      assert(joined.every((s) => s.parentSpanId === parent), "children of the caller's span");
      assertEquals(spans.map((s) => s.kind).sort(), [2, 2, 2, 3, 3, 3]); // SERVER, CLIENT
      for (const s of spans) {
        assertEquals(s.attributes["rpc.system"], "grpc");
        assertEquals(s.attributes["rpc.service"], "test.Echo");
        assertEquals(s.attributes["rpc.grpc.status_code"], 0n);
      }
    } finally {
      await receiver.close();
    }
  }
  assertEquals(await waitNoKupodPrograms(), []);
});

/** nginx as a gRPC sidecar: h2c on `port`, every call passed to the service at `upstream`. */
/** A gRPC sidecar proxy: its config file in `dir` for a port and upstream, and its command. */
interface GrpcProxy {
  config(dir: string, port: number, upstream: string): string;
  command(dir: string): string[];
}

const GRPC_PROXIES: Record<string, GrpcProxy> = {
  "nginx grpc_pass": {
    config: (dir, port, upstream) =>
      `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    server {
        listen 127.0.0.1:${port} http2;
        location / { grpc_pass grpc://127.0.0.1:${upstream}; }
    }
}
`,
    command: (dir) => ["nginx", "-p", `${dir}/`, "-c", `${dir}/config`, "-e", "stderr"],
  },
  // upstream connections are reused across calls: the service sees several streams on each
  "haproxy proto h2": {
    config: (_dir, port, upstream) =>
      `global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend sidecar
    bind 127.0.0.1:${port} proto h2
    default_backend service
backend service
    http-reuse always
    server app 127.0.0.1:${upstream} proto h2
`,
    command: (dir) => ["haproxy", "-db", "-f", `${dir}/config`],
  },
};

for (const [name, proxyKind] of Object.entries(GRPC_PROXIES)) {
  Deno.test(`grpc: h2c through a sidecar (${name}), both legs, exact`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "kupod-grpc-proxy-" });
    try {
      await using pod = await createTestPod();
      const { server, port: upstream } = await grpcServer(pod);
      await using _server = server;
      const port = 18443;
      await Deno.writeTextFile(`${dir}/config`, proxyKind.config(dir, port, upstream));
      await using proxy = inContainer(pod, pod.container("proxy"), proxyKind.command(dir));
      for (let i = 0; i < 50; i++) {
        const probe = new Deno.Command("ip", {
          args: ["netns", "exec", pod.netns, "bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${port}`],
          stderr: "null",
        });
        if ((await probe.output()).success) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await using kupod = await watchGrpc(pod.hostVeth);
      const N = 20, B = 40;
      // the caller is a process of the service's container: its calls go out through the sidecar
      await using client = peer(pod, "app", ["client", String(port), String(N)]);
      assertEquals((await client.wait()).code, 0, `${client.stderr.join("\n")} ${proxy.stderr}`);
      // then B calls of 1 KB at once (every fifth fails) and 5 more: every leg writes many calls'
      // frames in one call, far more than one record holds
      await using burst = peer(pod, "app", ["burst", String(port), String(B), String(B), "1000"]);
      assertEquals((await burst.wait()).code, 0, `${burst.stderr.join("\n")} ${proxy.stderr}`);
      const M = N + 4 + B + 5;
      const evs = await grpcEvents(kupod, 4 * M);
      // app calls the proxy, the proxy calls app: each call four times, once per leg and side
      for (
        const [role, side] of [
          ["service", "client"],
          ["sidecar", "server"],
          ["sidecar", "client"],
          ["service", "server"],
        ]
      ) {
        const leg = evs.filter((e) => e.role === role && e.side === side);
        const by = (m: string) => leg.filter((e) => e.method === m).map((e) => e.grpc_status);
        assertEquals(leg.length, M, `${role} ${side}`);
        assert(leg.every((e) => e.service === "test.Echo"), `${role} ${side}: service`);
        const fails = B / 5 + 1;
        assertEquals(by("Unary"), new Array(N + B + 5 - fails).fill(0), `${role} ${side}: unary`);
        assertEquals(
          ["ServerStream", "ClientStream", "Bidi", "Fail"].map(by),
          [[0], [0], [0], new Array(1 + fails).fill(5)],
          `${role} ${side}: the other kinds`,
        );
      }
      await stopped(kupod);
      if (MIRROR) {
        // both legs are the pod's own connections: each call's server end at least once
        const m = mirrored(kupod, true);
        assertEquals(m.lost, 0);
        assert(m.reported >= M, `mirrored ${m.reported} of ${2 * M} ${kupod.stderr.join("\n")}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    assertEquals(await waitNoKupodPrograms(), []);
  });
}
