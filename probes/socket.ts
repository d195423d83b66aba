/**
 * The socket probe: TCP connects and accepts of the target's processes
 * (bpf/socket.bpf.c), decoded into the JSON event contract.
 */

import type { BpfObject } from "../bpf/object.ts";
import { decodeSockEvent, RODATA } from "../bpf/gen/socket.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { formatAddr } from "./addr.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import type { EventSink, TcpEvent } from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

/** Kernel addresses are not shown: connection ids are socket addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

function connId(sockId: bigint): string {
  return (sockId ^ RUN_KEY).toString(16).padStart(16, "0");
}

/** enum sock_event_kind of bpf/socket.h */
const KIND: Record<number, TcpEvent["type"]> = { 1: "tcp_connect", 2: "tcp_accept" };

const TRACEPOINTS: [program: string, category: string, event: string][] = [
  ["kupod_sk_state", "sock", "inet_sock_set_state"],
  ["kupod_accept4", "syscalls", "sys_exit_accept4"],
  ["kupod_accept", "syscalls", "sys_exit_accept"],
];

function attach(obj: BpfObject) {
  return [
    ...TRACEPOINTS.map(([prog, cat, ev]) => obj.program(prog).attachTracepoint(cat, ev)),
    // keep the pid filter complete as processes fork and exit
    obj.program("kupod_fork").attach(),
    obj.program("kupod_exit").attach(),
  ];
}

export class SocketProbe implements Probe {
  readonly name = "socket";
  readonly readyLine = "TCP Connect started!";
  #events = 0;
  readonly #object: ProbeObject;
  #target: Target;
  reading: Promise<void> = Promise.resolve();

  private constructor(target: Target, sink: EventSink, ringBytes?: number) {
    this.#target = target;
    this.#object = ProbeObject.open({
      object: "socket",
      target,
      rodataLayout: RODATA,
      ringBytes,
      attach,
      onSample: (view, offset) => {
        const e = decodeSockEvent(view, offset);
        const type = KIND[e.kind];
        if (!type) return;
        this.#events++;
        sink.event({
          ts: bootNsToRfc3339(e.ts_ns),
          type,
          ...attribution(this.#target, e.container),
          pid: e.pid,
          comm: e.comm,
          family: e.family === 2 ? "ipv4" : "ipv6",
          saddr: formatAddr(e.family, e.saddr),
          sport: e.sport,
          daddr: formatAddr(e.family, e.daddr),
          dport: e.dport,
          conn_id: connId(e.sock_id),
        });
      },
    });
  }

  /** Loads and attaches; events flow once `read()` is called. */
  static start(target: Target, sink: EventSink, opts: { ringBytes?: number } = {}): SocketProbe {
    const probe = new SocketProbe(target, sink, opts.ringBytes);
    probe.reading = probe.#object.read();
    return probe;
  }

  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
  }

  stats(): ProbeStats {
    return { events: this.#events, lost: this.#object.lost() };
  }

  stop(): Promise<void> {
    return this.#object.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
