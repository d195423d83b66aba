/**
 * Exact gRPC methods of Go processes, read inside the process (bpf/grpc_go.bpf.c): the target's
 * grpc-go binaries get entry uprobes on the functions that hold a stream's decoded headers, and
 * each stream's :path is kept under (kernel socket, stream id, side) — the key under which the
 * HTTP probe knows the same call. A call whose :path the capture could not decode (a connection
 * opened before kupod started: its HPACK table was never seen) gets its method from here, or
 * stays unknown; nothing is guessed.
 *
 * Binaries are found among the target's processes (/proc/<pid>/exe), read once per file
 * (dev, inode) and probed once: a uprobe is on the file, for every process that runs it, and
 * the in-kernel target filter keeps other processes out. New processes are looked for on
 * retarget and every `rescanMs`.
 */

import type { BpfObject } from "../bpf/object.ts";
import { libc } from "../bpf/ffi.ts";
import { type Attachment, disposeAll } from "../bpf/link.ts";
import { u32Key } from "../bpf/map.ts";
import {
  decodeGrpcGoEvent,
  GRPC_GO_EVENT_LAYOUT as L,
  GRPC_GO_EVENT_SIZE,
  RODATA,
} from "../bpf/gen/grpc_go.ts";
import { cgroupDir, cgroupMounts, cgroupProcs } from "../k8s/cgroupfs.ts";
import { pidsByNetns } from "../k8s/proc.ts";
import type { Target } from "../k8s/target.ts";
import {
  CLIENT_SYMBOL,
  confBytes,
  type GrpcGoLayout,
  readGrpcGoLayout,
  SERVER_SYMBOL,
} from "./go/grpc_layout.ts";
import type { H2Call } from "./h2/conn.ts";
import { ProbeObject } from "./probe_object.ts";
import { sockKey, sockKeyOf } from "./conn_id.ts";
import { GoStreamTable } from "./go_streams.ts";

/** The programs' names in bpftool (BPF program names are cut at 15 characters). */
export const GRPC_GO_PROGRAMS = ["kupod_go_srv", "kupod_go_cli"] as const;
const TARGET_PROGRAMS = ["kupod_fork", "kupod_exit"];

/** Binaries probed at once (the size of the kernel's layout map, GRPC_GO_MAX_BINARIES). */
const MAX_BINARIES = 64;
/** Streams remembered; the least recently recorded go first beyond it. */
const MAX_STREAMS = 16384;
/** Scans between two looks at which asked pids are still the target's (scan "asked"). */
const PRUNE_SCANS = 15;
const SIDE_CLIENT = 1;

export type GrpcSide = "server" | "client";

/** One stream's exact :path, as a grpc-go process handled it. */
export interface GoStream {
  sockId: bigint;
  streamId: number;
  side: GrpcSide;
  /** "/pkg.Service/Method" (up to 128 bytes; `truncated` when longer) */
  path: string;
  truncated: boolean;
  pid: number;
  /** The connection's fd in that process, -1 when its type was not a TCP connection. */
  fd: number;
  container: number;
  tsNs: bigint;
}

/** What became of one executable file. */
export interface GoBinary {
  /** "/proc/<pid>/exe" of the process it was first found in. */
  path: string;
  /** The target's processes that run it now. */
  pids: Set<number>;
  /** Why it is not probed (not Go, no grpc-go, no DWARF, ...); undefined when probed. */
  skipped?: string;
  layout?: GrpcGoLayout;
  /** The symbols attached. */
  symbols: string[];
}

/** A probed binary's kernel side: its layout slot (the attach cookie) and its uprobes. */
interface Probed {
  slot: number;
  links: Attachment[];
}

export interface GrpcGoOptions {
  /** Ring size in bytes (default 1 MiB). */
  ringBytes?: number;
  /**
   * Which processes get probed: "all" of the target's (default), or only those asked for with
   * probePid() — a uprobe costs its process a trap per call (about 14 µs measured on the test
   * machines), so a caller may probe only where the capture lost a connection's headers.
   */
  scan?: "all" | "asked";
  /** How often the target's processes are looked at again (default 2000 ms). */
  rescanMs?: number;
  /** Streams remembered (default 16384). */
  maxStreams?: number;
  /** Told of every stream record, as it is read. */
  onStream?: (s: GoStream) => void;
  /** Told of every binary found (probed or skipped with its reason). */
  onBinary?: (b: GoBinary) => void;
}

export class GrpcGoProbe implements AsyncDisposable {
  readonly #object: ProbeObject;
  #target: Target;
  readonly #opts: GrpcGoOptions;
  readonly #streams: GoStreamTable;
  /** By "dev:inode" of the executable, while a process of the target runs it. */
  readonly #binaries = new Map<string, GoBinary>();
  readonly #probed = new Map<GoBinary, Probed>();
  /** Pids looked at, with the file they ran. */
  readonly #seenPids = new Map<number, string>();
  /** Pids asked for (scan "asked"). */
  readonly #asked = new Set<number>();
  /** A pid was asked for that is not known to be the target's yet. */
  #askedNew = false;
  #scansSincePrune = 0;
  #records = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #scanning: Promise<void> = Promise.resolve();
  #stopped = false;
  /** A binary was read: memory to give back at the next scan. */
  #trimDue = false;
  reading: Promise<void> = Promise.resolve();

  private constructor(target: Target, opts: GrpcGoOptions) {
    this.#target = target;
    this.#opts = opts;
    this.#streams = new GoStreamTable(opts.maxStreams ?? MAX_STREAMS);
    this.#object = ProbeObject.open({
      object: "grpc_go",
      target,
      rodataLayout: RODATA,
      ringBytes: opts.ringBytes ?? 1 << 20,
      // the uprobes attach per binary, as binaries are found
      attach: (obj: BpfObject) => TARGET_PROGRAMS.map((p) => obj.program(p).attach()),
      onSample: (view, offset) => this.#record(view, offset),
    });
  }

  /**
   * Loads the programs and probes the Go binaries the target runs now; resolves once those are
   * attached, so a stream started after it is seen.
   */
  static async start(target: Target, opts: GrpcGoOptions = {}): Promise<GrpcGoProbe> {
    const probe = new GrpcGoProbe(target, opts);
    try {
      probe.reading = probe.#object.read();
      await probe.rescan();
    } catch (e) {
      await probe.stop();
      throw e;
    }
    probe.#timer = setInterval(() => void probe.rescan(), opts.rescanMs ?? 2000);
    return probe;
  }

  #record(view: DataView, at: number): void {
    if (view.byteLength - at < GRPC_GO_EVENT_SIZE) return;
    this.#records++;
    const client = view.getUint8(at + L.side.offset) === SIDE_CLIENT;
    const len = Math.min(view.getUint16(at + L.path_len.offset, true), L.path.size);
    const truncated = view.getUint8(at + L.truncated.offset) !== 0;
    const sock = sockKey(view, at + L.sock_id.offset);
    if (sock) {
      const bytes = new Uint8Array(view.buffer, view.byteOffset + at + L.path.offset, len);
      this.#streams.record(
        sock,
        view.getUint32(at + L.stream_id.offset, true),
        client,
        truncated ? undefined : bytes,
      );
    }
    if (!this.#opts.onStream) return;
    const e = decodeGrpcGoEvent(view, at);
    this.#opts.onStream({
      sockId: e.sock_id,
      streamId: e.stream_id,
      side: client ? "client" : "server",
      path: e.path.slice(0, len),
      truncated,
      pid: e.pid,
      fd: e.fd,
      container: e.container,
      tsNs: e.ts_ns,
    });
  }

  /** Reads what the ring holds now (records of streams that already started). */
  readPending(): void {
    if (!this.#stopped) this.#object.ring?.drain();
  }

  /**
   * The exact :path ("/pkg.Service/Method") of stream `streamId` on the connection whose kernel
   * socket is `sockId` (the HTTP probe's sock_id), as the Go process on `side` handled it;
   * undefined when no grpc-go process of the target recorded it (or it was longer than 128
   * bytes). Records already in the ring are read first, so a call that ended is found.
   */
  pathFor(sockId: bigint, streamId: number, side: GrpcSide): string | undefined {
    const sock = sockKeyOf(sockId), client = side === "client";
    const path = this.#streams.get(sock, streamId, client);
    if (path !== undefined) return path;
    this.readPending();
    return this.#streams.get(sock, streamId, client);
  }

  /** pathFor as gRPC's service and method ("pkg.Service", "Method"); undefined when unknown. */
  methodFor(
    sockId: bigint,
    streamId: number,
    side: GrpcSide,
  ): { service: string; method: string } | undefined {
    const path = this.pathFor(sockId, streamId, side);
    return path === undefined ? undefined : splitGrpcPath(path);
  }

  /**
   * Looks at the target's processes again: binaries not seen yet are probed, binaries no
   * process of the target runs any more are let go (their uprobes and layout slot).
   */
  rescan(): Promise<void> {
    // one scan at a time: a binary is read and attached once
    this.#scanning = this.#scanning.then(() => this.#scan()).catch(() => {});
    return this.#scanning;
  }

  /**
   * Probes the binary process `pid` runs (with scan "asked"; with "all" every process of the
   * target is probed anyway). Resolves once it is attached, or skipped with the reason.
   */
  async probePid(pid: number): Promise<GoBinary | undefined> {
    if (!this.#asked.has(pid)) this.#askedNew = true;
    this.#asked.add(pid);
    await this.rescan();
    const id = this.#seenPids.get(pid);
    return id ? this.#binaries.get(id) : undefined;
  }

  #scan(): void {
    if (this.#stopped) return;
    if (this.#trimDue) {
      // a binary read last time: what it freed in glibc's heap stays resident until trimmed
      // (its large buffers do not: the launchers fix the mmap threshold, see ./kupod)
      this.#trimDue = false;
      libc().malloc_trim(0n);
    }
    let pids: Set<number>;
    if (this.#opts.scan === "asked") {
      // telling the target's processes takes a walk over /proc: done when a pid is newly asked
      // for, and every PRUNE_SCANS scans for one that left the pod and runs on; an asked pid
      // that exits is let go below
      if (this.#askedNew || ++this.#scansSincePrune >= PRUNE_SCANS) {
        const all = targetPids(this.#target);
        for (const pid of this.#asked) if (!all.has(pid)) this.#asked.delete(pid);
        this.#askedNew = false;
        this.#scansSincePrune = 0;
      }
      pids = new Set(this.#asked);
    } else {
      pids = targetPids(this.#target);
    }
    for (const [pid, id] of this.#seenPids) {
      if (!pids.has(pid)) this.#forget(pid, id);
    }
    for (const pid of pids) {
      const exe = `/proc/${pid}/exe`;
      let id: string;
      try {
        const st = Deno.statSync(exe);
        id = `${st.dev}:${st.ino}`;
      } catch {
        // exited (a target's pid list may hold it still), or a kernel thread
        const was = this.#seenPids.get(pid);
        if (was) this.#forget(pid, was);
        this.#asked.delete(pid);
        continue;
      }
      const was = this.#seenPids.get(pid);
      if (was === id) continue;
      if (was) this.#forget(pid, was); // exec'd another program
      this.#seenPids.set(pid, id);
      const known = this.#binaries.get(id);
      if (known) {
        known.pids.add(pid);
        continue;
      }
      const b: GoBinary = { path: exe, pids: new Set([pid]), symbols: [] };
      this.#binaries.set(id, b);
      this.#trimDue = true;
      try {
        b.layout = readGrpcGoLayout(exe);
        if (this.#stopped) return;
        this.#attach(b);
      } catch (e) {
        // not grpc-go (GoLayoutError), or the kernel refused the uprobe: said, not fatal
        b.skipped = e instanceof Error ? e.message : String(e);
      }
      this.#opts.onBinary?.(b);
    }
  }

  /** Process `pid` no longer runs binary `id`; the last one to go takes its uprobes along. */
  #forget(pid: number, id: string): void {
    this.#seenPids.delete(pid);
    const b = this.#binaries.get(id);
    if (!b) return;
    b.pids.delete(pid);
    if (b.pids.size) return;
    this.#binaries.delete(id);
    const p = this.#probed.get(b);
    if (!p) return;
    this.#probed.delete(b);
    disposeAll(p.links);
    this.#object.object.map("grpc_go_confs").delete(u32Key(p.slot));
  }

  #attach(b: GoBinary): void {
    const used = new Set([...this.#probed.values()].map((p) => p.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    if (slot >= MAX_BINARIES) throw new Error(`more than ${MAX_BINARIES} grpc-go binaries`);
    const layout = b.layout!;
    this.#object.object.map("grpc_go_confs").update(u32Key(slot), confBytes(layout.conf));
    const probed: Probed = { slot, links: [] };
    this.#probed.set(b, probed);
    const sides: [boolean, string, string][] = [
      [layout.server, GRPC_GO_PROGRAMS[0], SERVER_SYMBOL],
      [layout.client, GRPC_GO_PROGRAMS[1], CLIENT_SYMBOL],
    ];
    for (const [on, program, symbol] of sides) {
      if (!on) continue;
      probed.links.push(
        this.#object.object.program(program).attachUprobe({
          binary: b.path,
          symbol,
          cookie: BigInt(slot),
        }),
      );
      b.symbols.push(symbol);
    }
  }

  /** Every executable looked at, probed or not (and why not). */
  binaries(): GoBinary[] {
    return [...this.#binaries.values()];
  }

  /** Follows a changed target: the kernel filter, then its processes. */
  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
    void this.rescan();
  }

  stats(): { records: number; streams: number; lost: bigint } {
    return { records: this.#records, streams: this.#streams.size, lost: this.#object.lost() };
  }

  /** Detaches every uprobe, drains the ring, releases the object. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#scanning;
    await this.#object.close(() => {
      const links = [...this.#probed.values()].flatMap((p) => p.links);
      this.#probed.clear();
      disposeAll(links);
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * For the HTTP probe's gRPC calls: the exact service and method of `call`, seen on the
 * connection whose kernel socket is `sockId` (the HTTP record's sock_id), when its :path could
 * not be decoded (`pathUnknown`) and a grpc-go process of the target handled the stream;
 * undefined otherwise (the call keeps "unknown").
 */
export function exactGrpcMethod(
  go: GrpcGoProbe | undefined,
  sockId: bigint,
  call: Pick<H2Call, "pathUnknown" | "streamId" | "side">,
): { service: string; method: string } | undefined {
  if (!go || !call.pathUnknown) return undefined;
  return go.methodFor(sockId, call.streamId, call.side);
}

/** "/pkg.Service/Method" → service and method; undefined for a path of another shape. */
export function splitGrpcPath(path: string): { service: string; method: string } | undefined {
  const k = path.lastIndexOf("/");
  if (path[0] !== "/" || k <= 1 || k >= path.length - 1) return undefined;
  return { service: path.slice(1, k), method: path.slice(k + 1) };
}

/**
 * The target's processes now: its containers' pids and what their cgroup v2 directories hold,
 * and for a pod found by its network namespace every process in it.
 */
export function targetPids(target: Target): Set<number> {
  const pids = new Set<number>();
  let v2 = "";
  try {
    v2 = cgroupMounts().v2;
  } catch {
    // no mountinfo: pids only
  }
  for (const c of target.containers) {
    for (const p of c.pids) pids.add(p);
    if (v2 && c.cgroupPath) {
      for (const p of cgroupProcs(cgroupDir(v2, c.cgroupPath))) pids.add(p);
    }
  }
  if ((target.kind === "netns" || target.kind === "veth") && target.netnsInode) {
    for (const p of pidsByNetns().get(target.netnsInode) ?? []) pids.add(p);
  }
  pids.delete(Deno.pid);
  return pids;
}
