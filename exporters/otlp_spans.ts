/**
 * One trace per TCP connection, built from its `tcp_close` event (which carries the whole
 * connection's timing), in the shape the old kupod gave its Jaeger traces: a root span for the
 * connection ("Inner Pod" for inbound, "Out of Pod" for outbound) and three children for its
 * phases (establishment, data transfer, termination).
 *
 * @example
 * ```ts
 * import { connectionSpans } from "./otlp_spans.ts";
 * declare const close: import("../probes/events.ts").TcpCloseEvent;
 * const [root, ...phases] = connectionSpans(close);
 * console.log(root.service, root.name, phases.map((s) => s.name));
 * ```
 */

import { KupodError } from "../base/errors.ts";
import type { TcpCloseEvent } from "../probes/events.ts";

/** OTLP `Span.SpanKind` values (opentelemetry/proto/trace/v1/trace.proto). */
export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3 } as const;
export type SpanKind = (typeof SpanKind)[keyof typeof SpanKind];

/** OTLP `AnyValue`, restricted to the scalar kinds kupod sends. */
export type AnyValue =
  | { stringValue: string }
  | { intValue: number }
  | { doubleValue: number }
  | { boolValue: boolean };

/** OTLP `KeyValue`. */
export interface KeyValue {
  key: string;
  value: AnyValue;
}

/** A finished span and the service (resource `service.name`) it belongs to. */
export interface SpanData {
  service: string;
  /** 16 random bytes */
  traceId: Uint8Array;
  /** 8 random bytes */
  spanId: Uint8Array;
  /** absent on a root span */
  parentSpanId?: Uint8Array;
  name: string;
  kind: SpanKind;
  /** Unix epoch nanoseconds */
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: KeyValue[];
}

export const ROOT_INBOUND = "Inner Pod";
export const ROOT_OUTBOUND = "Out of Pod";
export const PHASES = [
  "Connection Establishment",
  "Data Transfer",
  "Connection Termination",
] as const;

/**
 * Random bytes for ids, `bytes` a multiple of 8: each 8-byte group is non-zero (an all-zero
 * trace or span id is invalid in OTLP).
 */
export type IdSource = (bytes: number) => Uint8Array;

export const randomId: IdSource = (bytes) => {
  const id = new Uint8Array(bytes);
  crypto.getRandomValues(id);
  for (let i = 0; i < bytes; i += 8) {
    while (id.subarray(i, i + 8).every((b) => b === 0)) {
      crypto.getRandomValues(id.subarray(i, i + 8));
    }
  }
  return id;
};

/**
 * The four spans of one connection: the root first, then its three phases. Throws a KupodError
 * when one of the event's times is not RFC 3339.
 */
export function connectionSpans(e: TcpCloseEvent, newId: IdSource = randomId): SpanData[] {
  const start = rfc3339ToUnixNanos(e.start_ts);
  const established = rfc3339ToUnixNanos(e.established_ts);
  const closing = rfc3339ToUnixNanos(e.closing_ts);
  const end = rfc3339ToUnixNanos(e.ts);
  const service = serviceName(e);
  const traceId = newId(16);
  const rootId = newId(8);
  const phaseIds = newId(24); // three 8-byte ids in one call
  const inbound = e.direction === "inbound";
  const root: SpanData = {
    service,
    traceId,
    spanId: rootId,
    name: inbound ? ROOT_INBOUND : ROOT_OUTBOUND,
    kind: inbound ? SpanKind.SERVER : SpanKind.CLIENT,
    startTimeUnixNano: start,
    endTimeUnixNano: end,
    attributes: connectionAttributes(e),
  };
  const bounds: [bigint, bigint][] = [[start, established], [established, closing], [closing, end]];
  const phases = PHASES.map((name, i): SpanData => ({
    service,
    traceId,
    spanId: phaseIds.subarray(8 * i, 8 * i + 8),
    parentSpanId: rootId,
    name,
    kind: SpanKind.INTERNAL,
    startTimeUnixNano: bounds[i][0],
    endTimeUnixNano: bounds[i][1],
    attributes: [str("kupod.connection.id", e.conn_id)],
  }));
  return [root, ...phases];
}

/**
 * `<pod>-in` / `<pod>-out` as the old tool named its services; the container or the command
 * stands in for the pod when the target is not a pod.
 */
export function serviceName(e: TcpCloseEvent): string {
  const who = e.pod || e.container || e.comm || "kupod";
  return `${who}-${e.direction === "inbound" ? "in" : "out"}`;
}

/**
 * The root span's attributes: the connection id, OpenTelemetry semantic-convention names for
 * the endpoints and the workload, and kupod's own measurements. `saddr`/`sport` are the pod's
 * side of the connection, `daddr`/`dport` the peer's.
 */
function connectionAttributes(e: TcpCloseEvent): KeyValue[] {
  const inbound = e.direction === "inbound";
  const attrs: KeyValue[] = [
    str("kupod.connection.id", e.conn_id),
    str("network.transport", "tcp"),
    str("network.type", e.family),
    str("network.local.address", e.saddr),
    int("network.local.port", e.sport),
    str("network.peer.address", e.daddr),
    int("network.peer.port", e.dport),
    // the server is the pod for inbound connections, the peer for outbound ones
    ...(inbound
      ? [
        str("server.address", e.saddr),
        int("server.port", e.sport),
        str("client.address", e.daddr),
        int("client.port", e.dport),
      ]
      : [
        str("server.address", e.daddr),
        int("server.port", e.dport),
        str("client.address", e.saddr),
        int("client.port", e.sport),
      ]),
  ];
  if (e.namespace) attrs.push(str("k8s.namespace.name", e.namespace));
  if (e.pod) attrs.push(str("k8s.pod.name", e.pod));
  if (e.container) attrs.push(str("k8s.container.name", e.container));
  if (e.pid) attrs.push(int("process.pid", e.pid));
  if (e.comm) attrs.push(str("process.executable.name", e.comm));
  if (e.role) attrs.push(str("kupod.role", e.role));
  attrs.push(
    int("kupod.bytes_sent", e.bytes_sent),
    int("kupod.bytes_received", e.bytes_received),
    dbl("kupod.rtt_seconds", e.rtt_seconds),
    int("kupod.retransmits", e.retransmits),
    int("kupod.exchanges", e.exchanges),
  );
  return attrs;
}

/** Bytes of a hex string (a trace or span id from a traceparent). */
export function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(
    { length: hex.length / 2 },
    (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16),
  );
}

export function str(key: string, value: string): KeyValue {
  return { key, value: { stringValue: value } };
}

export function int(key: string, value: number): KeyValue {
  return { key, value: { intValue: Math.trunc(value) } };
}

/** Always a double, also for whole numbers, so the attribute's type never changes. */
function dbl(key: string, value: number): KeyValue {
  return { key, value: { doubleValue: value } };
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * Unix epoch nanoseconds of an RFC 3339 time, exactly (no float on the way): the fraction keeps
 * all its digits, up to nanoseconds; offsets other than `Z` are applied.
 */
export function rfc3339ToUnixNanos(ts: string): bigint {
  // The times of one connection mostly share their second: reuse the last one's date work.
  const fast = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d{1,9})Z$/.exec(ts);
  if (fast && fast[1] === lastSecond.text) {
    return lastSecond.nanos + BigInt(fast[2].padEnd(9, "0"));
  }
  const nanos = parseRfc3339(ts);
  if (fast) lastSecond = { text: fast[1], nanos: nanos - BigInt(fast[2].padEnd(9, "0")) };
  return nanos;
}

let lastSecond = { text: "", nanos: 0n };

function parseRfc3339(ts: string): bigint {
  const m = RFC3339.exec(ts);
  if (!m) throw new KupodError(`not an RFC 3339 time: ${JSON.stringify(ts)}`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  if (
    date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d ||
    h > 23 || mi > 59 || s > 59
  ) {
    throw new KupodError(`not an RFC 3339 time: ${JSON.stringify(ts)} (no such date or time)`);
  }
  const offsetMinutes = m[8] ? 0 : (m[9] === "-" ? -1 : 1) * (Number(m[10]) * 60 + Number(m[11]));
  const ms = date.getTime() - offsetMinutes * 60_000;
  return BigInt(ms) * 1_000_000n + BigInt((m[7] ?? "").padEnd(9, "0"));
}
