/**
 * Container resource usage from cgroup files and network counters from /proc/<pid>/net/dev:
 * exact values on fixture trees (tests/fixtures/cgroup_usage/<case>/: a pure cgroup v2 node and
 * a hybrid one with v1 controllers and an empty v2 at /sys/fs/cgroup/unified), then live on this
 * machine (root): a process of ours moved into fresh cgroups allocates memory and burns CPU, and
 * the readings move with it and agree with the files read directly.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { rmdirCgroup } from "./helpers/pod_cgroup.ts";
import { type CgroupMounts, cgroupMounts, cgroupMountsAt } from "../k8s/cgroupfs.ts";
import {
  type CgroupPaths,
  type CgroupUsage,
  deviceName,
  emptyUsage,
  parseBlkio,
  parseFlatKeyed,
  parseIoStat,
  readCgroupUsage,
} from "../k8s/cgroup_usage.ts";
import { type NetUsage, parseNetDev, readNetUsage } from "../k8s/net_usage.ts";

const FIXTURES = new URL("./fixtures/cgroup_usage/", import.meta.url).pathname;

/** The cgroup mounts of fixture case `name`, below its own root. */
function fixtureMounts(name: string): CgroupMounts {
  const root = `${FIXTURES}${name}`;
  return cgroupMountsAt({ proc: `${root}/proc`, root });
}

const V2_CONTAINER = "/kubepods.slice/kubepods-burstable.slice" +
  "/kubepods-burstable-pod7c3f1a52_4b8d_4e61_9a0f_2d5e8b6c1f34.slice" +
  "/cri-containerd-3f9d2c7be8a1405d96c2e7f01b4a8d35c6e9f2a07b13d48e5f6a9c0b1d2e3f41.scope";
const HYBRID_POD = "/kubepods.slice/kubepods-burstable.slice" +
  "/kubepods-burstable-pod5e21b0c4_9d7a_4f3e_8b16_a4c0d9e2f781.slice";
const HYBRID_CONTAINER = HYBRID_POD +
  "/cri-containerd-a4e8b1c92d7f4036b5e1c8d09f2a7b63e4d5c1f08a9b72e6d3c4f5a0b1e2d3c4.scope";
const HYBRID_SIDECAR = HYBRID_POD +
  "/cri-containerd-b71c0e5d3a8f4c29e6d1b0a7f5c48e3d2a9b16c07f4e8d35a2b1c0e9d8f7a6b5.scope";
const LEGACY_SERVICE = "/system.slice/legacy.service";

/** The same path in every v1 hierarchy of `mounts`. */
function everyV1(mounts: CgroupMounts, path: string): Record<string, string> {
  return Object.fromEntries(Object.keys(mounts.v1).map((c) => [c, path]));
}

// Fixtures

Deno.test("pure v2: every field from the container's v2 files", () => {
  const mounts = fixtureMounts("v2");
  assertEquals(mounts, { v2: `${FIXTURES}v2/sys/fs/cgroup`, v1: {} });
  const usage = readCgroupUsage(mounts, { cgroupPath: V2_CONTAINER, cgroupV1Paths: {} });
  assertEquals<CgroupUsage>(usage, {
    cpuUsageSeconds: 48.213754,
    cpuUserSeconds: 31.907212,
    cpuSystemSeconds: 16.306542,
    cfsPeriods: 90312,
    cfsThrottledPeriods: 1417,
    cfsThrottledSeconds: 52.880613,
    memoryUsageBytes: 187326464,
    memoryWorkingSetBytes: 187326464 - 41943040,
    memoryRssBytes: 121634816,
    memoryCacheBytes: 58720256,
    memoryLimitBytes: 268435456,
    oomEvents: 2,
    threads: 23,
    io: [
      { device: "8:0", readBytes: 9437184, writeBytes: 52428800, reads: 412, writes: 1288 },
      { device: "259:0", readBytes: 1048576, writeBytes: 0, reads: 24, writes: 0 },
    ],
    source: { cpu: "v2", memory: "v2", io: "v2", pids: "v2" },
  });
});

Deno.test("hybrid: v1 controllers when the v2 dir has only cgroup.* files", () => {
  const mounts = fixtureMounts("hybrid");
  const cg = `${FIXTURES}hybrid/sys/fs/cgroup`;
  assertEquals(mounts.v2, `${cg}/unified`);
  assertEquals(mounts.v1.cpu, `${cg}/cpu,cpuacct`);
  assertEquals(mounts.v1.cpuacct, `${cg}/cpu,cpuacct`);
  const usage = readCgroupUsage(mounts, {
    cgroupPath: HYBRID_CONTAINER,
    cgroupV1Paths: everyV1(mounts, HYBRID_CONTAINER),
  });
  assertEquals<CgroupUsage>(usage, {
    // cpuacct.usage_user/usage_sys (ns) win over cpuacct.stat's ticks
    cpuUsageSeconds: 93.817264512,
    cpuUserSeconds: 61.203448801,
    cpuSystemSeconds: 32.613815711,
    cfsPeriods: 45120,
    cfsThrottledPeriods: 873,
    cfsThrottledSeconds: 41.672093385,
    memoryUsageBytes: 412876800,
    memoryWorkingSetBytes: 412876800 - 104857600, // total_inactive_file, not inactive_file
    memoryRssBytes: 246415360,
    memoryCacheBytes: 150994944,
    memoryLimitBytes: 0, // 9223372036854771712: no limit
    oomEvents: 1,
    threads: 41,
    io: [ // the _recursive files; Sync, Async, Discard and Total lines left out
      { device: "8:0", readBytes: 20971520, writeBytes: 73400320, reads: 1530, writes: 2214 },
      { device: "253:1", readBytes: 4096, writeBytes: 8192, reads: 1, writes: 2 },
    ],
    source: { cpu: "v1", memory: "v1", io: "v1", pids: "v1" },
  });
});

Deno.test("hybrid: CPU time from the core v2 cpu.stat, throttling from the v1 cpu controller", () => {
  const mounts = fixtureMounts("hybrid");
  const usage = readCgroupUsage(mounts, {
    cgroupPath: HYBRID_SIDECAR,
    cgroupV1Paths: { cpu: HYBRID_CONTAINER, cpuacct: HYBRID_CONTAINER },
  });
  assertEquals<CgroupUsage>(usage, {
    ...emptyUsage(),
    cpuUsageSeconds: 7.305118,
    cpuUserSeconds: 5.120004,
    cpuSystemSeconds: 2.185114,
    cfsPeriods: 45120,
    cfsThrottledPeriods: 873,
    cfsThrottledSeconds: 41.672093385,
    source: { cpu: "v2+v1", memory: "", io: "", pids: "" },
  });
});

Deno.test("v1 on an older kernel: cpuacct.stat ticks at 100 Hz, plain blkio files", () => {
  const mounts = fixtureMounts("hybrid");
  const usage = readCgroupUsage(mounts, {
    cgroupPath: "",
    cgroupV1Paths: { cpu: LEGACY_SERVICE, cpuacct: LEGACY_SERVICE, blkio: LEGACY_SERVICE },
  });
  assertEquals<CgroupUsage>(usage, {
    ...emptyUsage(),
    cpuUsageSeconds: 2.503117845,
    cpuUserSeconds: 1.87,
    cpuSystemSeconds: 0.61,
    io: [{ device: "8:16", readBytes: 524288, writeBytes: 1048576, reads: 128, writes: 64 }],
    source: { cpu: "v1", memory: "", io: "v1", pids: "" },
  });
});

Deno.test("a vanished container, unknown paths or no mounts read as zeros", () => {
  const gone = "/kubepods.slice/kubepods-besteffort.slice/gone.scope";
  for (const name of ["v2", "hybrid"]) {
    const mounts = fixtureMounts(name);
    const paths = { cgroupPath: gone, cgroupV1Paths: everyV1(mounts, gone) };
    assertEquals(readCgroupUsage(mounts, paths), emptyUsage(), name);
  }
  const none = { v2: "", v1: {} };
  assertEquals(readCgroupUsage(none, { cgroupPath: "/x", cgroupV1Paths: {} }), emptyUsage());
  // v1 paths for controllers that are not mounted are ignored
  const v2 = fixtureMounts("v2");
  assertEquals(
    readCgroupUsage(v2, { cgroupPath: "", cgroupV1Paths: { memory: V2_CONTAINER } }),
    emptyUsage(),
  );
  // "" is no v2 cgroup, never the hierarchy's root (which has a cpu.stat of its own)
  const host = cgroupMounts();
  assertEquals(readCgroupUsage(host, { cgroupPath: "", cgroupV1Paths: {} }), emptyUsage());
});

Deno.test("parsers: flat-keyed files, io.stat, v1 blkio pairs", () => {
  assertEquals(
    [...parseFlatKeyed("usage_usec 10\nnr_periods 0\n\nbad\nthrottled_usec max\n")],
    [["usage_usec", 10], ["nr_periods", 0], ["throttled_usec", 0]],
  );
  assertEquals(parseIoStat(""), []);
  assertEquals(parseIoStat("254:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=5 dios=6 extra=7\n"), [
    { device: "254:0", readBytes: 1, writeBytes: 2, reads: 3, writes: 4 },
  ]);
  assertEquals(parseBlkio("Total 0\n", "Total 0\n"), []);
  assertEquals(
    parseBlkio("8:0 Read 10\n8:0 Write 20\n8:0 Total 30\nTotal 30\n", "9:1 Write 5\n8:0 Read 1\n"),
    [
      { device: "8:0", readBytes: 10, writeBytes: 20, reads: 1, writes: 0 },
      { device: "9:1", readBytes: 0, writeBytes: 0, reads: 0, writes: 5 },
    ],
  );
});

Deno.test("deviceName: DEVNAME from /sys/dev/block/<maj:min>/uevent, else maj:min", () => {
  const sys = `${FIXTURES}v2/sys`;
  assertEquals(deviceName("8:0", sys), "sda");
  assertEquals(deviceName("259:0", sys), "nvme0n1");
  assertEquals(deviceName("7:3", sys), "7:3");
  // on this machine: every block device has a name
  for (const e of Deno.readDirSync("/sys/dev/block")) {
    assert(deviceName(e.name) !== e.name, `${e.name} has no DEVNAME`);
  }
});

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   48620     612    0    0    0     0          0         0    48620     612    0    0    0     0       0          0
  eth0: 90316712   71204    3   17    0     0          0        42 11805264   60133    1    5    0     0       0          0
veth9c1e2f0a:2048 20 0 0 0 0 0 0 4096 40 0 0 0 0 0 0
`;

Deno.test("parseNetDev: headers skipped, every interface with its 8 counters", () => {
  const net = (i: string, rx: number[], tx: number[]): NetUsage => ({
    interface: i,
    rxBytes: rx[0],
    rxPackets: rx[1],
    rxErrors: rx[2],
    rxDropped: rx[3],
    txBytes: tx[0],
    txPackets: tx[1],
    txErrors: tx[2],
    txDropped: tx[3],
  });
  assertEquals(parseNetDev(NET_DEV), [
    net("lo", [48620, 612, 0, 0], [48620, 612, 0, 0]),
    net("eth0", [90316712, 71204, 3, 17], [11805264, 60133, 1, 5]),
    net("veth9c1e2f0a", [2048, 20, 0, 0], [4096, 40, 0, 0]),
  ]);
  assertEquals(parseNetDev(""), []);
  assertEquals(parseNetDev("  eth1: 1 2 3\n"), [], "a short line is no interface");
});

Deno.test("readNetUsage: a fixture proc tree, loopback only when asked, [] when gone", () => {
  const proc = `${FIXTURES}v2/proc`;
  assertEquals(readNetUsage(4211, { proc }).map((n) => n.interface), ["eth0"]);
  assertEquals(
    readNetUsage(4211, { proc, includeLoopback: true }).map((n) => n.interface),
    ["lo", "eth0"],
  );
  assertEquals(readNetUsage(4211, { proc })[0].rxBytes, 734812311);
  assertEquals(readNetUsage(4260, { proc }), []);
  assertEquals(readNetUsage(2 ** 22 + 1), [], "above any pid_max");
});

// Live on this machine

const live = Deno.uid?.() === 0;

Deno.test({
  name: "live: readNetUsage(Deno.pid) counts as /proc/self/net/dev does",
  ignore: !live,
  fn() {
    const before = parseNetDev(Deno.readTextFileSync("/proc/self/net/dev"));
    const read = readNetUsage(Deno.pid, { includeLoopback: true });
    const after = parseNetDev(Deno.readTextFileSync("/proc/self/net/dev"));
    assertEquals(read.map((n) => n.interface), before.map((n) => n.interface));
    for (const [i, n] of read.entries()) {
      for (const k of Object.keys(n) as (keyof NetUsage)[]) {
        if (k === "interface") continue;
        assert(before[i][k] <= n[k] && n[k] <= after[i][k], `${n.interface} ${k}`);
      }
    }
    const host = readNetUsage(Deno.pid);
    assertEquals(
      host.map((n) => n.interface),
      read.map((n) => n.interface).filter((i) => i !== "lo"),
    );
    assert(host.some((n) => n.rxBytes > 0 && n.rxPackets > 0), "no interface has received");
  },
});

/** Controllers the live test makes a cgroup in, where mounted (v1). */
const LIVE_V1 = ["cpu", "cpuacct", "memory", "pids", "blkio"];

/** What the live test needs and this machine lacks, "" when nothing. */
function liveMissing(m: CgroupMounts): string {
  let v2Controllers = "";
  try {
    v2Controllers = m.v2 ? Deno.readTextFileSync(`${m.v2}/cgroup.subtree_control`) : "";
  } catch { /* no v2 */ }
  const has = (ctrl: string) => !!m.v1[ctrl] || v2Controllers.split(" ").includes(ctrl);
  const missing = [];
  if (!m.v2 && !m.v1.cpuacct) missing.push("cpu accounting (cgroup2 or v1 cpuacct)");
  if (!has("memory")) missing.push("memory controller");
  if (!has("pids")) missing.push("pids controller");
  return missing.join(", ");
}

/**
 * A Deno process that, told "go" on stdin, touches 64 MiB and runs ~0.2 s of CPU on its main
 * thread (by its own schedstat), prints "ready", then holds its memory until stdin says more.
 */
const WORKER = `
const dec = new TextDecoder();
async function line() {
  const buf = new Uint8Array(16);
  let s = "";
  while (!s.includes("\\n")) {
    const n = await Deno.stdin.read(buf);
    if (n === null) Deno.exit(0);
    s += dec.decode(buf.subarray(0, n));
  }
}
const onCpuNs = () => Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
await line();
const mem = new Uint8Array(64 << 20).fill(1);
const start = onCpuNs();
let x = 0;
while (onCpuNs() - start < 2e8) for (let i = 0; i < 1e5; i++) x += i;
console.log("ready", mem[mem.length - 1], x > 0);
await line();
`;

const MiB = 1 << 20;

function readNum(path: string): number {
  return Number(Deno.readTextFileSync(path).trim());
}

/** CPU seconds of the test cgroup straight from the file `source` names. */
function directCpuSeconds(mounts: CgroupMounts, name: string, source: string): number {
  if (source.startsWith("v2")) {
    const stat = parseFlatKeyed(Deno.readTextFileSync(`${mounts.v2}/${name}/cpu.stat`));
    return stat.get("usage_usec")! / 1e6;
  }
  return readNum(`${mounts.v1.cpuacct}/${name}/cpuacct.usage`) / 1e9;
}

function directMemoryBytes(mounts: CgroupMounts, name: string, source: string): number {
  return source === "v2"
    ? readNum(`${mounts.v2}/${name}/memory.current`)
    : readNum(`${mounts.v1.memory}/${name}/memory.usage_in_bytes`);
}

function directThreads(mounts: CgroupMounts, name: string, source: string): number {
  return readNum(`${source === "v2" ? mounts.v2 : mounts.v1.pids}/${name}/pids.current`);
}

/** Reads lines of a child's stdout until one starts with `prefix`. */
async function waitLine(
  reader: ReadableStreamDefaultReader<string>,
  prefix: string,
): Promise<void> {
  let text = "";
  const until = Date.now() + 30_000;
  while (!text.split("\n").some((l) => l.startsWith(prefix))) {
    if (Date.now() > until) throw new Error(`no "${prefix}" line from the worker: ${text}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`the worker exited before "${prefix}": ${text}`);
    text += value;
  }
}

Deno.test({
  name: "live: a process of ours in fresh v1 and v2 cgroups is measured as it allocates and runs",
  ignore: !live,
  async fn() {
    const mounts = cgroupMounts();
    const missing = liveMissing(mounts);
    if (missing) {
      console.warn(`skipped: this machine has no ${missing} (see /proc/self/mountinfo)`);
      return;
    }
    const name = `kupod-usage-test-${Deno.pid}`;
    const paths: CgroupPaths = { cgroupPath: mounts.v2 ? `/${name}` : "", cgroupV1Paths: {} };
    const dirs = new Set<string>(); // co-mounted controllers (cpu,cpuacct) share one
    if (mounts.v2) dirs.add(`${mounts.v2}/${name}`);
    for (const ctrl of LIVE_V1) {
      if (!mounts.v1[ctrl]) continue;
      paths.cgroupV1Paths[ctrl] = `/${name}`;
      dirs.add(`${mounts.v1[ctrl]}/${name}`);
    }
    const made: string[] = [];
    let child: Deno.ChildProcess | undefined;
    let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
    let reader: ReadableStreamDefaultReader<string> | undefined;
    try {
      for (const dir of dirs) {
        Deno.mkdirSync(dir);
        made.push(dir);
      }
      child = new Deno.Command(Deno.execPath(), {
        args: ["eval", "--no-config", WORKER],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      writer = child.stdin.getWriter();
      reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      // Only this child moves; what it allocates from now on is charged to the new cgroups.
      for (const dir of dirs) Deno.writeTextFileSync(`${dir}/cgroup.procs`, `${child.pid}\n`);

      const before = readCgroupUsage(mounts, paths);
      await writer.write(new TextEncoder().encode("go\n"));
      await waitLine(reader, "ready");
      const after = readCgroupUsage(mounts, paths);
      const src = after.source;
      const memNow = directMemoryBytes(mounts, name, src.memory);
      const cpuNow = directCpuSeconds(mounts, name, src.cpu);
      const threadsNow = directThreads(mounts, name, src.pids);
      const show = JSON.stringify({ before, after });

      assert(src.cpu && src.memory && src.pids, `sources: ${show}`);
      // Memory: the 64 MiB it touched, and not wildly more.
      const grown = after.memoryUsageBytes - before.memoryUsageBytes;
      assert(grown >= 60 * MiB && after.memoryUsageBytes < 512 * MiB, `memory: ${show}`);
      assert(after.memoryRssBytes >= 60 * MiB, `rss: ${show}`);
      assert(after.memoryWorkingSetBytes >= after.memoryRssBytes - 4 * MiB, `ws: ${show}`);
      assert(after.memoryWorkingSetBytes <= after.memoryUsageBytes, `ws: ${show}`);
      assertEquals(after.memoryLimitBytes, 0, "no limit set");
      assertEquals(after.oomEvents, 0, "oom kills");
      assert(Math.abs(memNow - after.memoryUsageBytes) <= 4 * MiB, `${memNow}: ${show}`);
      // CPU: at least the 0.2 s its main thread spun, and not wildly more.
      const ran = after.cpuUsageSeconds - before.cpuUsageSeconds;
      assert(ran >= 0.19 && ran < 10, `cpu ${ran}: ${show}`);
      assert(after.cpuUserSeconds - before.cpuUserSeconds > 0.1, `user: ${show}`);
      assert(cpuNow >= after.cpuUsageSeconds && cpuNow - after.cpuUsageSeconds < 0.1, `${cpuNow}`);
      if (src.cpu.startsWith("v2") && mounts.v1.cpuacct) {
        // Both hierarchies count the same task time.
        const v1 = readNum(`${mounts.v1.cpuacct}/${name}/cpuacct.usage`) / 1e9;
        assert(Math.abs(v1 - after.cpuUsageSeconds) < 0.1, `cpuacct ${v1}: ${show}`);
      }
      if (mounts.v1.cpu && !src.cpu.startsWith("v2")) assertEquals(src.cpu, "v1");
      assertEquals(after.cfsThrottledPeriods, 0, "no quota set");
      // Tasks: Deno runs several threads; each counts.
      assert(after.threads >= 1 && after.threads <= 256, `threads: ${show}`);
      assertEquals(after.threads, threadsNow, "pids.current");
      for (const io of after.io) assert(/^\d+:\d+$/.test(io.device), `io: ${show}`);
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await writer?.close().catch(() => {});
        await reader?.cancel().catch(() => {});
        await child.status;
      }
      for (const dir of made.reverse()) await rmdirCgroup(dir);
    }
    assertEquals(readCgroupUsage(mounts, paths), emptyUsage(), "after the cgroups went");
  },
});
