/** Builders of `tcp_stats` events, the kernel's running totals of a pod's connections. */

import type { KupodMetrics } from "../../exporters/metrics.ts";
import type { Log2Counts, TcpCounts, TcpStatsEvent } from "../../probes/events.ts";

export const US = 1e-6;
export const NS = 1e-9;

/** A log2 histogram with one observation per value (in `unit` seconds), as the kernel counts it. */
export function log2Counts(values: number[], unit: number): Log2Counts {
  const slots = Array(32).fill(0);
  for (const v of values) slots[Math.min(31, Math.floor(Math.log2(v)))]++;
  return {
    count: values.length,
    sum_seconds: values.reduce((a, b) => a + b, 0) * unit,
    unit_seconds: unit,
    slots,
  };
}

/** What the kernel counted for one container and direction; "app", inbound, zeros by default. */
export function tcpCounts(fields: Partial<TcpCounts>): TcpCounts {
  return {
    container: "app",
    direction: "inbound",
    opened: 0,
    closed: 0,
    bytes_sent: 0,
    bytes_received: 0,
    retransmits: 0,
    long_connections: 0,
    resets: 0,
    rtt: log2Counts([], US),
    duration: log2Counts([], US),
    ...fields,
  };
}

export function tcpStats(
  connections: TcpCounts[],
  who: { namespace?: string; pod?: string },
): TcpStatsEvent {
  return {
    ts: "2025-01-01T00:00:00.000Z",
    type: "tcp_stats",
    namespace: who.namespace,
    pod: who.pod,
    connections,
  };
}

/**
 * One container's connections as the kernel would count them: accept/connect/close add to the
 * totals, report() hands the totals to the metrics as the probe does every second.
 */
export class ContainerCounts {
  readonly #inbound: TcpCounts;
  readonly #outbound: TcpCounts;
  readonly #rttUs: number[] = [];
  readonly #durationUs: number[] = [];

  constructor(readonly who: { namespace: string; pod: string; container: string }) {
    this.#inbound = tcpCounts({ container: who.container, direction: "inbound" });
    this.#outbound = tcpCounts({ container: who.container, direction: "outbound" });
  }

  accept(n = 1): this {
    this.#inbound.opened += n;
    return this;
  }

  connect(n = 1): this {
    this.#outbound.opened += n;
    return this;
  }

  /** An inbound connection closes after carrying `bytes_sent` / `bytes_received`. */
  close(c: { bytes_sent: number; bytes_received: number; rtt_us: number; duration_us: number }) {
    this.#inbound.closed++;
    this.#inbound.bytes_sent += c.bytes_sent;
    this.#inbound.bytes_received += c.bytes_received;
    this.#rttUs.push(c.rtt_us);
    this.#durationUs.push(c.duration_us);
    this.#inbound.rtt = log2Counts(this.#rttUs, US);
    this.#inbound.duration = log2Counts(this.#durationUs, US);
    return this;
  }

  report(metrics: KupodMetrics): void {
    metrics.event(tcpStats([{ ...this.#inbound }, { ...this.#outbound }], this.who));
  }
}
