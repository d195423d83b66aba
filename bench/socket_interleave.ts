/**
 * Interleaved socket bench: what the socket probe's kernel programs cost a pod's throughput,
 * measured in short windows, attached and detached in turn under one continuous load.
 *
 *   deno task bench:interleave [--pairs 600] [--window-ms 250] [--settle-ms 50]
 *                              [--connections 32] [--warmup-seconds 5] [--compare <dir>]
 *
 * Why: on a virtual machine each vCPU's speed moves by 10-30% within seconds, independently
 * of the other's (measured here: the same pinned keep-alive load ran at 16k to 33k req/s over a
 * minute, a fixed CPU loop's windows of 0.7 s differ by 12%). bench/socket.ts restarts kupod
 * for every "on" run, so its paired runs lie ~15 s apart and a round's ratio scatters by
 * +-15%: its median over 9 rounds cannot tell 0.97 from 0.91. Here the same programs are
 * switched at every window and compared with the window next to them, hundreds of times.
 * Windows of 250 ms scatter no more than windows of a second (quartiles of on/off 0.89-1.08
 * with both here; the host's speed moves within a second too), so four times as many pairs
 * fit in a minute; both lengths gave the same ratio (0.978 and 0.974 over 300 and 391 pairs).
 * bench/socket.ts runs this measurement for its throughput ratio.
 *
 * Needs root, wrk, nginx and the BPF objects (deno task bpf). ~2 x pairs x (window + settle),
 * ~6 min:
 *   1. makes the test pod of bench/socket.ts (nginx sidecar with upstream keep-alive in front
 *      of the HTTP service), warms it up, and loads the socket probe's BPF object as
 *      `kupod monitor kernel socket --veth <hostVeth> --quiet` does (probes/probe_object.ts:
 *      the same object, rodata and target filter; its ring read in this process), unattached;
 *   2. runs one `wrk -t1 -c<connections>` keep-alive load through the sidecar for the whole
 *      measurement;
 *   3. per pair, one window with the programs attached ("on") and one with them detached
 *      ("off"), in ABBA order; a window starts `settle-ms` after the switch (attaching patches
 *      the tracepoints' code on every CPU) and its rate is the pod's replies per second: the
 *      host veth's received packets (1.001-1.003 per request under this load, with kupod on as
 *      off, measured against wrk's count). A pair in which the hypervisor took more than
 *      0.05 cores (steal) is left out;
 *   4. prints the median of on / off over the pairs with a 90% bootstrap interval, the rates,
 *      the events the ring carried (accepts and connects: nginx renews an upstream connection
 *      every 1000 requests) and one final line:
 *        socket kernel programs: throughput ratio on/off = R [lo, hi] (pairs, windows)
 *
 * `--compare <dir>`: another kupod source tree with its BPF objects built (a git worktree of a
 * change): its socket object, loaded by its own code, is a third mode, "B". Each round then has
 * three windows, off, this tree's programs ("A") and B's, in an order that rotates from round to
 * round, and B / A is printed besides A / off and B / off: two builds compared side by side under
 * the same host, which separate runs of this bench cannot do to 1%.
 *
 * What it leaves out: kupod's user-space agent (bench/socket.ts measures it: ~0.01 cores under
 * this load, 0.002-0.003 per 10k req/s, i.e. ~0.5% of the pod's busy CPU) and its start.
 * Exit status: 0 when the measurement ran, 1 on errors (wrk failing, the probe not loading), 130
 * when interrupted; the programs are detached and the pod disposed on any exit.
 */

import type { Attachment } from "../bpf/link.ts";
import { resolveVeth } from "../k8s/local.ts";
import type { Target } from "../k8s/target.ts";
import type { TestPod } from "../tests/helpers/pod.ts";
import {
  benchMain,
  f,
  ifaceCounter,
  interval,
  MAX_STEAL,
  median,
  medianInterval,
  parseOptions,
  ROOT,
  type Runner,
  runWrk,
  sleep,
  sourceVersion,
  UsageError,
  type WrkResult,
} from "./overhead.ts";
import { hostCpuSeconds } from "./socket_proc.ts";

const DEFAULTS = {
  pairs: 600,
  "window-ms": 250,
  "settle-ms": 50,
  connections: 32,
  "warmup-seconds": 5,
};
type Options = typeof DEFAULTS & { compare: string };

/** A build's socket probe, loaded unattached, and its programs while attached. */
interface Build {
  name: string;
  programs: string[];
  attach(): void;
  detach(): void;
  close(): Promise<void>;
}

export interface Window {
  round: number;
  /** "off" or the build attached. */
  mode: string;
  rate: number;
  steal: number;
}

function options(): Options {
  const args = [...Deno.args];
  const at = args.indexOf("--compare");
  const compare = at >= 0 ? args.splice(at, 2)[1] ?? "" : "";
  if (at >= 0 && !compare) throw new UsageError("--compare needs a kupod source tree");
  const o = { ...parseOptions(DEFAULTS, args), compare };
  if (o.pairs < 3) throw new UsageError("--pairs must be >= 3");
  if (o["window-ms"] < 100) throw new UsageError("--window-ms must be >= 100");
  if (o.connections < 1) throw new UsageError("--connections must be >= 1");
  return o;
}

/**
 * Loads the socket object of the kupod tree at `root` with that tree's own loader, as its
 * `monitor kernel socket --quiet` would, without attaching it.
 */
async function openBuild(name: string, root: string, target: Target, onSample: () => void) {
  const url = (path: string) => new URL(path, `file://${root.replace(/\/?$/, "/")}`).href;
  const { ProbeObject } = await import(
    url("probes/probe_object.ts")
  ) as typeof import("../probes/probe_object.ts");
  const { RODATA } = await import(
    url("bpf/gen/socket.ts")
  ) as typeof import("../bpf/gen/socket.ts");
  const { disposeAll } = await import(url("bpf/link.ts")) as typeof import("../bpf/link.ts");
  const probe = ProbeObject.open({
    object: "socket",
    target,
    rodataLayout: RODATA,
    rodata: { close_events: false, timing_events: false },
    ringBytes: 1 << 21,
    attach: () => [],
    onSample,
  });
  const reading = probe.read();
  let links: Attachment[] = [];
  const build: Build = {
    name,
    programs: probe.object.programs().map((p) => p.name),
    attach: () => {
      if (!links.length) links = probe.object.programs().map((p) => p.attach());
    },
    detach: () => disposeAll(links.splice(0)),
    close: async () => {
      build.detach();
      await probe.close();
      await reading;
    },
  };
  return build;
}

/** Per round, `a`'s window rate over `b`'s; rounds with steal are left out. */
function ratios(windows: Window[], rounds: number, a: string, b: string): number[] {
  const out: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const ws = windows.filter((w) => w.round === round);
    if (ws.some((w) => w.steal > MAX_STEAL)) continue;
    const [x, y] = [a, b].map((m) => ws.find((w) => w.mode === m)!);
    out.push(x.rate / y.rate);
  }
  return out;
}

export interface InterleaveOptions {
  pairs: number;
  windowMs: number;
  settleMs: number;
  connections: number;
  /** Another kupod tree whose socket programs are a third mode, "B". */
  compare?: string;
}

export interface Interleaved {
  /** "off", "A" (this tree) and "B" (--compare). */
  modes: string[];
  windows: Window[];
  wrk: WrkResult;
  /** Records the ring carried. */
  events: number;
  programs: string[];
  /** A's window rate over off's, per round without steal. */
  ratios: number[];
  /** B's over A's, the same (none without `compare`). */
  versus: number[];
}

/**
 * Runs one keep-alive load through the pod's sidecar and switches the socket programs of this
 * tree (and of `compare`) on and off under it, window by window, in an order that rotates from
 * round to round. Needs a warmed-up pod.
 */
export async function interleave(
  runner: Runner,
  pod: TestPod,
  o: InterleaveOptions,
): Promise<Interleaved> {
  const modes = o.compare ? ["off", "A", "B"] : ["off", "A"];
  const seconds = Math.ceil((modes.length * o.pairs * (o.windowMs + o.settleMs)) / 1000 * 1.05 + 5);
  const url = pod.url(8080);
  let events = 0;
  const target = await resolveVeth(pod.hostVeth);
  const builds: Build[] = [];
  const closeAll = async () => {
    for (const b of builds.splice(0)) await b.close();
  };
  runner.defer(closeAll);
  builds.push(await openBuild("A", ROOT, target, () => events++));
  if (o.compare) builds.push(await openBuild("B", o.compare, target, () => events++));
  const programs = builds[0].programs;
  const use = (mode: string) => {
    for (const b of builds) if (b.name !== mode) b.detach();
    builds.find((b) => b.name === mode)?.attach();
  };

  const load = runWrk(runner, url, { connections: o.connections, seconds, close: false });
  let loadDone = false;
  load.finally(() => loadDone = true).catch(() => {});
  await sleep(1000);
  const windows: Window[] = [];
  for (let round = 1; round <= o.pairs; round++) {
    // the order rotates: every mode is first, second (and third) equally often
    const shift = round % modes.length;
    for (const mode of [...modes.slice(shift), ...modes.slice(0, shift)]) {
      use(mode);
      await sleep(o.settleMs);
      const [n0, h0, t0] = [
        ifaceCounter(pod.hostVeth, "rx_packets"),
        hostCpuSeconds(),
        performance.now(),
      ];
      await sleep(o.windowMs);
      runner.check();
      if (loadDone) throw new Error("wrk ended before the windows did");
      const wall = (performance.now() - t0) / 1000;
      windows.push({
        round,
        mode,
        rate: (ifaceCounter(pod.hostVeth, "rx_packets") - n0) / wall,
        steal: (hostCpuSeconds().steal - h0.steal) / wall,
      });
    }
  }
  use("off");
  const wrk = await load;
  await closeAll();
  const kept = ratios(windows, o.pairs, "A", "off");
  if (kept.length < 3) throw new Error("fewer than 3 rounds without steal: no ratio");
  const versus = o.compare ? ratios(windows, o.pairs, "B", "A") : [];
  return { modes, windows, wrk, events, programs, ratios: kept, versus };
}

/** Prints the median of `rs` with its interval and spread. */
function printRatio(label: string, rs: number[], windowMs: number): void {
  const sorted = [...rs].sort((x, y) => x - y);
  const q = (p: number) => sorted[Math.floor(p * (sorted.length - 1))];
  console.log(
    `${label}: ${f(median(rs), 3)}${interval(medianInterval(rs), 3)} over ${rs.length} ` +
      `rounds of ${windowMs} ms windows; quartiles ${f(q(0.25), 3)} ${f(q(0.5), 3)} ` +
      `${f(q(0.75), 3)}, 5th-95th percentile ${f(q(0.05), 3)}-${f(q(0.95), 3)}`,
  );
}

/** The load, the rates and the ratios of an interleaved run. */
export function printInterleaved(r: Interleaved, o: InterleaveOptions): void {
  const rate = (mode: string) =>
    median(r.windows.filter((w) => w.mode === mode).map((w) => w.rate));
  console.log(
    `wrk: ${f(r.wrk.rps, 0)} req/s over ${f(r.wrk.seconds, 0)} s, p50 ${f(r.wrk.p50Ms, 2)} ms, ` +
      `p99 ${f(r.wrk.p99Ms, 2)} ms; replies/s median of windows: ${
        r.modes.map((m) => `${m} ${f(rate(m), 0)}`).join(", ")
      }; ring events ${r.events}; programs ${r.programs.join(", ")}`,
  );
  const stolen = o.pairs - r.ratios.length;
  if (stolen) {
    console.log(`${stolen} of ${o.pairs} rounds left out: steal above ${MAX_STEAL} cores`);
  }
  printRatio("A / off", r.ratios, o.windowMs);
  if (o.compare) {
    printRatio("B / off", ratios(r.windows, o.pairs, "B", "off"), o.windowMs);
    printRatio("B / A", r.versus, o.windowMs);
  }
}

if (import.meta.main) {
  Deno.exit(
    await benchMain("interleave", ["wrk", "nginx"], options, async (runner, o, pod) => {
      const started = performance.now();
      const io: InterleaveOptions = {
        pairs: o.pairs,
        windowMs: o["window-ms"],
        settleMs: o["settle-ms"],
        connections: o.connections,
        compare: o.compare || undefined,
      };
      console.log(
        `interleaved socket bench: pod ${pod.name} ${pod.podIP} (veth ${pod.hostVeth}), ` +
          `wrk -t1 -c${o.connections} keep-alive, ${o.pairs} rounds of ${o.compare ? 3 : 2} ` +
          `${io.windowMs} ms windows (${io.settleMs} ms after each switch); ` +
          `${navigator.hardwareConcurrency} CPUs`,
      );
      console.log(`kupod (A): ${await sourceVersion()}`);
      if (o.compare) console.log(`B: ${o.compare}`);
      if (o["warmup-seconds"] > 0) {
        await runWrk(runner, pod.url(8080), {
          connections: o.connections,
          seconds: o["warmup-seconds"],
          close: false,
        });
      }
      const r = await interleave(runner, pod, io);
      console.log("");
      printInterleaved(r, io);
      console.log("");
      console.log(`total ${f((performance.now() - started) / 1000, 0)} s`);
      console.log(
        `socket kernel programs: throughput ratio on/off = ${f(median(r.ratios), 3)}${
          interval(medianInterval(r.ratios), 3)
        } (${r.ratios.length} rounds of ${io.windowMs} ms windows)`,
      );
      if (o.compare) {
        console.log(
          `socket kernel programs: throughput ratio B/A = ${f(median(r.versus), 3)}${
            interval(medianInterval(r.versus), 3)
          } (B: ${o.compare})`,
        );
      }
    }),
  );
}
