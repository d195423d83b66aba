/**
 * What run-queue tracing costs where it costs most: the whole command line
 * (`./kupod monitor kernel resources --veth <pod>`) on and off (ABBA) under a context-switch
 * load inside the pod's service container (two processes bouncing a byte over pipes, so that
 * every switch is a switch of the target's threads). Prints the ops ratio's median with its
 * 90% interval, and the agent's CPU while the load runs and while the pod is idle.
 *
 * Both processes run on one CPU (`--pin 1`, the default): each round trip is then two context
 * switches and nothing else, the hook's worst case. Spread over CPUs, a round trip is two
 * wake-ups across CPUs whose cost on a VM (idle exits, IPIs) moves with where the scheduler
 * placed the processes, and hides a per-switch cost in that noise (`--pin 0` measures it so).
 *
 *   deno task bench:runqueue [--rounds N] [--seconds N] [--pin 0|1]
 */

import {
  benchMain,
  dropRuns,
  f,
  interval,
  median,
  noteOtherLoad,
  pairedRatio,
  pairedRounds,
  parseOptions,
  PIN_CPU,
  pinned,
  type Runner,
  sleep,
  startKupod,
  stopKupod,
} from "./overhead.ts";
import { hostCpuSeconds, processTreeSeconds } from "./socket_proc.ts";
import type { TestPod } from "../tests/helpers/pod.ts";
import { inContainerArgs } from "../tests/helpers/pod_exec.ts";

const DEFAULTS = { rounds: 10, seconds: 3, pin: 1 };

/** Round trips of one byte between two processes over pipes for `seconds`; prints the count. */
const PING_PONG = `
import os, sys, time
a, b = os.pipe(), os.pipe()
if os.fork() == 0:
    while os.read(a[0], 1): os.write(b[1], b"x")
    os._exit(0)
end, n = time.monotonic() + float(sys.argv[1]), 0
while time.monotonic() < end:
    os.write(a[1], b"x"); os.read(b[0], 1); n += 1
os.close(a[1])
print(n)
`;

interface Run {
  mode: "off" | "on";
  round: number;
  ops: number;
  kupodCpu: number;
  stealCores: number;
  otherCores: number;
}

/** The ping-pong in the pod's netns and the service container's cgroups; ops per second. */
async function pingPong(
  runner: Runner,
  pod: TestPod,
  seconds: number,
  pin: boolean,
): Promise<number> {
  // forked children stay in the container's cgroups (and on its CPU)
  const [cmd, ...rest] = inContainerArgs(
    pod,
    pod.container("app"),
    pinned(pin, ["python3", "-c", PING_PONG, String(seconds)]),
  );
  const p = runner.spawn("pingpong", cmd, rest);
  const status = await p.wait((seconds + 30) * 1000);
  runner.check();
  if (!status.success) throw new Error(`ping-pong failed: ${p.output()}`);
  return Number(p.stdout.text().trim()) / seconds;
}

const code = await benchMain(
  "runqueue",
  ["python3"],
  () => parseOptions(DEFAULTS, Deno.args),
  async (
    runner,
    opts,
    pod,
  ) => {
    const args = ["monitor", "kernel", "resources", "--veth", pod.hostVeth, "--quiet"];
    const runs: Run[] = [];
    let started = 0;
    console.log(`./kupod ${args.join(" ")}`);
    console.log(
      `pipe ping-pong in the service container${
        opts.pin ? ` on CPU ${PIN_CPU}` : ""
      }, ${opts.rounds} rounds of ${opts.seconds} s`,
    );
    let idleCores = NaN;
    const run = async (mode: "off" | "on", round: number): Promise<Run> => {
      const kupod = mode === "on"
        ? await startKupod(runner, args, await runner.tempPath(`kupod-${++started}.out`))
        : undefined;
      if (kupod && Number.isNaN(idleCores)) {
        const c0 = processTreeSeconds(kupod.proc.pid);
        await sleep(10_000);
        idleCores = (processTreeSeconds(kupod.proc.pid) - c0) / 10;
      }
      const cpu0 = kupod ? processTreeSeconds(kupod.proc.pid) : 0;
      const h0 = hostCpuSeconds(), t0 = performance.now();
      const ops = await pingPong(runner, pod, opts.seconds, opts.pin !== 0);
      const wall = (performance.now() - t0) / 1000, h1 = hostCpuSeconds();
      const r: Run = {
        mode,
        round,
        ops,
        kupodCpu: kupod ? processTreeSeconds(kupod.proc.pid) - cpu0 : 0,
        stealCores: (h1.steal - h0.steal) / wall,
        otherCores: 0,
      };
      if (kupod) await stopKupod(kupod, "resources", false);
      runs.push(r);
      console.error(`  round ${round} ${mode}: ${f(ops, 0)} round trips/s`);
      return r;
    };
    const redone = await pairedRounds(opts.rounds, run, (gone) => dropRuns(runs, gone));
    const ratio = pairedRatio(runs, (r) => r.ops);
    console.log("");
    console.log(
      `ops on/off: ${f(ratio.ratio, 3)}${interval(ratio.interval, 3)} (median, 90% interval)`,
    );
    console.log(
      `agent CPU: ${
        f(median(runs.filter((r) => r.mode === "on").map((r) => r.kupodCpu / opts.seconds)), 3)
      } ` +
        `cores under the load, ${f(idleCores, 4)} cores with the pod idle (one pod watched)`,
    );
    console.log(`rounds: ${ratio.rounds.map((x) => f(x, 3)).join(" ")}`);
    noteOtherLoad(runs.map((r) => r.otherCores), runs.map((r) => r.stealCores), redone);
  },
);

Deno.exit(code);
