/**
 * The socket probe: TCP connects, accepts, closes (with bytes, RTT,
 * retransmits and phase times), retransmits, and sidecar timing of the
 * target's containers (bpf/socket.bpf.c), decoded into the event contract.
 */

import type { BpfObject } from "../bpf/object.ts";
import { decodeSockEvent, RODATA, type SockEvent } from "../bpf/gen/socket.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { formatAddr } from "./addr.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import type {
  EventSink,
  KupodEvent,
  Log2Counts,
  SidecarStatsEvent,
  TcpEndpoints,
} from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

/** Kernel addresses are not shown: connection ids are socket addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

function connId(sockId: bigint): string {
  return (sockId ^ RUN_KEY).toString(16).padStart(16, "0");
}

/** enum sock_event_kind of bpf/socket.h */
const KIND = { CONNECT: 1, ACCEPT: 2, CLOSE: 3, RETRANSMIT: 4, SIDECAR: 5 } as const;

/** TCP states (include/net/tcp_states.h) by number, for retransmit events. */
const TCP_STATES = [
  "",
  "ESTABLISHED",
  "SYN_SENT",
  "SYN_RECV",
  "FIN_WAIT1",
  "FIN_WAIT2",
  "TIME_WAIT",
  "CLOSE",
  "CLOSE_WAIT",
  "LAST_ACK",
  "LISTEN",
  "CLOSING",
  "NEW_SYN_RECV",
];

const TRACEPOINTS: [program: string, category: string, event: string][] = [
  ["kupod_sk_state", "sock", "inet_sock_set_state"],
  ["kupod_accept4", "syscalls", "sys_exit_accept4"],
  ["kupod_accept", "syscalls", "sys_exit_accept"],
  ["kupod_send", "sock", "sock_send_length"],
  ["kupod_recv", "sock", "sock_recv_length"],
];

function attach(obj: BpfObject) {
  return [
    ...TRACEPOINTS.map(([prog, cat, ev]) => obj.program(prog).attachTracepoint(cat, ev)),
    obj.program("kupod_retrans").attach(),
    // keep the pid filter complete as processes fork and exit
    obj.program("kupod_fork").attach(),
    obj.program("kupod_exit").attach(),
  ];
}

const NS = 1e-9;
/** How often the kernel's sidecar histograms are read. */
const READ_INTERVAL_MS = 1000;
/** TIMING_* of bpf/socket.bpf.c: the second u32 of struct timing_key (sidecar, which). */
const TIMING_PROCESS = 0;

function log2Counts(v: number[] | undefined): Log2Counts {
  // struct log2_hist: count, sum_ns, slots[]
  return v
    ? { count: v[0], sum_seconds: v[1] * NS, slots: v.slice(2) }
    : { count: 0, sum_seconds: 0, slots: [] };
}

export interface SocketProbeOptions {
  ringBytes?: number;
  /** One sidecar_timing event per request (--verbose); the kernel's histograms count anyway. */
  timingEvents?: boolean;
}

export class SocketProbe implements Probe {
  readonly name = "socket";
  readonly readyLine = "TCP Connect started!";
  #events = 0;
  readonly #object: ProbeObject;
  #target: Target;
  reading: Promise<void> = Promise.resolve();
  readonly #sink: EventSink;
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(target: Target, sink: EventSink, opts: SocketProbeOptions) {
    this.#target = target;
    this.#sink = sink;
    this.#object = ProbeObject.open({
      object: "socket",
      target,
      rodataLayout: RODATA,
      rodata: { timing_events: opts.timingEvents ?? false },
      ringBytes: opts.ringBytes,
      attach,
      onSample: (view, offset) => {
        const e = this.#toEvent(decodeSockEvent(view, offset));
        if (!e) return;
        this.#events++;
        sink.event(e);
      },
    });
  }

  #endpoints(e: SockEvent): TcpEndpoints {
    return {
      family: e.family === 2 ? "ipv4" : "ipv6",
      saddr: formatAddr(e.family, e.saddr),
      sport: e.sport,
      daddr: formatAddr(e.family, e.daddr),
      dport: e.dport,
      conn_id: connId(e.sock_id),
    };
  }

  #toEvent(e: SockEvent): KupodEvent | undefined {
    const who = {
      ts: bootNsToRfc3339(e.ts_ns),
      ...attribution(this.#target, e.container),
      pid: e.pid,
      comm: e.comm,
    };
    switch (e.kind) {
      case KIND.CONNECT:
        return { ...who, type: "tcp_connect", ...this.#endpoints(e) };
      case KIND.ACCEPT:
        return { ...who, type: "tcp_accept", ...this.#endpoints(e) };
      case KIND.CLOSE:
        return {
          ...who,
          type: "tcp_close",
          ...this.#endpoints(e),
          direction: e.direction ? "inbound" : "outbound",
          start_ts: bootNsToRfc3339(e.start_ns),
          established_ts: bootNsToRfc3339(e.established_ns || e.start_ns),
          closing_ts: bootNsToRfc3339(e.closing_ns || e.ts_ns),
          duration_seconds: Number(e.ts_ns - e.start_ns) * NS,
          bytes_sent: Number(e.bytes_sent),
          bytes_received: Number(e.bytes_received),
          rtt_seconds: e.srtt_us * 1e-6,
          retransmits: e.retransmits,
          exchanges: e.exchanges,
        };
      case KIND.RETRANSMIT:
        return {
          ...who,
          type: "tcp_retransmit",
          ...this.#endpoints(e),
          state: TCP_STATES[e.state] ?? String(e.state),
        };
      case KIND.SIDECAR: {
        const service = attribution(this.#target, e.peer_container);
        return {
          ...who,
          type: "sidecar_timing",
          sidecar_container: who.container ?? "",
          service_container: service.container ?? "",
          process_seconds: Number(e.process_ns) * NS,
          to_service_seconds: Number(e.to_service_ns) * NS,
        };
      }
    }
    return undefined;
  }

  /** Loads and attaches; events flow once started. */
  static start(target: Target, sink: EventSink, opts: SocketProbeOptions = {}): SocketProbe {
    const probe = new SocketProbe(target, sink, opts);
    probe.reading = probe.#object.read();
    probe.#timer = setInterval(() => probe.reportCounters(), READ_INTERVAL_MS);
    return probe;
  }

  /** The sidecar timing histograms the kernel counted so far, per sidecar container. */
  sidecarStats(): SidecarStatsEvent {
    const map = this.#object.object.map("sidecar_timings");
    const found = new Map<number, { process?: number[]; to_service?: number[] }>();
    for (const key of map.keys()) {
      const k = new DataView(key.buffer);
      const sidecar = k.getUint32(0, true);
      const entry = found.get(sidecar) ?? {};
      entry[k.getUint32(4, true) === TIMING_PROCESS ? "process" : "to_service"] = map.sumU64s(key);
      found.set(sidecar, entry);
    }
    const pod = attribution(this.#target, -1);
    return {
      ts: new Date().toISOString(),
      type: "sidecar_stats",
      ...pod,
      sidecars: [...found].map(([index, h]) => ({
        container: attribution(this.#target, index).container ?? "",
        process: log2Counts(h.process),
        to_service: log2Counts(h.to_service),
      })),
    };
  }

  /** Sends the sidecar timings counted so far (when there are any) to the sink. */
  reportCounters(): void {
    if (this.#object.released) return;
    const stats = this.sidecarStats();
    if (stats.sidecars.length) this.#sink.event(stats);
  }

  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
  }

  stats(): ProbeStats {
    return { events: this.#events, lost: this.#object.lost() };
  }

  /** Detaches, reports the final sidecar timings, drains the ring and releases everything. */
  stop(): Promise<void> {
    clearInterval(this.#timer);
    return this.#object.close(() => this.reportCounters());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
