/**
 * The stack probe ("Deep pod net"): packets of the pod followed through its network path
 * (bpf/stack.bpf.c) — TC on the host-side veth, net: tracepoints, netfilter hooks in the pod's
 * netns, delivery to an application, drops with their reason. The kernel keeps the counts per
 * hook, per hop (log2 latency histograms) and per drop reason in per-CPU maps; this module reads
 * them every second and at stop and hands a cumulative `stack_stats` event to the sinks. Sampled
 * packets (`--verbose`: 1 in 100) also reach the ring, as one `packet` event per hop.
 */

import { BPF } from "../bpf/abi.ts";
import { decodeStackEvent, RODATA, type StackEvent } from "../bpf/gen/stack.ts";
import { cstr, libc } from "../bpf/ffi.ts";
import { type Attachment, disposeAll } from "../bpf/link.ts";
import { u32Key } from "../bpf/map.ts";
import { inNetns, netnsPath } from "../bpf/netns.ts";
import type { BpfObject } from "../bpf/object.ts";
import { TcHook } from "../bpf/tc.ts";
import { KupodError } from "../cli/errors.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { bootNsToRfc3339 } from "./clock.ts";
import { DropReasons } from "./drop_reasons.ts";
import type { EventSink, HopLatency, PacketCount, PacketEvent, StackStatsEvent } from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

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
] as const;
export type HookName = typeof HOOKS[number];
const HOOK_TC_INGRESS = 0, HOOK_TC_EGRESS = 1, HOOK_DROP = 13;
/** enum stack_stat of bpf/stack.h */
const STAT = { TRACKED: 0, ENDED: 1, STALE: 2, SAMPLED: 3 } as const;

/** Netfilter IPv4 hooks attached in the pod's netns (no FORWARD: pods do not forward). */
const NF_HOOKS = [0, 1, 3, 4]; // PRE_ROUTING, LOCAL_IN, LOCAL_OUT, POST_ROUTING
/** Before conntrack (-200) and the iptables tables, after defragmentation (-400). */
const NF_PRIORITY = -300;
const PROG_TYPE_NETFILTER = 32;

const TRACEPOINT_PROGRAMS = [
  "kupod_stk_rx",
  "kupod_stk_recv",
  "kupod_stk_queue",
  "kupod_stk_start",
  "kupod_stk_xmit",
  "kupod_stk_dlvr",
  "kupod_stk_drop",
  "kupod_stk_free",
];

const READ_INTERVAL_MS = 1000;
/** --verbose: one packet in this many gets its path printed. */
export const VERBOSE_SAMPLE_EVERY = 100;
const NS = 1e-9;

/** Kernel addresses are not shown: packet ids are skb addresses masked with a per-run key. */
const RUN_KEY = new DataView(crypto.getRandomValues(new Uint8Array(8)).buffer).getBigUint64(0);

export interface StackProbeOptions {
  /** One packet in `sampleEvery` reaches the ring as `packet` events; 0 (default) = none. */
  sampleEvery?: number;
  /** How often the kernel counts are read (ms, default 1000). */
  intervalMs?: number;
  ringBytes?: number;
}

/** The target has no pod network to observe (a host-network process without a veth). */
export class NoPodNetwork extends KupodError {
  override name = "NoPodNetwork";
}

function ownNetnsInode(): number {
  return Deno.statSync("/proc/self/ns/net").ino ?? 0;
}

function ifindexOf(name: string): number {
  const index = libc().if_nametoindex(cstr(name));
  if (!index) throw new KupodError(`no network interface ${name}`);
  return index;
}

/** What the probe hooks, from the target: the veth (TC) and the pod's netns (netfilter). */
interface Placement {
  veth: string;
  vethIndex: number;
  hostNetns: number;
  /** /proc/<pid>/ns/net or /run/netns/<name> of the pod; "" for a host-network target. */
  podNetns: string;
}

function placement(target: Target): Placement {
  const hostNetns = ownNetnsInode();
  const vethIndex = target.veth ? ifindexOf(target.veth) : 0;
  let podNetns = "";
  if (target.netnsInode && target.netnsInode !== hostNetns) {
    const pids = target.containers.flatMap((c) => c.pids);
    podNetns = netnsPath(target.netnsInode, pids) ?? "";
    if (!podNetns) {
      throw new KupodError(`network namespace ${target.netnsInode} of the target is not reachable`);
    }
  }
  if (!vethIndex && !podNetns) {
    throw new NoPodNetwork(
      "the stack probe needs a pod: a network namespace of its own or a host-side veth",
    );
  }
  return { veth: target.veth, vethIndex, hostNetns, podNetns };
}

/** The target as the stack object filters it: by netns only, never the host's own. */
function filterTarget(target: Target, hostNetns: number): Target {
  return {
    ...target,
    kind: "netns",
    netnsInode: target.netnsInode === hostNetns ? 0 : target.netnsInode,
  };
}

function attach(obj: BpfObject, where: Placement): Attachment[] {
  const owned: Attachment[] = [];
  try {
    for (const name of TRACEPOINT_PROGRAMS) owned.push(obj.program(name).attach());
    if (where.vethIndex) {
      const hook = TcHook.create(where.vethIndex);
      owned.push(hook); // disposed after its filters (reverse order)
      owned.push(obj.program("kupod_stk_tc_in").attachTc(hook, "ingress"));
      owned.push(obj.program("kupod_stk_tc_out").attachTc(hook, "egress"));
    }
    if (where.podNetns) {
      const nf = obj.program("kupod_stk_nf");
      inNetns(where.podNetns, () => {
        for (const hook of NF_HOOKS) {
          owned.push(nf.attachNetfilter({ family: "ipv4", hook, priority: NF_PRIORITY }));
        }
      });
    }
    return owned;
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
  readonly #where: Placement;
  readonly #sink: EventSink;
  readonly #reasons = new DropReasons();
  #target: Target;
  #timer: ReturnType<typeof setInterval> | undefined;
  reading: Promise<void> = Promise.resolve();

  private constructor(target: Target, sink: EventSink, opts: StackProbeOptions) {
    this.#target = target;
    this.#sink = sink;
    const where = this.#where = placement(target);
    const sampleEvery = opts.sampleEvery ?? 0;
    this.#object = ProbeObject.open({
      object: "stack",
      target: filterTarget(target, where.hostNetns),
      rodataLayout: RODATA,
      rodata: {
        veth_ifindex: where.vethIndex,
        host_netns: where.hostNetns,
        sample_every: sampleEvery,
      },
      // small: only sampled packets use the ring
      ringBytes: opts.ringBytes ?? (sampleEvery ? 1 << 20 : 1 << 16),
      skip: ["kupod_fork", "kupod_exit"], // the netns filter needs no pid tracking
      prepare: (obj) =>
        obj.program("kupod_stk_nf").setType(PROG_TYPE_NETFILTER, BPF.ATTACH_NETFILTER),
      attach: (obj) => attach(obj, where),
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
        const v = hopMap.sumU64s(u32Key(from * HOOKS.length + to));
        if (!v || !v[0]) continue;
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
    const tracked = stat(STAT.TRACKED), ended = stat(STAT.ENDED);
    let live = 0;
    for (const _ of obj.map("pkts").keys()) live++;
    return {
      ts: new Date().toISOString(),
      type: "stack_stats",
      ...attribution(this.#target, -1),
      interface: this.#where.veth,
      nic: { rx: perHook[HOOK_TC_INGRESS], tx: perHook[HOOK_TC_EGRESS] },
      hooks,
      hops,
      drops,
      tracked,
      ended,
      vanished: Math.max(0, tracked - ended - live),
      sampled: stat(STAT.SAMPLED),
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

  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(filterTarget(target, this.#where.hostNetns));
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
