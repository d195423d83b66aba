/**
 * The stack probe ("Deep pod net"): packets of the pod followed through its network path
 * (bpf/stack.bpf.c) — TC on the host-side veth, net: tracepoints, netfilter hooks in the pod's
 * netns, delivery to an application, drops with their reason. TC and drops count for the whole
 * run; the path is traced in windows (probes/stack_window.ts). The kernel keeps the counts per
 * hook, per hop (log2 latency histograms of sampled packets, bpf/stack_sample.h) and per drop
 * reason in per-CPU maps; this module reads them every second and at stop and hands a cumulative
 * `stack_stats` event to the sinks. Sampled packets (`--verbose`: 1 in 100) also reach the ring,
 * as one `packet` event per hop. */

import { BPF } from "../bpf/abi.ts";
import { decodeStackEvent, RODATA, type StackEvent } from "../bpf/gen/stack.ts";
import { type Attachment, disposeAll } from "../bpf/link.ts";
import { u32Key } from "../bpf/map.ts";
import type { BpfObject } from "../bpf/object.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import { DropReasons } from "./drop_reasons.ts";
import type { EventSink, HopLatency, PacketCount, PacketEvent, StackStatsEvent } from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";
import { ownNetnsInode, type Placement, placement, PodHooks } from "./stack_hooks.ts";
import { PathWindows } from "./stack_window.ts";

export { NoPodNetwork } from "./stack_hooks.ts";

/** enum stack_hook of bpf/stack.h, in order. */
export const HOOKS = [
  "tc_ingress",
  "tc_egress",
  "netif_rx",
  "netif_receive_skb",
  "net_dev_queue",
  "net_dev_start_xmit",
  "net_dev_xmit",
  "nf_pre_routing",
  "nf_local_in",
  "nf_forward",
  "nf_local_out",
  "nf_post_routing",
  "deliver",
  "drop",
  "consume",
  "napi_gro_receive",
  "tcp_recv",
  "tcp_send",
] as const;
export type HookName = typeof HOOKS[number];
const HOOK_TC_INGRESS = 0, HOOK_TC_EGRESS = 1, HOOK_DROP = 13;
/** enum stack_stat of bpf/stack.h */
const STAT = { TRACKED: 0, ENDED: 1, VANISHED: 2, SAMPLED: 3 } as const;

const PROG_TYPE_NETFILTER = 32;

/** Drops, with their reason: attached for the whole run (they are rare; TC is in PodHooks). */
const BOUNDARY_PROGRAMS = ["kupod_stk_drop"];

/** The path's tracepoints: attached while a path window is open (probes/stack_window.ts). */
const PATH_PROGRAMS = [
  "kupod_stk_rx",
  "kupod_stk_recv",
  "kupod_stk_queue",
  "kupod_stk_start",
  "kupod_stk_xmit",
  "kupod_stk_dlvr",
  "kupod_stk_free",
  "kupod_stk_gro",
];

/**
 * TCP's own points (--stack-tcp): segments reaching an established socket, the application's
 * writes. They fire for every TCP segment and write on the node, about 15% more per packet.
 */
const TCP_POINT_PROGRAMS = ["kupod_stk_tcpr", "kupod_stk_tcps"];

const READ_INTERVAL_MS = 1000;
/** --verbose: one packet in this many gets its path printed. */
export const VERBOSE_SAMPLE_EVERY = 100;
const NS = 1e-9;

/** Kernel addresses are not shown: packet ids are skb addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

/** Which packets are followed; every field is optional and unset means any. */
export interface PacketMatch {
  /** "icmp" is ICMPv6 for IPv6 packets. */
  protocol?: "tcp" | "udp" | "icmp";
  /** Either end's port (TCP, UDP). */
  port?: number;
  /** Either end's address: 16 bytes each (IPv4 as ::ffff:a.b.c.d, see probes/addr.ts). */
  addresses?: Uint8Array<ArrayBuffer>[];
}

const IPPROTO = { tcp: 6, udp: 17, icmp: 1 } as const;

export interface StackProbeOptions {
  match?: PacketMatch;
  /** One packet in `sampleEvery` reaches the ring as `packet` events; 0 (default) = none. */
  sampleEvery?: number;
  /** How often the kernel counts are read (ms, default 1000). */
  intervalMs?: number;
  /** Also count at TCP's own points (TCP_POINT_PROGRAMS). */
  tcpPoints?: boolean;
  /** Also follow the pod's loopback traffic; by default only packets crossing its veth. */
  loopback?: boolean;
  /**
   * Share of the time the path is traced (0..1, default 1: always), in windows every
   * PATH_PERIOD_MS; the veth's counts and drops at the pod's devices are exact regardless.
   */
  dutyCycle?: number;
  ringBytes?: number;
}

/**
 * The target for the object's shared filter maps: by netns only, never the host's own. The
 * programs match the pod by its veth and netns in `stack_pod` (probes/stack_hooks.ts).
 */
function filterTarget(target: Target, hostNetns: number): Target {
  return {
    ...target,
    kind: "netns",
    netnsInode: target.netnsInode === hostNetns ? 0 : target.netnsInode,
  };
}

/**
 * Fills the packet selection maps and attaches: the drop tracepoint, the pod's hooks and the
 * path's windows (`pathPrograms` and netfilter), which open the first at once.
 */
function attach(
  obj: BpfObject,
  where: Placement,
  match: PacketMatch,
  pathPrograms: string[],
  dutyCycle: number,
): [Attachment[], PodHooks, PathWindows] {
  const addrs = obj.map("match_addrs");
  for (const a of match.addresses ?? []) addrs.update(a, new Uint8Array(1));
  const owned: Attachment[] = [];
  try {
    for (const name of BOUNDARY_PROGRAMS) owned.push(obj.program(name).attach());
    const hooks = new PodHooks(obj, where);
    owned.push(hooks);
    const windows = new PathWindows(obj, hooks, pathPrograms, dutyCycle);
    owned.push(windows);
    return [owned, hooks, windows];
  } catch (e) {
    disposeAll(owned);
    throw e;
  }
}

export class StackProbe implements Probe {
  readonly name = "stack";
  readonly readyLine = "Deep pod net started!";
  #events = 0;
  readonly #object: ProbeObject;
  readonly #hostNetns = ownNetnsInode();
  #hooks!: PodHooks;
  #windows!: PathWindows;
  readonly #sink: EventSink;
  readonly #reasons = new DropReasons();
  #target: Target;
  #timer: ReturnType<typeof setInterval> | undefined;
  reading: Promise<void> = Promise.resolve();

  private constructor(target: Target, sink: EventSink, opts: StackProbeOptions) {
    this.#target = target;
    this.#sink = sink;
    const where = placement(target, this.#hostNetns);
    const sampleEvery = opts.sampleEvery ?? 0;
    const match = opts.match ?? {};
    this.#object = ProbeObject.open({
      object: "stack",
      target: filterTarget(target, this.#hostNetns),
      rodataLayout: RODATA,
      rodata: {
        host_netns: this.#hostNetns,
        sample_every: sampleEvery,
        match_proto: match.protocol ? IPPROTO[match.protocol] : 0,
        match_port: match.port ?? 0,
        match_addr: (match.addresses?.length ?? 0) > 0,
        loopback: opts.loopback ?? false,
      },
      // small: only sampled packets use the ring
      ringBytes: opts.ringBytes ?? (sampleEvery ? 1 << 20 : 1 << 16),
      // the netns filter needs no pid tracking
      skip: ["kupod_fork", "kupod_exit", ...(opts.tcpPoints ? [] : TCP_POINT_PROGRAMS)],
      prepare: (obj) =>
        obj.program("kupod_stk_nf").setType(PROG_TYPE_NETFILTER, BPF.ATTACH_NETFILTER),
      attach: (obj) => {
        const path = [...PATH_PROGRAMS, ...(opts.tcpPoints ? TCP_POINT_PROGRAMS : [])];
        const [owned, hooks, windows] = attach(obj, where, match, path, opts.dutyCycle ?? 1);
        this.#hooks = hooks;
        this.#windows = windows;
        return owned;
      },
      onSample: (view, offset) => {
        this.#events++;
        sink.event(this.#packet(decodeStackEvent(view, offset)));
      },
    });
  }

  #packet(e: StackEvent): PacketEvent {
    const ev: PacketEvent = {
      ts: bootNsToRfc3339(e.ts_ns),
      type: "packet",
      ...attribution(this.#target, -1),
      packet_id: (e.packet_id ^ RUN_KEY).toString(16).padStart(16, "0"),
      hook: HOOKS[e.hook] ?? String(e.hook),
      len: e.len,
    };
    if (e.prev_hook < HOOKS.length) {
      ev.from = HOOKS[e.prev_hook];
      ev.latency_seconds = Number(e.latency_ns) * NS;
    }
    if (e.ifindex) ev.ifindex = e.ifindex;
    if (e.netns) ev.netns = e.netns;
    if (e.hook === HOOK_DROP) ev.drop_reason = this.#reasons.name(e.reason);
    return ev;
  }

  /** The kernel's counts since start, as one event. */
  snapshot(): StackStatsEvent {
    const obj = this.#object.object;
    const counts = obj.map("hook_counts");
    const perHook: PacketCount[] = HOOKS.map((_, i) => {
      const [packets, bytes] = counts.sumU64s(u32Key(i)) ?? [0, 0];
      return { packets, bytes };
    });
    const hooks: Record<string, PacketCount> = {};
    HOOKS.forEach((h, i) => perHook[i].packets && (hooks[h] = perHook[i]));

    const hopMap = obj.map("hops");
    const hops: HopLatency[] = [];
    for (let from = 0; from < HOOKS.length; from++) {
      for (let to = 0; to < HOOKS.length; to++) {
        // struct log2_hist: count, sum_ns, slots[]
        const v = hopMap.sumU64s(u32Key(from * HOOKS.length + to), 0);
        if (!v) continue;
        hops.push({
          from: HOOKS[from],
          to: HOOKS[to],
          count: v[0],
          sum_seconds: v[1] * NS,
          slots: v.slice(2),
        });
      }
    }

    const dropMap = obj.map("drops");
    const drops: Record<string, number> = {};
    for (const key of dropMap.keys()) {
      const reason = new DataView(key.buffer).getUint32(0, true);
      const name = this.#reasons.name(reason);
      drops[name] = (drops[name] ?? 0) + Number(dropMap.sumU64(key));
    }

    const stats = obj.map("stack_stats");
    const stat = (i: number) => Number(stats.sumU64(u32Key(i)));
    return {
      ts: new Date().toISOString(),
      type: "stack_stats",
      ...attribution(this.#target, -1),
      interface: this.#hooks.where.veth,
      nic: { rx: perHook[HOOK_TC_INGRESS], tx: perHook[HOOK_TC_EGRESS] },
      hooks,
      hops,
      drops,
      tracked: stat(STAT.TRACKED),
      ended: stat(STAT.ENDED),
      vanished: stat(STAT.VANISHED),
      sampled: stat(STAT.SAMPLED),
      path_duty_cycle: this.#windows.dutyCycle,
      path_traced_seconds: this.#windows.tracedSeconds(),
    };
  }

  reportCounters(): void {
    if (this.#object.released) return;
    try {
      this.#sink.event(this.snapshot());
    } catch {
      // a failed read is retried at the next interval
    }
  }

  /** Loads and attaches; counts are reported every interval and once more at stop. */
  static start(target: Target, sink: EventSink, opts: StackProbeOptions = {}): StackProbe {
    const probe = new StackProbe(target, sink, opts);
    probe.reading = probe.#object.read();
    probe.#timer = setInterval(() => probe.reportCounters(), opts.intervalMs ?? READ_INTERVAL_MS);
    return probe;
  }

  /**
   * Follows a changed target; a re-created pod (new veth or netns) is re-hooked. Throws when the
   * new pod cannot be hooked (it is gone again): then nothing of the old one stays attached.
   */
  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(filterTarget(target, this.#hostNetns));
    let where: Placement;
    try {
      where = placement(target, this.#hostNetns);
    } catch (e) {
      this.#hooks.detach();
      throw e;
    }
    this.#hooks.move(where);
  }

  stats(): ProbeStats {
    return { events: this.#events, lost: this.#object.lost() };
  }

  /** Detaches, reports the final counts, drains the ring and releases everything. */
  stop(): Promise<void> {
    clearInterval(this.#timer);
    return this.#object.close(() => this.#sink.event(this.snapshot()));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
