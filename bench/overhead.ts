/**
 * What the probe overhead benches (socket.ts, stack.ts) share: their children, ended by pid on
 * Ctrl-C; the wait for a quiet host; the CPU accounting of a run; kupod started before and
 * stopped after an "on" run; wrk; and the formatting of their reports.
 */

import { createTestPod, type TestPod, type TestPodOptions } from "../tests/helpers/pod.ts";
import { freePort } from "../tests/helpers/process.ts";
import {
  type BpfProg,
  hostCpuSeconds,
  kupodPrograms,
  Proc,
  processTreeSeconds,
} from "./socket_proc.ts";

export const ROOT = new URL("../", import.meta.url).pathname;
const KUPOD = `${ROOT}kupod`;
const CHILD_ENV = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
const READY_MS = 60_000;
export const STOP_MS = 15_000;
const PROGRAMS_GONE_MS = 5_000;
const IDLE_WAIT_MS = 60_000;
const IDLE_CORES = 0.15;
/** After kupod is ready: its start-up work (target resolution, first reads, JIT) passes. */
const SETTLE_MS = 2_000;

export class UsageError extends Error {}
export class Interrupted extends Error {}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A bench's runs: without kupod ("off") and with it ("on"), paired in rounds for the ratios; with
 * BPF run-time statistics ("diag") and sampled by perf ("perf-off", "perf-on"), outside them.
 */
export type Mode = "off" | "on" | "diag" | "perf-off" | "perf-on";

export const withoutKupod = (mode: Mode) => mode === "off" || mode === "perf-off";

/** How long a run of `mode` lasts, by the bench's options. */
export function runSeconds(
  mode: Mode,
  opts: { seconds: number; "diag-seconds": number; "profile-seconds": number },
): number {
  if (mode === "diag") return opts["diag-seconds"];
  return mode.startsWith("perf") ? opts["profile-seconds"] : opts.seconds;
}

/** `--name N` / `--name=N` for every key of `defaults` (non-negative integers). */
export function parseOptions<T extends Record<string, number>>(defaults: T, args: string[]): T {
  const opts: Record<string, number> = { ...defaults };
  const usage = Object.keys(defaults).map((k) => `--${k} N`).join(" ");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const m = arg.match(/^--([a-z-]+)(?:=(.*))?$/);
    const name = m?.[1];
    const value = m?.[2] ?? args[++i];
    if (!name || !(name in opts) || value === undefined || !/^\d+$/.test(value)) {
      throw new UsageError(`bad option ${JSON.stringify(arg)}: use ${usage}`);
    }
    opts[name] = Number(value);
  }
  return opts as T;
}

/** The first of `tools` that is not on PATH. */
async function missingTool(tools: string[]): Promise<string | undefined> {
  for (const tool of tools) {
    const ok = await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`], stdout: "null" })
      .output();
    if (!ok.success) return tool;
  }
  return undefined;
}

/**
 * A bench's children and temp files. interrupt() (Ctrl-C, SIGTERM) ends the current run: every
 * child is signalled by pid, kupod with SIGTERM so that it detaches; the bench's finally calls
 * cleanup().
 */
export class Runner {
  readonly #active = new Set<Proc>();
  readonly #deferred: (() => Promise<void>)[] = [];
  interrupted = false;
  #tmp = "";

  interrupt(): void {
    this.interrupted = true;
    for (const p of this.#active) p.kill(p.name === "kupod" ? "SIGTERM" : "SIGKILL");
  }

  check(): void {
    if (this.interrupted) throw new Interrupted("interrupted");
  }

  spawn(name: string, cmd: string, args: string[]): Proc {
    this.check();
    const p = new Proc(name, cmd, args, CHILD_ENV);
    this.#active.add(p);
    p.status.then(() => this.#active.delete(p));
    return p;
  }

  /** A path in the bench's temp dir (made on first use, removed by cleanup()). */
  async tempPath(name: string): Promise<string> {
    this.#tmp ||= await Deno.makeTempDir({ prefix: "kupod-bench-" });
    return `${this.#tmp}/${name}`;
  }

  /** Ends `p` if it still runs: kupod with SIGTERM, so it detaches (SIGKILL if it hangs). */
  async stop(p: Proc): Promise<void> {
    if (p.exited) return;
    p.kill(p.name === "kupod" ? "SIGTERM" : "SIGKILL");
    await p.wait(STOP_MS).catch(() => {});
  }

  /** `dispose` runs in cleanup(), after the children have stopped (last deferred first). */
  defer(dispose: () => Promise<void>): void {
    this.#deferred.push(dispose);
  }

  /** Stops whatever still runs, runs what was deferred and removes the temp dir. */
  async cleanup(): Promise<void> {
    for (const p of [...this.#active]) await this.stop(p);
    const errors: string[] = [];
    for (const dispose of this.#deferred.splice(0).reverse()) {
      await dispose().catch((e) => errors.push((e as Error).message));
    }
    if (this.#tmp) await Deno.remove(this.#tmp, { recursive: true }).catch(() => {});
    if (errors.length) throw new Error(errors.join("; "));
  }
}

/**
 * A bench's main around `body`: its options parsed by `options` (a bad one is exit status 2),
 * root and `tools` checked, a note when kupod programs of another process are loaded, a test
 * pod made (nginx sidecar with upstream keep-alive in front of the service), Ctrl-C and SIGTERM
 * interrupt the runner; on any exit the runner and the pod are cleaned up and no program kupod
 * loaded meanwhile may be left. Returns the exit status: 0 when the body ran, 1 on errors, 130
 * when interrupted.
 */
export async function benchMain<O>(
  name: string,
  tools: string[],
  options: () => O,
  body: (runner: Runner, opts: O, pod: TestPod) => Promise<void>,
  podOptions: (opts: O) => TestPodOptions | Promise<TestPodOptions> = () => ({
    upstreamKeepAlive: true,
  }),
): Promise<number> {
  let opts: O;
  try {
    opts = options();
  } catch (e) {
    console.error(`Error: ${(e as Error).message}`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error(`Error: the ${name} bench needs root (BPF, netns, cgroups)`);
    return 1;
  }
  const missing = await missingTool(tools);
  if (missing) {
    console.error(`Error: ${missing} is not installed (scripts/setup installs it)`);
    return 1;
  }
  const foreign = await kupodPrograms();
  if (foreign.length) {
    console.log(
      `note: kupod programs of another process are loaded (${
        foreign.map((p) => p.name).join(", ")
      }): something else is running, figures may move`,
    );
  }
  const runner = new Runner();
  const onSignal = () => runner.interrupt();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, onSignal);
  let failed = false;
  try {
    const pod = await createTestPod(await podOptions(opts));
    runner.defer(() => pod.dispose());
    await body(runner, opts, pod);
  } catch (e) {
    failed = true;
    if (runner.interrupted) console.error(`${name} bench: interrupted`);
    else console.error(`Error: ${e instanceof Error ? e.stack ?? e.message : e}`);
  } finally {
    try {
      await runner.cleanup();
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
  return runner.interrupted ? 130 : failed ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/** ksoftirqd/N: the network work of a bench's traffic that softirqs defer to them. */
export function softirqThreads(): number[] {
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

/** CPU seconds of this process (with its reaped children) and of the trees of `pids`. */
function ourSeconds(pids: number[]): number {
  return processTreeSeconds(Deno.pid) + pids.reduce((a, pid) => a + processTreeSeconds(pid), 0);
}

export interface Measured<T> {
  value: T;
  wall: number;
  /** kupod's CPU seconds during the load (0 without kupod). */
  kupodCpu: number;
  /** CPU the host spent on anything but this bench, `pids` and kupod, in cores. */
  otherCores: number;
  /** CPU the whole host spent busy during the load, in cores. */
  busyCores: number;
  /**
   * CPU time the hypervisor gave to other machines, in cores: a host with steal runs slower
   * than it would, and unevenly from run to run.
   */
  stealCores: number;
}

/**
 * Runs `load` (which must reap what it spawns), with kupod's CPU time and the CPU time of the
 * host's other processes (all but this process, `pids` and kupod), both taken just before the
 * load starts and just after it ends.
 */
export async function measure<T>(
  pids: number[],
  kupod: number | undefined,
  load: () => Promise<T>,
): Promise<Measured<T>> {
  const ours = () => ourSeconds(kupod ? [...pids, kupod] : pids);
  // with the processes kupod ran and waited for (none while it only watches a pod)
  const kupod0 = kupod ? processTreeSeconds(kupod) : 0;
  const ours0 = ours();
  const host0 = hostCpuSeconds();
  const t0 = performance.now();
  const value = await load();
  const wall = (performance.now() - t0) / 1000;
  const host1 = hostCpuSeconds();
  const host = host1.busy - host0.busy;
  const mine = ours() - ours0;
  const kupodCpu = kupod ? processTreeSeconds(kupod) - kupod0 : 0;
  return {
    value,
    wall,
    kupodCpu,
    otherCores: Math.max(0, host - mine) / wall,
    busyCores: host / wall,
    stealCores: (host1.steal - host0.steal) / wall,
  };
}

/**
 * Waits (up to IDLE_WAIT_MS) until the host's processes other than this one and `pids` use
 * less than IDLE_CORES and the hypervisor takes at most MAX_STEAL cores, measured over 1 s: a
 * burst of someone else's tests or machines should not land in a run.
 */
export async function waitIdle(runner: Runner, pids: number[]): Promise<void> {
  let [other, steal] = [0, 0];
  for (const end = Date.now() + IDLE_WAIT_MS; Date.now() < end;) {
    const [host0, ours0, t0] = [hostCpuSeconds(), ourSeconds(pids), performance.now()];
    await sleep(1000);
    runner.check();
    const wall = (performance.now() - t0) / 1000;
    const host1 = hostCpuSeconds();
    other = Math.max(0, host1.busy - host0.busy - (ourSeconds(pids) - ours0)) / wall;
    steal = (host1.steal - host0.steal) / wall;
    if (other < IDLE_CORES && steal <= MAX_STEAL) return;
  }
  console.error(
    `  (host still busy after ${IDLE_WAIT_MS / 1000} s: ${f(other, 2)} other cores, ${
      f(steal, 2)
    } cores steal)`,
  );
}

/**
 * A run during which the hypervisor gave more than this many of the machine's cores to others
 * ("steal") ran on a slower and uneven host: its round is run again (pairedRounds).
 */
export const MAX_STEAL = 0.05;

/**
 * `rounds` rounds of one run without kupod and one with it, in ABBA order (off/on, on/off, ...)
 * so that a drift of the host favours neither mode. A round in which either run saw more than
 * MAX_STEAL cores of steal is run again, at most `rounds` times in all; `discard` takes its
 * runs out of the bench's. With `enough`, the rounds stop early once it says so (asked after
 * every second round). Returns the rounds run again, with the steal that spoiled them.
 */
export async function pairedRounds<R extends { stealCores: number }>(
  rounds: number,
  run: (mode: "off" | "on", round: number) => Promise<R>,
  discard: (runs: R[]) => void,
  enough?: (round: number) => boolean,
): Promise<Redone[]> {
  const redone: Redone[] = [];
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 ? ["off", "on"] as const : ["on", "off"] as const;
    const runs: R[] = [];
    for (const mode of order) runs.push(await run(mode, round));
    const steal = Math.max(...runs.map((r) => r.stealCores));
    if (steal > MAX_STEAL && redone.length < rounds) {
      console.error(`  round ${round}: ${f(steal, 2)} cores steal, run again`);
      discard(runs);
      redone.push({ round, steal });
      round--;
    } else if (round % 2 === 0 && enough?.(round)) {
      break; // whole ABBA pairs only, so that neither order weighs more
    }
  }
  return redone;
}

/** Takes `gone` out of `runs`. */
export function dropRuns<R>(runs: R[], gone: R[]): void {
  for (const r of gone) runs.splice(runs.indexOf(r), 1);
}

export interface Redone {
  round: number;
  steal: number;
}

// ---------------------------------------------------------------------------------------------
// kupod

export interface Kupod {
  proc: Proc;
  /** The programs it loaded. */
  programs: BpfProg[];
  /** Its stdout. */
  out: string;
  /** Its metrics endpoint's port. */
  port: number;
}

/**
 * Starts `./kupod <args> --exporter-port <free port>` with its stdout going to the file `out`
 * (as a container runtime writes a container's stdout to a file: a pipe read by this process
 * could stall kupod whenever this process waits for a CPU), waits for its "started!" line and
 * then SETTLE_MS more: what is measured is a running agent, not its start.
 */
export async function startKupod(runner: Runner, args: string[], out: string): Promise<Kupod> {
  const before = new Set((await kupodPrograms()).map((p) => p.id));
  // The metrics endpoint runs as in production, on a free port: the default (8765) may be
  // taken by another kupod on this host.
  const port = freePort();
  // sh and then the ./kupod launcher exec: the pid stays, and ends up Deno's
  const redirect = 'f=$1; shift; exec "$@" >"$f"';
  const proc = runner.spawn("kupod", "sh", [
    "-c",
    redirect,
    "sh",
    out,
    KUPOD,
    ...args,
    "--exporter-port",
    String(port),
  ]);
  for (const end = Date.now() + READY_MS;;) {
    // text output: the readiness line is on stdout, json: on stderr
    if (/started!/.test(proc.stderr.head) || /started!/.test(await fileHead(out))) break;
    if (proc.exited || Date.now() > end) {
      throw new Error(
        `kupod ${proc.exited ? "exited" : "not ready in time"}: ${proc.output()} | ` +
          `stdout: ${await fileHead(out)}`,
      );
    }
    await sleep(20);
    runner.check();
  }
  const comm = Deno.readTextFileSync(`/proc/${proc.pid}/comm`).trim();
  if (comm !== "deno") throw new Error(`kupod's pid ${proc.pid} is ${comm}, not Deno`);
  await sleep(SETTLE_MS);
  runner.check();
  // every probe's programs: kupod prints its readiness lines once all are attached
  const programs = (await kupodPrograms()).filter((p) => !before.has(p.id));
  if (!programs.length) throw new Error("kupod is ready but no kupod_* program was loaded");
  return { proc, programs, out, port };
}

/**
 * The CPU a latency bench puts both ends of its load on (`--pin 1`): each round trip is then
 * the kernel's work and two context switches, without waking an idle CPU (on a VM an exit to
 * the hypervisor and an interrupt, which varies with where the scheduler put the processes).
 */
export const PIN_CPU = 1;

/** `cmd` run on CPU `PIN_CPU` when `pin`, as it is otherwise. */
export function pinned(pin: boolean, cmd: string[]): string[] {
  return pin ? ["taskset", "-c", String(PIN_CPU), ...cmd] : cmd;
}

/**
 * SIGTERM; kupod must exit 0, warn of nothing but events lost by `probe`, and leave none of its
 * programs loaded once `afterExit` ran (what else must end first, e.g. connections that hold
 * the sk_msg program of --with-sockops). Returns the events it reported lost.
 */
export async function stopKupod(
  kupod: Kupod,
  probe: string,
  json: boolean,
  afterExit?: () => Promise<void>,
): Promise<number> {
  kupod.proc.kill("SIGTERM");
  const status = await kupod.proc.wait(STOP_MS);
  // text output: warnings are on stdout (the file), json: on stderr
  let logLines = kupod.proc.stderr.text().split("\n");
  if (!json) logLines = logLines.concat((await Deno.readTextFile(kupod.out)).split("\n"));
  if (status.code !== 0) {
    throw new Error(`kupod exited with ${status.code}: ${logLines.slice(-20).join(" | ")}`);
  }
  // Lost events are a result (the reader fell behind), any other warning is an error.
  let lost = 0;
  const lostLine = new RegExp(`^\\[WARN\\] ${probe}: (\\d+) events lost`);
  const warnings = logLines.filter((l) => {
    const m = l.match(lostLine);
    if (m) lost += Number(m[1]);
    return l.startsWith("[WARN]") && !m;
  });
  if (warnings.length) throw new Error(`kupod warned: ${warnings.join(" | ")}`);
  await afterExit?.();
  await waitProgramsGone(kupod.programs.map((p) => p.id));
  return lost;
}

/** Waits until the kernel has freed these programs (freeing is asynchronous after exit). */
export async function waitProgramsGone(ids: number[]): Promise<void> {
  const want = new Set(ids);
  let left: BpfProg[] = [];
  for (const end = Date.now() + PROGRAMS_GONE_MS; Date.now() < end; await sleep(100)) {
    left = (await kupodPrograms()).filter((p) => want.has(p.id));
    if (!left.length) return;
  }
  throw new Error(`kupod's programs still loaded: ${left.map((p) => `${p.id} ${p.name}`)}`);
}

/** Runs and run time of `ours` between two readings, per program name. */
export function bpfDelta(
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
export async function fileHead(path: string): Promise<string> {
  try {
    using f = await Deno.open(path);
    const buf = new Uint8Array(16 * 1024);
    const n = await f.read(buf);
    return new TextDecoder().decode(buf.subarray(0, n ?? 0));
  } catch {
    return "";
  }
}

/** HEAD and whether kupod's sources differ from it: what was measured. */
export async function sourceVersion(): Promise<string> {
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
    "base",
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

/** A counter of a network interface's statistics (/sys/class/net/<iface>/statistics/<name>). */
export function ifaceCounter(iface: string, name: string): number {
  return Number(Deno.readTextFileSync(`/sys/class/net/${iface}/statistics/${name}`));
}

// ---------------------------------------------------------------------------------------------
// wrk

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors: number;
  non2xx: number;
}

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

/**
 * `wrk -t1 -c<connections> -d<seconds>s --latency [-H "Connection: close"] <url>`; fails on
 * non-2xx replies, on more socket errors than a close run's connections cut at the deadline,
 * and on a run without requests.
 */
export async function runWrk(
  runner: Runner,
  url: string,
  o: { connections: number; seconds: number; close: boolean },
): Promise<WrkResult> {
  const args = ["-t1", `-c${o.connections}`, `-d${o.seconds}s`, "--latency"];
  if (o.close) args.push("-H", "Connection: close");
  const wrk = runner.spawn("wrk", "wrk", [...args, url]);
  const status = await wrk.wait((o.seconds + 30) * 1000);
  runner.check();
  const out = wrk.stdout.text();
  if (!status.success) throw new Error(`wrk exited with ${status.code}: ${wrk.output()}`);
  const r = parseWrk(out);
  if (r.non2xx > 0 || r.socketErrors > Math.max(o.connections, r.requests * 1e-4)) {
    throw new Error(`wrk run failed: ${out}`);
  }
  if (!(r.requests > 0)) throw new Error(`wrk made no requests: ${out}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Report

/**
 * The on/off ratio of `value` over paired runs: per round, the "on" run over the "off" run of
 * the same round (ABBA order runs them back to back), then the median over the rounds. Pairing
 * cancels a host whose speed drifts during the bench; the median drops a round a burst hit.
 */
export function pairedRatio<R extends { mode: string; round: number }>(
  runs: R[],
  value: (r: R) => number,
): { ratio: number; rounds: number[]; interval: [number, number] } {
  const rounds: number[] = [];
  for (const on of runs.filter((r) => r.mode === "on")) {
    const off = runs.find((r) => r.mode === "off" && r.round === on.round);
    if (off) rounds.push(value(on) / value(off));
  }
  return { ratio: median(rounds), rounds, interval: medianInterval(rounds) };
}

/**
 * A 90% interval of the median of `xs` by bootstrap: the median of the rounds drawn again with
 * replacement, many times, and the 5th and 95th percentiles of those medians (a fixed seed, so
 * the same rounds give the same interval). On a host whose runs scatter by more than the effect,
 * it says how far the rounds let the ratio be trusted: a target is met with confidence only if
 * the whole interval meets it. NaN for fewer than 3 rounds.
 */
export function medianInterval(xs: number[]): [number, number] {
  if (xs.length < 3) return [NaN, NaN];
  let seed = 0x2545f491;
  const draw = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return xs[Math.floor(seed / 2 ** 32 * xs.length)];
  };
  const medians = Array.from({ length: BOOTSTRAP_DRAWS }, () => median(xs.map(draw)))
    .sort((a, b) => a - b);
  return [
    medians[Math.floor(0.05 * BOOTSTRAP_DRAWS)],
    medians[Math.ceil(0.95 * BOOTSTRAP_DRAWS) - 1],
  ];
}

const BOOTSTRAP_DRAWS = 2000;

/** "[lo, hi]" of an interval, or "" when there is none. */
export function interval([lo, hi]: [number, number], digits: number): string {
  return Number.isNaN(lo) ? "" : ` [${lo.toFixed(digits)}, ${hi.toFixed(digits)}]`;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export const MB = 1 << 20;

export const f = (x: number | undefined, digits: number) =>
  x === undefined || Number.isNaN(x) ? "-" : x.toFixed(digits);

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

/**
 * kupod's share of the CPU time a diagnostic run kept busy: its programs' run time in the
 * kernel plus its own process. Where the load is CPU-bound (every bench here), that share is
 * the throughput kupod takes: a figure for the ratio that does not depend on comparing runs,
 * which a noisy host moves by more than the share itself. BPF run-time statistics add a clock
 * read or two per run, so the share is a little high.
 */
export function cpuShare(
  bpfCores: number,
  agentCores: number,
  busyCores: number,
): { share: number; text: string } {
  const share = (bpfCores + agentCores) / busyCores;
  return {
    share,
    text: `kupod's share of the busy CPU: ${f(share * 100, 1)}% (BPF ${f(bpfCores, 3)} + agent ${
      f(agentCores, 3)
    } of ${f(busyCores, 2)} busy cores): throughput ratio ${f(1 - share, 3)} at CPU-bound load`,
  };
}

/**
 * A note when processes outside the bench used CPU, or the hypervisor its CPUs; and the rounds
 * that were run again for steal.
 */
export function noteOtherLoad(otherCores: number[], stealCores: number[], redone: Redone[]): void {
  const other = Math.max(...otherCores);
  const steal = Math.max(...stealCores);
  if (other > 0.1) {
    console.log("");
    console.log(
      `note: other processes used up to ${f(other, 2)} cores during the runs ("other ` +
        `cores"): the host was not idle, the figures are disturbed`,
    );
  }
  if (steal > 0.05) {
    console.log("");
    console.log(
      `note: the hypervisor gave up to ${f(steal, 2)} cores of this machine to others during ` +
        `the runs ("steal"): rates moved with it; the ratios "per busy core" divide it out`,
    );
  }
  if (redone.length) {
    console.log("");
    console.log(
      `note: rounds run again for steal above ${MAX_STEAL} cores (their runs left out): ${
        redone.map((r) => `${r.round} (${f(r.steal, 2)})`).join(", ")
      }`,
    );
  }
}
