/**
 * kupod's share of the busy CPU from `perf record -a` samples of every CPU (perf from Debian's
 * linux-perf; without it the benches leave this figure out).
 *
 * The BPF run-time statistics (the benches' diagnostic runs) time each program run with two
 * clock reads, which a cheap program doubles, and see nothing of what the kernel does around
 * a run. Sampling adds nothing per run and sees all of it: the tracepoint dispatch
 * (bpf_trace_run*), the netfilter and TC glue that runs only while kupod's hooks are attached,
 * the helpers its programs call. kupod's kernel cost is the share of busy samples (any process
 * but kupod's) in such symbols with kupod on, minus the share of the same symbols in a run
 * without kupod (symbols such as bpf_lsm_* run either way); its agent is the share of samples
 * of its process. Where the load is CPU-bound, the sum is the throughput kupod takes, measured
 * within one run of each kind: a host whose speed drifts between runs moves it far less than
 * it moves a throughput ratio. What it cannot see: cache and lock effects kupod has on the
 * code around it.
 */

import { type Runner } from "./overhead.ts";

/**
 * Symbols of BPF programs, their dispatch (a tracepoint's call site and iterator, the RCU read
 * lock taken around a run), helpers and maps, and the hooks' glue.
 */
const KERNEL = new RegExp(
  "bpf|htab|ringbuf|local_storage|sk_storage|nf_hook|tcf_|cls_|tcx_|sch_handle|" +
    "call_trace_|__traceiter_|rcu_read_(un)?lock",
);
/** What an idle CPU runs (in pid 0, whose samples otherwise include interrupts on idle CPUs). */
const IDLE = /halt|idle|mwait|cpu_startup_entry/;
const FREQUENCY = 999;
let recordings = 0;

export interface Profile {
  /** Samples of a busy CPU. */
  busy: number;
  /** Of these, in KERNEL symbols outside kupod's process, by symbol. */
  kernel: Map<string, number>;
  /** Of these, in kupod's process (0 without it). */
  agent: number;
  /** All busy samples by "command [k]symbol" (or "[.]"), for a look beyond kupod's symbols. */
  all: Map<string, number>;
}

async function perfAvailable(): Promise<boolean> {
  const r = await new Deno.Command("perf", { args: ["--version"], stdout: "null", stderr: "null" })
    .output().catch(() => undefined);
  return r?.success ?? false;
}

/**
 * Runs `load` while perf samples every CPU, from its start for `seconds` - 1 s (the load lasts
 * `seconds`); its result comes with the profile (kupod's process: `agentPid`).
 */
export async function profiled<T extends object>(
  runner: Runner,
  seconds: number,
  load: () => Promise<T>,
  agentPid?: number,
): Promise<T & { profile: Profile }> {
  const path = await runner.tempPath(`perf-${++recordings}.data`);
  const perf = runner.spawn("perf", "perf", [
    "record",
    "-a",
    "-F",
    String(FREQUENCY),
    "-o",
    path,
    "--",
    "sleep",
    String(Math.max(1, seconds - 1)),
  ]);
  const value = await load();
  // perf names threads: the agent is all of its process's (the runtime's and V8's workers too)
  const agent = agentPid === undefined ? new Set<number>() : threadsOf(agentPid);
  const status = await perf.wait(30_000);
  runner.check();
  if (!status.success) throw new Error(`perf record failed: ${perf.output()}`);
  const profile = await readProfile(path, agent);
  await Deno.remove(path).catch(() => {});
  return { ...value, profile };
}

/** The thread ids of process `pid` now (none once it is gone). */
function threadsOf(pid: number): Set<number> {
  try {
    return new Set([...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name)));
  } catch {
    return new Set();
  }
}

async function readProfile(path: string, agent: Set<number>): Promise<Profile> {
  const out = await new Deno.Command("perf", {
    args: ["report", "-i", path, "-n", "--sort", "pid,sym", "--stdio", "--percent-limit", "0"]
      .concat(["-t", "\t"]),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) throw new Error(`perf report failed: ${new TextDecoder().decode(out.stderr)}`);
  const profile: Profile = { busy: 0, kernel: new Map(), agent: 0, all: new Map() };
  for (const line of text.split("\n")) {
    const cols = line.split("\t").map((c) => c.trim());
    if (line.startsWith("#") || cols.length < 4) continue;
    const samples = Number(cols[1]);
    const colon = cols[2].indexOf(":"); // "tid:command"
    const tid = Number(cols[2].slice(0, colon));
    const sym = cols[3].replace(/^\[.\]\s*/, "");
    if (!Number.isFinite(samples) || (tid === 0 && IDLE.test(sym))) continue;
    profile.busy += samples;
    const where = `${cols[2].slice(colon + 1)} ${cols[3]}`;
    profile.all.set(where, (profile.all.get(where) ?? 0) + samples);
    if (agent.has(tid)) profile.agent += samples;
    else if (cols[3].startsWith("[k]") && kupodSymbol(sym)) {
      profile.kernel.set(sym, (profile.kernel.get(sym) ?? 0) + samples);
    }
  }
  if (!profile.busy) throw new Error(`perf recorded no busy sample: ${text.slice(0, 200)}`);
  return profile;
}

export interface PerfShare {
  /** kupod's share of the busy CPU: kernel + agent. */
  share: number;
  kernel: number;
  /** The kernel share by symbol (on minus off), largest first. */
  bySymbol: (readonly [string, number])[];
  agent: number;
  text: string;
}

/** Whether `sym` (without "[k] ") is one of the symbols counted as kupod's in the kernel. */
export function kupodSymbol(sym: string): boolean {
  return KERNEL.test(sym);
}

/** kupod's share from a profile with it (`on`) and one without (`off`) under the same load. */
export function perfShare(on: Profile, off: Profile): PerfShare {
  const shareOf = (p: Profile, sym: string) => (p.kernel.get(sym) ?? 0) / p.busy;
  const symbols = new Set([...on.kernel.keys(), ...off.kernel.keys()]);
  const bySymbol = [...symbols].map((s) => [s, shareOf(on, s) - shareOf(off, s)] as const)
    .sort((a, b) => b[1] - a[1]);
  const kernel = bySymbol.reduce((a, [, x]) => a + x, 0);
  const agent = on.agent / on.busy;
  const share = kernel + agent;
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const top = bySymbol.slice(0, 6).map(([s, x]) => `${s} ${pct(x)}`).join(", ");
  return {
    share,
    kernel,
    bySymbol,
    agent,
    text: `kupod's share of the busy CPU (perf samples): ${pct(share)} (kernel ${pct(kernel)}, ` +
      `agent ${pct(agent)}; ${on.busy} and ${off.busy} busy samples on and off; most: ${top}): ` +
      `throughput ratio ${(1 - share).toFixed(3)} at CPU-bound load`,
  };
}

/**
 * kupod's share per load: for each of `loads` one run without kupod and one with it, made by
 * `run` with the profile of the run. Undefined when profiles are off (`seconds` 0) or perf is
 * missing.
 */
export async function profileLoads<L extends string>(
  loads: L[],
  seconds: number,
  run: (load: L, mode: "perf-off" | "perf-on") => Promise<{ profile?: Profile }>,
): Promise<Partial<Record<L, PerfShare>> | undefined> {
  if (seconds <= 0 || !await perfAvailable()) return undefined;
  const shares: Partial<Record<L, PerfShare>> = {};
  for (const load of loads) {
    const off = await run(load, "perf-off");
    const on = await run(load, "perf-on");
    shares[load] = perfShare(on.profile!, off.profile!);
  }
  return shares;
}

/** The profile section of a bench's report: a line per load (named by `name`). */
export function printProfiles<L extends string>(
  shares: Partial<Record<L, PerfShare>> | undefined,
  seconds: number,
  name: (load: L) => string,
): void {
  if (!shares) {
    if (seconds > 0) console.log("\nprofile: skipped, perf is not installed");
    return;
  }
  console.log("");
  console.log('profile (perf -a, one run without kupod and one as in the "on" runs):');
  for (const [load, share] of Object.entries(shares) as [L, PerfShare][]) {
    console.log(`${name(load)}: ${share.text}`);
  }
}
