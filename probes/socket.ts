/**
 * The socket probe: TCP connects, accepts, closes (with bytes, RTT,
 * retransmits and phase times), retransmits, and sidecar timing of the
 * target's containers (bpf/socket.bpf.c), decoded into the event contract.
 */

import { u32Key } from "../bpf/map.ts";
import { hasFeature } from "../bpf/preflight.ts";
import { KupodError } from "../base/errors.ts";
import {
  decodeConnStats,
  decodeSidecarStats,
  decodeSockEvent,
  decodeStatsKey,
  type Log2Hist,
  RODATA,
  type SockEvent,
} from "../bpf/gen/socket.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { formatAddr } from "./addr.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import { connId } from "./conn_id.ts";
import type {
  EventSink,
  KupodEvent,
  Log2Counts,
  SidecarStatsEvent,
  TcpEndpoints,
  TcpStatsEvent,
} from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

/** enum sock_event_kind of bpf/socket.h */
const KIND = { CONNECT: 1, ACCEPT: 2, CLOSE: 3, RETRANSMIT: 4, SIDECAR: 5, RESET: 6 } as const;

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

/** tp_btf programs: their section names the raw tracepoint. */
const BTF_TRACEPOINTS = [
  "kupod_sk_state",
  "kupod_recv",
  "kupod_retrans",
  "kupod_rst_out",
  "kupod_rst_in",
  // keep the pid filter complete as processes fork and exit
  "kupod_fork",
  "kupod_exit",
];
/** Where a write begins (tcp_sendmsg_locked, Linux 6.16+): TCP sends only. */
const SEND_START = "kupod_send_start";
/** Where every socket's send has returned: for redirected sends, or where the start is missing. */
const SEND = "kupod_send";

/** The send programs this kernel and these options need. */
function sendPrograms(opts: SocketProbeOptions): string[] {
  const start = (opts.sendHook ?? "start") === "start" && hasFeature("tcp_send_start");
  if (!start) return [SEND];
  return opts.redirectedSends ? [SEND_START, SEND] : [SEND_START];
}

const NS = 1e-9;
const US = 1e-6;
/** How often the kernel's counters are read. */
const READ_INTERVAL_MS = 1000;

function log2Counts(h: Log2Hist, unitSeconds: number): Log2Counts {
  return {
    count: Number(h.count),
    sum_seconds: Number(h.sum) * unitSeconds,
    unit_seconds: unitSeconds,
    slots: h.slots.map(Number),
  };
}

export interface SocketProbeOptions {
  ringBytes?: number;
  /** tcp_accept and tcp_connect events (default); the kernel's counters count anyway. */
  openEvents?: boolean;
  /** One tcp_close event per connection (--verbose, spans); the kernel's counters count anyway. */
  closeEvents?: boolean;
  /** One sidecar_timing event per request (--verbose); the kernel's histograms count anyway. */
  timingEvents?: boolean;
  /** The target's sends may be redirected by sk_msg (--with-sockops): they move no write_seq. */
  redirectedSends?: boolean;
  /**
   * Where writes are taken: at their start where the kernel has tcp_sendmsg_locked (default),
   * or where they returned, as on older kernels (tests run that path here).
   */
  sendHook?: "start" | "returned";
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
    if (!hasFeature("local_storage")) {
      throw new KupodError(
        "the socket probe keeps each connection's state in socket-local storage, which this " +
          "kernel does not offer to tracing programs (Linux 5.11 or later)",
      );
    }
    this.#target = target;
    this.#sink = sink;
    const sends = sendPrograms(opts);
    this.#object = ProbeObject.open({
      object: "socket",
      target,
      rodataLayout: RODATA,
      rodata: {
        open_events: opts.openEvents ?? true,
        close_events: opts.closeEvents ?? false,
        timing_events: opts.timingEvents ?? false,
        send_start: sends.includes(SEND_START),
      },
      skip: [SEND_START, SEND].filter((p) => !sends.includes(p)),
      // the ring is resident memory (its size, mapped once): 2 MiB holds ~0.1 s of 20k new
      // connections/s (3 events each through a sidecar); a close and a timing per request need more
      ringBytes: opts.ringBytes ??
        (opts.closeEvents || opts.timingEvents ? 1 << 22 : opts.openEvents === false
          ? 1 << 16 // retransmits and resets only
          : 1 << 21),
      attach: (obj) => [...BTF_TRACEPOINTS, ...sends].map((prog) => obj.program(prog).attach()),
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
      case KIND.RESET:
        return {
          ...who,
          type: "tcp_reset",
          ...this.#endpoints(e),
          reset: e.reset === 1 ? "sent" : "received",
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
    const map = this.#object.object.map("sidecar_stats");
    const sidecars = [];
    // an array by container index: the target's sidecars are where the kernel counts
    for (const [index, c] of this.#target.containers.entries()) {
      if (c.role !== "sidecar" || index >= map.maxEntries) continue;
      const value = map.summedValue(u32Key(index));
      if (!value) continue;
      const s = decodeSidecarStats(value, 0);
      if (!s.process_ns.count && !s.to_service_ns.count) continue;
      sidecars.push({
        container: c.name,
        process: log2Counts(s.process_ns, NS),
        to_service: log2Counts(s.to_service_ns, NS),
      });
    }
    return { ts: new Date().toISOString(), type: "sidecar_stats", ...this.#pod(), sidecars };
  }

  /** The connections the kernel counted so far, per container and direction. */
  tcpStats(): TcpStatsEvent {
    const map = this.#object.object.map("conn_stats");
    const connections = [];
    for (const key of map.keys()) {
      const value = map.summedValue(key);
      if (!value) continue;
      const k = decodeStatsKey(new DataView(key.buffer), 0);
      const s = decodeConnStats(value, 0);
      connections.push({
        container: this.#containerName(k.container),
        direction: k.direction ? "inbound" as const : "outbound" as const,
        opened: Number(s.opened),
        closed: Number(s.closed),
        bytes_sent: Number(s.bytes_sent),
        bytes_received: Number(s.bytes_received),
        retransmits: Number(s.retransmits),
        long_connections: Number(s.long_conns),
        resets: Number(s.resets),
        rtt: log2Counts(s.rtt_us, US),
        duration: log2Counts(s.duration_us, US),
      });
    }
    return { ts: new Date().toISOString(), type: "tcp_stats", ...this.#pod(), connections };
  }

  #pod() {
    const { namespace, pod } = attribution(this.#target, -1);
    return { namespace, pod };
  }

  #containerName(index: number): string {
    return attribution(this.#target, index).container ?? "";
  }

  /** Sends the counts of the kernel so far (when there are any) to the sink. */
  reportCounters(): void {
    if (this.#object.released) return;
    const tcp = this.tcpStats();
    if (tcp.connections.length) this.#sink.event(tcp);
    const sidecars = this.sidecarStats();
    if (sidecars.sidecars.length) this.#sink.event(sidecars);
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
