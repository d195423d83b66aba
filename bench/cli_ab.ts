/**
 * What an operator pays: the whole command line (`./kupod monitor <command> --veth <pod>`)
 * started before and stopped after each "on" window, under a load through the test pod's
 * sidecar, against adjacent "off" windows (ABBA order). Prints the throughput ratio's median
 * with its 90% interval, the agent's CPU per 10k requests (or calls) per second, its peak RSS
 * and the events it reported lost.
 *
 * The load is wrk through nginx or haproxy (keep-alive to the service), keep-alive or one
 * connection per request with --close, run for each window; or with --load grpc unary gRPC calls
 * from a grpc-go client (bench/grpc_load.ts) over a few channels, through an nginx grpc_pass
 * or haproxy `proto h2` sidecar to a grpc-go service, one continuous load whose calls are
 * counted at each window's bounds.
 *
 *   deno task bench:ab [--rounds N] [--seconds N] [--connections N] -- user http
 *   deno task bench:ab --sidecar haproxy --close -- kernel all   # any monitor command; --veth is added
 *   deno task bench:ab --load grpc [--channels N] [--inflight N] -- user grpc
 *
 * `--bpf-stats` adds one diagnostic window after the rounds, with the kernel's BPF run-time
 * statistics on (they slow every program, so no ratio comes from it): each kupod program's
 * runs and nanoseconds per request, to find where the kernel side's cost is.
 *
 * `--watch-netns NAME` runs the command on another network namespace (`--netns NAME`, one with
 * no traffic, e.g. from `ip netns add`) instead of the pod: a control whose "on" windows carry
 * the tracepoints' dispatch, the programs' first test and the agent, and none of the pod's work.
 *
 * `--until P` makes --rounds a maximum: the rounds stop once the 90% interval of the throughput
 * ratio is within ±P% of its median (checked from round 8 on, after whole ABBA pairs). On a
 * shared host the scatter between windows, not kupod, sets how many rounds that takes.
 *
 * `--null` starts nothing in the "on" windows (it waits as long as kupod's start does): the
 * ratio of two identical modes, the bench's own bias and scatter on this host.
 *
 * `--profile` adds two more windows, one without kupod and one with it, each sampled by
 * `perf record -a` (bench/perf_share.ts): kupod's share of the busy CPU (its kernel symbols
 * beyond the run without it, and its agent), the kernel share split into the tracepoints'
 * dispatch, the programs and the helpers they call, and each process's share of the busy CPU.
 * kupod's kernel work runs in the syscalls of the processes it watches: where one of them is
 * the load's bottleneck, its own share bounds the throughput, not the machine's.
 */

import {
  benchMain,
  dropRuns,
  f,
  interval,
  MB,
  measure,
  median,
  noteOtherLoad,
  pairedRatio,
  pairedRounds,
  parseOptions,
  type Runner,
  runWrk,
  sleep,
  softirqThreads,
  startKupod,
  stopKupod,
  UsageError,
  waitIdle,
} from "./overhead.ts";
import { buildGrpcGo, GrpcLoad } from "./grpc_load.ts";
import { enableBpfStats, kupodPrograms, vmBytes } from "./socket_proc.ts";
import { perfShare, type Profile, profiled } from "./perf_share.ts";
import type { TestContainerOptions, TestPod, TestPodOptions } from "../tests/helpers/pod.ts";

const HTTP_DEFAULTS = { rounds: 16, seconds: 5, connections: 32 };
const GRPC_DEFAULTS = { rounds: 16, seconds: 5, channels: 4, inflight: 32 };

interface Run {
  mode: "off" | "on";
  round: number;
  rps: number;
  kupodCpu: number;
  wall: number;
  rssBytes: number;
  lost: number;
  stealCores: number;
  otherCores: number;
  busyCores: number;
}

const SIDECARS = ["nginx", "haproxy"] as const;
/** Rounds before `--until` may stop: a bootstrap interval of fewer is not worth trusting. */
const MIN_ROUNDS_UNTIL = 8;
/** What an "on" window of `--null` waits before it starts: about kupod's start and settling. */
const NULL_START_MS = 3_000;
const LOADS = ["http", "grpc"] as const;

/** The value of `--name value` (or undefined), taken out of `args`. */
function take(args: string[], name: string): string | undefined {
  const at = args.indexOf(name);
  if (at < 0) return undefined;
  const [, value] = args.splice(at, 2);
  return value;
}

/** Whether the flag `name` was given, taken out of `args`. */
function flag(args: string[], name: string): boolean {
  const at = args.indexOf(name);
  if (at >= 0) args.splice(at, 1);
  return at >= 0;
}

function options() {
  const dash = Deno.args.indexOf("--");
  const command = dash < 0 ? [] : Deno.args.slice(dash + 1);
  if (!command.length) throw new UsageError("give the monitor command after --, e.g. -- user http");
  const args = dash < 0 ? [...Deno.args] : Deno.args.slice(0, dash);
  const close = flag(args, "--close");
  const bpfStats = flag(args, "--bpf-stats");
  const profile = flag(args, "--profile");
  const watchNetns = take(args, "--watch-netns");
  const untilArg = take(args, "--until");
  const until = untilArg === undefined ? undefined : Number(untilArg);
  if (until !== undefined && !(until > 0 && until < 50)) {
    throw new UsageError("--until takes the 90% interval's half-width in percent, e.g. 2");
  }
  const nullRun = flag(args, "--null");
  const sidecar = take(args, "--sidecar") ?? "nginx";
  if (!SIDECARS.includes(sidecar as typeof SIDECARS[number])) {
    throw new UsageError(`--sidecar must be one of ${SIDECARS.join(", ")}`);
  }
  const load = take(args, "--load") ?? "http";
  const common = { command, close, bpfStats, profile, watchNetns, nullRun, sidecar, load, until };
  if (load === "grpc") {
    if (close) throw new UsageError("--load grpc is keep-alive (long-lived channels)");
    return { ...parseOptions(GRPC_DEFAULTS, args), connections: 0, ...common } as const;
  }
  if (load !== "http") throw new UsageError(`--load must be one of ${LOADS.join(", ")}`);
  return { ...parseOptions(HTTP_DEFAULTS, args), channels: 0, inflight: 0, ...common } as const;
}

type Options = ReturnType<typeof options>;

/**
 * The bench pod: the sidecar asked for in front of the service, keep-alive between them; for
 * gRPC the fixtures built first, the service being the grpc-go server.
 */
async function podOf(opts: Options): Promise<TestPodOptions> {
  if (opts.load === "grpc") {
    const { server } = await buildGrpcGo();
    return {
      containers: [
        {
          name: "proxy",
          kind: opts.sidecar === "haproxy" ? "haproxy-grpc-proxy" : "nginx-grpc-proxy",
          port: 8080,
        },
        { name: "app", kind: "grpc-go", port: 9090, binary: server },
      ],
      upstreamKeepAlive: true,
    };
  }
  const proxy: TestContainerOptions = {
    name: "proxy",
    kind: opts.sidecar === "haproxy" ? "haproxy-proxy" : "nginx-proxy",
    port: 8080,
  };
  return {
    containers: [proxy, { name: "app", kind: "http" as const, port: 9090 }],
    upstreamKeepAlive: true,
  };
}

/** The load of the runs: one window's rate, and the processes whose CPU it is. */
interface Load {
  /** "req" or "calls", for the report. */
  unit: string;
  describe: string;
  pids: number[];
  window(): Promise<number>;
}

function wrkLoad(runner: Runner, opts: Options, pod: TestPod): Load {
  const url = `http://${pod.podIP}:${pod.container("proxy").port}/`;
  return {
    unit: "req",
    describe: `wrk -t1 -c${opts.connections} ${
      opts.close ? "a connection per request" : "keep-alive"
    } through ${opts.sidecar}, ${opts.rounds} rounds of ${opts.seconds} s windows`,
    pids: [],
    window: async () =>
      (await runWrk(runner, url, {
        connections: opts.connections,
        seconds: opts.seconds,
        close: opts.close,
      })).rps,
  };
}

/**
 * The gRPC load, started now and stopped at cleanup; the softirq threads count as its own
 * (it runs between windows too, so their share of its network work must not look like another
 * process's load).
 */
async function grpcLoad(runner: Runner, opts: Options, pod: TestPod): Promise<Load> {
  const { loadclient } = await buildGrpcGo();
  const addr = `${pod.podIP}:${pod.container("proxy").port}`;
  const client = await GrpcLoad.start(loadclient, addr, opts);
  runner.defer(() => client.stop());
  return {
    unit: "calls",
    describe: `grpc-go unary calls, ${opts.inflight} in flight over ${opts.channels} channels ` +
      `through ${
        opts.sidecar === "haproxy" ? "haproxy proto h2" : "nginx grpc_pass"
      } (one load for the whole bench), ${opts.rounds} rounds of ${opts.seconds} s windows`,
    pids: [client.pid, ...softirqThreads()],
    window: async () => {
      const a = await client.count();
      await sleep(opts.seconds * 1000);
      runner.check();
      const b = await client.count();
      if (b.errors > a.errors) {
        throw new Error(`${b.errors - a.errors} gRPC calls failed: ${client.stderr}`);
      }
      if (b.calls === a.calls) throw new Error(`no gRPC call completed: ${client.stderr}`);
      return (b.calls - a.calls) / (b.seconds - a.seconds);
    },
  };
}

/**
 * One window with the BPF run-time statistics on: per kupod program, its runs and nanoseconds
 * per request (or call) of the window, most expensive first.
 */
async function bpfStatsWindow(runner: Runner, args: string[], probe: string, load: Load) {
  const kupod = await startKupod(runner, args, await runner.tempPath("kupod-stats.out"));
  let rows: { name: string; runs: number; ns: number }[] = [];
  let requests = 0;
  {
    using _stats = enableBpfStats();
    const before = new Map((await kupodPrograms()).map((p) => [p.id, p]));
    const t0 = performance.now();
    const rate = await load.window();
    requests = rate * (performance.now() - t0) / 1000;
    rows = (await kupodPrograms()).map((p) => ({
      name: p.name,
      runs: p.runCnt - (before.get(p.id)?.runCnt ?? 0),
      ns: p.runTimeNs - (before.get(p.id)?.runTimeNs ?? 0),
    })).filter((r) => r.runs > 0).sort((a, b) => b.ns - a.ns);
  }
  await stopKupod(kupod, probe, false);
  const per = load.unit === "calls" ? "call" : "request";
  console.log("");
  console.log(`BPF run-time statistics, one window (~${f(requests, 0)} ${load.unit}):`);
  for (const r of rows) {
    console.log(
      `  ${r.name.padEnd(24)} ${f(r.runs / requests, 2)} runs, ${f(r.ns / r.runs, 0)} ns/run, ` +
        `${f(r.ns / requests, 0)} ns per ${per}`,
    );
  }
  const total = rows.reduce((n, r) => n + r.ns, 0);
  console.log(`  all programs: ${f(total / requests, 0)} ns per ${per}`);
}

/** kupod's kernel symbols by what they do: running a hook's programs, the programs, their helpers. */
function symbolGroup(sym: string): "dispatch" | "programs" | "helpers" {
  if (/^bpf_prog_/.test(sym)) return "programs";
  return /bpf_trace_run|rcu_read_|call_trace_|__traceiter_|nf_hook|tcx_|sch_handle/.test(sym)
    ? "dispatch"
    : "helpers";
}

/** Busy share per command of a profile, largest first. */
function commandShares(p: Profile): [string, number][] {
  const by = new Map<string, number>();
  for (const [where, n] of p.all) {
    const command = where.slice(0, where.lastIndexOf(" [")).trim();
    by.set(command, (by.get(command) ?? 0) + n);
  }
  return [...by].map(([c, n]) => [c, n / p.busy] as [string, number]).sort((a, b) => b[1] - a[1]);
}

/**
 * One window without kupod and one with it, each under `perf record -a`: kupod's share of the
 * busy CPU, where in the kernel it goes, and every process's share.
 */
async function profileWindows(
  runner: Runner,
  args: string[],
  probe: string,
  load: Load,
  seconds: number,
) {
  const off = await profiled(runner, seconds, async () => ({ rate: await load.window() }));
  const kupod = await startKupod(runner, args, await runner.tempPath("kupod-profile.out"));
  const on = await profiled(
    runner,
    seconds,
    async () => ({ rate: await load.window() }),
    kupod.proc.pid,
  );
  await stopKupod(kupod, probe, false);
  const share = perfShare(on.profile, off.profile);
  const groups = { dispatch: 0, programs: 0, helpers: 0 };
  for (const [sym, x] of share.bySymbol) groups[symbolGroup(sym)] += x;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  console.log("");
  console.log(`profile (perf -a; one window without kupod, one with it):`);
  console.log(`  ${share.text}`);
  console.log(
    `  kernel share by kind: dispatch ${pct(groups.dispatch)}, programs ${
      pct(groups.programs)
    }, helpers ${pct(groups.helpers)}`,
  );
  for (const [name, p] of [["off", off.profile], ["on", on.profile]] as const) {
    const top = commandShares(p).slice(0, 6).map(([c, x]) => `${c} ${pct(x)}`).join(", ");
    console.log(`  busy CPU by process, ${name} (${p.busy} samples): ${top}`);
  }
  console.log(`  ${load.unit}/s off ${f(off.rate, 0)}, on ${f(on.rate, 0)} (one window each)`);
}

/** Half the width of a ratio's 90% interval, relative to its median. */
function halfWidth(r: { ratio: number; interval: [number, number] }): number {
  const [lo, hi] = r.interval;
  return Number.isNaN(lo) ? Infinity : (hi - lo) / 2 / r.ratio;
}

/**
 * The pattern of the probe names whose lost events stopKupod counts: the probe named last in
 * the command, or any probe for a command naming a group.
 */
function lostProbe(command: string[]): string {
  const last = command.at(-1)!;
  return ["all", "user", "kernel"].includes(last) ? "[\\w-]+" : last;
}

const code = await benchMain("cli_ab", ["wrk"], options, async (runner, opts, pod) => {
  const watched = opts.watchNetns ? ["--netns", opts.watchNetns] : ["--veth", pod.hostVeth];
  const args = ["monitor", ...opts.command, ...watched, "--quiet"];
  const probe = lostProbe(opts.command);
  const load = opts.load === "grpc"
    ? await grpcLoad(runner, opts, pod)
    : wrkLoad(runner, opts, pod);
  const pids = [...pod.containers.flatMap((c) => c.pids()), ...load.pids];
  const runs: Run[] = [];
  let started = 0; // a round run again must not find the readiness line of its first try
  console.log(
    opts.nullRun ? "null run: nothing started in the on windows" : `./kupod ${args.join(" ")}`,
  );
  console.log(load.describe);
  const run = async (mode: "off" | "on", round: number): Promise<Run> => {
    await waitIdle(runner, pids);
    if (mode === "on" && opts.nullRun) await sleep(NULL_START_MS);
    const kupod = mode === "on" && !opts.nullRun
      ? await startKupod(runner, args, await runner.tempPath(`kupod-${++started}.out`))
      : undefined;
    const m = await measure(pids, kupod?.proc.pid, load.window);
    const rssBytes = kupod ? vmBytes(kupod.proc.pid, "VmHWM") : 0;
    const lost = kupod ? await stopKupod(kupod, probe, false) : 0;
    const r: Run = {
      mode,
      round,
      rps: m.value,
      kupodCpu: m.kupodCpu,
      wall: m.wall,
      rssBytes,
      lost,
      stealCores: m.stealCores,
      otherCores: m.otherCores,
      busyCores: m.busyCores,
    };
    runs.push(r);
    console.error(`  round ${round} ${mode}: ${f(r.rps, 0)} ${load.unit}/s`);
    return r;
  };
  const narrowEnough = (round: number) => {
    if (opts.until === undefined || round < MIN_ROUNDS_UNTIL) return false;
    return halfWidth(pairedRatio(runs, (r) => r.rps)) <= opts.until / 100;
  };
  const redone = await pairedRounds(
    opts.rounds,
    run,
    (gone) => dropRuns(runs, gone),
    narrowEnough,
  );
  const ratio = pairedRatio(runs, (r) => r.rps);
  const on = runs.filter((r) => r.mode === "on");
  const off = runs.filter((r) => r.mode === "off");
  const cpuPer10k = on.map((r) => (r.kupodCpu / r.wall) / (r.rps / 10_000));
  console.log("");
  console.log(
    `throughput on/off: ${f(ratio.ratio, 3)}${interval(ratio.interval, 3)} (median, 90% interval)`,
  );
  console.log(
    `${load.unit}/s off: ${f(median(off.map((r) => r.rps)), 0)} (median); on: ${
      f(median(on.map((r) => r.rps)), 0)
    }`,
  );
  console.log(
    `agent CPU per 10k ${load.unit}/s: ${f(median(cpuPer10k), 3)} cores; peak RSS ${
      f(Math.max(...on.map((r) => r.rssBytes)) / MB, 1)
    } MB; events lost ${on.reduce((n, r) => n + r.lost, 0)}`,
  );
  console.log(`rounds: ${ratio.rounds.map((x) => f(x, 3)).join(" ")}`);
  // the host's busy CPU per request, kupod's included: its cost without the load's idle gaps
  const cost = pairedRatio(runs, (r) => r.busyCores / r.rps);
  console.log(
    `busy CPU per ${load.unit.replace(/s$/, "")} on/off: ${f(cost.ratio, 3)}${
      interval(cost.interval, 3)
    } (median, 90% interval); busy cores off ${f(median(off.map((r) => r.busyCores)), 2)}, on ${
      f(median(on.map((r) => r.busyCores)), 2)
    }`,
  );
  if (opts.until !== undefined) {
    const hw = halfWidth(ratio);
    console.log(
      `${ratio.rounds.length} rounds: the 90% interval is ±${f(hw * 100, 1)}% of the median ` +
        (hw <= opts.until / 100
          ? `(asked: ±${opts.until}%)`
          : `(±${opts.until}% asked: more rounds needed)`),
    );
  }
  noteOtherLoad(runs.map((r) => r.otherCores), runs.map((r) => r.stealCores), redone);
  if (opts.bpfStats) {
    await waitIdle(runner, pids);
    await bpfStatsWindow(runner, args, probe, load);
  }
  if (opts.profile) {
    await waitIdle(runner, pids);
    await profileWindows(runner, args, probe, load, opts.seconds);
  }
}, podOf);

Deno.exit(code);
