/**
 * Checks shared by every monitor before anything is loaded: privileges,
 * kernel version, BTF, tracefs and bpffs (mounted when missing), and which
 * program and attach types this kernel allows, so that probes can pick a
 * hook that works. Each failure is one line naming what to fix.
 */

import { KupodError } from "../base/errors.ts";
import { cstr, errno, libbpf, libc } from "./ffi.ts";
import { captureLibbpfLog } from "./log.ts";
import { BpfObject } from "./object.ts";
import { objectBytes } from "./objects.ts";

export type Feature =
  | "tracepoint"
  | "raw_tp"
  | "tp_btf"
  | "fentry"
  | "kprobe"
  | "uprobe"
  | "tc"
  | "netfilter"
  | "sockops"
  | "sk_msg"
  | "ringbuf"
  /** socket- and task-local storage from tracing programs (Linux 5.11) */
  | "local_storage"
  /** the tcp_sendmsg_locked tracepoint: the start of a TCP write (Linux 6.16) */
  | "tcp_send_start";

export interface PreflightReport {
  kernel: string;
  btf: string;
  tracefs: string;
  bpffs: string;
  /** Lines worth showing to the operator ("mounted tracefs at ..."). */
  notes: string[];
}

const MIN_KERNEL: [number, number] = [5, 8]; // BPF ring buffer
const BTF_PATH = "/sys/kernel/btf/vmlinux";
const CAP = { NET_ADMIN: 12, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 } as const;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCaps(status = Deno.readTextFileSync("/proc/self/status")): bigint {
  const m = status.match(/^CapEff:\s*([0-9a-f]+)$/m);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

function hasCap(caps: bigint, cap: number): boolean {
  return (caps >> BigInt(cap) & 1n) === 1n;
}

export function checkPrivileges(caps = effectiveCaps()): void {
  if (hasCap(caps, CAP.SYS_ADMIN)) return;
  const missing = (["BPF", "PERFMON", "NET_ADMIN"] as const).filter((c) => !hasCap(caps, CAP[c]));
  if (missing.length) {
    throw new KupodError(
      `kupod needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN): missing ${
        missing.map((c) => `CAP_${c}`).join(", ")
      }; run it with sudo`,
    );
  }
}

/** Parses "6.18.44-fc-v657" → [6, 18]. */
export function kernelVersion(release = Deno.osRelease()): [number, number] {
  const m = release.match(/^(\d+)\.(\d+)/);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export function checkKernel(release = Deno.osRelease()): void {
  const [major, minor] = kernelVersion(release);
  if (major < MIN_KERNEL[0] || (major === MIN_KERNEL[0] && minor < MIN_KERNEL[1])) {
    throw new KupodError(
      `kernel ${release} is too old: kupod needs Linux ${MIN_KERNEL.join(".")} or newer`,
    );
  }
}

export function checkBtf(path = BTF_PATH): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new KupodError(
      `kernel BTF not found at ${path}: kupod needs a kernel built with CONFIG_DEBUG_INFO_BTF=y`,
    );
  }
}

/** Mount points by filesystem type, from a mountinfo text. */
export function mountsOfType(mountinfo: string, fstype: string): string[] {
  const out: string[] = [];
  for (const line of mountinfo.split("\n")) {
    const sep = line.indexOf(" - ");
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(" ");
    if (line.slice(sep + 3).split(" ")[0] === fstype) out.push(fields[4]);
  }
  return out;
}

/**
 * The mount point of `fstype`, mounting it at `where` when there is none. The
 * mount is left in place on exit: it is a node's normal state and other tools
 * may start using it while kupod runs.
 */
function ensureMounted(fstype: string, where: string, notes: string[]): string {
  const existing = mountsOfType(Deno.readTextFileSync("/proc/self/mountinfo"), fstype);
  if (existing.length) return existing.includes(where) ? where : existing[0];
  const rc = libc().mount(cstr(fstype), cstr(where), cstr(fstype), 0n, null);
  if (rc < 0) {
    throw new KupodError(
      `${fstype} is not mounted and mounting it at ${where} failed (errno ${errno()})`,
    );
  }
  notes.push(`mounted ${fstype} at ${where}`);
  return where;
}

/** Runs every check; throws KupodError with one line on the first failure. */
export function preflight(): PreflightReport {
  const notes: string[] = [];
  captureLibbpfLog(); // libbpf's default printer would write to stderr
  checkPrivileges();
  checkKernel();
  checkBtf();
  const tracefs = ensureMounted("tracefs", "/sys/kernel/tracing", notes);
  const bpffs = ensureMounted("bpf", "/sys/fs/bpf", notes);
  return { kernel: Deno.osRelease(), btf: BTF_PATH, tracefs, bpffs, notes };
}

const PROG_TYPE = { SCHED_CLS: 3, TRACEPOINT: 5, SOCK_OPS: 13, SK_MSG: 16, RAW_TRACEPOINT: 17 };
const MAP_TYPE_RINGBUF = 27;
const features = new Map<Feature, boolean>();

/** Whether this kernel allows `feature`; probed once, by loading (and attaching) a trivial program. */
export function hasFeature(feature: Feature): boolean {
  let ok = features.get(feature);
  if (ok === undefined) {
    ok = probeFeature(feature);
    features.set(feature, ok);
  }
  return ok;
}

function progType(type: number): boolean {
  return libbpf().libbpf_probe_bpf_prog_type(type, null) === 1;
}

function probeFeature(feature: Feature): boolean {
  switch (feature) {
    case "tracepoint":
      return tryProgram("kupod_feat_tp");
    case "raw_tp":
      return progType(PROG_TYPE.RAW_TRACEPOINT);
    case "tp_btf":
      return tryProgram("kupod_feat_tpbt");
    case "fentry":
      return tryProgram("kupod_feat_fent");
    case "kprobe":
      return tryProgram("kupod_feat_kprb");
    case "netfilter":
      return tryProgram("kupod_feat_nf", { progType: 32, attachType: 45 }, false);
    case "uprobe":
      return exists("/sys/bus/event_source/devices/uprobe/type");
    case "tc":
      return progType(PROG_TYPE.SCHED_CLS);
    case "sockops":
      return progType(PROG_TYPE.SOCK_OPS);
    case "sk_msg":
      return progType(PROG_TYPE.SK_MSG);
    case "ringbuf":
      return libbpf().libbpf_probe_bpf_map_type(MAP_TYPE_RINGBUF, null) === 1;
    case "local_storage":
      return tryProgram("kupod_feat_lsto", undefined, false, "features_storage");
    case "tcp_send_start":
      return tryProgram("kupod_feat_sndst");
  }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Loads one program of the features object alone and, if asked, attaches it. */
function tryProgram(
  name: string,
  type?: { progType: number; attachType: number },
  attach = true,
  object: "features" | "features_storage" = "features",
): boolean {
  try {
    using obj = BpfObject.open(objectBytes(object), `kupod_${object}`);
    const prog = obj.program(name);
    prog.setAutoload(true);
    if (type) prog.setType(type.progType, type.attachType);
    obj.load();
    if (attach) {
      using _link = prog.attach();
    }
    return true;
  } catch {
    return false;
  }
}

/** Every feature and whether it works, for `--verbose` and bug reports. */
export function featureReport(): Record<Feature, boolean> {
  const all: Feature[] = [
    "tracepoint",
    "raw_tp",
    "tp_btf",
    "fentry",
    "kprobe",
    "uprobe",
    "tc",
    "netfilter",
    "sockops",
    "sk_msg",
    "ringbuf",
    "local_storage",
    "tcp_send_start",
  ];
  return Object.fromEntries(all.map((f) => [f, hasFeature(f)])) as Record<Feature, boolean>;
}
