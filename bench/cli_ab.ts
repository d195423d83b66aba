/**
 * What an operator pays: the whole command line (`./kupod monitor <command> --veth <pod>`)
 * started before and stopped after each "on" window, under wrk's keep-alive load through the
 * test pod's nginx sidecar, against adjacent "off" windows (ABBA order). Prints the throughput
 * ratio's median with its 90% interval, the agent's CPU per 10k requests/s, its peak RSS and
 * the events it reported lost.
 *
 *   deno task bench:ab [--rounds N] [--seconds N] [--connections N] -- user http
 *   deno task bench:ab -- kernel all        # any monitor command; --veth is added
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
  runWrk,
  startKupod,
  stopKupod,
  UsageError,
  waitIdle,
} from "./overhead.ts";
import { vmBytes } from "./socket_proc.ts";

const DEFAULTS = { rounds: 16, seconds: 5, connections: 32 };

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
}

function options() {
  const dash = Deno.args.indexOf("--");
  const command = dash < 0 ? [] : Deno.args.slice(dash + 1);
  if (!command.length) throw new UsageError("give the monitor command after --, e.g. -- user http");
  return { ...parseOptions(DEFAULTS, dash < 0 ? Deno.args : Deno.args.slice(0, dash)), command };
}

const code = await benchMain("cli_ab", ["wrk"], options, async (runner, opts, pod) => {
  const url = `http://${pod.podIP}:${pod.container("proxy").port}/`;
  const args = ["monitor", ...opts.command, "--veth", pod.hostVeth, "--quiet"];
  const probe = opts.command.at(-1)!;
  const pids = pod.containers.flatMap((c) => c.pids());
  const runs: Run[] = [];
  let started = 0; // a round run again must not find the readiness line of its first try
  console.log(`./kupod ${args.join(" ")}`);
  console.log(
    `wrk -t1 -c${opts.connections} keep-alive through nginx, ${opts.rounds} rounds of ` +
      `${opts.seconds} s windows`,
  );
  const run = async (mode: "off" | "on", round: number): Promise<Run> => {
    await waitIdle(runner, pids);
    const kupod = mode === "on"
      ? await startKupod(runner, args, await runner.tempPath(`kupod-${++started}.out`))
      : undefined;
    const m = await measure(
      pids,
      kupod?.proc.pid,
      () =>
        runWrk(runner, url, { connections: opts.connections, seconds: opts.seconds, close: false }),
    );
    const rssBytes = kupod ? vmBytes(kupod.proc.pid, "VmHWM") : 0;
    const lost = kupod ? await stopKupod(kupod, probe, false) : 0;
    const r: Run = {
      mode,
      round,
      rps: m.value.rps,
      kupodCpu: m.kupodCpu,
      wall: m.wall,
      rssBytes,
      lost,
      stealCores: m.stealCores,
      otherCores: m.otherCores,
    };
    runs.push(r);
    console.error(`  round ${round} ${mode}: ${f(r.rps, 0)} req/s`);
    return r;
  };
  const redone = await pairedRounds(opts.rounds, run, (gone) => dropRuns(runs, gone));
  const ratio = pairedRatio(runs, (r) => r.rps);
  const on = runs.filter((r) => r.mode === "on");
  const cpuPer10k = on.map((r) => (r.kupodCpu / r.wall) / (r.rps / 10_000));
  console.log("");
  console.log(
    `throughput on/off: ${f(ratio.ratio, 3)}${interval(ratio.interval, 3)} (median, 90% interval)`,
  );
  console.log(
    `agent CPU per 10k req/s: ${f(median(cpuPer10k), 3)} cores; peak RSS ${
      f(Math.max(...on.map((r) => r.rssBytes)) / MB, 1)
    } MB; events lost ${on.reduce((n, r) => n + r.lost, 0)}`,
  );
  console.log(`rounds: ${ratio.rounds.map((x) => f(x, 3)).join(" ")}`);
  noteOtherLoad(runs.map((r) => r.otherCores), runs.map((r) => r.stealCores), redone);
});

Deno.exit(code);
