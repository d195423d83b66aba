// The OTLP span exporter against a receiver that decodes with the official opentelemetry-proto
// definitions (tests/fixtures/otlp_receiver.ts), not with kupod's code.

import { KupodError, UsageError } from "../base/errors.ts";
import {
  otlpEndpointFor,
  OtlpSpans,
  type OtlpSpansOptions,
  rfc3339ToUnixNanos,
  tracesUrl,
} from "../exporters/otlp.ts";
import type { KupodEvent, TcpCloseEvent } from "../probes/events.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { type ReceivedSpan, startOtlpReceiver } from "./fixtures/otlp_receiver.ts";

const SERVER = 2, CLIENT = 3, INTERNAL = 1;

/** Unix nanos of a UTC time with microseconds, computed without kupod's parser. */
function nanos(y: number, mo: number, d: number, h: number, mi: number, s: number, us: number) {
  return BigInt(Date.UTC(y, mo - 1, d, h, mi, s)) * 1_000_000n + BigInt(us) * 1000n;
}

const inbound: TcpCloseEvent = {
  type: "tcp_close",
  ts: "2025-03-14T09:26:53.989793Z",
  namespace: "shop",
  pod: "cart-7d9f",
  container: "envoy",
  role: "sidecar",
  pid: 4242,
  comm: "envoy",
  family: "ipv4",
  saddr: "10.244.1.7",
  sport: 8080,
  daddr: "10.244.2.9",
  dport: 51234,
  conn_id: "c0ffee01",
  direction: "inbound",
  start_ts: "2025-03-14T09:26:53.100000Z",
  established_ts: "2025-03-14T09:26:53.100000Z",
  closing_ts: "2025-03-14T09:26:53.900001Z",
  duration_seconds: 0.889793,
  bytes_sent: 1234,
  bytes_received: 567,
  rtt_seconds: 0.000125,
  retransmits: 2,
  exchanges: 3,
};
const inboundTimes = {
  start: nanos(2025, 3, 14, 9, 26, 53, 100000),
  established: nanos(2025, 3, 14, 9, 26, 53, 100000),
  closing: nanos(2025, 3, 14, 9, 26, 53, 900001),
  end: nanos(2025, 3, 14, 9, 26, 53, 989793),
};

const outbound: TcpCloseEvent = {
  type: "tcp_close",
  ts: "2025-12-31T23:59:59.999999Z",
  namespace: "shop",
  pod: "cart-7d9f",
  container: "app",
  role: "service",
  pid: 777,
  comm: "python3",
  family: "ipv6",
  saddr: "fd00::7",
  sport: 40000,
  daddr: "fd00::1:2",
  dport: 443,
  conn_id: "c0ffee02",
  direction: "outbound",
  start_ts: "2025-12-31T23:59:58.000001Z",
  established_ts: "2025-12-31T23:59:58.000321Z",
  closing_ts: "2025-12-31T23:59:59.5Z",
  duration_seconds: 1.999998,
  bytes_sent: 10,
  bytes_received: 1_000_000,
  rtt_seconds: 0, // whole numbers must still arrive as doubles
  retransmits: 0,
  exchanges: 1,
};
const outboundTimes = {
  start: nanos(2025, 12, 31, 23, 59, 58, 1),
  established: nanos(2025, 12, 31, 23, 59, 58, 321),
  closing: nanos(2025, 12, 31, 23, 59, 59, 500000),
  end: nanos(2025, 12, 31, 23, 59, 59, 999999),
};

/** A distinct connection for bulk tests. */
function connection(i: number): TcpCloseEvent {
  return { ...inbound, conn_id: `bulk-${i}`, dport: 30000 + i };
}

function sink(endpoint: string, opts: Partial<OtlpSpansOptions> = {}) {
  const errors: KupodError[] = [];
  const spans = new OtlpSpans({
    endpoint,
    onError: (e) => errors.push(e),
    flushIntervalMs: 60_000, // only size and close() flush, unless a test says otherwise
    retryDelayMs: 20,
    ...opts,
  });
  return { spans, errors };
}

function byTrace(spans: ReceivedSpan[]): Map<string, ReceivedSpan[]> {
  const traces = new Map<string, ReceivedSpan[]>();
  for (const s of spans) traces.set(s.traceId, [...(traces.get(s.traceId) ?? []), s]);
  return traces;
}

/** Checks one connection's trace: root + three phases, links, names, kinds, exact times. */
function checkTrace(
  trace: ReceivedSpan[],
  root: { name: string; kind: number; service: string; connId: string },
  t: { start: bigint; established: bigint; closing: bigint; end: bigint },
): ReceivedSpan {
  assertEquals(trace.length, 4, `spans of ${root.connId}`);
  const roots = trace.filter((s) => s.parentSpanId === "");
  assertEquals(roots.length, 1, "one root");
  const r = roots[0];
  assertEquals(
    [r.name, r.kind, r.service, r.startTimeUnixNano, r.endTimeUnixNano],
    [root.name, root.kind, root.service, t.start, t.end],
    "root",
  );
  assertEquals(r.attributes["kupod.connection.id"], root.connId);
  assert(/^[0-9a-f]{32}$/.test(r.traceId) && !/^0+$/.test(r.traceId), `trace id ${r.traceId}`);
  const children = trace.filter((s) => s.parentSpanId !== "");
  const phases = Object.fromEntries(children.map((c) => [c.name, c]));
  assertEquals(
    Object.keys(phases).sort(),
    ["Connection Establishment", "Connection Termination", "Data Transfer"],
  );
  const expect: Record<string, [bigint, bigint]> = {
    "Connection Establishment": [t.start, t.established],
    "Data Transfer": [t.established, t.closing],
    "Connection Termination": [t.closing, t.end],
  };
  for (const [name, [start, end]] of Object.entries(expect)) {
    const c = phases[name];
    assertEquals(
      [c.parentSpanId, c.traceId, c.kind, c.service, c.startTimeUnixNano, c.endTimeUnixNano],
      [r.spanId, r.traceId, INTERNAL, root.service, start, end],
      name,
    );
  }
  const ids = trace.map((s) => s.spanId);
  assert(ids.every((id) => /^[0-9a-f]{16}$/.test(id) && !/^0+$/.test(id)), `span ids ${ids}`);
  assertEquals(new Set(ids).size, 4, "distinct span ids");
  return r;
}

Deno.test("otlp: inbound IPv4 and outbound IPv6 connections decode to the expected traces", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans, errors } = sink(rx.url);
    spans.event(inbound);
    spans.event(outbound);
    await spans.close();
    assertEquals(errors.map((e) => e.message), []);
    assertEquals(rx.requests.length, 1);
    assertEquals(
      [rx.requests[0].path, rx.requests[0].contentType],
      ["/v1/traces", "application/x-protobuf"],
    );
    const traces = byTrace(rx.spans());
    assertEquals(traces.size, 2, "one trace per connection");
    const [a, b] = [...traces.values()];
    const inTrace = a.some((s) => s.attributes["kupod.connection.id"] === "c0ffee01") ? a : b;
    const outTrace = inTrace === a ? b : a;

    const rin = checkTrace(inTrace, {
      name: "Inner Pod",
      kind: SERVER,
      service: "cart-7d9f-in",
      connId: "c0ffee01",
    }, inboundTimes);
    assertEquals(rin.resource, { "service.name": "cart-7d9f-in" });
    assertEquals(rin.scope.name, "kupod");
    assertEquals(rin.attributes, {
      "kupod.connection.id": "c0ffee01",
      "network.transport": "tcp",
      "network.type": "ipv4",
      "network.local.address": "10.244.1.7",
      "network.local.port": 8080n,
      "network.peer.address": "10.244.2.9",
      "network.peer.port": 51234n,
      "server.address": "10.244.1.7",
      "server.port": 8080n,
      "client.address": "10.244.2.9",
      "client.port": 51234n,
      "k8s.namespace.name": "shop",
      "k8s.pod.name": "cart-7d9f",
      "k8s.container.name": "envoy",
      "process.pid": 4242n,
      "process.executable.name": "envoy",
      "kupod.role": "sidecar",
      "kupod.bytes_sent": 1234n,
      "kupod.bytes_received": 567n,
      "kupod.rtt_seconds": 0.000125,
      "kupod.retransmits": 2n,
      "kupod.exchanges": 3n,
    });

    const rout = checkTrace(outTrace, {
      name: "Out of Pod",
      kind: CLIENT,
      service: "cart-7d9f-out",
      connId: "c0ffee02",
    }, outboundTimes);
    const at = rout.attributes;
    assertEquals(
      [at["network.type"], at["network.peer.address"], at["network.peer.port"]],
      ["ipv6", "fd00::1:2", 443n],
    );
    assertEquals([at["server.address"], at["server.port"]], ["fd00::1:2", 443n]);
    assertEquals([at["client.address"], at["client.port"]], ["fd00::7", 40000n]);
    assertEquals([at["k8s.container.name"], at["process.pid"]], ["app", 777n]);
    assertEquals([at["kupod.bytes_received"], at["kupod.retransmits"]], [1_000_000n, 0n]);
    assert(typeof at["kupod.rtt_seconds"] === "number" && at["kupod.rtt_seconds"] === 0, "double");
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: service.name falls back to the container, then the command", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans } = sink(rx.url);
    spans.event({ ...inbound, pod: undefined, conn_id: "x1" });
    spans.event({ ...outbound, pod: "", container: "", conn_id: "x2" });
    await spans.close();
    const services = new Set(rx.spans().map((s) => `${s.attributes["kupod.connection.id"] ?? ""}`));
    assert(services.has("x1") && services.has("x2"));
    const roots = rx.spans().filter((s) => !s.parentSpanId);
    assertEquals(roots.map((s) => s.service).sort(), ["envoy-in", "python3-out"]);
    const r1 = roots.find((s) => s.service === "envoy-in")!;
    assert(!("k8s.pod.name" in r1.attributes), "no pod attribute without a pod");
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: 600 connections arrive as 2400 spans in batches of at most 512", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans, errors } = sink(rx.url);
    for (let i = 0; i < 600; i++) spans.event(connection(i));
    await spans.close();
    assertEquals(errors.length, 0);
    const all = rx.spans();
    assertEquals(all.length, 2400);
    assert(rx.requests.length >= 2, `${rx.requests.length} requests`);
    assert(rx.requests.every((r) => r.spans.length <= 512), "batch size");
    const traces = byTrace(all);
    assertEquals(traces.size, 600, "distinct trace ids");
    const conns = new Set([...traces.values()].map((t) => t[0].attributes["kupod.connection.id"]));
    assertEquals(conns.size, 600);
    for (const trace of traces.values()) {
      const id = trace.find((s) => !s.parentSpanId)!.attributes["kupod.connection.id"];
      checkTrace(trace, {
        name: "Inner Pod",
        kind: SERVER,
        service: "cart-7d9f-in",
        connId: String(id),
      }, inboundTimes);
    }
    assertEquals(spans.stats(), { delivered: 2400, dropped: 0, requests: rx.requests.length });
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: the timer sends pending spans without flush() or close()", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans } = sink(rx.url, { flushIntervalMs: 50 });
    spans.event(inbound);
    await rx.waitForSpans(4, 5000);
    await spans.close();
    assertEquals(rx.spans().length, 4);
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: close() delivers what is pending; events after close are ignored", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans } = sink(rx.url);
    spans.event(inbound);
    spans.event(outbound);
    assertEquals(rx.requests.length, 0, "nothing sent before close");
    await spans.close();
    assertEquals(rx.spans().length, 8, "all pending spans delivered when close() resolves");
    spans.event(connection(1));
    spans.flush();
    await spans.close();
    assertEquals(rx.spans().length, 8);
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: a receiver that is down is reported through onError, retried once, never thrown", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close(); // nothing listens there now: connection refused
  const { spans, errors } = sink(`http://127.0.0.1:${port}`);
  spans.event(inbound);
  spans.flush();
  spans.event({ ...inbound, type: "tcp_connect" } as unknown as KupodEvent); // not a close: ignored
  await spans.close();
  assertEquals(errors.length, 1, errors.map((e) => e.message).join(" | "));
  const e = errors[0];
  assert(e instanceof KupodError && !e.message.includes("\n"), "one-line KupodError");
  assert(/connection refused/.test(e.message), e.message);
  assert(e.message.includes(`127.0.0.1:${port}/v1/traces`) && /4 spans dropped/.test(e.message));
  assertEquals(spans.stats(), { delivered: 0, dropped: 4, requests: 2 });
});

Deno.test("otlp: 503 then 200 is retried and delivered", async () => {
  const rx = startOtlpReceiver({ failFirst: [503] });
  try {
    const { spans, errors } = sink(rx.url);
    spans.event(outbound);
    await spans.close();
    assertEquals(rx.statuses, [503, 200]);
    assertEquals(rx.spans().length, 4);
    assertEquals(errors.length, 0);
    assertEquals(spans.stats(), { delivered: 4, dropped: 0, requests: 2 });
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: two 503s drop the batch; a 400 is not retried", async () => {
  const rx = startOtlpReceiver({ failFirst: [503, 503, 400] });
  try {
    const { spans, errors } = sink(rx.url);
    spans.event(outbound);
    spans.flush();
    spans.event(inbound);
    await spans.close();
    assertEquals(rx.statuses, [503, 503, 400]);
    assertEquals(errors.length, 2);
    assert(/HTTP 503.*4 spans dropped/.test(errors[0].message), errors[0].message);
    assert(/HTTP 400/.test(errors[1].message), errors[1].message);
    assertEquals(spans.stats(), { delivered: 0, dropped: 8, requests: 3 });
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: a partial success is reported", async () => {
  const rx = startOtlpReceiver({ rejectSpans: 3 });
  try {
    const { spans, errors } = sink(rx.url);
    spans.event(inbound);
    await spans.close();
    assertEquals(errors.length, 1);
    assert(/rejected 3 of 4 spans: too many/.test(errors[0].message), errors[0].message);
    assertEquals(spans.stats(), { delivered: 1, dropped: 3, requests: 1 });
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: an event with an unreadable time is skipped and reported", async () => {
  const rx = startOtlpReceiver();
  try {
    const { spans, errors } = sink(rx.url);
    spans.event({ ...inbound, closing_ts: "yesterday" });
    spans.event(outbound);
    await spans.close();
    assertEquals(errors.length, 1);
    assert(/c0ffee01 skipped: not an RFC 3339 time: "yesterday"/.test(errors[0].message));
    assertEquals(rx.spans().length, 4);
  } finally {
    await rx.close();
  }
});

Deno.test("otlp: RFC 3339 times convert to exact unix nanoseconds", () => {
  assertEquals(rfc3339ToUnixNanos("1970-01-01T00:00:00Z"), 0n);
  assertEquals(rfc3339ToUnixNanos("2024-01-01T00:00:00.000001Z"), 1_704_067_200_000_001_000n);
  assertEquals(rfc3339ToUnixNanos("2024-01-01T00:00:00.123456789Z"), 1_704_067_200_123_456_789n);
  assertEquals(rfc3339ToUnixNanos("2024-01-01T02:00:00.5+02:00"), 1_704_067_200_500_000_000n);
  assertEquals(rfc3339ToUnixNanos("2023-12-31T23:30:00-00:30"), 1_704_067_200_000_000_000n);
  assertEquals(
    rfc3339ToUnixNanos("2024-02-29T12:00:00.999999Z"),
    nanos(2024, 2, 29, 12, 0, 0, 999999),
  );
  for (const bad of ["", "2024-01-01", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "x"]) {
    let thrown: unknown;
    try {
      rfc3339ToUnixNanos(bad);
    } catch (e) {
      thrown = e;
    }
    assert(thrown instanceof KupodError, `${JSON.stringify(bad)} must be refused`);
  }
});

Deno.test("otlp: endpoints: --otlp-endpoint, --jaeger-agent mapped to Jaeger's OTLP/HTTP port", () => {
  assertEquals(otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "" }), "");
  assertEquals(
    otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "jaeger:6831" }),
    "http://jaeger:4318/v1/traces",
  );
  assertEquals(
    otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "10.0.0.5:6832" }),
    "http://10.0.0.5:4318/v1/traces",
  );
  assertEquals(
    otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "[fd00::1]:6831" }),
    "http://[fd00::1]:4318/v1/traces",
  );
  assertEquals(
    otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "jaeger-agent.tracing" }),
    "http://jaeger-agent.tracing:4318/v1/traces",
  );
  assertEquals(
    otlpEndpointFor({ otlpEndpoint: "http://otel:4318", jaegerAgent: "jaeger:6831" }),
    "http://otel:4318",
  );
  let thrown: unknown;
  try {
    otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "not a host:1" });
  } catch (e) {
    thrown = e;
  }
  assert(thrown instanceof UsageError, "bad --jaeger-agent is a usage error");

  assertEquals(tracesUrl("http://otel:4318"), "http://otel:4318/v1/traces");
  assertEquals(tracesUrl("http://otel:4318/"), "http://otel:4318/v1/traces");
  assertEquals(tracesUrl("https://otel.example/otlp"), "https://otel.example/otlp/v1/traces");
  assertEquals(tracesUrl("http://otel:4318/v1/traces"), "http://otel:4318/v1/traces");
  assertEquals(tracesUrl("otel:4318"), "http://otel:4318/v1/traces");
  assertEquals(
    tracesUrl(otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "j:6831" })),
    "http://j:4318/v1/traces",
  );
  for (const bad of ["ftp://otel:21", "http://", "http://[x"]) {
    let e: unknown;
    try {
      tracesUrl(bad);
    } catch (err) {
      e = err;
    }
    assert(e instanceof UsageError, `${bad} must be refused`);
  }
});
