/**
 * The resources probe: CPU, memory, block I/O and threads of each container of the target from
 * the kernel's own accounting (cgroup v2, or v1 where the controller lives there), the pod's
 * network from its interfaces, and what cgroups do not count, from BPF (bpf/sched.bpf.c): how
 * long the containers' threads wait on a run queue, and the OOM killer's victims.
 *
 * Every `intervalSeconds` it sends one `resources` event per container (rates over the interval)
 * and one `resources_stats` (the readings the metrics show); a scrape or push reads afresh.
 */

import { u32Key } from "../bpf/map.ts";
import type { BpfObject } from "../bpf/object.ts";
import { hasFeature } from "../bpf/preflight.ts";
import { KupodError } from "../base/errors.ts";
import { decodeOomEvent, decodeSchedStats, type Log2Hist, RODATA } from "../bpf/gen/sched.ts";
import { type CgroupMounts, cgroupMountsAt } from "../k8s/cgroupfs.ts";
import { readCgroupUsage } from "../k8s/cgroup_usage.ts";
import { readNetUsage } from "../k8s/net_usage.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import { log2Delta, log2Quantile } from "./buckets.ts";
import type {
  ContainerResources,
  EventSink,
  InterfaceCounts,
  Log2Counts,
  ResourcesEvent,
  ResourcesStatsEvent,
} from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

const PROGRAMS = [
  "kupod_sched_switch",
  "kupod_oom_victim",
  "kupod_fork",
  "kupod_exit",
];
const NS = 1e-9;

export interface ResourcesProbeOptions {
  /** Seconds between `resources` events (default 5). */
  intervalSeconds?: number;
  /** Cgroup mounts (default: this host's, from /proc/self/mountinfo). */
  mounts?: CgroupMounts;
}

/** A reading of every container and the pod's interfaces, at `at` (ms, monotonic). */
interface Reading {
  at: number;
  /** Which cgroups each reading came from: rates pair only readings of the same cgroups. */
  keys: string[];
  containers: ContainerResources[];
  interfaces: InterfaceCounts[];
}

function log2Counts(h: Log2Hist): Log2Counts {
  return {
    count: Number(h.count),
    sum_seconds: Number(h.sum) * NS,
    unit_seconds: NS,
    slots: h.slots.map(Number),
  };
}

export class ResourcesProbe implements Probe {
  readonly name = "resources";
  readonly readyLine = "Container resources started!";
  reading: Promise<void> = Promise.resolve();
  #events = 0;
  #target: Target;
  readonly #sink: EventSink;
  readonly #object: ProbeObject;
  readonly #mounts: CgroupMounts;
  readonly #interval: number;
  #last: Reading | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(target: Target, sink: EventSink, opts: ResourcesProbeOptions) {
    if (!hasFeature("local_storage")) {
      throw new KupodError(
        "the resources probe keeps each thread's wait in task-local storage, which this kernel " +
          "does not offer to tracing programs (Linux 5.11 or later)",
      );
    }
    this.#target = target;
    this.#sink = sink;
    this.#mounts = opts.mounts ?? cgroupMountsAt();
    this.#interval = opts.intervalSeconds ?? 5;
    this.#object = ProbeObject.open({
      object: "sched",
      target,
      rodataLayout: RODATA,
      ringBytes: 1 << 16,
      attach: (obj: BpfObject) => PROGRAMS.map((p) => obj.program(p).attach()),
      onSample: (view, offset) => {
        const e = decodeOomEvent(view, offset);
        this.#events++;
        sink.event({
          ts: bootNsToRfc3339(e.ts_ns),
          type: "oom_kill",
          ...attribution(this.#target, e.container),
          pid: e.pid,
          comm: e.comm,
          victim_pid: e.pid,
          victim_comm: e.comm,
        });
      },
    });
  }

  /** Loads and attaches; the first readings are taken now, the first events after an interval. */
  static start(target: Target, sink: EventSink, opts: ResourcesProbeOptions = {}): ResourcesProbe {
    const probe = new ResourcesProbe(target, sink, opts);
    probe.reading = probe.#object.read();
    probe.#last = probe.#read();
    probe.#timer = setInterval(() => probe.#tick(), probe.#interval * 1000);
    return probe;
  }

  /** Every container's cgroup readings and BPF counts, and the pod's interfaces, now. */
  #read(): Reading {
    const stats = this.#object.object.map("sched_stats");
    const containers = this.#target.containers.map((c, index): ContainerResources => {
      const u = readCgroupUsage(this.#mounts, c);
      const value = stats.summedValue(u32Key(index));
      const s = value ? decodeSchedStats(value, 0) : undefined;
      return {
        container: c.name,
        cpu_seconds: u.cpuUsageSeconds,
        cpu_user_seconds: u.cpuUserSeconds,
        cpu_system_seconds: u.cpuSystemSeconds,
        cfs_periods: u.cfsPeriods,
        cfs_throttled_periods: u.cfsThrottledPeriods,
        cfs_throttled_seconds: u.cfsThrottledSeconds,
        memory_usage_bytes: u.memoryUsageBytes,
        memory_working_set_bytes: u.memoryWorkingSetBytes,
        memory_rss_bytes: u.memoryRssBytes,
        memory_cache_bytes: u.memoryCacheBytes,
        memory_limit_bytes: u.memoryLimitBytes,
        oom_events: u.oomEvents,
        threads: u.threads,
        io: u.io.map((d) => ({
          device: d.device,
          read_bytes: d.readBytes,
          write_bytes: d.writeBytes,
          reads: d.reads,
          writes: d.writes,
        })),
        runqueue: s
          ? log2Counts(s.runq_ns)
          : { count: 0, sum_seconds: 0, unit_seconds: NS, slots: [] },
        oom_kills: s ? Number(s.oom_kills) : 0,
      };
    });
    const keys = this.#target.containers.map((c) =>
      `${c.name}\0${c.cgroupPath}\0${Object.values(c.cgroupV1Paths).join("\0")}`
    );
    return { at: performance.now(), keys, containers, interfaces: this.#interfaces() };
  }

  /** The pod's interfaces, read through one of its processes ([] for a target without a pod netns). */
  #interfaces(): InterfaceCounts[] {
    if (!this.#target.netnsInode) return [];
    for (const pid of this.#target.containers.flatMap((c) => c.pids)) {
      const net = readNetUsage(pid);
      if (!net.length) continue;
      return net.map((n) => ({
        interface: n.interface,
        rx_bytes: n.rxBytes,
        rx_packets: n.rxPackets,
        rx_errors: n.rxErrors,
        rx_dropped: n.rxDropped,
        tx_bytes: n.txBytes,
        tx_packets: n.txPackets,
        tx_errors: n.txErrors,
        tx_dropped: n.txDropped,
      }));
    }
    return [];
  }

  #tick(): void {
    const now = this.#read();
    const before = this.#last;
    this.#last = now;
    if (before) {
      for (const e of this.#rates(before, now)) {
        this.#events++;
        this.#sink.event(e);
      }
    }
    this.#sink.event(this.#stats(now));
  }

  /** One `resources` event per container: rates between two readings. */
  #rates(before: Reading, now: Reading): ResourcesEvent[] {
    const seconds = (now.at - before.at) / 1000;
    const rate = (a: number, b: number) => seconds > 0 ? Math.max(0, b - a) / seconds : 0;
    const sum = (xs: InterfaceCounts[], f: (x: InterfaceCounts) => number) =>
      xs.reduce((n, x) => n + f(x), 0);
    const rx = rate(
      sum(before.interfaces, (i) => i.rx_bytes),
      sum(now.interfaces, (i) => i.rx_bytes),
    );
    const tx = rate(
      sum(before.interfaces, (i) => i.tx_bytes),
      sum(now.interfaces, (i) => i.tx_bytes),
    );
    const ts = new Date().toISOString();
    return now.containers.map((c, index) => {
      const at = before.keys.indexOf(now.keys[index]);
      const b = at >= 0 ? before.containers[at] : undefined;
      const io = (r: ContainerResources | undefined, f: "read_bytes" | "write_bytes") =>
        (r?.io ?? []).reduce((n, d) => n + d[f], 0);
      return {
        ts,
        type: "resources",
        ...attribution(this.#target, index),
        interval_seconds: seconds,
        cpu_cores: rate(b?.cpu_seconds ?? c.cpu_seconds, c.cpu_seconds),
        memory_working_set_bytes: c.memory_working_set_bytes,
        net_rx_bytes_per_second: rx,
        net_tx_bytes_per_second: tx,
        io_read_bytes_per_second: rate(io(b, "read_bytes"), io(c, "read_bytes")),
        io_write_bytes_per_second: rate(io(b, "write_bytes"), io(c, "write_bytes")),
        runqueue_p99_seconds: log2Quantile(log2Delta(c.runqueue, b?.runqueue), 0.99),
        threads: c.threads,
      };
    });
  }

  #stats(r: Reading): ResourcesStatsEvent {
    const { namespace, pod } = attribution(this.#target, -1);
    return {
      ts: new Date().toISOString(),
      type: "resources_stats",
      namespace,
      pod,
      containers: r.containers,
      interfaces: r.interfaces,
    };
  }

  /** Sends fresh readings to the sink (a scrape, a push, the end). */
  reportCounters(): void {
    if (this.#object.released) return;
    this.#sink.event(this.#stats(this.#read()));
  }

  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
    this.#last = undefined; // containers may have changed: rates start again
  }

  stats(): ProbeStats {
    return { events: this.#events, lost: this.#object.lost() };
  }

  /** Detaches, reports the last readings, drains the ring and releases everything. */
  stop(): Promise<void> {
    clearInterval(this.#timer);
    return this.#object.close(() => this.reportCounters());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
