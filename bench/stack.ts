/**
 * Stack probe overhead bench: what `kupod monitor kernel stack` costs traffic into a pod,
 * measured against the same pod without kupod, in one invocation.
 *
 *   deno task bench:stack [--rounds 5] [--seconds 8] [--connections 32] [--streams 1]
 *                         [--warmup-seconds 5] [--diag-seconds 8] [--profile-seconds 8]
 *                         [--duty-percent 10]
 *
 * Needs root, wrk, nginx, bpftool and the BPF objects (deno task bpf). ~5.5 min with the
 * defaults:
 *   1. makes a test pod (tests/helpers/pod.ts: netns, veth, kubelet-shaped cgroups, nginx
 *      sidecar on 8080 with upstream keep-alive in front of the Deno HTTP service on 9090) and
 *      starts a TCP sink (bench/tcp_stream.ts) in the pod's netns; warms both up
 *      (`warmup-seconds` of wrk, 2 s of stream: JIT, nginx's upstream pool, TCP buffers);
 *   2. two loads from the host into the pod; both cross the veth, so every packet passes the
 *      probe's TC programs on the veth, the net: tracepoints and the netfilter hooks in the
 *      pod's netns:
 *        http: `wrk -t1 -c<connections> -d<seconds>s` with keep-alive against the sidecar
 *              (small packets, one request and one reply each way), in requests/s;
 *        bulk: `tcp_stream.ts send`, <streams> TCP connections from the host writing 256 KiB
 *              chunks into the sink for <seconds>, in MB/s (MiB) the sink has read;
 *      per load `rounds` rounds of one run without kupod ("off") and one with it ("on"), in
 *      ABBA order (off/on, on/off, ...) so that a drift of the host favours neither mode. "on"
 *      starts `./kupod monitor kernel stack --veth <hostVeth> --quiet --exporter-port <free
 *      port> --stack-duty-cycle <duty-percent / 100>` before the run (the path traced that share
 *      of the time, probes/stack_window.ts), as shipped: default sampling, i.e. no packet reaches
 *      the ring buffer, every packet is counted at every hook and hop latencies are timed for a sample
 *      (bpf/stack_sample.h), counts and histograms stay in per-CPU maps that kupod reads every
 *      second. Its stdout goes to a temp file; the bench waits for "started!" and 2 s more (its
 *      start is not what is measured), and after the run scrapes /metrics once and stops kupod
 *      with SIGTERM (it must exit 0, warn of nothing but lost events and leave none of its
 *      programs loaded);
 *   3. diagnostic (not in the ratios; `--diag-seconds 0` skips it): one "on" run per load with
 *      the kernel's BPF run-time statistics on (BPF_ENABLE_STATS, off again once its fd is
 *      closed; they add two clock reads per program run, hence not in the ratios): run count
 *      and run time of each of kupod's programs. That time is spent in the context of the
 *      sender, the pod's processes and the softirqs, so kupod's own CPU time does not hold it;
 *   4. profile (not in the ratios; `--profile-seconds 0` skips it, as does a host without
 *      perf): per load one run without kupod and one as in the "on" runs, each sampled by
 *      `perf record -a`: kupod's share of the busy CPU with what the statistics miss
 *      (tracepoint dispatch, netfilter and TC glue) and without what they add (see
 *      bench/perf_share.ts);
 *   5. prints the kupod sources measured, every run, a summary per load and two final lines:
 *        stack overhead: throughput ratio on/off = R [lo, hi] (target >= 0.9) http; R' bulk
 *        stack overhead: cost per packet = N ns in the kernel (BPF programs), M ns agent CPU
 *                        http; N' ns, M' ns bulk
 *      and kupod's share of the busy CPU, from the diagnostic runs (cpuShare in overhead.ts) and
 *      from the profile
 *
 * Figures: a load's ratio is the median over its rounds of on / off of req/s (wrk's) or MB/s of the
 * round (pairedRatio in overhead.ts); median(on) / median(off) is printed too, a 90% interval of
 * the ratio by bootstrap of the rounds ("[lo, hi]", medianInterval in overhead.ts), and the ratio
 * "per busy core": the same of the rate divided by the host's busy CPU during the run. On a virtual
 * machine whose hypervisor takes CPU time for others ("steal", from /proc/stat, per run) the rate
 * follows the CPU left; per busy core divides that out. Packets are the
 * kernel's own count: the host-side veth's rx_packets + tx_packets
 * (/sys/class/net/<veth>/statistics) over the load, every packet crossing the veth in either
 * direction (a GSO/GRO super-packet counts once, as the probe sees it). Cost per packet in the
 * kernel = run time of all kupod's programs in the diagnostic run / its veth packets: this
 * includes runs for packets that do not cross the veth but come with the traffic (the
 * sidecar's loopback connection to the service inside the pod) or are not the pod's at all
 * (the net: tracepoints fire for every packet of the host and are left early by netns), all of
 * which the probe costs. Agent CPU per packet = kupod's utime + stime with its children's
 * (/proc/<pid>/stat, all threads; ./kupod execs Deno, so its pid is Deno's) during the load /
 * veth packets, median
 * over the "on" runs. "seen" = kupod_nic_packets_total (rx + tx) from /metrics / the veth's
 * packets since kupod started: that the probe did watch the traffic it is charged for. "other
 * cores" is the host's busy CPU time (/proc/stat) minus that of this process, its children,
 * the pod, the sink, kupod and ksoftirqd, per second - load from outside the bench. Before each
 * run the bench waits (up to 60 s) until that is below 0.15 cores and steal at most 0.05 cores
 * for 1 s; a round in which either run saw more steal is run again, its runs left out. Nothing
 * is pinned, for the reasons given in bench/socket.ts.
 *
 * Exit status: 0 when the measurement ran, whatever the figures (targets not met are not
 * errors); 1 on errors: a failed load (wrk socket errors or non-2xx replies, a sender that
 * fails or moves nothing), kupod not starting, exiting non-zero or losing events, its programs
 * left loaded. Children are ended by pid; on any exit, also Ctrl-C, kupod, wrk, the sender and
 * the sink are stopped, the pod (netns, veth and with it its tc hooks, cgroups) is disposed and
 * the temp dir removed.
 */

import type { TestPod } from "../tests/helpers/pod.ts";
import { DENO } from "../tests/helpers/process.ts";
import {
  benchMain,
  bpfDelta,
  cpuShare,
  dropRuns,
  f,
  ifaceCounter,
  interval,
  MB,
  measure,
  type Measured,
  median,
  type Mode,
  noteOtherLoad,
  pairedRatio,
  pairedRounds,
  parseOptions,
  type Redone,
  ROOT,
  Runner,
  runSeconds,
  runWrk,
  sleep,
  softirqThreads,
  sourceVersion,
  startKupod,
  stopKupod,
  table,
  UsageError,
  waitIdle,
  withoutKupod,
} from "./overhead.ts";
import { printProfiles, type Profile, profiled, profileLoads } from "./perf_share.ts";
import { enableBpfStats, kupodPrograms, type Proc } from "./socket_proc.ts";

const STREAM = `${ROOT}bench/tcp_stream.ts`;
/** The sink's port in the pod's netns (its own port space). */
const SINK_PORT = 5201;
const SINK_READY_MS = 15_000;
const BULK_WARMUP_SECONDS = 2;

const DEFAULTS = {
  rounds: 5,
  seconds: 8,
  connections: 32,
  streams: 1,
  "warmup-seconds": 5,
  "diag-seconds": 8,
  "profile-seconds": 8,
  /** --stack-duty-cycle in percent: 10 as kupod ships, 100 the whole path all the time. */
  "duty-percent": 10,
};
type Options = typeof DEFAULTS;

type Load = "http" | "bulk";
const UNIT: Record<Load, string> = { http: "req/s", bulk: "MB/s" };

interface Run {
  load: Load;
  mode: Mode;
  round: number;
  /** req/s (http) or MB/s (bulk). */
  rate: number;
  /** http only. */
  p99Ms?: number;
  /** Packets through the veth during the load, both directions. */
  packets: number;
  packetsPerSec: number;
  otherCores: number;
  busyCores: number;
  stealCores: number;
  /** kupod only: */
  cores?: number;
  agentNsPerPacket?: number;
  /** kupod_nic_packets_total / the veth's packets since kupod started. */
  seen?: number;
  lost?: number;
  /** diag only: BPF program runs and run time during the load, per program name. */
  bpf?: Record<string, { runs: number; ns: number }>;
  /** perf-off and perf-on only. */
  profile?: Profile;
}

/** What every run holds, from its measured load. */
function runOf(
  load: Load,
  mode: Mode,
  round: number,
  m: Measured<{ rate: number; p99Ms?: number; profile?: Profile }> & { packets: number },
): Run {
  return {
    load,
    mode,
    round,
    ...m.value,
    packets: m.packets,
    packetsPerSec: m.packets / m.wall,
    otherCores: m.otherCores,
    busyCores: m.busyCores,
    stealCores: m.stealCores,
  };
}

function checkOptions(opts: Options): Options {
  for (const k of ["rounds", "seconds", "connections", "streams"] as const) {
    if (opts[k] < 1) throw new UsageError(`--${k} must be >= 1`);
  }
  if (opts["duty-percent"] > 100) throw new UsageError("--duty-percent must be <= 100");
  return opts;
}

/** The kernel's count of packets through a network interface, both directions. */
function vethPackets(veth: string): number {
  return ifaceCounter(veth, "rx_packets") + ifaceCounter(veth, "tx_packets");
}

/** kupod_nic_packets_total, rx + tx, from kupod's /metrics. */
async function nicPackets(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  if (!res.ok) throw new Error(`kupod's /metrics: ${res.status} ${text.slice(0, 200)}`);
  let n = 0;
  for (const m of text.matchAll(/^kupod_nic_packets_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

// ---------------------------------------------------------------------------------------------
// The bench

class Bench {
  readonly runs: Run[] = [];
  #starts = 0;
  #sink: Proc | undefined;
  readonly #softirqPids = softirqThreads();

  constructor(readonly opts: Options, readonly pod: TestPod, readonly runner: Runner) {}

  /** The pod's processes, the sink and the softirq threads: CPU the bench's load causes. */
  #loadPids(): number[] {
    const pids = [...this.pod.containers.flatMap((c) => c.pids()), ...this.#softirqPids];
    return this.#sink ? [...pids, this.#sink.pid] : pids;
  }

  /** The bulk load's sink, inside the pod's netns (`ip netns exec` execs: its pid is Deno's). */
  async startSink(): Promise<void> {
    const sink = this.runner.spawn("sink", "ip", [
      "netns",
      "exec",
      this.pod.netns,
      DENO,
      "run",
      "--allow-net",
      "--no-prompt",
      STREAM,
      "sink",
      String(SINK_PORT),
    ]);
    this.#sink = sink;
    for (const end = Date.now() + SINK_READY_MS; !/^listening/m.test(sink.stdout.head);) {
      if (sink.exited || Date.now() > end) {
        throw new Error(`sink ${sink.exited ? "exited" : "not ready in time"}: ${sink.output()}`);
      }
      await sleep(20);
      this.runner.check();
    }
  }

  async #http(seconds: number): Promise<{ rate: number; p99Ms: number }> {
    const { connections } = this.opts;
    const r = await runWrk(this.runner, this.pod.url(8080), { connections, seconds, close: false });
    return { rate: r.rps, p99Ms: r.p99Ms };
  }

  async #bulk(seconds: number): Promise<{ rate: number }> {
    if (this.#sink?.exited) throw new Error(`the sink exited: ${this.#sink.output()}`);
    const sender = this.runner.spawn("sender", DENO, [
      "run",
      "--allow-net",
      "--no-prompt",
      STREAM,
      "send",
      this.pod.podIP,
      String(SINK_PORT),
      String(seconds),
      String(this.opts.streams),
    ]);
    const status = await sender.wait((seconds + 30) * 1000);
    this.runner.check();
    const last = sender.stdout.text().trim().split("\n").pop() ?? "";
    if (!status.success || !last.startsWith("{")) {
      throw new Error(`bulk sender failed (exit ${status.code}): ${sender.output()}`);
    }
    const r = JSON.parse(last) as { bytes: number; seconds: number };
    if (!(r.bytes > 0)) throw new Error(`bulk sender moved nothing: ${last}`);
    return { rate: r.bytes / MB / r.seconds };
  }

  /**
   * The load, with the veth's packets, kupod's CPU time (if given) and the host's other; sampled
   * by perf if `profile`.
   */
  async #load(load: Load, seconds: number, kupod?: number, profile = false) {
    const veth0 = vethPackets(this.pod.hostVeth);
    const run = () => load === "http" ? this.#http(seconds) : this.#bulk(seconds);
    const m = await measure(
      this.#loadPids(),
      kupod,
      () => profile ? profiled(this.runner, seconds, run, kupod) : run(),
    );
    const packets = vethPackets(this.pod.hostVeth) - veth0;
    return { ...m, packets };
  }

  async warmUp(): Promise<void> {
    if (this.opts["warmup-seconds"] > 0) await this.#load("http", this.opts["warmup-seconds"]);
    await this.#load("bulk", BULK_WARMUP_SECONDS);
  }

  async run(load: Load, mode: Mode, round: number): Promise<Run> {
    const seconds = runSeconds(mode, this.opts);
    const profile = mode.startsWith("perf");
    await waitIdle(this.runner, this.#loadPids());
    if (withoutKupod(mode)) {
      const run = runOf(load, mode, round, await this.#load(load, seconds, undefined, profile));
      this.runs.push(run);
      return run;
    }
    const out = await this.runner.tempPath(`kupod-${++this.#starts}.out`);
    const veth0 = vethPackets(this.pod.hostVeth);
    const kupod = await startKupod(
      this.runner,
      [
        ...["monitor", "kernel", "stack", "--veth", this.pod.hostVeth, "--quiet"],
        ...["--stack-duty-cycle", String(this.opts["duty-percent"] / 100)],
      ],
      out,
    );
    let stats: Disposable | undefined;
    try {
      if (mode === "diag") stats = enableBpfStats();
      const bpf0 = mode === "diag" ? await kupodPrograms() : [];
      const m = await this.#load(load, seconds, kupod.proc.pid, profile);
      const bpf1 = mode === "diag" ? await kupodPrograms() : [];
      stats?.[Symbol.dispose]();
      stats = undefined;
      const seen = await nicPackets(kupod.port) / (vethPackets(this.pod.hostVeth) - veth0);
      const run: Run = {
        ...runOf(load, mode, round, m),
        cores: m.kupodCpu / m.wall,
        agentNsPerPacket: m.kupodCpu * 1e9 / m.packets,
        seen,
      };
      if (mode === "diag") run.bpf = bpfDelta(kupod.programs, bpf0, bpf1);
      run.lost = await stopKupod(kupod, "stack", false);
      this.runs.push(run);
      return run;
    } finally {
      stats?.[Symbol.dispose]();
      await this.runner.stop(kupod.proc);
      await Deno.remove(out).catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function printRuns(runs: Run[]): void {
  const rows = [[
    "load",
    "mode",
    "round",
    "rate",
    "p99 ms",
    "veth packets/s",
    "kupod cores",
    "agent ns/packet",
    "seen",
    "lost",
    "other cores",
    "steal",
  ]];
  for (const r of runs) {
    rows.push([
      r.load,
      r.mode,
      String(r.round),
      `${f(r.rate, r.load === "http" ? 0 : 1)} ${UNIT[r.load]}`,
      f(r.p99Ms, 2),
      f(r.packetsPerSec, 0),
      f(r.cores, 3),
      f(r.agentNsPerPacket, 1),
      r.seen === undefined ? "-" : `${f(r.seen * 100, 1)}%`,
      r.lost === undefined ? "-" : String(r.lost),
      f(r.otherCores, 2),
      f(r.stealCores, 2),
    ]);
  }
  console.log(table(rows));
}

interface Summary {
  ratio: number;
  /** 90% bootstrap interval of `ratio` (medianInterval in overhead.ts). */
  interval: [number, number];
  /** The same of the rate per busy core (host busy CPU, steal not included). */
  perCore: number;
  agentNs: number;
}

function summarize(load: Load, runs: Run[]): Summary {
  const off = runs.filter((r) => r.load === load && r.mode === "off");
  const on = runs.filter((r) => r.load === load && r.mode === "on");
  const [offRate, onRate] = [median(off.map((r) => r.rate)), median(on.map((r) => r.rate))];
  const paired = pairedRatio([...off, ...on], (r) => r.rate);
  const perCore = pairedRatio([...off, ...on], (r) => r.rate / r.busyCores);
  const s = {
    ratio: paired.ratio,
    interval: paired.interval,
    perCore: perCore.ratio,
    agentNs: median(on.map((r) => r.agentNsPerPacket!)),
  };
  const digits = load === "http" ? 0 : 1;
  const rates = (rs: Run[]) => rs.map((r) => f(r.rate, digits)).join(" ");
  console.log(
    `${load}: ratio ${f(s.ratio, 3)}${
      interval(paired.interval, 3)
    } (90% interval; median of rounds ${paired.rounds.map((x) => f(x, 3)).join(" ")}; median ${
      UNIT[load]
    } off ${f(offRate, digits)} on ${f(onRate, digits)}: ${f(onRate / offRate, 3)}; runs off ${
      rates(off)
    }, on ${rates(on)}); veth packets/s off ${f(median(off.map((r) => r.packetsPerSec)), 0)} on ${
      f(median(on.map((r) => r.packetsPerSec)), 0)
    }; kupod ${f(median(on.map((r) => r.cores!)), 3)} cores = ${
      f(s.agentNs, 1)
    } ns per packet; seen ${
      f(median(on.map((r) => r.seen!)) * 100, 1)
    }% of the veth's packets; per busy core: ratio ${f(s.perCore, 3)}${
      interval(perCore.interval, 3)
    } (median of rounds ${perCore.rounds.map((x) => f(x, 3)).join(" ")})`,
  );
  return s;
}

/** Prints a diagnostic run; returns the BPF run time per veth packet (ns) and kupod's CPU share. */
function printDiag(r: Run): { ns: number; share: number } {
  const progs = Object.entries(r.bpf ?? {}).sort((a, b) => b[1].ns - a[1].ns);
  const runs = progs.reduce((a, [, p]) => a + p.runs, 0);
  const ns = progs.reduce((a, [, p]) => a + p.ns, 0);
  const perPacket = (n: number) => n / r.packets;
  const seconds = r.packets / r.packetsPerSec;
  console.log(
    `${r.load}: ${f(r.rate, r.load === "http" ? 0 : 1)} ${UNIT[r.load]}, ${
      f(r.packetsPerSec, 0)
    } veth packets/s; BPF in the kernel: ${f(perPacket(runs), 1)} program runs/packet, ${
      f(perPacket(ns), 0)
    } ns/packet, ${f(ns / 1e9 / seconds, 3)} cores (${
      progs.map(([n, p]) =>
        `${n} ${f(perPacket(p.runs), 2)}/packet x ${f(p.runs ? p.ns / p.runs : 0, 0)} ns`
      ).join(", ")
    })`,
  );
  const share = cpuShare(ns / 1e9 / seconds, r.cores!, r.busyCores);
  console.log(`  ${share.text}`);
  return { ns: perPacket(ns), share: share.share };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const started = performance.now();
  const options = () => checkOptions(parseOptions(DEFAULTS, Deno.args));
  return await benchMain(
    "stack",
    ["wrk", "bpftool", "nginx"],
    options,
    async (runner, opts, pod) => {
      const bench = new Bench(opts, pod, runner);
      await bench.startSink();
      const o = opts;
      console.log(
        `stack bench: pod ${pod.name} ${pod.podIP} (veth ${pod.hostVeth}); http: wrk -t1 ` +
          `-c${o.connections} keep-alive; bulk: ${o.streams} TCP stream(s) into the pod; ` +
          `${o.seconds} s runs, ${o.rounds} rounds each, diagnostic ${o["diag-seconds"]} s; ` +
          `${navigator.hardwareConcurrency} CPUs`,
      );
      console.log(`kupod: ${await sourceVersion()}`);
      await bench.warmUp();
      const log = (r: Run) => {
        console.error(
          `  ${r.load} ${r.mode} #${r.round}: ${f(r.rate, 1)} ${UNIT[r.load]}` +
            (r.cores === undefined ? "" : `, kupod ${f(r.cores, 3)} cores`),
        );
        return r;
      };
      const loads: Load[] = ["http", "bulk"];
      const redone: Redone[] = [];
      for (const load of loads) {
        redone.push(
          ...await pairedRounds(
            o.rounds,
            async (mode, round) => log(await bench.run(load, mode, round)),
            (runs) => dropRuns(bench.runs, runs),
          ),
        );
      }
      const diags: Run[] = [];
      if (o["diag-seconds"] > 0) {
        for (const load of loads) diags.push(await bench.run(load, "diag", 1));
      }
      const profiles = await profileLoads(
        loads,
        o["profile-seconds"],
        (load, mode) => bench.run(load, mode, 1),
      );

      console.log("");
      printRuns(bench.runs);
      console.log("");
      const [http, bulk] = loads.map((l) => summarize(l, bench.runs));
      const diag: Partial<Record<Load, { ns: number; share: number }>> = {};
      if (diags.length) {
        console.log("");
        console.log(
          'diagnostic (kupod as in the "on" runs, BPF run-time stats on; not in the ratios):',
        );
        for (const d of diags) diag[d.load] = printDiag(d);
      }
      printProfiles(profiles, o["profile-seconds"], (load) => load);
      noteOtherLoad(
        bench.runs.map((r) => r.otherCores),
        bench.runs.map((r) => r.stealCores),
        redone,
      );
      console.log("");
      console.log(`total ${f((performance.now() - started) / 1000, 0)} s`);
      console.log(
        `stack overhead: throughput ratio on/off = ${f(http.ratio, 2)}${
          interval(http.interval, 2)
        } (target >= 0.9) http; ${f(bulk.ratio, 2)}${
          interval(bulk.interval, 2)
        } bulk; per busy core ${f(http.perCore, 2)} http, ${f(bulk.perCore, 2)} bulk`,
      );
      console.log(
        `stack overhead: cost per packet = ${
          f(diag.http?.ns, 0)
        } ns in the kernel (BPF programs), ${f(http.agentNs, 0)} ns agent CPU http; ${
          f(diag.bulk?.ns, 0)
        } ns, ${f(bulk.agentNs, 0)} ns bulk`,
      );
      console.log(
        `stack overhead: share of the busy CPU (diagnostic) = ${
          f((diag.http?.share ?? NaN) * 100, 1)
        }% http; ${f((diag.bulk?.share ?? NaN) * 100, 1)}% bulk`,
      );
      console.log(
        `stack overhead: share of the busy CPU (perf) = ${
          f((profiles?.http?.share ?? NaN) * 100, 1)
        }% http; ${f((profiles?.bulk?.share ?? NaN) * 100, 1)}% bulk`,
      );
    },
  );
}

if (import.meta.main) Deno.exit(await main());
