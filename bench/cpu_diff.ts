/**
 * Where the CPU goes per request with kupod on: the same keep-alive load through the bench pod's
 * sidecar with kupod not running ("off"), watching that pod ("on") and watching another, idle
 * pod ("other"), each run sampled by `perf record -a`. Busy samples per 1000 requests compare the
 * modes without depending on the throughput of a run, and the symbols whose samples per request
 * grew most show where kupod's cost lands, also outside its own symbols (a throughput ratio
 * below 1 - kupod's share of the CPU means such a cost). "other" separates what kupod's hooks
 * cost every socket of the node (they run and leave at the netns check) from what watching a
 * pod's sockets costs.
 *
 *   deno run -A bench/cpu_diff.ts [--rounds 3] [--seconds 10] [--connections 32] [--stack 0]
 *
 * `--stack 1` runs `monitor kernel stack` instead of `monitor kernel socket`. Needs root, wrk,
 * nginx, bpftool and perf; ~2 min with the defaults. Rounds rotate the order of the modes. A
 * sample is 1 ms of one CPU (perf -F 999); on this kind of host the busy samples per request of
 * one mode scatter by several percent from round to round, so differences below that want more
 * rounds. Runs with steal (the hypervisor running others on this machine's CPUs) are not
 * comparable: a preempted lock holder makes the others spin (`__pv_queued_spin_lock_slowpath`)
 * and the samples per request grow in every mode; such runs (steal > 0.05 cores) are listed and
 * left out of the comparison. Children are ended by pid and both pods
 * disposed on any exit, as in the other benches.
 */

import { createTestPod } from "../tests/helpers/pod.ts";
import {
  benchMain,
  f,
  MAX_STEAL,
  parseOptions,
  Runner,
  runWrk,
  startKupod,
  stopKupod,
  table,
  UsageError,
  waitIdle,
} from "./overhead.ts";
import { kupodSymbol, type Profile, profiled } from "./perf_share.ts";
import { hostCpuSeconds } from "./socket_proc.ts";

const DEFAULTS = { rounds: 3, seconds: 10, connections: 32, stack: 0, "warmup-seconds": 4 };
type Options = typeof DEFAULTS;
type Mode = "off" | "on" | "other";
const ORDERS: Mode[][] = [["off", "on", "other"], ["other", "off", "on"], ["on", "other", "off"]];
const MOST = 12;
interface Run {
  mode: Mode;
  round: number;
  rps: number;
  requests: number;
  profile: Profile;
  /** Cores the hypervisor gave to others during the run (lock holders preempted, see below). */
  steal: number;
}

function checkOptions(o: Options): Options {
  for (const k of ["rounds", "seconds", "connections"] as const) {
    if (o[k] < 1) throw new UsageError(`--${k} must be >= 1`);
  }
  if (o.seconds < 3) throw new UsageError("--seconds must be >= 3 (perf samples all but 1 s)");
  return o;
}

/** Samples per 1000 requests of every "command symbol" over the runs of one mode. */
function perKiloRequest(runs: Run[]): Map<string, number> {
  const requests = runs.reduce((a, r) => a + r.requests, 0) / 1000;
  const out = new Map<string, number>();
  for (const r of runs) {
    for (const [where, n] of r.profile.all) out.set(where, (out.get(where) ?? 0) + n / requests);
  }
  return out;
}

const sum = (m: Map<string, number>, keep: (where: string) => boolean = () => true) =>
  [...m].reduce((a, [where, n]) => a + (keep(where) ? n : 0), 0);
const kupods = (where: string) =>
  /\[k\]/.test(where) && kupodSymbol(where.slice(where.indexOf("[k]") + 4));

function printGrowth(title: string, a: Map<string, number>, base: Map<string, number>): void {
  const rows = [...new Set([...a.keys(), ...base.keys()])]
    .map((w) => [w, (a.get(w) ?? 0) - (base.get(w) ?? 0)] as const)
    .sort((x, y) => y[1] - x[1])
    .slice(0, MOST);
  console.log(`${title} (samples per 1000 requests; * BPF and hooks: kupod's when on):`);
  for (const [w, d] of rows) console.log(`  ${f(d, 3).padStart(8)}  ${w}${kupods(w) ? " *" : ""}`);
}

async function main(): Promise<number> {
  return await benchMain(
    "cpu diff",
    ["wrk", "bpftool", "nginx", "perf"],
    () => checkOptions(parseOptions(DEFAULTS, Deno.args)),
    async (runner: Runner, o, pod) => {
      const other = await createTestPod({ upstreamKeepAlive: true });
      runner.defer(() => other.dispose());
      const probe = o.stack ? "stack" : "socket";
      console.log(
        `cpu diff: monitor kernel ${probe}; wrk -t1 -c${o.connections} keep-alive into ` +
          `${pod.name} (veth ${pod.hostVeth}); "other" watches ${other.name} ` +
          `(veth ${other.hostVeth}); ` +
          `${o.rounds} rounds of ${o.seconds} s`,
      );
      const wrk = (seconds = o.seconds) =>
        runWrk(runner, pod.url(8080), { connections: o.connections, seconds, close: false });
      if (o["warmup-seconds"] > 0) await wrk(o["warmup-seconds"]);
      const runs: Run[] = [];
      let n = 0;
      for (let round = 1; round <= o.rounds; round++) {
        for (const mode of ORDERS[(round - 1) % ORDERS.length]) {
          await waitIdle(runner, pod.containers.flatMap((c) => c.pids()));
          const [steal0, t0] = [hostCpuSeconds().steal, performance.now()];
          if (mode === "off") {
            runs.push({ mode, round, ...await profiled(runner, o.seconds, wrk), steal: 0 });
          } else {
            const veth = mode === "on" ? pod.hostVeth : other.hostVeth;
            const out = await runner.tempPath(`kupod-${++n}.out`);
            const kupod = await startKupod(
              runner,
              ["monitor", "kernel", probe, "--veth", veth, "--quiet"],
              out,
            );
            try {
              const r = await profiled(runner, o.seconds, wrk, kupod.proc.pid);
              runs.push({ mode, round, ...r, steal: 0 });
              await stopKupod(kupod, probe, false);
            } finally {
              await runner.stop(kupod.proc);
            }
          }
          const r = runs.at(-1)!;
          r.steal = (hostCpuSeconds().steal - steal0) / ((performance.now() - t0) / 1000);
          console.error(`  ${r.mode} #${r.round}: ${f(r.rps, 0)} req/s`);
        }
      }

      const rows = [[
        "mode",
        "round",
        "req/s",
        "busy samples/1k req",
        "BPF and hooks/1k req",
        "steal",
      ]];
      for (const r of runs) {
        const k = r.requests / 1000;
        rows.push([
          r.mode,
          String(r.round),
          f(r.rps, 0),
          f(r.profile.busy / k, 2),
          f(sum(r.profile.all, kupods) / k, 2),
          f(r.steal, 2),
        ]);
      }
      console.log("");
      console.log(table(rows));
      const clean = (m: Mode) => runs.filter((r) => r.mode === m && r.steal <= MAX_STEAL);
      const left = runs.filter((r) => r.steal > MAX_STEAL).length;
      if (left) console.log(`(${left} run(s) with steal > ${MAX_STEAL} cores left out below)`);
      for (const m of ["off", "on", "other"] as const) {
        if (!clean(m).length) {
          console.log(`no "${m}" run without steal: nothing to compare`);
          return;
        }
      }
      const per = Object.fromEntries(
        (["off", "on", "other"] as const).map((m) => [m, perKiloRequest(clean(m))]),
      ) as Record<Mode, Map<string, number>>;
      const busy = (m: Mode) => sum(per[m]);
      const agent = (m: Mode) => {
        const rs = clean(m);
        return rs.reduce((a, r) => a + r.profile.agent, 0) /
          (rs.reduce((a, r) => a + r.requests, 0) / 1000);
      };
      const grown = (m: Mode) => `${f((busy(m) / busy("off") - 1) * 100, 1)}%`;
      console.log("");
      console.log(
        `busy samples per 1000 requests: off ${f(busy("off"), 2)}, on ${f(busy("on"), 2)} (${
          grown("on")
        }; BPF and hooks ${f(sum(per.on, kupods), 2)}, its process ${f(agent("on"), 2)}), ` +
          `other ${f(busy("other"), 2)} (${grown("other")}; BPF and hooks ${
            f(sum(per.other, kupods), 2)
          }, its process ${f(agent("other"), 2)})`,
      );
      printGrowth("most grown, on vs off", per.on, per.off);
      printGrowth("most grown, other vs off", per.other, per.off);
    },
  );
}

if (import.meta.main) Deno.exit(await main());
