/** Owners of attachments: each undoes exactly one attach, once. */

import { libbpf, libc } from "./ffi.ts";

/** Something attached to the kernel that must be detached when kupod stops. */
export interface Attachment extends Disposable {
  /** Human-readable description, for logs: "tracepoint sock/inet_sock_set_state". */
  readonly description: string;
}

/** A libbpf `struct bpf_link *` (tracepoint, tp_btf, raw_tp, uprobe, cgroup). */
export class Link implements Attachment {
  #ptr: Deno.PointerObject | null;
  readonly description: string;
  constructor(ptr: Deno.PointerObject, description: string) {
    this.#ptr = ptr;
    this.description = description;
  }
  get fd(): number {
    if (!this.#ptr) throw new Error(`${this.description}: link already destroyed`);
    return libbpf().bpf_link__fd(this.#ptr);
  }
  [Symbol.dispose](): void {
    if (!this.#ptr) return;
    libbpf().bpf_link__destroy(this.#ptr);
    this.#ptr = null;
  }
}

/** A BPF link kupod created with a raw BPF_LINK_CREATE; closing its fd detaches it. */
export class FdLink implements Attachment {
  #fd: number;
  readonly description: string;
  constructor(fd: number, description: string) {
    this.#fd = fd;
    this.description = description;
  }
  get fd(): number {
    return this.#fd;
  }
  [Symbol.dispose](): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}

/** A legacy bpf_prog_attach (sk_msg verdict on a sockhash): undone with bpf_prog_detach2. */
export class ProgAttachment implements Attachment {
  #attached = true;
  readonly description: string;
  constructor(
    readonly progFd: number,
    readonly targetFd: number,
    readonly attachType: number,
    description: string,
  ) {
    this.description = description;
  }
  [Symbol.dispose](): void {
    if (!this.#attached) return;
    libbpf().bpf_prog_detach2(this.progFd, this.targetFd, this.attachType);
    this.#attached = false;
  }
}

/** Disposes a list of owners in reverse order, even if some fail; rethrows the first error. */
export function disposeAll(owners: Disposable[]): void {
  let first: unknown;
  for (const owner of owners.splice(0).reverse()) {
    try {
      owner[Symbol.dispose]();
    } catch (e) {
      first ??= e;
    }
  }
  if (first) throw first;
}
