/**
 * TC attachments on an interface: a clsact hook and the filters on it.
 * The hook is destroyed only if kupod created it, so a clsact qdisc that
 * another tool installed keeps working after kupod stops.
 */

import { TC_HOOK, TC_OPTS } from "./abi.ts";
import { check } from "./errors.ts";
import { libbpf } from "./ffi.ts";
import type { Attachment } from "./link.ts";

export type TcDirection = "ingress" | "egress";
const ATTACH_POINT = { ingress: 1, egress: 2 } as const;
const EEXIST = 17;

function hookStruct(ifindex: number, attachPoint: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(TC_HOOK.size);
  const v = new DataView(buf.buffer);
  v.setBigUint64(TC_HOOK.sz, BigInt(TC_HOOK.size), true);
  v.setInt32(TC_HOOK.ifindex, ifindex, true);
  v.setUint32(TC_HOOK.attach_point, attachPoint, true);
  return buf;
}

/** The clsact qdisc of one interface (BPF_TC_INGRESS|BPF_TC_EGRESS). */
export class TcHook implements Attachment {
  readonly description: string;
  #created: boolean;
  #live = true;
  private constructor(readonly ifindex: number, created: boolean) {
    this.#created = created;
    this.description = `tc clsact on ifindex ${ifindex}`;
  }

  /** Creates clsact on `ifindex`, or reuses an existing one (then it is left in place). */
  static create(ifindex: number): TcHook {
    const hook = hookStruct(ifindex, ATTACH_POINT.ingress | ATTACH_POINT.egress);
    const rc = libbpf().bpf_tc_hook_create(hook);
    if (rc < 0 && -rc !== EEXIST) {
      check(`tc hook on ifindex ${ifindex}`, () => rc);
    }
    return new TcHook(ifindex, rc === 0);
  }

  /** Attaches a SEC("tc") program; the returned filter is removed on dispose. */
  attach(progFd: number, direction: TcDirection, programName: string): TcFilter {
    const hook = hookStruct(this.ifindex, ATTACH_POINT[direction]);
    const opts = new Uint8Array(TC_OPTS.size);
    const v = new DataView(opts.buffer);
    v.setBigUint64(TC_OPTS.sz, BigInt(TC_OPTS.size), true);
    v.setInt32(TC_OPTS.prog_fd, progFd, true);
    check(
      `tc ${direction} ${programName} on ifindex ${this.ifindex}`,
      () => libbpf().bpf_tc_attach(hook, opts),
    );
    return new TcFilter(
      hook,
      v.getUint32(TC_OPTS.handle, true),
      v.getUint32(TC_OPTS.priority, true),
      `tc ${direction} ${programName} on ifindex ${this.ifindex}`,
    );
  }

  [Symbol.dispose](): void {
    if (!this.#live) return;
    this.#live = false;
    if (this.#created) {
      libbpf().bpf_tc_hook_destroy(
        hookStruct(this.ifindex, ATTACH_POINT.ingress | ATTACH_POINT.egress),
      );
    }
  }
}

/** One tc filter (handle + priority) on a hook. */
export class TcFilter implements Attachment {
  #live = true;
  constructor(
    readonly hook: Uint8Array<ArrayBuffer>,
    readonly handle: number,
    readonly priority: number,
    readonly description: string,
  ) {}
  [Symbol.dispose](): void {
    if (!this.#live) return;
    this.#live = false;
    const opts = new Uint8Array(TC_OPTS.size);
    const v = new DataView(opts.buffer);
    v.setBigUint64(TC_OPTS.sz, BigInt(TC_OPTS.size), true);
    v.setUint32(TC_OPTS.handle, this.handle, true);
    v.setUint32(TC_OPTS.priority, this.priority, true);
    // ENOENT: the interface (a pod's veth) is already gone, and its filters with it.
    libbpf().bpf_tc_detach(this.hook, opts);
  }
}
