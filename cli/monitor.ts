/**
 * A monitor run: preflight, target, probes, sinks; then wait for Ctrl-C,
 * SIGTERM or --duration, and stop with every event drained and nothing left
 * attached.
 */

import { libc } from "../bpf/ffi.ts";
import { featureReport, preflight } from "../bpf/preflight.ts";
import { describeTarget, requireTarget, resolveTarget } from "../k8s/resolve.ts";
import type { TargetWatch } from "../k8s/poll.ts";
import type { TargetRequest } from "../k8s/request.ts";
import type { Target } from "../k8s/target.ts";
import type { EventSink } from "../probes/events.ts";
import type { Probe } from "../probes/probe.ts";
import { HttpProbe } from "../probes/http.ts";
import { ResourcesProbe } from "../probes/resources.ts";
import { SockopsRedirect } from "../probes/sockops.ts";
import { SocketProbe } from "../probes/socket.ts";
import { addrBytes } from "../probes/addr.ts";
import {
  NoPodNetwork,
  type PacketMatch,
  StackProbe,
  VERBOSE_SAMPLE_EVERY,
} from "../probes/stack.ts";
import { KupodError } from "../base/errors.ts";
import { Logger } from "./log.ts";
import { Outputs, spansWanted } from "./outputs.ts";
import type { MonitorOptions, ProbeName } from "./options.ts";

type ProbeFactory = (target: Target, sink: EventSink, opts: MonitorOptions) => Probe;

/** The probes that exist; the others are refused before anything is loaded. */
const PROBES: Partial<Record<ProbeName, ProbeFactory>> = {
  socket: (target, sink, opts) =>
    SocketProbe.start(target, sink, {
      // --quiet prints no connection lines: the kernel's counters are all that is read
      openEvents: opts.verbosity !== "quiet",
      // spans are made from closes
      closeEvents: opts.verbosity === "verbose" || spansWanted(opts),
      timingEvents: opts.verbosity === "verbose",
      redirectedSends: opts.withSockops,
    }),
  stack: (target, sink, opts) =>
    StackProbe.start(target, sink, {
      sampleEvery: opts.verbosity === "verbose" ? VERBOSE_SAMPLE_EVERY : 0,
      match: packetMatch(opts),
      tcpPoints: opts.stackTcp,
      loopback: opts.stackLoopback,
      dutyCycle: opts.stackDutyCycle,
    }),
  resources: (target, sink) => ResourcesProbe.start(target, sink),
  // one capture serves both when they watch the same target: `user all` runs it once
  http: (target, sink, opts) =>
    userProbe(target, sink, opts, {
      http: true,
      grpc: opts.probes.includes("grpc") && !grpcTargetRequest(opts),
    }),
  grpc: (target, sink, opts) => userProbe(target, sink, opts, { http: false, grpc: true }),
};

/** The user-space probe (HTTP and gRPC from one capture), reporting what `report` names. */
function userProbe(
  target: Target,
  sink: EventSink,
  opts: MonitorOptions,
  report: { http: boolean; grpc: boolean },
): Probe {
  return HttpProbe.start(target, sink, {
    ...report,
    previewBytes: opts.httpPreview,
    // --quiet prints no request lines: without spans, the probe only counts
    requestEvents: opts.verbosity !== "quiet" || spansWanted(opts),
  });
}

/**
 * What the gRPC probe watches when --grpcpod or --grpcimagename sets it apart from the run's
 * target (`monitor user all --pod web --grpcpod orders`): that pod, or the run's pod with only
 * the containers of that image (and their sidecars). Undefined when gRPC watches the run's target.
 */
function grpcTargetRequest(opts: MonitorOptions): TargetRequest | undefined {
  return grpcOnly(opts) ? undefined : grpcRequestOf(opts);
}

/** `monitor user grpc`: the run's target is the gRPC one. */
const grpcOnly = (opts: MonitorOptions) => opts.probes.length === 1 && opts.probes[0] === "grpc";

/** The run's target: the target flags, or --grpcpod/--grpcimagename's for `user grpc`. */
function runRequestOf(opts: MonitorOptions): TargetRequest {
  return (grpcOnly(opts) && grpcRequestOf(opts)) || targetRequestOf(opts);
}

/** The target --grpcpod and --grpcimagename name, undefined without them. */
function grpcRequestOf(opts: MonitorOptions): TargetRequest | undefined {
  if (!opts.probes.includes("grpc") || (!opts.grpcPod && !opts.grpcImageName)) return undefined;
  const request = targetRequestOf(opts);
  if (!opts.grpcPod) return { ...request, imageName: opts.grpcImageName };
  return {
    ...request,
    pod: opts.grpcPod,
    podLabel: "",
    veth: "",
    netns: "",
    cgroup: "",
    pid: 0,
    imageName: opts.grpcImageName,
  };
}

/** What to watch, from the target flags. */
function targetRequestOf(opts: MonitorOptions): TargetRequest {
  return {
    pod: opts.pod,
    podLabel: opts.podLabel,
    namespace: opts.namespace,
    nodeName: opts.nodeName,
    kubeconfig: opts.kubeconfig,
    forceMinikube: opts.forceMinikube,
    veth: opts.veth,
    netns: opts.netns,
    cgroup: opts.cgroup,
    pid: opts.pid,
    sidecarMode: opts.sidecarMode,
    imageName: opts.imageName,
  };
}

/** The stack probe's packet selection from --stack-protocol, --stack-port, --stack-address. */
function packetMatch(opts: MonitorOptions): PacketMatch {
  return {
    protocol: opts.stackProtocol || undefined,
    port: opts.stackPort || undefined,
    addresses: opts.stackAddress ? opts.stackAddress.split(",").map((a) => addrBytes(a)!) : [],
  };
}

const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * The probes to run: a command naming one probe that is not built yet is refused; an `all`
 * command runs those that exist.
 */
function runnable(opts: MonitorOptions, log: Logger): ProbeName[] {
  const missing = opts.probes.filter((p) => !PROBES[p]);
  const available = opts.probes.filter((p) => PROBES[p]);
  if (missing.length && (opts.probes.length === 1 || !available.length)) {
    throw new KupodError(
      `the ${missing.join(", ")} probe${missing.length > 1 ? "s are" : " is"} not built yet` +
        ` (available: ${Object.keys(PROBES).join(", ")})`,
    );
  }
  if (missing.length) log.warn(`not built yet, skipped: ${missing.join(", ")}`);
  return available;
}

export async function runMonitor(opts: MonitorOptions): Promise<void> {
  const log = new Logger(opts.output, opts.verbosity);
  const names = runnable(opts, log);
  const request = runRequestOf(opts);
  requireTarget(request);
  const report = preflight();
  log.preflight(`kernel ${report.kernel}, BTF ${report.btf}, tracefs ${report.tracefs}`);
  for (const note of report.notes) log.preflight(note);
  if (opts.verbosity === "verbose") {
    const features = Object.entries(featureReport()).map(([f, ok]) => `${f}=${ok ? "yes" : "no"}`);
    log.debug(`kernel features: ${features.join(" ")}`);
  }
  using resolution = await resolveTarget(request, (line) => log.preflight(line));
  const target = resolution.target;
  for (const line of describeTarget(target)) log.info(line);
  const grpcRequest = grpcTargetRequest(opts);
  using grpcResolution = grpcRequest
    ? await resolveTarget(grpcRequest, (line) => log.preflight(line))
    : undefined;
  if (grpcResolution) {
    for (const line of describeTarget(grpcResolution.target)) log.info(`gRPC: ${line}`);
  }

  await using outputs = await Outputs.open(opts, target, log);
  const probes: Probe[] = [];
  /** Probes that follow the gRPC target rather than the run's. */
  const grpcProbes: Probe[] = [];
  const stop = stopTrigger(opts.duration);
  let failure: unknown;
  const watches: TargetWatch[] = [];
  try {
    // attached before any readiness line: traffic sent on "started" must be seen
    const spanSource = connectionSpans(names, target, outputs, opts.withSockops);
    if (spanSource) probes.push(spanSource);
    for (const name of names) {
      const own = name === "grpc" && grpcResolution;
      // the http probe's capture has gRPC, unless gRPC watches another target
      if (name === "grpc" && names.includes("http") && !own) continue;
      let probe: Probe;
      try {
        probe = PROBES[name]!(own ? grpcResolution.target : target, outputs, opts);
        if (own) grpcProbes.push(probe);
      } catch (e) {
        // `all` runs what applies to the target; a probe asked for by name must run
        if (e instanceof NoPodNetwork && names.length > 1) {
          log.warn(`${name} skipped: ${e.message}`);
          continue;
        }
        throw e;
      }
      probes.push(probe);
    }
    if (opts.withSockops) {
      const redirect = SockopsRedirect.start(target, outputs);
      probes.push(redirect);
      log.info(
        `sockops redirection on ${redirect.cgroups.length} cgroup(s): ${
          redirect.cgroups.join(", ")
        }`,
      );
    }
    // every probe attached before the first readiness line: traffic sent on it is seen by all
    for (const probe of probes) if (probe !== spanSource) log.ready(probe.readyLine);
    outputs.watch(probes);
    for (const line of outputs.readyLines()) log.ready(line);
    // starting freed much (compiling modules on a cold cache, libbpf's relocations): give it back
    libc().malloc_trim(0n);
    const follow = (followers: Probe[], prefix: string) => (next: Target, why: string) => {
      // applied before it is announced: scripts act on the announcement
      for (const probe of followers) {
        try {
          probe.retarget(next);
        } catch (e) {
          log.warn(`${probe.name}: ${e instanceof Error ? e.message : e}`);
        }
      }
      log.info(`${prefix}target changed: ${why}`);
      for (const line of describeTarget(next)) log.info(`${prefix}${line}`);
    };
    const lost = (e: unknown) =>
      log.warn(`following the target: ${e instanceof Error ? e.message : e}`);
    watches.push(
      resolution.watch(follow(probes.filter((p) => !grpcProbes.includes(p)), ""), lost),
    );
    if (grpcResolution) watches.push(grpcResolution.watch(follow(grpcProbes, "gRPC: "), lost));
    await Promise.race([stop.promise, ...probes.map((p) => p.reading)]);
  } catch (e) {
    failure = e;
  }
  stop.dispose();
  for (const watch of watches) await watch.stop();
  for (const probe of probes.reverse()) {
    try {
      await probe.stop();
      const { events, lost } = probe.stats();
      log.debug(`${probe.name}: ${events} events, ${lost} lost`);
      if (lost > 0n) log.warn(`${probe.name}: ${lost} events lost (ring buffer full)`);
      const summary = probe.summary?.();
      if (summary?.warn) log.warn(summary.line);
      else if (summary) log.info(summary.line);
    } catch (e) {
      failure ??= e;
    }
  }
  await outputs.close();
  if (failure) throw failure;
}

/**
 * Spans are one trace per connection, and connections are the socket probe's: a run of the stack
 * probe alone that sends spans runs the socket probe too, with its closes going to the spans
 * only (the console and the metrics stay the stack probe's).
 */
function connectionSpans(
  names: ProbeName[],
  target: Target,
  outputs: Outputs,
  redirectedSends: boolean,
): Probe | undefined {
  const spans = outputs.spans;
  if (!spans || names.includes("socket") || !names.includes("stack")) return undefined;
  const closesOnly: EventSink = {
    event(e) {
      if (e.type === "tcp_close") spans.event(e);
    },
    flush: () => spans.flush(),
  };
  return SocketProbe.start(target, closesOnly, {
    openEvents: false,
    closeEvents: true,
    redirectedSends,
  });
}

/** Resolves on the first stop signal or when `durationSec` (if > 0) has passed. */
function stopTrigger(durationSec: number): { promise: Promise<void>; dispose(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  const handler = () => resolve();
  for (const sig of STOP_SIGNALS) Deno.addSignalListener(sig, handler);
  const timer = durationSec > 0 ? setTimeout(resolve, durationSec * 1000) : undefined;
  return {
    promise,
    dispose() {
      for (const sig of STOP_SIGNALS) Deno.removeSignalListener(sig, handler);
      clearTimeout(timer);
    },
  };
}
