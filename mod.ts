/**
 * kupod as a library: resolve a target (a Kubernetes pod, or a veth, network namespace, cgroup
 * or process of this node), start any of kupod's BPF probes on it with a sink of typed events,
 * and read the metrics those events make, without the command line.
 *
 * @example Watch a process's TCP accepts and connects, then print its metrics
 * ```ts
 * import { KupodMetrics, preflight, resolveTarget, SocketProbe } from "./mod.ts";
 *
 * preflight(); // root, BTF and tracefs, or one clear KupodError
 * const [pid, seconds = "10"] = Deno.args;
 * // or { pod: "web-0", namespace: "shop" }, { veth: "veth1a2b" }, { cgroup: "/kubepods.slice/..." }
 * using resolution = await resolveTarget({ pid: Number(pid) });
 * const metrics = new KupodMetrics();
 * const probe = SocketProbe.start(resolution.target, {
 *   event(e) {
 *     metrics.event(e);
 *     if (e.type === "tcp_accept" || e.type === "tcp_connect") {
 *       console.log(e.type, `${e.saddr}:${e.sport}`, `${e.daddr}:${e.dport}`, e.container);
 *     }
 *   },
 *   flush() {},
 * });
 * console.log(probe.readyLine); // "TCP Connect started!"
 * await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
 * await probe.stop(); // drains the ring and sends the kernel's final counts to the sink
 * console.log(await metrics.text());
 * ```
 * @module
 */

export { KupodError, UsageError } from "./base/errors.ts";
export { VERSION } from "./base/version.ts";
export { BpfError } from "./bpf/errors.ts";
export { BpfMap, u32Key, u64Key } from "./bpf/map.ts";
export { BpfObject, BpfProgram } from "./bpf/object.ts";
export { type Feature, featureReport, hasFeature, preflight } from "./bpf/preflight.ts";
export { RingBuffer, type SampleHandler } from "./bpf/ringbuf.ts";
export { ConsoleSink, type OutputFormat, type Verbosity } from "./exporters/console.ts";
export { KupodMetrics } from "./exporters/metrics.ts";
export { otlpEndpointFor, OtlpSpans } from "./exporters/otlp.ts";
export { resolveCgroup, resolveNetns, resolvePid, resolveVeth } from "./k8s/local.ts";
export { type TargetRequest, targetRequest } from "./k8s/request.ts";
export { describeTarget, type Resolution, resolveTarget } from "./k8s/resolve.ts";
export type { SidecarMode } from "./k8s/sidecar.ts";
export type { Container, Role, Target } from "./k8s/target.ts";
export type { EventSink, KupodEvent, TcpEvent } from "./probes/events.ts";
export type { Probe, ProbeName, ProbeStats } from "./probes/probe.ts";
export { SocketProbe, type SocketProbeOptions } from "./probes/socket.ts";
export { type PacketMatch, StackProbe, type StackProbeOptions } from "./probes/stack.ts";
