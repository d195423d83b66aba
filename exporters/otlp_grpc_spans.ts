/**
 * One span per gRPC call (`grpc` events): SERVER for calls a container served, CLIENT for those
 * it made, named `<service>/<method>` with OpenTelemetry's RPC semantic-convention attributes.
 * A call that came with a W3C `traceparent` or gRPC's `grpc-trace-bin` joins the caller's trace
 * as a child of the caller's span; others start a trace of their own.
 */

import type { GrpcEvent } from "../probes/events.ts";
import {
  hexBytes,
  type IdSource,
  int,
  type KeyValue,
  randomId,
  rfc3339ToUnixNanos,
  type SpanData,
  SpanKind,
  str,
} from "./otlp_spans.ts";

/** The span of one call. Throws a KupodError when the event's time is not RFC 3339. */
export function grpcSpan(e: GrpcEvent, newId: IdSource = randomId): SpanData {
  const start = rfc3339ToUnixNanos(e.ts);
  const span: SpanData = {
    service: e.container || e.pod || e.comm || "kupod",
    traceId: e.trace_id ? hexBytes(e.trace_id) : newId(16),
    spanId: newId(8),
    name: `${e.service}/${e.method}`,
    kind: e.side === "server" ? SpanKind.SERVER : SpanKind.CLIENT,
    startTimeUnixNano: start,
    endTimeUnixNano: start + BigInt(Math.round(e.duration_seconds * 1e9)),
    attributes: grpcAttributes(e),
  };
  if (e.parent_span_id) span.parentSpanId = hexBytes(e.parent_span_id);
  return span;
}

function grpcAttributes(e: GrpcEvent): KeyValue[] {
  const server = e.side === "server";
  const attrs: KeyValue[] = [
    str("rpc.system", "grpc"),
    str("rpc.service", e.service),
    str("rpc.method", e.method),
    str("network.protocol.name", "http"),
    str("network.protocol.version", "2"),
    str("network.transport", "tcp"),
    str("network.peer.address", e.daddr),
    int("network.peer.port", e.dport),
    str("server.address", e.authority?.replace(/:\d+$/, "") || (server ? e.saddr : e.daddr)),
    int("server.port", server ? e.sport : e.dport),
    str("kupod.connection.id", e.conn_id),
    str("kupod.rpc.kind", e.kind),
    int("rpc.message.request.count", e.request_messages),
    int("rpc.message.response.count", e.response_messages),
    int("rpc.request.size", e.request_bytes),
    int("rpc.response.size", e.response_bytes),
  ];
  if (e.grpc_status >= 0) attrs.push(int("rpc.grpc.status_code", e.grpc_status));
  if (e.outcome !== "complete") attrs.push(str("error.type", e.outcome));
  else if (e.grpc_status > 0) attrs.push(str("error.type", String(e.grpc_status)));
  if (e.user_agent) attrs.push(str("user_agent.original", e.user_agent));
  if (e.timeout_seconds !== undefined) {
    attrs.push(str("kupod.rpc.grpc.timeout", `${e.timeout_seconds}s`));
  }
  if (e.namespace) attrs.push(str("k8s.namespace.name", e.namespace));
  if (e.pod) attrs.push(str("k8s.pod.name", e.pod));
  if (e.container) attrs.push(str("k8s.container.name", e.container));
  if (e.pid) attrs.push(int("process.pid", e.pid));
  return attrs;
}
