/**
 * Socket probe overhead bench: what `kupod monitor kernel socket` costs a pod under HTTP load,
 * measured against the same pod without kupod, in one invocation.
 *
 *   deno task bench:socket [--rounds 3] [--seconds 10] [--close-rounds 1] [--connections 32]
 *                          [--warmup-seconds 5] [--diag-seconds 8]
 *
 * Needs root, wrk, nginx, bpftool and the BPF objects (deno task bpf). ~2.5 min with the
 * defaults:
 *   1. makes a test pod (tests/helpers/pod.ts: netns, veth, kubelet-shaped cgroups, nginx
 *      sidecar "proxy" on 8080 with upstream keep-alive, as production nginx would, in front of
 *      the Deno HTTP service "app" on 9090) and warms it up with `warmup-seconds` of keep-alive
 *      load and 2 s of connection-per-request load (JIT of the service, nginx's upstream pool);
 *   2. keep-alive: `rounds` rounds of one run without kupod ("off") and one with it ("on"),
 *      in ABBA order (off/on, on/off, ...) so that a drift of the host does not favour one
 *      mode; a run is `wrk -t1 -c<connections> -d<seconds>s --latency http://<podIP>:8080/`
 *      from the host through the veth to the sidecar. "on" starts
 *      `./kupod monitor kernel socket --veth <hostVeth> --quiet --exporter-port <free port>`
 *      (its /metrics endpoint runs, as in production, on a port no other kupod on the host
 *      holds) before the run, its stdout to a temp file (as a container runtime takes it; a
 *      pipe to this process could stall kupod whenever this process waits for a CPU), waits
 *      for its "started!" line, and stops it with SIGTERM after the run (it must exit 0, warn
 *      of nothing but lost events and leave none of its programs loaded);
 *   3. connection-per-request: the same with `-H "Connection: close"` for `close-rounds`
 *      rounds: a new TCP connection (accept, close) per request, the probe's connection path;
 *   4. diagnostic (not part of the ratios; `--diag-seconds 0` skips it): one run per load
 *      with `--verbose --output json`, stdout to a temp file, and the kernel's BPF run-time
 *      statistics on (BPF_ENABLE_STATS, off again once its fd is closed): the events kupod
 *      processed (with --quiet the console prints only accepts, connects and retransmits,
 *      but the probe decodes closes and per-request sidecar timings all the same) per type,
 *      and what the BPF programs cost in the kernel, in the context of nginx, the service and
 *      the softirqs - a cost kupod's own CPU time does not contain;
 *   5. prints the kupod sources measured (HEAD, and how many of their files differ), every
 *      run, a summary per load and three final lines:
 *        socket overhead: throughput ratio on/off = R (target >= 0.97) keep-alive; R' ...
 *        socket overhead: agent CPU = C cores per 10k req/s (target <= 0.1) keep-alive; C' ...
 *        socket overhead: agent RSS = M MB (target <= 80)
 *
 * Figures: requests/s are wrk's; a load's ratio is median(on) / median(off). Agent CPU is
 * utime + stime of kupod's process (all threads; ./kupod is a bash launcher that execs Deno,
 * so its pid is Deno's) from /proc/<pid>/stat, the delta between just before wrk starts and
 * just after it ends, divided by that wall time (= cores), then per 10k requests/s of that run
 * (median over runs). Agent RSS is VmHWM (peak resident set, MiB) of /proc/<pid>/status just
 * before SIGTERM, the highest of all "on" runs. Per run, besides: wrk's p50/p99 latency, the
 * lines kupod printed, the events it reported lost (ring buffer full: a result, not an error,
 * but its CPU figure then covers less work), and "other cores": the host's busy CPU time
 * (/proc/stat) minus that of this process, wrk, the pod, kupod and ksoftirqd, per second -
 * load from outside the bench (another test run or bench), which moves every figure. Before
 * each run the bench waits (up to 60 s) until that outside load is below 0.15 cores for 1 s.
 *
 * Placement: nothing is pinned. The host has 2 CPUs for wrk, nginx's worker, the service's
 * Deno and kupod (4 busy processes plus softirq work), so every process is CPU-bound and
 * shares; pinning wrk to one CPU and the pod to the other would leave kupod competing with
 * whichever side it is put on, so the result would depend on that choice instead of on the
 * probe, and production does not pin an agent to its own core either. Stability comes from
 * warm-up, alternation, medians and an otherwise idle host: other load (a test run, another
 * bench) moves the numbers.
 *
 * Exit status: 0 when the measurement ran, whatever the figures (targets not met are not
 * errors); 1 on errors: a failed wrk run (socket errors, non-2xx replies), kupod not starting,
 * exiting non-zero or losing events, its programs left loaded. Children are ended by pid; on
 * any exit, also Ctrl-C, kupod and wrk are stopped, the pod is disposed and the temp dir
 * removed.
 */

import { createTestPod, type TestPod } from "../tests/helpers/pod.ts";
import { freePort } from "../tests/helpers/process.ts";
import {
  type BpfProg,
  cpuSeconds,
  enableBpfStats,
  hostBusySeconds,
  kupodPrograms,
  Proc,
  processTreeSeconds,
  vmBytes,
} from "./socket_proc.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const KUPOD = `${ROOT}kupod`;
const CHILD_ENV = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
const READY_MS = 60_000;
const STOP_MS = 15_000;
const PROGRAMS_GONE_MS = 5_000;
const CLOSE_WARMUP_SECONDS = 2;
const IDLE_WAIT_MS = 60_000;
const IDLE_CORES = 0.15;

const DEFAULTS = {
  rounds: 3,
  seconds: 10,
  "close-rounds": 1,
  connections: 32,
  "warmup-seconds": 5,
  "diag-seconds": 8,
};
type Options = typeof DEFAULTS;

type Load = "keep-alive" | "close";
type Mode = "off" | "on" | "diag";

const LOAD_NAME: Record<Load, string> = {
  "keep-alive": "keep-alive",
  close: "connection-per-request",
};

interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors: number;
  non2xx: number;
}

interface Measured extends WrkResult {
  wall: number;
  kupodCpu: number;
  /** CPU the host spent on anything but this bench, the pod, wrk and kupod, in cores. */
  otherCores: number;
}

interface Run extends WrkResult {
  otherCores: number;
  load: Load;
  mode: Mode;
  round: number;
  /** kupod only: */
  cores?: number;
  coresPer10k?: number;
  hwmBytes?: number;
  /** Lines kupod printed on stdout during the run (quiet: accepts, connects, retransmits). */
  printed?: number;
  /** Events lost (ring buffer full): kupod's warning at exit; per second of the run. */
  lost?: number;
  lostPerSec?: number;
  /** diag only: events by type, as written, and the debug line's processed count. */
  types?: Record<string, number>;
  processed?: number;
  /** diag only: BPF program runs and run time during the run, per program name. */
  bpf?: Record<string, { runs: number; ns: number }>;
}

class UsageError extends Error {}
class Interrupted extends Error {}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parseOptions(args: string[]): Options {
  const opts = { ...DEFAULTS };
  const usage = Object.keys(DEFAULTS).map((k) => `--${k} N`).join(" ");
  for (let i = 0; i < args.length; i++) {
    const m = args[i].match(/^--([a-z-]+)(?:=(.*))?$/);
    const name = m?.[1] as keyof Options | undefined;
    const value = m?.[2] ?? args[++i];
    if (!name || !(name in opts) || value === undefined || !/^\d+$/.test(value)) {
      throw new UsageError(`bad option ${JSON.stringify(args[i])}: use ${usage}`);
    }
    opts[name] = Number(value);
  }
  if (opts.rounds < 1) throw new UsageError("--rounds must be >= 1");
  if (opts.seconds < 1) throw new UsageError("--seconds must be >= 1");
  if (opts.connections < 1) throw new UsageError("--connections must be >= 1");
  return opts;
}

// ---------------------------------------------------------------------------------------------
// wrk

/** "1.23ms" -> 1.23; wrk prints us, ms, s (and m, h for very slow runs). */
function toMs(text: string): number {
  const m = text.match(/^([\d.]+)(us|ms|s|m|h)$/);
  if (!m) return NaN;
  const scale = { us: 1e-3, ms: 1, s: 1e3, m: 60e3, h: 3600e3 }[m[2]]!;
  return Number(m[1]) * scale;
}

function parseWrk(out: string): WrkResult {
  const total = out.match(/(\d+) requests in ([\d.]+)(us|ms|s|m)\b/);
  const rps = out.match(/Requests\/sec:\s+([\d.]+)/);
  if (!total || !rps) throw new Error(`cannot read wrk's output: ${out}`);
  const pct = (p: string) => toMs(out.match(new RegExp(`^\\s+${p}%\\s+(\\S+)`, "m"))?.[1] ?? "");
  const errors = out.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  return {
    requests: Number(total[1]),
    seconds: toMs(total[2] + total[3]) / 1000,
    rps: Number(rps[1]),
    p50Ms: pct("50"),
    p99Ms: pct("99"),
    socketErrors: errors ? errors.slice(1).reduce((a, n) => a + Number(n), 0) : 0,
    non2xx: Number(out.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0),
  };
}

// ---------------------------------------------------------------------------------------------
// The bench

class Bench {
  readonly runs: Run[] = [];
  readonly #active = new Set<Proc>();
  interrupted = false;
  #tmp = "";
  #starts = 0;
  /** ksoftirqd/N: the network work of this bench's traffic that softirqs defer to them. */
  readonly #softirqPids = softirqThreads();

  constructor(readonly opts: Options, readonly pod: TestPod) {}

  /** Ctrl-C / SIGTERM: ends the current run; the caller's finally cleans up. */
  interrupt(): void {
    this.interrupted = true;
    for (const p of this.#active) p.kill(p.name === "kupod" ? "SIGTERM" : "SIGKILL");
  }

  #check(): void {
    if (this.interrupted) throw new Interrupted("interrupted");
  }

  #spawn(name: string, cmd: string, args: string[]): Proc {
    this.#check();
    const p = new Proc(name, cmd, args, CHILD_ENV);
    this.#active.add(p);
    p.status.then(() => this.#active.delete(p));
    return p;
  }

  /**
   * One wrk run, with kupod's CPU time (if `kupod` is given) and the CPU time of the host's
   * other processes, both taken just before wrk starts and just after it has been reaped.
   */
  async #wrk(load: Load, seconds: number, kupod?: number): Promise<Measured> {
    const args = ["-t1", `-c${this.opts.connections}`, `-d${seconds}s`, "--latency"];
    if (load === "close") args.push("-H", "Connection: close");
    const podPids = [...this.pod.containers.flatMap((c) => c.pids()), ...this.#softirqPids];
    // this process and, once reaped, wrk (in cutime/cstime); the pod; kupod
    const ours = () =>
      processTreeSeconds(Deno.pid) +
      podPids.reduce((a, pid) => a + processTreeSeconds(pid), 0) +
      (kupod ? processTreeSeconds(kupod) : 0);
    const kupod0 = kupod ? cpuSeconds(kupod) : 0;
    const ours0 = ours();
    const host0 = hostBusySeconds();
    const t0 = performance.now();
    const wrk = this.#spawn("wrk", "wrk", [...args, this.pod.url(8080)]);
    const status = await wrk.wait((seconds + 30) * 1000);
    const wall = (performance.now() - t0) / 1000;
    const host = hostBusySeconds() - host0;
    const mine = ours() - ours0;
    const kupodCpu = kupod ? cpuSeconds(kupod) - kupod0 : 0;
    this.#check();
    const out = wrk.stdout.text();
    if (!status.success) throw new Error(`wrk exited with ${status.code}: ${wrk.output()}`);
    const r = parseWrk(out);
    // A few socket errors at the end of a close run are wrk's connections cut at the deadline.
    if (r.non2xx > 0 || r.socketErrors > Math.max(this.opts.connections, r.requests * 1e-4)) {
      throw new Error(`wrk run failed (${load}): ${out}`);
    }
    if (!(r.requests > 0)) throw new Error(`wrk made no requests: ${out}`);
    return { ...r, wall, kupodCpu, otherCores: Math.max(0, host - mine) / wall };
  }

  /**
   * Waits (up to IDLE_WAIT_MS) until the host's other processes use less than IDLE_CORES,
   * measured over 1 s: a burst of someone else's tests should not land in a run.
   */
  async #waitIdle(): Promise<void> {
    const podPids = [...this.pod.containers.flatMap((c) => c.pids()), ...this.#softirqPids];
    const ours = () =>
      processTreeSeconds(Deno.pid) + podPids.reduce((a, pid) => a + processTreeSeconds(pid), 0);
    let other = 0;
    for (const end = Date.now() + IDLE_WAIT_MS; Date.now() < end;) {
      const [host0, ours0, t0] = [hostBusySeconds(), ours(), performance.now()];
      await sleep(1000);
      this.#check();
      const wall = (performance.now() - t0) / 1000;
      other = Math.max(0, hostBusySeconds() - host0 - (ours() - ours0)) / wall;
      if (other < IDLE_CORES) return;
    }
    console.error(`  (host still busy after ${IDLE_WAIT_MS / 1000} s: ${f(other, 2)} other cores)`);
  }

  async warmUp(): Promise<void> {
    const { "warmup-seconds": ka, "close-rounds": closeRounds } = this.opts;
    if (ka > 0) await this.#wrk("keep-alive", ka);
    if (closeRounds > 0) await this.#wrk("close", CLOSE_WARMUP_SECONDS);
  }

  /**
   * Starts kupod with its stdout going to `out` (as a container runtime writes a container's
   * stdout to a file: a pipe read by this process could stall kupod whenever this process
   * waits for a CPU), and waits for its "started!" line.
   */
  async #startKupod(mode: Mode, out: string): Promise<{ kupod: Proc; programs: BpfProg[] }> {
    const before = new Set((await kupodPrograms()).map((p) => p.id));
    // The metrics endpoint runs as in production, on a free port: the default (8765) may be
    // taken by another kupod on this host.
    const args = ["monitor", "kernel", "socket", "--veth", this.pod.hostVeth];
    args.push("--exporter-port", String(freePort()));
    args.push(...(mode === "diag" ? ["--verbose", "--output", "json"] : ["--quiet"]));
    // sh and then the ./kupod launcher exec: the pid stays, and ends up Deno's
    const redirect = 'f=$1; shift; exec "$@" >"$f"';
    const kupod = this.#spawn("kupod", "sh", ["-c", redirect, "sh", out, KUPOD, ...args]);
    for (const end = Date.now() + READY_MS;;) {
      // text output: the readiness line is on stdout, json: on stderr
      if (/started!/.test(kupod.stderr.head) || /started!/.test(await fileHead(out))) break;
      if (kupod.exited || Date.now() > end) {
        throw new Error(
          `kupod ${kupod.exited ? "exited" : "not ready in time"}: ${kupod.output()} | ` +
            `stdout: ${await fileHead(out)}`,
        );
      }
      await sleep(20);
      this.#check();
    }
    const comm = Deno.readTextFileSync(`/proc/${kupod.pid}/comm`).trim();
    if (comm !== "deno") throw new Error(`kupod's pid ${kupod.pid} is ${comm}, not Deno`);
    const programs = (await kupodPrograms()).filter((p) => !before.has(p.id));
    if (!programs.length) throw new Error("kupod is ready but no kupod_* program was loaded");
    return { kupod, programs };
  }

  /** SIGTERM, exit 0, its programs gone; returns the events it reported lost. */
  async #stopKupod(kupod: Proc, programs: BpfProg[], out: string, json: boolean): Promise<number> {
    kupod.kill("SIGTERM");
    const status = await kupod.wait(STOP_MS);
    // text output: warnings are on stdout (the file), json: on stderr
    let logLines = kupod.stderr.text().split("\n");
    if (!json) logLines = logLines.concat((await Deno.readTextFile(out)).split("\n"));
    if (status.code !== 0) {
      throw new Error(`kupod exited with ${status.code}: ${logLines.slice(-20).join(" | ")}`);
    }
    // Lost events are a result (the reader fell behind), any other warning is an error.
    let lost = 0;
    const warnings = logLines.filter((l) => {
      const m = l.match(/^\[WARN\] socket: (\d+) events lost/);
      if (m) lost += Number(m[1]);
      return l.startsWith("[WARN]") && !m;
    });
    if (warnings.length) throw new Error(`kupod warned: ${warnings.join(" | ")}`);
    await waitProgramsGone(programs.map((p) => p.id));
    return lost;
  }

  async run(load: Load, mode: Mode, round: number): Promise<Run> {
    const seconds = mode === "diag" ? this.opts["diag-seconds"] : this.opts.seconds;
    await this.#waitIdle();
    if (mode === "off") {
      const { wall: _w, kupodCpu: _c, ...r } = await this.#wrk(load, seconds);
      const run = { load, mode, round, ...r };
      this.runs.push(run);
      return run;
    }
    this.#tmp ||= await Deno.makeTempDir({ prefix: "kupod-bench-" });
    const out = `${this.#tmp}/kupod-${++this.#starts}.out`;
    const { kupod, programs } = await this.#startKupod(mode, out);
    let stats: Disposable | undefined;
    try {
      if (mode === "diag") stats = enableBpfStats();
      const bpf0 = mode === "diag" ? await kupodPrograms() : [];
      const printed0 = mode === "diag" ? 0 : await countLines(out);
      const { wall, kupodCpu: cpu, ...r } = await this.#wrk(load, seconds, kupod.pid);
      const printed = mode === "diag" ? 0 : await countLines(out) - printed0;
      const bpf1 = mode === "diag" ? await kupodPrograms() : [];
      stats?.[Symbol.dispose]();
      stats = undefined;
      const cores = cpu / wall;
      const run: Run = {
        load,
        mode,
        round,
        ...r,
        cores,
        coresPer10k: cores / (r.rps / 10_000),
        hwmBytes: vmBytes(kupod.pid, "VmHWM"),
        printed: mode === "diag" ? undefined : printed / wall,
      };
      if (mode === "diag") run.bpf = bpfDelta(programs, bpf0, bpf1);
      run.lost = await this.#stopKupod(kupod, programs, out, mode === "diag");
      run.lostPerSec = run.lost / wall;
      if (mode === "diag") {
        run.types = await countTypes(out);
        const m = kupod.stderr.text().match(/\[DEBUG\] socket: (\d+) events, (\d+) lost/);
        if (m) run.processed = Number(m[1]);
      }
      this.runs.push(run);
      return run;
    } finally {
      stats?.[Symbol.dispose]();
      if (!kupod.exited) {
        kupod.kill("SIGTERM");
        await kupod.wait(STOP_MS).catch(() => {});
      }
      await Deno.remove(out).catch(() => {});
    }
  }

  /** Stops whatever still runs (kupod with SIGTERM, so it detaches, then SIGKILL). */
  async cleanup(): Promise<void> {
    for (const p of [...this.#active]) {
      p.kill(p.name === "kupod" ? "SIGTERM" : "SIGKILL");
      await p.wait(STOP_MS).catch(() => {});
    }
    if (this.#tmp) await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
  }
}

/** HEAD and whether kupod's sources differ from it: what was measured. */
async function sourceVersion(): Promise<string> {
  const git = async (args: string[]) => {
    const out = await new Deno.Command("git", { args, cwd: ROOT, stdout: "piped", stderr: "null" })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : "";
  };
  const head = await git(["rev-parse", "--short", "HEAD"]);
  if (!head) return "unknown (not a git checkout)";
  const dirty = await git([
    "status",
    "--porcelain",
    "--",
    "kupod",
    "cli",
    "probes",
    "bpf",
    "k8s",
    "exporters",
    "mod.ts",
    "deno.json",
  ]);
  const n = dirty ? dirty.split("\n").length : 0;
  return n ? `${head} + ${n} uncommitted file(s) in kupod's sources` : head;
}

function softirqThreads(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/comm`).startsWith("ksoftirqd/")) {
        pids.push(Number(e.name));
      }
    } catch {
      // exited
    }
  }
  return pids;
}

/** Waits until the kernel has freed these programs (freeing is asynchronous after exit). */
async function waitProgramsGone(ids: number[]): Promise<void> {
  const want = new Set(ids);
  let left: BpfProg[] = [];
  for (const end = Date.now() + PROGRAMS_GONE_MS; Date.now() < end; await sleep(100)) {
    left = (await kupodPrograms()).filter((p) => want.has(p.id));
    if (!left.length) return;
  }
  throw new Error(`kupod's programs still loaded: ${left.map((p) => `${p.id} ${p.name}`)}`);
}

function bpfDelta(
  ours: BpfProg[],
  before: BpfProg[],
  after: BpfProg[],
): Record<string, { runs: number; ns: number }> {
  const ids = new Set(ours.map((p) => p.id));
  const start = new Map(before.map((p) => [p.id, p]));
  const out: Record<string, { runs: number; ns: number }> = {};
  for (const p of after) {
    if (!ids.has(p.id)) continue;
    const s = start.get(p.id);
    const e = (out[p.name] ??= { runs: 0, ns: 0 });
    e.runs += p.runCnt - (s?.runCnt ?? 0);
    e.ns += p.runTimeNs - (s?.runTimeNs ?? 0);
  }
  return out;
}

/** The first KBs of a file, "" while it does not exist. */
async function fileHead(path: string): Promise<string> {
  try {
    using f = await Deno.open(path);
    const buf = new Uint8Array(16 * 1024);
    const n = await f.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } catch {
    return "";
  }
}

/** Newlines in a file. */
async function countLines(path: string): Promise<number> {
  let n = 0;
  using f = await Deno.open(path);
  for await (const chunk of f.readable) {
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) n++;
  }
  return n;
}

/** Events per "type" of a JSON-lines file, read in chunks. */
async function countTypes(path: string): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const decoder = new TextDecoder();
  let rest = "";
  const count = (text: string) => {
    for (const m of text.matchAll(/"type":"(\w+)"/g)) counts[m[1]] = (counts[m[1]] ?? 0) + 1;
  };
  using f = await Deno.open(path);
  for await (const chunk of f.readable) {
    const text = rest + decoder.decode(chunk, { stream: true });
    const nl = text.lastIndexOf("\n");
    count(text.slice(0, nl + 1));
    rest = text.slice(nl + 1);
  }
  count(rest);
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Report

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const MB = 1 << 20;
const f = (x: number | undefined, digits: number) =>
  x === undefined || Number.isNaN(x) ? "-" : x.toFixed(digits);

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

function printRuns(runs: Run[]): void {
  const rows = [[
    "load",
    "mode",
    "round",
    "req/s",
    "p50 ms",
    "p99 ms",
    "sock err",
    "kupod cores",
    "cores/10k req/s",
    "peak RSS MB",
    "printed lines/s",
    "lost events/s",
    "other cores",
  ]];
  for (const r of runs) {
    rows.push([
      LOAD_NAME[r.load],
      r.mode,
      String(r.round),
      f(r.rps, 0),
      f(r.p50Ms, 2),
      f(r.p99Ms, 2),
      String(r.socketErrors),
      f(r.cores, 3),
      f(r.coresPer10k, 3),
      f(r.hwmBytes === undefined ? undefined : r.hwmBytes / MB, 1),
      f(r.printed, 0),
      f(r.lostPerSec, 0),
      f(r.otherCores, 2),
    ]);
  }
  console.log(table(rows));
}

interface Summary {
  ratio: number;
  per10k: number;
}

function summarize(load: Load, runs: Run[]): Summary | undefined {
  const off = runs.filter((r) => r.load === load && r.mode === "off");
  const on = runs.filter((r) => r.load === load && r.mode === "on");
  if (!off.length || !on.length) return undefined;
  const offRps = median(off.map((r) => r.rps));
  const onRps = median(on.map((r) => r.rps));
  const s = { ratio: onRps / offRps, per10k: median(on.map((r) => r.coresPer10k!)) };
  console.log(
    `${LOAD_NAME[load]}: median req/s off ${f(offRps, 0)} on ${f(onRps, 0)} ` +
      `(ratio ${f(s.ratio, 3)}; runs off ${off.map((r) => f(r.rps, 0)).join(" ")}, ` +
      `on ${on.map((r) => f(r.rps, 0)).join(" ")}); p99 ms off ${
        f(median(off.map((r) => r.p99Ms)), 2)
      } on ${f(median(on.map((r) => r.p99Ms)), 2)}; kupod ${
        f(median(on.map((r) => r.cores!)), 3)
      } cores = ${f(s.per10k, 3)} per 10k req/s; printed ${
        f(median(on.map((r) => r.printed!)), 0)
      } lines/s, lost ${f(median(on.map((r) => r.lostPerSec!)), 0)} events/s`,
  );
  return s;
}

function printDiag(r: Run): void {
  const perReq = (n: number) => n / r.requests;
  const types = Object.entries(r.types ?? {}).sort((a, b) => b[1] - a[1]);
  const events = types.reduce((a, [, n]) => a + n, 0);
  console.log(
    `${LOAD_NAME[r.load]}: ${f(r.rps, 0)} req/s; kupod ${f(r.cores, 3)} cores (${
      f(r.coresPer10k, 3)
    } per 10k req/s), peak RSS ${f(r.hwmBytes! / MB, 1)} MB; events written ${
      f(events / r.seconds, 0)
    }/s = ${f(perReq(events), 2)}/request (${
      types.map(([t, n]) => `${t} ${f(n / r.seconds, 0)}/s`).join(", ") || "none"
    }); processed ${r.processed ?? "?"}, lost ${r.lost} = ${f(r.lostPerSec, 0)}/s = ${
      f(perReq(r.lost!), 2)
    }/request`,
  );
  const progs = Object.entries(r.bpf ?? {}).sort((a, b) => b[1].ns - a[1].ns);
  const runs = progs.reduce((a, [, p]) => a + p.runs, 0);
  const ns = progs.reduce((a, [, p]) => a + p.ns, 0);
  console.log(
    `  BPF in the kernel: ${f(perReq(runs), 1)} program runs/request, ${
      f(perReq(ns) / 1000, 2)
    } us/request, ${f(ns / 1e9 / r.seconds, 3)} cores (${
      progs.map(([n, p]) =>
        `${n} ${f(perReq(p.runs), 2)}/req x ${f(p.runs ? p.ns / p.runs : 0, 0)} ns`
      ).join(", ")
    })`,
  );
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(Deno.args);
  } catch (e) {
    console.error(`Error: ${(e as Error).message}`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("Error: the socket bench needs root (BPF, netns, cgroups)");
    return 1;
  }
  for (const tool of ["wrk", "bpftool", "nginx"]) {
    const ok = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .output();
    if (!ok.success) {
      console.error(`Error: ${tool} is not installed (scripts/setup installs it)`);
      return 1;
    }
  }
  const foreign = await kupodPrograms();
  if (foreign.length) {
    console.log(
      `note: kupod programs of another process are loaded (${
        foreign.map((p) => p.name).join(", ")
      }): something else is running, figures may move`,
    );
  }

  let pod: TestPod | undefined;
  let bench: Bench | undefined;
  let interruptedEarly = false;
  const onSignal = () => {
    interruptedEarly = true;
    bench?.interrupt();
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  const started = performance.now();
  let failed = false;
  try {
    pod = await createTestPod({ upstreamKeepAlive: true });
    bench = new Bench(opts, pod);
    if (interruptedEarly) bench.interrupt();
    const o = opts;
    console.log(
      `socket bench: pod ${pod.name} ${pod.podIP} (veth ${pod.hostVeth}), ` +
        `wrk -t1 -c${o.connections}, ` +
        `${o.seconds} s runs: ${o.rounds} rounds keep-alive, ${o["close-rounds"]} ` +
        `connection-per-request, diagnostic ${
          o["diag-seconds"]
        } s; ${navigator.hardwareConcurrency} CPUs`,
    );
    console.log(`kupod: ${await sourceVersion()}`);
    await bench.warmUp();
    const log = (r: Run) =>
      console.error(
        `  ${LOAD_NAME[r.load]} ${r.mode} #${r.round}: ${f(r.rps, 0)} req/s` +
          (r.cores === undefined ? "" : `, kupod ${f(r.cores, 3)} cores`),
      );
    for (let i = 0; i < o.rounds; i++) {
      const order: Mode[] = i % 2 ? ["on", "off"] : ["off", "on"];
      for (const mode of order) log(await bench.run("keep-alive", mode, i + 1));
    }
    for (let i = 0; i < o["close-rounds"]; i++) {
      const order: Mode[] = i % 2 ? ["on", "off"] : ["off", "on"];
      for (const mode of order) log(await bench.run("close", mode, i + 1));
    }
    const diags: Run[] = [];
    if (o["diag-seconds"] > 0) {
      diags.push(await bench.run("keep-alive", "diag", 1));
      if (o["close-rounds"] > 0) diags.push(await bench.run("close", "diag", 1));
    }

    console.log("");
    printRuns(bench.runs);
    console.log("");
    const ka = summarize("keep-alive", bench.runs)!;
    const close = summarize("close", bench.runs);
    if (diags.length) {
      console.log("");
      console.log(
        "diagnostic (kupod --verbose --output json to a file, BPF run-time stats on; not in the " +
          "ratios):",
      );
      for (const d of diags) printDiag(d);
    }
    const other = Math.max(...bench.runs.map((r) => r.otherCores));
    if (other > 0.1) {
      console.log("");
      console.log(
        `note: other processes used up to ${f(other, 2)} cores during the runs ("other ` +
          `cores"): the host was not idle, the figures are disturbed`,
      );
    }
    const rss = Math.max(...bench.runs.filter((r) => r.mode === "on").map((r) => r.hwmBytes!));
    console.log("");
    console.log(`total ${f((performance.now() - started) / 1000, 0)} s`);
    console.log(
      `socket overhead: throughput ratio on/off = ${f(ka.ratio, 2)} (target >= 0.97) keep-alive` +
        (close ? `; ${f(close.ratio, 2)} connection-per-request` : ""),
    );
    console.log(
      `socket overhead: agent CPU = ${f(ka.per10k, 3)} cores per 10k req/s (target <= 0.1) ` +
        `keep-alive` + (close ? `; ${f(close.per10k, 3)} connection-per-request` : ""),
    );
    console.log(`socket overhead: agent RSS = ${f(rss / MB, 0)} MB (target <= 80)`);
  } catch (e) {
    failed = true;
    if (e instanceof Interrupted || interruptedEarly) console.error("socket bench: interrupted");
    else console.error(`Error: ${e instanceof Error ? e.stack ?? e.message : e}`);
  } finally {
    try {
      await bench?.cleanup();
      await pod?.dispose();
      const before = new Set(foreign.map((p) => p.id));
      await waitProgramsGone(
        (await kupodPrograms()).filter((p) => !before.has(p.id)).map((p) => p.id),
      );
    } catch (e) {
      failed = true;
      console.error(`Error: cleaning up: ${(e as Error).message}`);
    }
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, onSignal);
  }
  return interruptedEarly ? 130 : failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
