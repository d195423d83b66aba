/**
 * Socket probe overhead bench: what `kupod monitor kernel socket` costs a pod under HTTP load,
 * measured against the same pod without kupod, in one invocation.
 *
 *   deno task bench:socket [--rounds 5] [--seconds 8] [--close-rounds 1] [--connections 32]
 *                          [--warmup-seconds 5] [--interleave-pairs 600] [--diag-seconds 8]
 *                          [--diag-verbose 0] [--profile-seconds 8] [--all 0]
 *
 * `--all 1` measures `kupod monitor kernel all` (socket and stack with one exporter: the whole
 * agent, as DESIGN.md's overhead target puts it) instead of the socket probe alone.
 *
 * Needs root, wrk, nginx, bpftool and the BPF objects (deno task bpf). ~10 min with the
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
 *      for its "started!" line and 2 s more (its start is not what is measured), and stops it
 *      with SIGTERM after the run (it must exit 0, warn of nothing but lost events and leave
 *      none of its programs loaded);
 *   3. connection-per-request: the same with `-H "Connection: close"` for `close-rounds`
 *      rounds: a new TCP connection (accept, close) per request, the probe's connection path;
 *   4. keep-alive, interleaved (`--interleave-pairs 0` skips it; not with `--all 1`): the
 *      socket probe's BPF object is loaded as kupod loads it and its programs are switched on
 *      and off every 250 ms under one continuous load, `interleave-pairs` pairs of windows
 *      (bench/socket_interleave.ts): the kernel's share of the cost, resolved to ~1%, which
 *      the runs of step 2 cannot do on a VM (their pairs lie ~15 s apart);
 *   5. diagnostic (not part of the ratios; `--diag-seconds 0` skips it): one run per load
 *      with the kernel's BPF run-time statistics on (BPF_ENABLE_STATS, off again once its fd
 *      is closed): what the BPF programs cost in the kernel, in the context of nginx, the
 *      service and the softirqs - a cost kupod's own CPU time does not contain. kupod runs as
 *      in the "on" runs; with `--diag-verbose 1` it runs with `--verbose --output json`
 *      instead, which also sends closes and per-request sidecar timings to the ring, and the
 *      events it wrote are counted per type;
 *   6. profile (not in the ratios; `--profile-seconds 0` skips it, as does a host without
 *      perf): per load one run without kupod and one as in the "on" runs, each sampled by
 *      `perf record -a`: kupod's share of the busy CPU with what the statistics miss
 *      (tracepoint dispatch, helpers outside the programs) and without what they add (see
 *      bench/perf_share.ts);
 *   7. prints the kupod sources measured (HEAD, and how many of their files differ), every
 *      run, a summary per load and three final lines:
 *        socket overhead: throughput ratio on/off = R [lo, hi] (target >= 0.97) keep-alive: ...
 *        socket overhead: agent CPU = C cores per 10k req/s (target <= 0.1) keep-alive; C' ...
 *        socket overhead: agent RSS = M MB (target <= 80)
 *      and kupod's share of the busy CPU, from the diagnostic runs (cpuShare in overhead.ts) and
 *      from the profile
 *
 * Figures: the keep-alive ratio R is the interleaved kernel ratio (median over the pairs of
 * on / off, 90% bootstrap interval) times 1 - the agent's share of the busy CPU (kupod's cores
 * over the host's busy cores in the "on" runs, median: at a CPU-bound load the agent's CPU is
 * throughput the pod does not get); the paired runs' own ratio follows it as "sequential runs",
 * and is R itself without the interleaved step. requests/s are wrk's; a load's sequential ratio
 * is the median over its rounds of on / off of the round (pairedRatio in overhead.ts);
 * median(on) / median(off) is printed too, a 90% interval of the ratio by bootstrap of the rounds
 * ("[lo, hi]", medianInterval in overhead.ts), and the ratio "per busy core": the same of req/s
 * divided by the host's busy CPU during the run. On a virtual
 * machine whose hypervisor takes CPU time for others ("steal", from /proc/stat, per run) the rate
 * follows the CPU left; per busy core divides that out. Agent CPU is
 * utime + stime of kupod's process (all threads; ./kupod is a bash launcher that execs Deno,
 * so its pid is Deno's) and of the children it waited for, from /proc/<pid>/stat, the delta
 * between just before wrk starts and just after it ends, divided by that wall time (= cores),
 * then per 10k requests/s of that run (median over runs). Agent RSS is VmHWM (peak resident
 * set, MiB) of /proc/<pid>/status just before SIGTERM, the highest of all "on" runs. Per run,
 * besides: wrk's p50/p99 latency, the lines kupod printed, the events it reported lost (ring
 * buffer full: a result, not an error, but its CPU figure then covers less work), and "other
 * cores": the host's busy CPU time (/proc/stat) minus that of this process, wrk, the pod,
 * kupod and ksoftirqd, per second - load from outside the bench (another test run or bench),
 * which moves every figure. Before each run the bench waits (up to 60 s) until that outside
 * load is below 0.15 cores and steal at most 0.05 cores for 1 s; a round in which either run saw
 * more steal than that is run again (pairedRounds in overhead.ts), its runs left out.
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

import type { TestPod } from "../tests/helpers/pod.ts";
import {
  benchMain,
  bpfDelta,
  cpuShare,
  dropRuns,
  f,
  interval,
  type Kupod,
  MB,
  measure,
  median,
  medianInterval,
  type Mode,
  noteOtherLoad,
  pairedRatio,
  pairedRounds,
  parseOptions,
  type Redone,
  Runner,
  runSeconds,
  runWrk,
  softirqThreads,
  sourceVersion,
  startKupod,
  stopKupod,
  table,
  UsageError,
  waitIdle,
  withoutKupod,
  type WrkResult,
} from "./overhead.ts";
import { printProfiles, type Profile, profiled, profileLoads } from "./perf_share.ts";
import { enableBpfStats, kupodPrograms, vmBytes } from "./socket_proc.ts";
import {
  interleave,
  type Interleaved,
  type InterleaveOptions,
  printInterleaved,
} from "./socket_interleave.ts";

const CLOSE_WARMUP_SECONDS = 2;

const DEFAULTS = {
  rounds: 5,
  seconds: 8,
  "close-rounds": 1,
  connections: 32,
  "warmup-seconds": 5,
  "diag-seconds": 8,
  "diag-verbose": 0,
  "profile-seconds": 8,
  "interleave-pairs": 600,
  all: 0,
};
type Options = typeof DEFAULTS;

/** The interleaved measurement's windows (bench/socket_interleave.ts). */
const INTERLEAVE_WINDOW_MS = 250;
const INTERLEAVE_SETTLE_MS = 50;

type Load = "keep-alive" | "close";

const LOAD_NAME: Record<Load, string> = {
  "keep-alive": "keep-alive",
  close: "connection-per-request",
};

interface Run extends WrkResult {
  otherCores: number;
  busyCores: number;
  stealCores: number;
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
  /** perf-off and perf-on only. */
  profile?: Profile;
}

function checkOptions(opts: Options): Options {
  if (opts.rounds < 1) throw new UsageError("--rounds must be >= 1");
  if (opts.seconds < 1) throw new UsageError("--seconds must be >= 1");
  if (opts.connections < 1) throw new UsageError("--connections must be >= 1");
  if (opts["interleave-pairs"] !== 0 && opts["interleave-pairs"] < 3) {
    throw new UsageError("--interleave-pairs must be 0 or >= 3");
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// The bench

class Bench {
  readonly runs: Run[] = [];
  #starts = 0;
  readonly #softirqPids = softirqThreads();

  constructor(readonly opts: Options, readonly pod: TestPod, readonly runner: Runner) {}

  /** The pod's processes and the softirq threads: CPU the bench's load causes. */
  #loadPids(): number[] {
    return [...this.pod.containers.flatMap((c) => c.pids()), ...this.#softirqPids];
  }

  /**
   * One wrk run, with kupod's CPU time (if `kupod` is given) and the host's other CPU time;
   * sampled by perf if `profile`.
   */
  async #wrk(load: Load, seconds: number, kupod?: number, profile = false) {
    const wrk = () =>
      runWrk(this.runner, this.pod.url(8080), {
        connections: this.opts.connections,
        seconds,
        close: load === "close",
      }).catch((e) => {
        throw this.runner.interrupted ? e : new Error(`${load}: ${(e as Error).message}`);
      });
    const { value, ...m } = await measure(
      this.#loadPids(),
      kupod,
      () => profile ? profiled(this.runner, seconds, wrk, kupod) : wrk(),
    );
    return { ...value, ...m };
  }

  get #probes(): string {
    return this.opts.all ? "all" : "socket";
  }

  async warmUp(): Promise<void> {
    const { "warmup-seconds": ka, "close-rounds": closeRounds } = this.opts;
    if (ka > 0) await this.#wrk("keep-alive", ka);
    if (closeRounds > 0) await this.#wrk("close", CLOSE_WARMUP_SECONDS);
  }

  /** A diagnostic run of kupod with --verbose --output json (`--diag-verbose 1`). */
  #verbose(mode: Mode): boolean {
    return mode === "diag" && this.opts["diag-verbose"] > 0;
  }

  #startKupod(mode: Mode, out: string): Promise<Kupod> {
    const args = ["monitor", "kernel", this.#probes, "--veth", this.pod.hostVeth];
    args.push(...(this.#verbose(mode) ? ["--verbose", "--output", "json"] : ["--quiet"]));
    return startKupod(this.runner, args, out);
  }

  async run(load: Load, mode: Mode, round: number): Promise<Run> {
    const seconds = runSeconds(mode, this.opts);
    const profile = mode.startsWith("perf");
    await waitIdle(this.runner, this.#loadPids());
    if (withoutKupod(mode)) {
      const { wall: _w, kupodCpu: _c, ...r } = await this.#wrk(load, seconds, undefined, profile);
      const run = { load, mode, round, ...r };
      this.runs.push(run);
      return run;
    }
    const out = await this.runner.tempPath(`kupod-${++this.#starts}.out`);
    const kupod = await this.#startKupod(mode, out);
    let stats: Disposable | undefined;
    try {
      if (mode === "diag") stats = enableBpfStats();
      const bpf0 = mode === "diag" ? await kupodPrograms() : [];
      const printed0 = mode === "diag" ? 0 : await countLines(out);
      const { wall, kupodCpu: cpu, ...r } = await this.#wrk(
        load,
        seconds,
        kupod.proc.pid,
        profile,
      );
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
        hwmBytes: vmBytes(kupod.proc.pid, "VmHWM"),
        printed: mode === "diag" ? undefined : printed / wall,
      };
      if (mode === "diag") run.bpf = bpfDelta(kupod.programs, bpf0, bpf1);
      run.lost = await stopKupod(kupod, "(?:socket|stack)", this.#verbose(mode));
      run.lostPerSec = run.lost / wall;
      if (this.#verbose(mode)) {
        run.types = await countTypes(out);
        const m = kupod.proc.stderr.text().match(/\[DEBUG\] socket: (\d+) events, (\d+) lost/);
        if (m) run.processed = Number(m[1]);
      }
      this.runs.push(run);
      return run;
    } finally {
      stats?.[Symbol.dispose]();
      await this.runner.stop(kupod.proc);
      await Deno.remove(out).catch(() => {});
    }
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
    "steal",
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
      f(r.stealCores, 2),
    ]);
  }
  console.log(table(rows));
}

interface Summary {
  /** Kupod's CPU over the host's busy CPU in the "on" runs (median). */
  agentShare: number;
  ratio: number;
  /** 90% bootstrap interval of `ratio` (medianInterval in overhead.ts). */
  interval: [number, number];
  /** The same of the rate per busy core (host busy CPU, steal not included). */
  perCore: number;
  per10k: number;
}

function summarize(load: Load, runs: Run[]): Summary | undefined {
  const off = runs.filter((r) => r.load === load && r.mode === "off");
  const on = runs.filter((r) => r.load === load && r.mode === "on");
  if (!off.length || !on.length) return undefined;
  const offRps = median(off.map((r) => r.rps));
  const onRps = median(on.map((r) => r.rps));
  const paired = pairedRatio([...off, ...on], (r) => r.rps);
  const perCore = pairedRatio([...off, ...on], (r) => r.rps / r.busyCores);
  const s = {
    agentShare: median(on.map((r) => r.cores! / r.busyCores)),
    ratio: paired.ratio,
    interval: paired.interval,
    perCore: perCore.ratio,
    per10k: median(on.map((r) => r.coresPer10k!)),
  };
  console.log(
    `${LOAD_NAME[load]}: ratio ${f(s.ratio, 3)}${
      interval(paired.interval, 3)
    } (90% interval; median of rounds ${
      paired.rounds.map((x) => f(x, 3)).join(" ")
    }; median req/s off ${f(offRps, 0)} on ${f(onRps, 0)}: ${f(onRps / offRps, 3)}; runs off ${
      off.map((r) => f(r.rps, 0)).join(" ")
    }, on ${on.map((r) => f(r.rps, 0)).join(" ")}); p99 ms off ${
      f(median(off.map((r) => r.p99Ms)), 2)
    } on ${f(median(on.map((r) => r.p99Ms)), 2)}; kupod ${
      f(median(on.map((r) => r.cores!)), 3)
    } cores = ${f(s.per10k, 3)} per 10k req/s; printed ${
      f(median(on.map((r) => r.printed!)), 0)
    } lines/s, lost ${f(median(on.map((r) => r.lostPerSec!)), 0)} events/s; per busy core: ratio ${
      f(s.perCore, 3)
    }${interval(perCore.interval, 3)} (median of rounds ${
      perCore.rounds.map((x) => f(x, 3)).join(" ")
    })`,
  );
  return s;
}

/** Prints a diagnostic run; returns kupod's share of the busy CPU. */
function printDiag(r: Run): number {
  const perReq = (n: number) => n / r.requests;
  const types = Object.entries(r.types ?? {}).sort((a, b) => b[1] - a[1]);
  const events = types.reduce((a, [, n]) => a + n, 0);
  const written = r.types
    ? `events written ${f(events / r.seconds, 0)}/s = ${f(perReq(events), 2)}/request (${
      types.map(([t, n]) => `${t} ${f(n / r.seconds, 0)}/s`).join(", ") || "none"
    }); processed ${r.processed ?? "?"}, `
    : "";
  console.log(
    `${LOAD_NAME[r.load]}: ${f(r.rps, 0)} req/s; kupod ${f(r.cores, 3)} cores (${
      f(r.coresPer10k, 3)
    } per 10k req/s), peak RSS ${f(r.hwmBytes! / MB, 1)} MB; ${written}lost ${r.lost} = ${
      f(r.lostPerSec, 0)
    }/s = ${f(perReq(r.lost!), 2)}/request`,
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
  const share = cpuShare(ns / 1e9 / r.seconds, r.cores!, r.busyCores);
  console.log(`  ${share.text}`);
  return share.share;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const options = () => checkOptions(parseOptions(DEFAULTS, Deno.args));
  return await benchMain(
    "socket",
    ["wrk", "bpftool", "nginx"],
    options,
    async (runner, opts, pod) => {
      const bench = new Bench(opts, pod, runner);
      const o = opts;
      console.log(
        `socket bench (monitor kernel ${o.all ? "all" : "socket"}): ` +
          `pod ${pod.name} ${pod.podIP} (veth ${pod.hostVeth}), ` +
          `wrk -t1 -c${o.connections}, ` +
          `${o.seconds} s runs: ${o.rounds} rounds keep-alive, ${o["close-rounds"]} ` +
          `connection-per-request, diagnostic ${
            o["diag-seconds"]
          } s; ${navigator.hardwareConcurrency} CPUs`,
      );
      console.log(`kupod: ${await sourceVersion()}`);
      await bench.warmUp();
      const log = (r: Run) => {
        console.error(
          `  ${LOAD_NAME[r.load]} ${r.mode} #${r.round}: ${f(r.rps, 0)} req/s` +
            (r.cores === undefined ? "" : `, kupod ${f(r.cores, 3)} cores`),
        );
        return r;
      };
      const redone: Redone[] = [];
      for (
        const [load, rounds] of [["keep-alive", o.rounds], ["close", o["close-rounds"]]] as const
      ) {
        redone.push(
          ...await pairedRounds(
            rounds,
            async (mode, round) => log(await bench.run(load, mode, round)),
            (runs) => dropRuns(bench.runs, runs),
          ),
        );
      }
      // the kernel programs' cost, switched under one load: what the paired runs above cannot
      // resolve on a VM (bench/socket_interleave.ts); `monitor kernel all` has no such mode
      const io: InterleaveOptions = {
        pairs: o["interleave-pairs"],
        windowMs: INTERLEAVE_WINDOW_MS,
        settleMs: INTERLEAVE_SETTLE_MS,
        connections: o.connections,
      };
      let inter: Interleaved | undefined;
      if (io.pairs > 0 && !o.all) {
        console.error(
          `  keep-alive: ${io.pairs} pairs of ${io.windowMs} ms windows, socket programs ` +
            `switched under one load`,
        );
        await waitIdle(runner, pod.containers.flatMap((c) => c.pids()));
        inter = await interleave(runner, pod, io);
      }
      const diags: Run[] = [];
      const shares: Partial<Record<Load, number>> = {};
      if (o["diag-seconds"] > 0) {
        diags.push(await bench.run("keep-alive", "diag", 1));
        if (o["close-rounds"] > 0) diags.push(await bench.run("close", "diag", 1));
      }
      const loads: Load[] = o["close-rounds"] > 0 ? ["keep-alive", "close"] : ["keep-alive"];
      const profiles = await profileLoads(
        loads,
        o["profile-seconds"],
        (load, mode) => bench.run(load, mode, 1),
      );

      console.log("");
      printRuns(bench.runs);
      console.log("");
      const ka = summarize("keep-alive", bench.runs)!;
      const close = summarize("close", bench.runs);
      if (inter) {
        console.log("");
        console.log(
          `keep-alive, the socket programs switched every ${io.windowMs} ms under one load ` +
            `(kernel only; not in the runs above):`,
        );
        printInterleaved(inter, io);
      }
      if (diags.length) {
        console.log("");
        console.log(
          `diagnostic (kupod ${
            o["diag-verbose"] ? "--verbose --output json" : "--quiet"
          } to a file, BPF run-time stats on; not in the ratios):`,
        );
        for (const d of diags) shares[d.load] = printDiag(d);
      }
      printProfiles(profiles, o["profile-seconds"], (load) => LOAD_NAME[load]);
      noteOtherLoad(
        bench.runs.map((r) => r.otherCores),
        bench.runs.map((r) => r.stealCores),
        redone,
      );
      const rss = Math.max(...bench.runs.filter((r) => r.mode === "on").map((r) => r.hwmBytes!));
      console.log("");
      console.log(`total ${f((performance.now() - started) / 1000, 0)} s`);
      const what = o.all ? "monitor kernel all" : "socket";
      const sequential = `${f(ka.ratio, 2)}${interval(ka.interval, 2)}`;
      const agent = 1 - ka.agentShare;
      console.log(
        `${what} overhead: throughput ratio on/off = ` +
          (inter
            ? `${f(median(inter.ratios) * agent, 3)}${
              interval(medianInterval(inter.ratios).map((x) => x * agent) as [number, number], 3)
            } (target >= 0.97) keep-alive: kernel programs interleaved ${
              f(median(inter.ratios), 3)
            } x agent ${f(agent, 3)} (1 - its share of the busy CPU); sequential runs ${sequential}`
            : `${sequential} (target >= 0.97) keep-alive`) +
          (close ? `; ${f(close.ratio, 2)} connection-per-request` : "") +
          `; per busy core ${f(ka.perCore, 2)} keep-alive` +
          (close ? `, ${f(close.perCore, 2)} connection-per-request` : ""),
      );
      console.log(
        `${what} overhead: agent CPU = ${f(ka.per10k, 3)} cores per 10k req/s (target <= 0.1) ` +
          `keep-alive` + (close ? `; ${f(close.per10k, 3)} connection-per-request` : ""),
      );
      console.log(`${what} overhead: agent RSS = ${f(rss / MB, 0)} MB (target <= 80)`);
      if (shares["keep-alive"] !== undefined) {
        console.log(
          `${what} overhead: share of the busy CPU (diagnostic) = ${
            f(shares["keep-alive"] * 100, 1)
          }% keep-alive` +
            (shares.close !== undefined
              ? `; ${f(shares.close * 100, 1)}% connection-per-request`
              : ""),
        );
      }
      if (profiles?.["keep-alive"]) {
        console.log(
          `${what} overhead: share of the busy CPU (perf) = ${
            f(profiles["keep-alive"].share * 100, 1)
          }% keep-alive` +
            (profiles.close ? `; ${f(profiles.close.share * 100, 1)}% connection-per-request` : ""),
        );
      }
    },
  );
}

if (import.meta.main) Deno.exit(await main());
