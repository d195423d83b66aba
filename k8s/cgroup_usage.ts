/**
 * Resource usage of one container from its cgroup files: CPU time and throttling, memory,
 * OOM kills, block I/O and task count. Each group is read from cgroup v2 when the container's
 * v2 directory holds that controller's files, else from the v1 controller's hierarchy, so pure
 * v2 nodes, hybrid nodes (v1 controllers, an empty v2 at /sys/fs/cgroup/unified) and pure v1
 * nodes all work. Meant to be called every few seconds per container: each file is read once,
 * split into lines and scanned without regular expressions.
 */

import { cgroupDir, type CgroupMounts } from "./cgroupfs.ts";

/** Block I/O of a container on one device, cumulative. */
export interface IoUsage {
  /** "major:minor" (see deviceName for the kernel's name). */
  device: string;
  readBytes: number;
  writeBytes: number;
  reads: number;
  writes: number;
}

/** Where each group of CgroupUsage was read from, for diagnostics. */
export interface UsageSource {
  /**
   * "v2", "v1", "" (nothing readable), or "v2+v1" when CPU time came from the v2 cpu.stat and
   * throttling from the v1 cpu controller (a hybrid node: v2 keeps the time of every cgroup,
   * quotas live in v1).
   */
  cpu: string;
  memory: string;
  io: string;
  pids: string;
}

export interface CgroupUsage {
  /** Cumulative CPU time, seconds. */
  cpuUsageSeconds: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  /** CFS bandwidth periods elapsed, periods throttled, and time throttled (seconds). */
  cfsPeriods: number;
  cfsThrottledPeriods: number;
  cfsThrottledSeconds: number;
  /** v2 memory.current; v1 memory.usage_in_bytes. */
  memoryUsageBytes: number;
  /** Usage minus inactive file pages, floored at 0: what the kubelet evicts on. */
  memoryWorkingSetBytes: number;
  /** Anonymous memory (v2 anon; v1 total_rss). */
  memoryRssBytes: number;
  /** Page cache (v2 file; v1 total_cache). */
  memoryCacheBytes: number;
  /** 0 = unlimited. */
  memoryLimitBytes: number;
  /** Processes killed by the OOM killer in this cgroup and below. */
  oomEvents: number;
  /** Tasks (threads) in the cgroup and below, from pids.current. */
  threads: number;
  io: IoUsage[];
  source: UsageSource;
}

/** The cgroup paths of a container (k8s/target.ts Container has them). */
export interface CgroupPaths {
  /** v2 path relative to the cgroup2 mount, "" when none. */
  cgroupPath: string;
  /** v1 path per controller, relative to that controller's mount. */
  cgroupV1Paths: Record<string, string>;
}

/**
 * v1 limits at or above this mean "no limit": the kernel reports its page counter maximum
 * (9223372036854771712 with 4 KiB pages, a bit less with larger pages).
 */
const V1_UNLIMITED = 2 ** 60;

/**
 * cpuacct.stat counts in USER_HZ ticks, which the kernel fixes at 100 per second for user
 * space on every architecture Kubernetes runs on.
 */
const USER_HZ = 100;

/** Reads the usage of one container; a field it cannot read is 0. Never throws. */
export function readCgroupUsage(mounts: CgroupMounts, c: CgroupPaths): CgroupUsage {
  const dirs = new Dirs(mounts, c);
  const u = emptyUsage();
  readCpu(dirs, u);
  readMemory(dirs, u);
  readIo(dirs, u);
  readPids(dirs, u);
  return u;
}

/** A usage with every field 0 and no source. */
export function emptyUsage(): CgroupUsage {
  return {
    cpuUsageSeconds: 0,
    cpuUserSeconds: 0,
    cpuSystemSeconds: 0,
    cfsPeriods: 0,
    cfsThrottledPeriods: 0,
    cfsThrottledSeconds: 0,
    memoryUsageBytes: 0,
    memoryWorkingSetBytes: 0,
    memoryRssBytes: 0,
    memoryCacheBytes: 0,
    memoryLimitBytes: 0,
    oomEvents: 0,
    threads: 0,
    io: [],
    source: { cpu: "", memory: "", io: "", pids: "" },
  };
}

/** The directories of a container: its v2 one and one per v1 controller, "" when none. */
class Dirs {
  readonly v2: string;
  constructor(readonly mounts: CgroupMounts, readonly paths: CgroupPaths) {
    // "" means no v2 cgroup; cgroupDir would turn it into the mount's root.
    this.v2 = mounts.v2 && paths.cgroupPath ? cgroupDir(mounts.v2, paths.cgroupPath) : "";
  }

  v1(ctrl: string): string {
    const mount = this.mounts.v1[ctrl], path = this.paths.cgroupV1Paths[ctrl];
    return mount && path ? cgroupDir(mount, path) : "";
  }
}

/**
 * Text of `file`, undefined when it cannot be read: missing (controller not enabled, container
 * gone) or any other failure, since a sampler must never stop the observer.
 */
function readText(dir: string, file: string): string | undefined {
  if (!dir) return undefined;
  try {
    return Deno.readTextFileSync(`${dir}/${file}`);
  } catch {
    return undefined;
  }
}

/** A decimal number; 0 for anything else ("max", empty). */
function num(s: string | undefined): number {
  if (s === undefined) return 0;
  const n = Number(s);
  return Number.isFinite(n) ? n : 0;
}

/** A single-value file (memory.current, pids.current) as a number, undefined when unreadable. */
function readNumber(dir: string, file: string): number | undefined {
  const text = readText(dir, file);
  return text === undefined ? undefined : num(text.trim());
}

/** "key value" lines (cpu.stat, memory.stat, memory.events, memory.oom_control) by key. */
export function parseFlatKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const sp = line.indexOf(" ");
    if (sp > 0) out.set(line.slice(0, sp), num(line.slice(sp + 1)));
  }
  return out;
}

function readFlatKeyed(dir: string, file: string): Map<string, number> | undefined {
  const text = readText(dir, file);
  return text === undefined ? undefined : parseFlatKeyed(text);
}

// CPU

function readCpu(dirs: Dirs, u: CgroupUsage): void {
  // cpu.stat with usage_usec exists in every v2 cgroup, controller enabled or not.
  const v2 = readFlatKeyed(dirs.v2, "cpu.stat");
  let timeFrom = "";
  if (v2?.has("usage_usec")) {
    u.cpuUsageSeconds = (v2.get("usage_usec") ?? 0) / 1e6;
    u.cpuUserSeconds = (v2.get("user_usec") ?? 0) / 1e6;
    u.cpuSystemSeconds = (v2.get("system_usec") ?? 0) / 1e6;
    timeFrom = "v2";
  } else if (readCpuacct(dirs.v1("cpuacct"), u)) timeFrom = "v1";

  // The period counters appear in v2 only with the cpu controller enabled there.
  let throttleFrom = "";
  if (v2?.has("nr_periods")) {
    u.cfsPeriods = v2.get("nr_periods") ?? 0;
    u.cfsThrottledPeriods = v2.get("nr_throttled") ?? 0;
    u.cfsThrottledSeconds = (v2.get("throttled_usec") ?? 0) / 1e6;
    throttleFrom = "v2";
  } else {
    const v1 = readFlatKeyed(dirs.v1("cpu"), "cpu.stat");
    if (v1) {
      u.cfsPeriods = v1.get("nr_periods") ?? 0;
      u.cfsThrottledPeriods = v1.get("nr_throttled") ?? 0;
      u.cfsThrottledSeconds = (v1.get("throttled_time") ?? 0) / 1e9;
      throttleFrom = "v1";
    }
  }
  u.source.cpu = combine(timeFrom, throttleFrom);
}

/** The source of a group read from two places: one name when they agree or one is missing. */
function combine(a: string, b: string): string {
  return !a || !b || a === b ? a || b : `${a}+${b}`;
}

/** v1 cpuacct: total ns, and user/system in ns when the kernel has them (4.7+), else ticks. */
function readCpuacct(dir: string, u: CgroupUsage): boolean {
  const usage = readNumber(dir, "cpuacct.usage");
  if (usage === undefined) return false;
  u.cpuUsageSeconds = usage / 1e9;
  const user = readNumber(dir, "cpuacct.usage_user");
  const sys = readNumber(dir, "cpuacct.usage_sys");
  if (user !== undefined && sys !== undefined) {
    u.cpuUserSeconds = user / 1e9;
    u.cpuSystemSeconds = sys / 1e9;
    return true;
  }
  const ticks = readFlatKeyed(dir, "cpuacct.stat");
  u.cpuUserSeconds = (ticks?.get("user") ?? 0) / USER_HZ;
  u.cpuSystemSeconds = (ticks?.get("system") ?? 0) / USER_HZ;
  return true;
}

// Memory

function readMemory(dirs: Dirs, u: CgroupUsage): void {
  // memory.current exists only where the v2 memory controller is enabled.
  const current = readNumber(dirs.v2, "memory.current");
  if (current !== undefined) readMemoryV2(dirs.v2, current, u);
  else readMemoryV1(dirs.v1("memory"), u);
}

function readMemoryV2(dir: string, usage: number, u: CgroupUsage): void {
  const stat = readFlatKeyed(dir, "memory.stat");
  setMemory(u, usage, stat?.get("inactive_file") ?? 0);
  u.memoryRssBytes = stat?.get("anon") ?? 0;
  u.memoryCacheBytes = stat?.get("file") ?? 0;
  u.memoryLimitBytes = readNumber(dir, "memory.max") ?? 0; // "max" reads as 0
  u.oomEvents = readFlatKeyed(dir, "memory.events")?.get("oom_kill") ?? 0;
  u.source.memory = "v2";
}

function readMemoryV1(dir: string, u: CgroupUsage): void {
  const usage = readNumber(dir, "memory.usage_in_bytes");
  if (usage === undefined) return;
  // The total_* keys include sub-cgroups, as v2 counts do.
  const stat = readFlatKeyed(dir, "memory.stat");
  setMemory(u, usage, stat?.get("total_inactive_file") ?? 0);
  u.memoryRssBytes = stat?.get("total_rss") ?? 0;
  u.memoryCacheBytes = stat?.get("total_cache") ?? 0;
  const limit = readNumber(dir, "memory.limit_in_bytes") ?? 0;
  u.memoryLimitBytes = limit >= V1_UNLIMITED ? 0 : limit;
  u.oomEvents = readFlatKeyed(dir, "memory.oom_control")?.get("oom_kill") ?? 0;
  u.source.memory = "v1";
}

/** Usage, and the working set: inactive page cache is reclaimable, so it is left out. */
function setMemory(u: CgroupUsage, usage: number, inactiveFile: number): void {
  u.memoryUsageBytes = usage;
  u.memoryWorkingSetBytes = inactiveFile < usage ? usage - inactiveFile : 0;
}

// Block I/O

function readIo(dirs: Dirs, u: CgroupUsage): void {
  const stat = readText(dirs.v2, "io.stat");
  if (stat !== undefined) {
    u.io = parseIoStat(stat);
    u.source.io = "v2";
    return;
  }
  const dir = dirs.v1("blkio");
  const bytes = preferRecursive(dir, "blkio.throttle.io_service_bytes");
  const ios = preferRecursive(dir, "blkio.throttle.io_serviced");
  if (bytes === undefined && ios === undefined) return;
  u.io = parseBlkio(bytes ?? "", ios ?? "");
  u.source.io = "v1";
}

/**
 * The "_recursive" variant of a v1 blkio file (it includes sub-cgroups) when it has device
 * lines; some kernels leave it empty, then the plain file.
 */
function preferRecursive(dir: string, file: string): string | undefined {
  const rec = readText(dir, `${file}_recursive`);
  if (rec !== undefined && hasDeviceLine(rec)) return rec;
  return readText(dir, file) ?? rec;
}

function hasDeviceLine(text: string): boolean {
  for (const line of text.split("\n")) if (isDevice(line.split(" ", 1)[0])) return true;
  return false;
}

/** "8:0": digits, one colon, digits. */
function isDevice(s: string): boolean {
  const colon = s.indexOf(":");
  return colon > 0 && colon < s.length - 1 && isDigits(s, 0, colon) &&
    isDigits(s, colon + 1, s.length);
}

function isDigits(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

/** v2 io.stat: "8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device. */
export function parseIoStat(text: string): IoUsage[] {
  const out: IoUsage[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (!isDevice(fields[0])) continue;
    const io = newIo(fields[0]);
    for (let i = 1; i < fields.length; i++) {
      const eq = fields[i].indexOf("=");
      const value = num(fields[i].slice(eq + 1));
      switch (fields[i].slice(0, eq)) {
        case "rbytes":
          io.readBytes = value;
          break;
        case "wbytes":
          io.writeBytes = value;
          break;
        case "rios":
          io.reads = value;
          break;
        case "wios":
          io.writes = value;
          break;
      }
    }
    out.push(io);
  }
  return out;
}

/**
 * v1 blkio.throttle.io_service_bytes and io_serviced: "8:0 Read 4096" lines per device and
 * operation (Read, Write, Sync, Async, Discard, Total) and a closing "Total n"; only Read and
 * Write are kept. Devices keep the order they first appear in.
 */
export function parseBlkio(bytesText: string, iosText: string): IoUsage[] {
  const byDevice = new Map<string, IoUsage>();
  const at = (device: string) => {
    let io = byDevice.get(device);
    if (!io) byDevice.set(device, io = newIo(device));
    return io;
  };
  for (const [device, op, value] of blkioLines(bytesText)) {
    if (op === "Read") at(device).readBytes = value;
    else if (op === "Write") at(device).writeBytes = value;
  }
  for (const [device, op, value] of blkioLines(iosText)) {
    if (op === "Read") at(device).reads = value;
    else if (op === "Write") at(device).writes = value;
  }
  return [...byDevice.values()];
}

function* blkioLines(text: string): Generator<[string, string, number]> {
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields.length === 3 && isDevice(fields[0])) yield [fields[0], fields[1], num(fields[2])];
  }
}

function newIo(device: string): IoUsage {
  return { device, readBytes: 0, writeBytes: 0, reads: 0, writes: 0 };
}

// Tasks

function readPids(dirs: Dirs, u: CgroupUsage): void {
  const v2 = readNumber(dirs.v2, "pids.current");
  if (v2 !== undefined) {
    u.threads = v2;
    u.source.pids = "v2";
    return;
  }
  const v1 = readNumber(dirs.v1("pids"), "pids.current");
  if (v1 === undefined) return;
  u.threads = v1;
  u.source.pids = "v1";
}

/**
 * The kernel's name of block device "major:minor" ("vda", "nvme0n1") from the DEVNAME of its
 * uevent under `sysRoot`/dev/block; the "major:minor" itself when there is none.
 */
export function deviceName(majmin: string, sysRoot = "/sys"): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${sysRoot}/dev/block/${majmin}/uevent`);
  } catch {
    return majmin; // gone, or not a block device of this host
  }
  for (const line of text.split("\n")) {
    if (line.startsWith("DEVNAME=") && line.length > 8) return line.slice(8);
  }
  return majmin;
}
