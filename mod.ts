/**
 * kupod as a library: load kupod's BPF probes against a target and receive
 * typed events, without the command line.
 *
 * @example Watch the TCP accepts and connects of a process for ten seconds
 * ```ts
 * import { preflight, resolvePid, SocketProbe } from "./mod.ts";
 *
 * preflight();
 * const probe = SocketProbe.start(resolvePid(4242), {
 *   event: (e) => console.log(e.type, `${e.saddr}:${e.sport}`, `${e.daddr}:${e.dport}`),
 *   flush: () => {},
 * });
 * await new Promise((r) => setTimeout(r, 10_000));
 * await probe.stop();
 * ```
 * @module
 */

export { BpfError } from "./bpf/errors.ts";
export { BpfMap, u32Key, u64Key } from "./bpf/map.ts";
export { BpfObject, BpfProgram } from "./bpf/object.ts";
export { type Feature, featureReport, hasFeature, preflight } from "./bpf/preflight.ts";
export { RingBuffer, type SampleHandler } from "./bpf/ringbuf.ts";
export { KupodError, UsageError } from "./cli/errors.ts";
export { main } from "./cli/main.ts";
export type { MonitorOptions } from "./cli/options.ts";
export { ConsoleSink } from "./exporters/console.ts";
export { resolvePid } from "./k8s/local.ts";
export type { Container, Role, Target } from "./k8s/target.ts";
export type { EventSink, KupodEvent, TcpEvent } from "./probes/events.ts";
export type { Probe, ProbeStats } from "./probes/probe.ts";
export { SocketProbe } from "./probes/socket.ts";
