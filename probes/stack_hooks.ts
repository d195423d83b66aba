/**
 * Where the stack probe hooks a pod: TC on the host side of its veth and netfilter in its network
 * namespace. A re-created pod has a new veth and netns; `PodHooks.move` detaches from the old ones
 * and attaches to the new ones without reloading the object.
 */

import { cstr, libc } from "../bpf/ffi.ts";
import { type Attachment, disposeAll } from "../bpf/link.ts";
import { u32Key } from "../bpf/map.ts";
import { inNetns, netnsPath } from "../bpf/netns.ts";
import type { BpfObject, BpfProgram } from "../bpf/object.ts";
import { BpfError } from "../bpf/errors.ts";
import { TcHook } from "../bpf/tc.ts";
import { KupodError } from "../base/errors.ts";
import type { Target } from "../k8s/target.ts";

/** Netfilter hooks: PRE_ROUTING, LOCAL_IN, FORWARD, LOCAL_OUT, POST_ROUTING, of both families. */
const NF_HOOKS = [0, 1, 2, 3, 4];
const NF_FAMILIES = ["ipv4", "ipv6"] as const;
/** Before conntrack (-200) and the iptables tables, after defragmentation (-400). */
const NF_PRIORITY = -300;
/**
 * The kernel takes one BPF program per netfilter hook and priority (EBUSY for a second): another
 * kupod watching the same pod takes the next priority below, still before conntrack.
 */
const NF_PRIORITIES = 16;
const EBUSY = 16;

/** The target has no pod network to observe (a host-network process without a veth). */
export class NoPodNetwork extends KupodError {
  override name = "NoPodNetwork";
}

/** What the probe hooks, from the target: the veth (TC) and the pod's netns (netfilter). */
export interface Placement {
  veth: string;
  vethIndex: number;
  /** /proc/<pid>/ns/net or /run/netns/<name> of the pod; "" for a host-network target. */
  podNetns: string;
  podNetnsInode: number;
}

export function ownNetnsInode(): number {
  return Deno.statSync("/proc/self/ns/net").ino ?? 0;
}

function ifindexOf(name: string): number {
  const index = libc().if_nametoindex(cstr(name));
  if (!index) throw new KupodError(`no network interface ${name}`);
  return index;
}

export function placement(target: Target, hostNetns: number): Placement {
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
  return {
    veth: target.veth,
    vethIndex,
    podNetns,
    podNetnsInode: podNetns ? target.netnsInode : 0,
  };
}

/** enum stack_pod of bpf/stack.h: where the pod is and the path window, keys of `stack_pod`. */
export const POD = { VETH: 0, NETNS: 1, WINDOW: 2 } as const;

/** Hooked nowhere: after a failed move, so that the next one attaches whatever it is given. */
const NOWHERE: Placement = { veth: "", vethIndex: -1, podNetns: "", podNetnsInode: -1 };

function samePlace(a: Placement, b: Placement): boolean {
  return a.vethIndex === b.vethIndex && a.podNetnsInode === b.podNetnsInode;
}

/**
 * The TC filters and netfilter links of one placement; one owner, so a move is all or nothing.
 * TC counts the pod's boundary for the whole run; netfilter belongs to the path and is attached
 * only while a path window is open (`openPath`, probes/stack_window.ts).
 */
export class PodHooks implements Attachment {
  readonly #obj: BpfObject;
  #where: Placement;
  #boundary: Attachment[] = [];
  #path: Attachment[] = [];
  #pathOpen = false;

  constructor(obj: BpfObject, where: Placement) {
    this.#obj = obj;
    this.#where = where;
    this.#boundary = this.#attachBoundary(where);
  }

  get description(): string {
    return `stack hooks on ${this.#where.veth || "no veth"} and netns ${this.#where.podNetnsInode}`;
  }

  get where(): Placement {
    return this.#where;
  }

  /** Re-hooks to `where` if it differs; on failure nothing stays attached and the error is thrown. */
  move(where: Placement): boolean {
    if (samePlace(where, this.#where)) return false;
    this.detach();
    const boundary = this.#attachBoundary(where);
    try {
      if (this.#pathOpen) this.#path = this.#attachPath(where);
    } catch (e) {
      disposeAll(boundary);
      throw e;
    }
    this.#boundary = boundary;
    this.#where = where;
    return true;
  }

  /** Attaches the path's hooks (netfilter in the pod's netns) until `closePath`. */
  openPath(): void {
    if (this.#pathOpen) return;
    this.#path = this.#attachPath(this.#where);
    this.#pathOpen = true;
  }

  closePath(): void {
    this.#pathOpen = false;
    disposeAll(this.#path);
  }

  /** Detaches from the current placement (its pod is gone); a later move attaches again. */
  detach(): void {
    this.#where = { ...NOWHERE, veth: this.#where.veth }; // still names the pod's interface
    disposeAll(this.#path);
    disposeAll(this.#boundary);
  }

  #attachBoundary(where: Placement): Attachment[] {
    // the kernel's pod filter follows the placement before TC sees packets of the new veth
    const pod = this.#obj.map("stack_pod");
    pod.update(u32Key(POD.VETH), u32Key(Math.max(0, where.vethIndex)));
    pod.update(u32Key(POD.NETNS), u32Key(Math.max(0, where.podNetnsInode)));
    return where.vethIndex > 0 ? attachVeth(this.#obj, where.vethIndex) : [];
  }

  #attachPath(where: Placement): Attachment[] {
    if (!where.podNetns) return [];
    const nf = this.#obj.program("kupod_stk_nf");
    const owned: Attachment[] = [];
    try {
      inNetns(where.podNetns, () => {
        for (const family of NF_FAMILIES) {
          for (const hook of NF_HOOKS) owned.push(attachFreePriority(nf, family, hook));
        }
      });
      return owned;
    } catch (e) {
      disposeAll(owned);
      throw e;
    }
  }

  [Symbol.dispose](): void {
    disposeAll(this.#path);
    disposeAll(this.#boundary);
  }
}

/**
 * The TC programs on the pod's veth: as tcx links where the kernel has them (6.6+: they go with
 * kupod's process, SIGKILL included), else as netlink TC filters on a clsact hook.
 */
function attachVeth(obj: BpfObject, ifindex: number): Attachment[] {
  const inbound = obj.program("kupod_stk_tc_in"), outbound = obj.program("kupod_stk_tc_out");
  let first: Attachment | undefined;
  try {
    first = inbound.attachTcx(ifindex, "ingress");
    return [first, outbound.attachTcx(ifindex, "egress")];
  } catch (e) {
    first?.[Symbol.dispose]();
    if (first) throw e; // tcx works here: the second attach failed for a reason of its own
  }
  const hook = TcHook.create(ifindex);
  const owned: Attachment[] = [hook]; // disposed after its filters (reverse order)
  try {
    owned.push(inbound.attachTc(hook, "ingress"), outbound.attachTc(hook, "egress"));
    return owned;
  } catch (e) {
    disposeAll(owned);
    throw e;
  }
}

/** The netfilter link at the first priority from NF_PRIORITY down that no other program holds. */
function attachFreePriority(
  nf: BpfProgram,
  family: typeof NF_FAMILIES[number],
  hook: number,
): Attachment {
  for (let i = 0;; i++) {
    try {
      return nf.attachNetfilter({ family, hook, priority: NF_PRIORITY - i });
    } catch (e) {
      if (!(e instanceof BpfError && e.errno === EBUSY) || i + 1 >= NF_PRIORITIES) throw e;
    }
  }
}
