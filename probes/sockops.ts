/**
 * Socket redirection for the pod's local TCP traffic (--with-sockops, bpf/sockops.bpf.c): a
 * sockops program on each of the target's container cgroups (cgroup v2, never the root) and an
 * sk_msg program on the sockhash it fills. Reported as `sockops_stats` (sockets in the map, bytes
 * redirected and sends whose peer was missing, per container) like the other probes' counters.
 *
 * Ownership: the cgroup attachments are fd-owned links and the sk_msg attachment hangs on a map
 * this process owns, so kupod ending any way (SIGKILL included) stops redirecting new sockets.
 * Sockets already redirected keep the program and the map alive (the kernel's per-socket state
 * holds them) until they close; they are not taken out of the map at the stop, which would free
 * data queued for their readers. A stop kupod lives through also turns their redirection off
 * (`sockops_stopped`): their sends take the normal path from then on.
 */

import { u32Key } from "../bpf/map.ts";
import type { Attachment } from "../bpf/link.ts";
import { hasFeature } from "../bpf/preflight.ts";
import { KupodError } from "../base/errors.ts";
import { decodeSockopsStats, RODATA } from "../bpf/gen/sockops.ts";
import { cgroupDir, type CgroupMounts, cgroupMountsAt } from "../k8s/cgroupfs.ts";
import { attribution, type Target } from "../k8s/target.ts";
import { addrBytes } from "./addr.ts";
import type { EventSink, SockopsStatsEvent } from "./events.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

/** The slot of the pod's own counts (bpf/sockops.bpf.c: MAX_CONTAINERS). */
const POD_SLOT = 256;
const READ_INTERVAL_MS = 1000;

export interface SockopsOptions {
  /** Cgroup mounts (default: this host's). */
  mounts?: CgroupMounts;
}

/** The cgroup v2 directories of the target's containers; a clear error where one has none. */
function containerCgroups(target: Target, mounts: CgroupMounts): string[] {
  if (!mounts.v2) {
    throw new KupodError(
      "--with-sockops needs cgroup v2 (sockops programs attach to cgroup v2 directories), " +
        "and this host has no cgroup2 mount",
    );
  }
  const dirs = new Set<string>();
  for (const c of target.containers) {
    if (!c.cgroupPath || c.cgroupPath === "/") {
      throw new KupodError(
        `--with-sockops: container ${c.name} has no cgroup v2 directory of its own to attach to` +
          " (redirection is never attached to the root cgroup)",
      );
    }
    dirs.add(cgroupDir(mounts.v2, c.cgroupPath));
  }
  if (!dirs.size) throw new KupodError("--with-sockops: the target has no containers");
  return [...dirs];
}

export class SockopsRedirect implements Probe {
  readonly name = "sockops";
  readonly readyLine = "Sockops redirection started!";
  /** Nothing is read from a ring: settles when stopped, so the monitor runs until then. */
  readonly reading: Promise<void>;
  #stopped!: () => void;
  #target: Target;
  readonly #sink: EventSink;
  readonly #object: ProbeObject;
  readonly #mounts: CgroupMounts;
  /** Attachments by cgroup directory, so a retarget adds and removes only what changed. */
  readonly #cgroups = new Map<string, Attachment>();
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(target: Target, sink: EventSink, opts: SockopsOptions) {
    if (!hasFeature("sockops")) {
      throw new KupodError("--with-sockops: this kernel refuses sockops programs");
    }
    this.#target = target;
    this.#sink = sink;
    this.reading = new Promise((resolve) => (this.#stopped = resolve));
    this.#mounts = opts.mounts ?? cgroupMountsAt();
    const dirs = containerCgroups(target, this.#mounts);
    this.#object = ProbeObject.open({
      object: "sockops",
      target,
      rodataLayout: RODATA,
      ringless: true,
      attach: (obj) => [obj.program("kupod_sk_msg").attachSkMsg(obj.map("sock_hash"))],
    });
    try {
      this.#fillLocalAddrs(target);
      for (const dir of dirs) this.#attach(dir);
    } catch (e) {
      this.#detachAll();
      this.#object.close();
      throw e;
    }
  }

  /** Loads and attaches to every container cgroup of the target. */
  static start(target: Target, sink: EventSink, opts: SockopsOptions = {}): SockopsRedirect {
    const r = new SockopsRedirect(target, sink, opts);
    r.#timer = setInterval(() => r.reportCounters(), READ_INTERVAL_MS);
    return r;
  }

  /** The cgroup directories redirection is attached to. */
  get cgroups(): string[] {
    return [...this.#cgroups.keys()];
  }

  #attach(dir: string): void {
    if (this.#cgroups.has(dir)) return;
    this.#cgroups.set(dir, this.#object.object.program("kupod_sockops").attachCgroup(dir));
  }

  #detachAll(): void {
    for (const a of this.#cgroups.values()) a[Symbol.dispose]();
    this.#cgroups.clear();
  }

  /** The pod's own addresses count as local peers (a pod connecting to its own IP). */
  #fillLocalAddrs(target: Target): void {
    const map = this.#object.object.map("local_addrs");
    map.clear();
    for (const ip of [target.podIP].filter(Boolean)) {
      const key = addrBytes(ip);
      if (key) map.update(key, new Uint8Array([1]));
    }
  }

  /** Sockets in the map now, bytes redirected and misses per container, to the sink. */
  reportCounters(): void {
    if (this.#object.released) return;
    const stats = this.#object.object.map("sockops_stats");
    let sockets = 0; // inserted minus closed: walking the map would cost a call per socket
    const containers = [];
    const slots = [...this.#target.containers.keys(), POD_SLOT];
    for (const index of slots) {
      const value = stats.summedValue(u32Key(index));
      if (!value) continue;
      const s = decodeSockopsStats(value, 0);
      if (index === POD_SLOT) sockets = Number(s.inserted) - Number(s.removed);
      containers.push({
        container: index === POD_SLOT ? "" : this.#target.containers[index].name,
        redirected_bytes: Number(s.redirected_bytes),
        redirected_messages: Number(s.redirected_msgs),
        redirect_errors: Number(s.redirect_errors),
        sockets_added: Number(s.added),
      });
    }
    const { namespace, pod } = attribution(this.#target, -1);
    const e: SockopsStatsEvent = {
      ts: new Date().toISOString(),
      type: "sockops_stats",
      namespace,
      pod,
      sockets,
      containers,
    };
    this.#sink.event(e);
  }

  /** Follows containers that came and went: attaches to new cgroups, detaches from gone ones. */
  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
    this.#fillLocalAddrs(target);
    const dirs = new Set(containerCgroups(target, this.#mounts));
    for (const [dir, a] of this.#cgroups) {
      if (!dirs.has(dir)) {
        a[Symbol.dispose]();
        this.#cgroups.delete(dir);
      }
    }
    for (const dir of dirs) this.#attach(dir);
  }

  stats(): ProbeStats {
    return { events: 0, lost: 0n };
  }

  /**
   * New sockets stop being redirected first (cgroups), then the sends of redirected ones take
   * the normal path again; the sk_msg program and the map stay with those sockets until they
   * close.
   */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#detachAll();
    if (!this.#object.released) {
      this.#object.object.map("sockops_stopped").update(u32Key(0), u32Key(1));
    }
    await this.#object.close(() => this.reportCounters());
    this.#stopped();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}
