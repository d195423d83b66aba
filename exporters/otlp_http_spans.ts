/**
 * One span per HTTP request (`http` events): SERVER for requests a container served, CLIENT for
 * those it made, named `<method> <route>` and with OpenTelemetry's HTTP semantic-convention
 * attributes. A request that came with a W3C `traceparent` joins the caller's trace as a child
 * of the caller's span; others start a trace of their own.
 */

import type { HttpEvent } from "../probes/events.ts";
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

/** The span of one request. Throws a KupodError when the event's time is not RFC 3339. */
export function httpSpan(e: HttpEvent, newId: IdSource = randomId): SpanData {
  const start = rfc3339ToUnixNanos(e.ts);
  const server = e.side === "server";
  const span: SpanData = {
    service: e.container || e.pod || e.comm || "kupod",
    traceId: e.trace_id ? hexBytes(e.trace_id) : newId(16),
    spanId: newId(8),
    name: `${e.method} ${e.route}`,
    kind: server ? SpanKind.SERVER : SpanKind.CLIENT,
    startTimeUnixNano: start,
    endTimeUnixNano: start + BigInt(Math.round(e.duration_seconds * 1e9)),
    attributes: httpAttributes(e),
  };
  if (e.parent_span_id) span.parentSpanId = hexBytes(e.parent_span_id);
  return span;
}

function httpAttributes(e: HttpEvent): KeyValue[] {
  const server = e.side === "server";
  const attrs: KeyValue[] = [
    str("http.request.method", e.method),
    str("http.route", e.route),
    str("network.protocol.name", "http"),
    str("network.transport", "tcp"),
    str("network.peer.address", e.daddr),
    int("network.peer.port", e.dport),
    str("server.address", server ? e.saddr : e.daddr),
    int("server.port", server ? e.sport : e.dport),
    str("kupod.connection.id", e.conn_id),
    int("http.request.body.size", e.request_bytes),
    int("http.response.body.size", e.response_bytes),
  ];
  if (e.status) attrs.push(int("http.response.status_code", e.status));
  if (e.outcome !== "complete") attrs.push(str("error.type", e.outcome));
  else if (e.status >= (server ? 500 : 400)) attrs.push(str("error.type", String(e.status)));
  if (e.namespace) attrs.push(str("k8s.namespace.name", e.namespace));
  if (e.pod) attrs.push(str("k8s.pod.name", e.pod));
  if (e.container) attrs.push(str("k8s.container.name", e.container));
  if (e.pid) attrs.push(int("process.pid", e.pid));
  return attrs;
}
