/**
 * What an operator pays: the whole command line (`./kupod monitor <command> --veth <pod>`)
 * started before and stopped after each "on" window, under wrk's load through the test pod's
 * sidecar (nginx or haproxy, keep-alive to the service), against adjacent "off" windows (ABBA
 * order). The load is keep-alive, or one connection per request with --close. Prints the
 * throughput ratio's median with its 90% interval, the agent's CPU per 10k requests/s, its peak
 * RSS and the events it reported lost.
 *
 *   deno task bench:ab [--rounds N] [--seconds N] [--connections N] -- user http
 *   deno task bench:ab --sidecar haproxy --close -- kernel all   # any monitor command; --veth is added
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
import type { TestContainerOptions } from "../tests/helpers/pod.ts";

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

const SIDECARS = ["nginx", "haproxy"] as const;

function options() {
  const dash = Deno.args.indexOf("--");
  const command = dash < 0 ? [] : Deno.args.slice(dash + 1);
  if (!command.length) throw new UsageError("give the monitor command after --, e.g. -- user http");
  const args = dash < 0 ? [...Deno.args] : Deno.args.slice(0, dash);
  const close = args.includes("--close");
  const at = args.indexOf("--sidecar");
  const sidecar = at < 0 ? "nginx" : args[at + 1];
  if (!SIDECARS.includes(sidecar as typeof SIDECARS[number])) {
    throw new UsageError(`--sidecar must be one of ${SIDECARS.join(", ")}`);
  }
  const numeric = args.filter((a, i) => a !== "--close" && (at < 0 || (i !== at && i !== at + 1)));
  return { ...parseOptions(DEFAULTS, numeric), command, close, sidecar };
}

/** The bench pod: the sidecar asked for in front of the service, keep-alive between them. */
function podOf(opts: ReturnType<typeof options>) {
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

const code = await benchMain("cli_ab", ["wrk"], options, async (runner, opts, pod) => {
  const url = `http://${pod.podIP}:${pod.container("proxy").port}/`;
  const args = ["monitor", ...opts.command, "--veth", pod.hostVeth, "--quiet"];
  const probe = opts.command.at(-1)!;
  const pids = pod.containers.flatMap((c) => c.pids());
  const runs: Run[] = [];
  let started = 0; // a round run again must not find the readiness line of its first try
  console.log(`./kupod ${args.join(" ")}`);
  console.log(
    `wrk -t1 -c${opts.connections} ${
      opts.close ? "a connection per request" : "keep-alive"
    } through ${opts.sidecar}, ${opts.rounds} rounds of ${opts.seconds} s windows`,
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
        runWrk(runner, url, {
          connections: opts.connections,
          seconds: opts.seconds,
          close: opts.close,
        }),
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
}, podOf);

Deno.exit(code);
