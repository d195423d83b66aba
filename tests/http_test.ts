/**
 * The HTTP probe on a test pod (nginx sidecar in front of an HTTP service) with real clients:
 * every request is reported exactly once per container that served or made it, with method,
 * route, status, sizes and timing, over keep-alive, fresh connections, pipelining, chunked and
 * request bodies; other TCP traffic is ignored; metrics reach a real Prometheus and spans a
 * real OTLP receiver; nothing is left loaded.
 */

import { hasFeature } from "../bpf/preflight.ts";
import type { HttpEvent } from "../probes/events.ts";
import { podBody } from "./fixtures/pod/body.ts";
import { startOtlpReceiver } from "./fixtures/otlp_receiver.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { httpExchange, httpGet } from "./helpers/pod_http.ts";
import { mirrored } from "./helpers/http_mirror.ts";
import { type Child, freePort, startKupod } from "./helpers/process.ts";
import { promQuery, startPrometheus, waitFor } from "./helpers/prom.ts";

const N = 10;
const MANY = 3000;

async function withPod(fn: (pod: TestPod) => Promise<void>): Promise<void> {
  await using pod = await createTestPod();
  await fn(pod);
  assertEquals(await waitNoKupodPrograms(), []);
}

function httpJson(pod: TestPod, ...more: string[]): string[] {
  return ["monitor", "user", "http", "--veth", pod.hostVeth, "--output", "json", ...more];
}

function httpEvents(kupod: Child): HttpEvent[] {
  return kupod.stdout.filter((l) => l.includes('"type":"http"')).map((l) => JSON.parse(l));
}

/** The http events once `n` have arrived (and a moment more, to catch any extra), then stops. */
async function eventsWhen(kupod: Child, n: number): Promise<HttpEvent[]> {
  const deadline = Date.now() + 10_000;
  while (httpEvents(kupod).length < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  await new Promise((r) => setTimeout(r, 300));
  kupod.kill("SIGTERM");
  const status = await kupod.wait();
  assertEquals(status.code, 0, `exit; stderr: ${kupod.stderr.join(" | ")}`);
  return httpEvents(kupod);
}

/** Start and end of a span in µs (`ts` has µs precision: ends within 1 µs). */
function span(e: HttpEvent): [number, number] {
  const start = Date.parse(e.ts) * 1000 + Number(e.ts.slice(23, 26));
  return [start, start + e.duration_seconds * 1e6];
}

/**
 * Sent messages are timed where their write begins only with the tcp_sendmsg_locked tracepoint
 * (Linux 6.16+); timed at the write's return, a span may end a few µs out of order.
 */
const WRITE_START = hasFeature("tcp_send_start");

/**
 * One request's spans nest, request by request over one connection each: the sidecar serving
 * it encloses the sidecar's call to the service, which encloses the service serving it.
 */
function assertNested(outer: HttpEvent[], mid: HttpEvent[], inner: HttpEvent[]): void {
  for (let i = 0; i < outer.length; i++) {
    const [o, m, n] = [outer[i], mid[i], inner[i]].map(span);
    const at = `request ${i}: ${outer[i].ts} ${mid[i].ts} ${inner[i].ts}`;
    assert(o[0] <= m[0] && m[0] <= n[0], `starts in order, ${at}`);
    assert(n[1] <= m[1] + 1 && m[1] <= o[1] + 1, `ends in order, ${at}`);
  }
}

/** The events of one leg: the sidecar serving, the sidecar calling the service, the service. */
function legs(pod: TestPod, evs: HttpEvent[]) {
  const proxy = pod.container("proxy"), app = pod.container("app");
  const of = (c: string, side: string) =>
    evs.filter((e) => e.container === c && e.side === side).sort((a, b) =>
      a.ts.localeCompare(b.ts)
    );
  const names = new Set(evs.map((e) => e.container));
  const sidecar = [...names].find((c) =>
    evs.some((e) => e.container === c && e.role === "sidecar")
  );
  const service = [...names].find((c) =>
    evs.some((e) => e.container === c && e.role === "service")
  );
  assert(sidecar && service, `sidecar and service containers in ${[...names]}`);
  return {
    proxyServer: of(sidecar, "server"),
    proxyClient: of(sidecar, "client"),
    appServer: of(service, "server"),
    appClient: of(service, "client"),
    ports: { proxy: proxy.port, app: app.port },
  };
}

Deno.test("http: keep-alive through the sidecar: each request once per leg, exact", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(httpJson(pod));
    const run = await httpGet(pod.podIP, pod.container("proxy").port, {
      count: N,
      keepAlive: true,
      path: "/orders/4711/items?page=2",
    });
    assertEquals(run.replies.map((r) => r.status), new Array(N).fill(200));
    const evs = await eventsWhen(kupod, 3 * N);
    assertEquals(evs.length, 3 * N, "three legs per request");
    const l = legs(pod, evs);
    assertEquals([l.proxyServer.length, l.proxyClient.length, l.appServer.length], [N, N, N]);
    assertEquals(l.appClient.length, 0);
    for (const e of evs) {
      assertEquals(
        [e.method, e.route, e.status, e.request_bytes, e.response_bytes, e.outcome],
        ["GET", "/orders/*/items", 200, 0, 1024, "complete"],
      );
      assert(e.duration_seconds > 0 && e.duration_seconds < 5, `duration ${e.duration_seconds}`);
      assertEquals(e.content_type, "application/octet-stream");
    }
    // the client's one connection, the sidecar's upstream connection seen from both ends
    assertEquals(new Set(l.proxyServer.map((e) => e.conn_id)).size, 1);
    for (const e of l.proxyServer) {
      assertEquals([e.saddr, e.sport, e.daddr], [pod.podIP, l.ports.proxy, pod.hostIP]);
    }
    for (const e of l.proxyClient) assertEquals([e.daddr, e.dport], ["127.0.0.1", l.ports.app]);
    for (const e of l.appServer) assertEquals(e.sport, l.ports.app);
    if (WRITE_START) {
      // the service's end of the upstream connection mirrors the sidecar's from the first
      // request the sidecar's end framed before the service read it (the first, or the second)
      const m = mirrored(kupod);
      assertEquals(m.lost, 0);
      assert(m.reported >= N - 1, `mirrored ${m.reported} of ${N}`);
      assertNested(l.proxyServer, l.proxyClient, l.appServer);
    } else {
      // timed where writes return, only causal order holds: the service may read a request
      // before the sidecar's write of it returns (loopback delivers inside the write)
      for (let i = 0; i < N; i++) {
        const [o, m, n] = [l.proxyServer[i], l.proxyClient[i], l.appServer[i]];
        assert(o.ts <= m.ts && o.ts <= n.ts, `${o.ts} ${m.ts} ${n.ts}`);
        assert(o.duration_seconds >= n.duration_seconds, "sidecar span encloses the service's");
      }
    }
  }));

Deno.test("http: the sidecar's upstream call encloses the service's span, request by request", () =>
  withPod(async (pod) => {
    // enough requests that a service reading a request before the sidecar's write of it returns
    // shows (loopback delivers inside the write): a span started at that return would begin late
    await using kupod = await startKupod(httpJson(pod));
    const run = await httpGet(pod.podIP, pod.container("proxy").port, {
      count: MANY,
      keepAlive: true,
      timeoutMs: 60_000,
    });
    assertEquals(run.replies.filter((r) => r.status === 200).length, MANY, "statuses");
    const l = legs(pod, await eventsWhen(kupod, 3 * MANY));
    assertEquals([l.proxyServer.length, l.proxyClient.length, l.appServer.length], [
      MANY,
      MANY,
      MANY,
    ]);
    if (WRITE_START) assertNested(l.proxyServer, l.proxyClient, l.appServer);
  }));

Deno.test("http: a fresh connection per request and a pipelined burst, in order", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(httpJson(pod));
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, path: "/fresh" });
    const host = `${pod.podIP}:${pod.container("app").port}`;
    const paths = ["/p/1", "/p/2?size=3000", "/q"];
    const replies = await httpExchange(
      pod.podIP,
      pod.container("app").port,
      paths.map((p) => `GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`),
      { pipelined: true },
    );
    assertEquals(replies.map((r) => r.body.length), [1024, 3000, 1024]);
    const evs = await eventsWhen(kupod, 3 * N + 3);
    assertEquals(evs.length, 3 * N + 3);
    const l = legs(pod, evs);
    assertEquals(l.proxyServer.length, N);
    // a connection each (their kernel sockets, and so their ids, may be reused one after another)
    assertEquals(new Set(l.proxyServer.map((e) => e.dport)).size, N, "a connection each");
    const direct = l.appServer.filter((e) => e.daddr === pod.hostIP);
    assertEquals(
      direct.map((e) => [e.route, e.response_bytes, e.status]),
      [["/p/*", 1024, 200], ["/p/*", 3000, 200], ["/q", 1024, 200]],
    );
    assertEquals(new Set(direct.map((e) => e.conn_id)).size, 1);
  }));

Deno.test("http: chunked responses and request bodies spanning many reads and writes", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(httpJson(pod));
    const port = pod.container("proxy").port;
    const size = 40_000;
    const got = await httpGet(pod.podIP, port, {
      count: 3,
      keepAlive: true,
      path: `/big?chunked=1&size=${size}`,
    });
    assertEquals(got.replies.map((r) => r.body.length), [size, size, size]);
    const body = new TextDecoder().decode(podBody(100_000));
    const host = `${pod.podIP}:${port}`;
    const posts = await httpExchange(
      pod.podIP,
      port,
      [1, 2].map(() =>
        `POST /upload/7 HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/plain\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}`
      ),
    );
    assertEquals(posts.map((r) => [r.status, new TextDecoder().decode(r.body)]), [
      [201, "100000\n"],
      [201, "100000\n"],
    ]);
    const evs = await eventsWhen(kupod, 15);
    assertEquals(evs.length, 15);
    const l = legs(pod, evs);
    if (WRITE_START) {
      // the sidecar's end goes to user space's framer at the first chunked response; the
      // service's end goes on mirroring it, its stamps sent as records from then on
      const m = mirrored(kupod);
      assertEquals(m.lost, 0);
      assert(m.reported >= 4, `mirrored ${m.reported} of 5`);
    }
    // every leg counts both uploads' bodies exactly
    for (const leg of [l.proxyServer, l.proxyClient, l.appServer]) {
      const up = leg.filter((e) => e.method === "POST");
      assertEquals(up.map((e) => [e.route, e.status, e.request_bytes]), [
        ["/upload/*", 201, 100_000],
        ["/upload/*", 201, 100_000],
      ]);
    }
    // every leg reports every chunked response, and its end; where a chunk-size line fell in
    // bytes that were not captured (several chunks in one write or read), the size is an
    // estimate, and the event says so
    for (const leg of [l.proxyServer, l.proxyClient, l.appServer]) {
      const gets = leg.filter((e) => e.method === "GET");
      assertEquals(gets.map((e) => e.status), [200, 200, 200]);
      for (const e of gets) {
        if (e.outcome === "complete") assertEquals(e.response_bytes, size);
        else {
          assertEquals(e.outcome, "truncated");
          assert(Math.abs(e.response_bytes - size) < 200, `estimate ${e.response_bytes}`);
        }
      }
    }
  }));

Deno.test("http: a TCP stream that is not HTTP is ignored beside the requests", () =>
  withPod(async (pod) => {
    await using kupod = await startKupod(httpJson(pod));
    const conn = await Deno.connect({ hostname: pod.podIP, port: pod.container("app").port });
    const noise = crypto.getRandomValues(new Uint8Array(4096));
    noise[0] = 0x16; // a TLS record's first byte: never an HTTP method
    await conn.write(noise);
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: true });
    conn.close();
    const evs = await eventsWhen(kupod, 3 * N);
    assertEquals(evs.length, 3 * N);
    assert(evs.every((e) => e.status === 200 && e.route === "/"), "only the requests");
  }));

/**
 * 4 slow and 6 fast requests through the sidecar under kupod (with `args`), checked on a real
 * Prometheus scrape: every server (sidecar and service) counts each request, the slow ones in
 * the histogram's buckets their delay puts them in.
 */
async function slowAndFast(pod: TestPod, args: string[]): Promise<Child> {
  const port = freePort();
  const kupod = await startKupod([
    ...httpJson(pod),
    "--exporter-address",
    "127.0.0.1",
    "--exporter-port",
    String(port),
    ...args,
  ]);
  await using prom = await startPrometheus(`127.0.0.1:${port}`);
  await httpGet(pod.podIP, pod.container("proxy").port, {
    count: 4,
    keepAlive: true,
    path: "/slow?delay_ms=300",
  });
  await httpGet(pod.podIP, pod.container("proxy").port, { count: 6, keepAlive: true });
  const bucket = (route: string, le: string) =>
    `sum(http_server_request_duration_seconds_bucket{http_route="${route}",le="${le}",` +
    `container=~".+",http_request_method="GET",http_response_status_code="200"})`;
  const value = async (q: string) => (await promQuery(prom, q))[0]?.value;
  // both servers (sidecar and service) count each request: 8 slow, 12 fast
  await waitFor(
    "20 server requests in Prometheus",
    async () =>
      (await value("sum(http_server_request_duration_seconds_count)")) === 20 || undefined,
    15_000,
  );
  assertEquals(await value(bucket("/slow", "0.25")), 0);
  assertEquals(await value(bucket("/slow", "0.5")), 8);
  assertEquals(await value(bucket("/", "0.25")), 12);
  assertEquals(await value(`sum(http_client_request_duration_seconds_count)`), 10);
  assertEquals(
    await value(`sum(http_server_response_body_size_bytes_sum{http_route="/"})`),
    12 * 1024,
  );
  return kupod;
}

Deno.test("http: a slow endpoint's delay shows in the histogram a real Prometheus scrapes", () =>
  withPod(async (pod) => {
    await using kupod = await slowAndFast(pod, []);
    const evs = await eventsWhen(kupod, 30);
    const slow = evs.filter((e) => e.route === "/slow");
    assertEquals(slow.length, 12);
    assert(slow.every((e) => e.duration_seconds >= 0.3 && e.duration_seconds < 2), "delay");
  }));

Deno.test("http: metrics only (--quiet): the same counts, taken without per-request events", () =>
  withPod(async (pod) => {
    await using kupod = await slowAndFast(pod, ["--quiet"]);
    kupod.kill("SIGTERM");
    assertEquals((await kupod.wait()).code, 0, kupod.stderr.join(" | "));
    // no events: the sidecar's and the service's counts (the service's mostly from the
    // sidecar's records, bpf/http_mirror.h) were taken from the records' fields alone
    assertEquals(httpEvents(kupod), []);
  }));

Deno.test("http: spans join the caller's trace; previews only without credentials", () =>
  withPod(async (pod) => {
    const receiver = startOtlpReceiver();
    try {
      await using kupod = await startKupod([
        ...httpJson(pod),
        "--otlp-endpoint",
        receiver.url,
        "--http-preview",
        "16",
      ]);
      const traceId = "4bf92f3577b34da6a3ce929d0e0e4736", parent = "00f067aa0ba902b7";
      const port = pod.container("proxy").port, host = `${pod.podIP}:${port}`;
      await httpExchange(pod.podIP, port, [
        `GET /traced HTTP/1.1\r\nHost: ${host}\r\ntraceparent: 00-${traceId}-${parent}-01\r\n\r\n`,
        `GET /secret HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer abc\r\n\r\n`,
      ]);
      const evs = await eventsWhen(kupod, 6);
      assertEquals(evs.length, 6);
      const preview = new TextDecoder().decode(podBody(1024).subarray(0, 16));
      for (const e of evs) {
        if (e.route === "/traced") {
          assertEquals([e.trace_id, e.parent_span_id, e.response_preview], [
            traceId,
            parent,
            preview,
          ]);
        } else assertEquals([e.trace_id, e.response_preview], [undefined, undefined]);
      }
      const spans = (await receiver.waitForSpans(6)).filter((s) => s.name === "GET /traced");
      assertEquals(spans.length, 3);
      for (const s of spans) {
        assertEquals([s.traceId, s.parentSpanId], [traceId, parent]);
        assertEquals(s.attributes["http.response.status_code"], 200n);
      }
      assertEquals(spans.map((s) => s.kind).sort(), [2, 2, 3]); // two SERVER, one CLIENT
    } finally {
      await receiver.close();
    }
  }));

Deno.test("http: through a haproxy sidecar, keep-alive both sides: each request once per leg, exact", async () => {
  await using pod = await createTestPod({
    containers: [
      { name: "proxy", kind: "haproxy-proxy", port: 8080 },
      { name: "app", kind: "http", port: 9090 },
    ],
    upstreamKeepAlive: true,
  });
  await using kupod = await startKupod(httpJson(pod));
  const run = await httpGet(pod.podIP, 8080, { count: N, keepAlive: true, path: "/carts/42" });
  assertEquals(run.replies.map((r) => r.status), new Array(N).fill(200));
  const evs = await eventsWhen(kupod, 3 * N);
  const l = legs(pod, evs);
  assertEquals([l.proxyServer.length, l.proxyClient.length, l.appServer.length], [N, N, N]);
  assert(
    evs.every((e) => e.route === "/carts/*" && e.status === 200 && e.response_bytes === 1024),
    JSON.stringify(evs[0]),
  );
  assert(l.proxyServer.every((e) => e.comm === "haproxy"), "haproxy serves");
  if (WRITE_START) {
    const m = mirrored(kupod);
    assertEquals(m.lost, 0);
    assert(m.reported >= N - 1, `mirrored ${m.reported} of ${N}`);
    // the service's spans keep its own owner, though its end's records never leave the kernel
    assert(l.appServer.every((e) => e.comm !== "haproxy" && e.sport === 9090), "the service");
    assertNested(l.proxyServer, l.proxyClient, l.appServer);
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
