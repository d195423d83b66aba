/**
 * When the stack probe follows the packet path. With a sidecar most of a pod's packets never
 * cross its veth, yet every packet of the node passes the `net:` tracepoints and every packet in
 * the pod's netns its netfilter hooks: about ten program runs each while the path is traced, one
 * (TC) when it is not. So the path's hooks are attached only while a window is open — `dutyCycle`
 * of every PATH_PERIOD_MS, from the start — and TC on the veth and the drop hook stay attached for
 * the whole run: the pod's boundary counts, the NIC counters and drops at the pod's devices stay
 * exact, the path's counts and hop latencies come from the windows (README, stack probe).
 */

import { type Attachment, disposeAll } from "../bpf/link.ts";
import { u32Key } from "../bpf/map.ts";
import type { BpfObject } from "../bpf/object.ts";
import { POD, type PodHooks } from "./stack_hooks.ts";

/** A window opens every this many ms: a summary at the default 5 s interval holds one. */
export const PATH_PERIOD_MS = 5000;

/** The path windows of one stack probe: its tracepoint programs and the pod's netfilter hooks. */
export class PathWindows implements Attachment {
  readonly description = "stack path windows";
  readonly #obj: BpfObject;
  readonly #hooks: PodHooks;
  readonly #programs: string[];
  readonly #dutyCycle: number;
  #attached: Attachment[] = [];
  #window = 0;
  #openedAt = 0;
  #tracedMs = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #disposed = false;

  /**
   * Opens the first window now (attach errors are the caller's, as at start) unless `dutyCycle`
   * is 0; with 1 the path is traced for the whole run.
   */
  constructor(obj: BpfObject, hooks: PodHooks, programs: string[], dutyCycle: number) {
    this.#obj = obj;
    this.#hooks = hooks;
    this.#programs = programs;
    this.#dutyCycle = dutyCycle;
    if (dutyCycle > 0) this.#open();
  }

  get dutyCycle(): number {
    return this.#dutyCycle;
  }

  /** Seconds the path was traced since start, the open window included. */
  tracedSeconds(): number {
    const open = this.#openedAt ? performance.now() - this.#openedAt : 0;
    return (this.#tracedMs + open) / 1000;
  }

  #open(): void {
    try {
      for (const name of this.#programs) this.#attached.push(this.#obj.program(name).attach());
      this.#hooks.openPath();
    } catch (e) {
      this.#detach();
      throw e;
    }
    // followed from here on: the hooks after TC are in place
    this.#setWindow(++this.#window);
    this.#openedAt = performance.now();
    if (this.#dutyCycle < 1) this.#schedule(this.#dutyCycle * PATH_PERIOD_MS, () => this.#close());
  }

  #close(): void {
    this.#detach();
    this.#schedule((1 - this.#dutyCycle) * PATH_PERIOD_MS, () => this.#reopen());
  }

  #reopen(): void {
    try {
      this.#open();
    } catch {
      // the pod's netns is going away: its re-creation re-hooks (retarget); try again a period on
      this.#schedule(PATH_PERIOD_MS, () => this.#reopen());
    }
  }

  /** Stops following (TC counts on) and detaches the path's hooks. */
  #detach(): void {
    if (this.#openedAt) this.#tracedMs += performance.now() - this.#openedAt;
    this.#openedAt = 0;
    this.#setWindow(0);
    try {
      this.#hooks.closePath();
    } finally {
      disposeAll(this.#attached);
    }
  }

  #setWindow(window: number): void {
    this.#obj.map("stack_pod").update(u32Key(POD.WINDOW), u32Key(window));
  }

  #schedule(ms: number, then: () => void): void {
    if (this.#disposed) return;
    this.#timer = setTimeout(then, ms);
    Deno.unrefTimer(this.#timer);
  }

  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    clearTimeout(this.#timer);
    this.#detach();
  }
}
