/**
 * What --with-sockops buys: the same command line with and without redirection (`monitor
 * kernel socket --veth <pod>` vs the same with `--with-sockops`), in ABBA rounds, with a client
 * in the test pod's sidecar container and a server in its service container over the pod's
 * loopback. Per round: the median round trip of small messages (one byte each way, blocking
 * sockets: bench/pingpong.c, built with gcc at start), the throughput of one bulk stream
 * (tests/fixtures/tcp_transfer.ts, checked by SHA-256) and the request rate of keep-alive HTTP
 * load (wrk from the host) through the pod's nginx sidecar to its service. Prints the on/off
 * ratios with their 90% intervals.
 *
 * Redirection applies to connections established while it is attached; nginx keeps its upstream
 * connections across windows, so each run reloads nginx (SIGHUP: new workers, new upstream
 * connections) after kupod started, in both modes.
 *
 * `--pin 1` runs both ping-pong processes on one CPU: the round trip is then the network
 * stack's work and two context switches, without waking an idle CPU (on a VM, an exit to the
 * hypervisor and an interrupt, most of an unpinned round trip here). `--spin 1` has each side
 * poll its socket instead of sleeping in read(): the round trip is then the sends and receives
 * alone, with no reader to wake.
 *
 *   deno task bench:sockops [--rounds N] [--trips N] [--megabytes N] [--http-seconds N]
 *                           [--pin 0|1] [--spin 0|1]
 */

import {
  benchMain,
  dropRuns,
  f,
  interval,
  pairedRatio,
  pairedRounds,
  parseOptions,
  PIN_CPU,
  pinned,
  ROOT,
  type Runner,
  runWrk,
  sleep,
  startKupod,
  stopKupod,
  UsageError,
} from "./overhead.ts";
import { hostCpuSeconds } from "./socket_proc.ts";
import type { TestContainer, TestPod } from "../tests/helpers/pod.ts";
import { inContainerArgs } from "../tests/helpers/pod_exec.ts";

const DEFAULTS = { rounds: 8, trips: 20000, megabytes: 512, "http-seconds": 5, pin: 0, spin: 0 };
const WRK_CONNECTIONS = 32;
const DENO = `${ROOT}node_modules/@deno/linux-x64-glibc/deno`;

interface Run {
  mode: "off" | "on";
  round: number;
  p50Ns: number;
  mbps: number;
  rps: number;
  stealCores: number;
}

/**
 * nginx reloaded: the master starts new workers (their upstream connections are made from now
 * on) and the old ones leave once idle; returns when only the new worker is left.
 */
async function reloadNginx(proxy: TestContainer): Promise<void> {
  const master = proxy.mainPid;
  const before = new Set(proxy.pids().filter((p) => p !== master));
  Deno.kill(master, "SIGHUP");
  for (let i = 0; i < 250; i++) {
    const workers = proxy.pids().filter((p) => p !== master);
    if (workers.length && workers.every((p) => !before.has(p))) return;
    await sleep(20);
  }
  throw new Error("nginx did not reload");
}

/** `args` as a process of the container (tests/helpers/pod_exec.ts). */
function spawnIn(runner: Runner, name: string, pod: TestPod, c: TestContainer, args: string[]) {
  const [cmd, ...rest] = inContainerArgs(pod, c, args);
  return runner.spawn(name, cmd, rest);
}

async function listeningPort(p: { stdout: { text(): string }; exited: boolean }): Promise<string> {
  for (let i = 0; i < 300; i++) {
    const m = /listening (\d+)/.exec(p.stdout.text());
    if (m) return m[1];
    if (p.exited) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("server did not start");
}

const code = await benchMain(
  "sockops",
  ["gcc", "wrk"],
  () => {
    const opts = parseOptions(DEFAULTS, Deno.args);
    // two pollers on one CPU take turns by time slice, not by message
    if (opts.pin && opts.spin) {
      throw new UsageError("--spin 1 needs the two sides on two CPUs: not with --pin 1");
    }
    return opts;
  },
  async (runner, opts, pod) => {
    const base = ["monitor", "kernel", "socket", "--veth", pod.hostVeth, "--quiet"];
    const app = pod.container("app"), proxy = pod.container("proxy");
    const runs: Run[] = [];
    let started = 0;
    const pingpong = await runner.tempPath("pingpong");
    const cc = runner.spawn("gcc", "gcc", ["-O2", "-o", pingpong, `${ROOT}bench/pingpong.c`]);
    if (!(await cc.wait(60_000)).success) throw new Error(`gcc: ${cc.output()}`);
    console.log(`./kupod ${base.join(" ")} [--with-sockops]`);
    console.log(
      `${opts.trips} one-byte round trips${opts.pin ? ` (both on CPU ${PIN_CPU})` : ""}` +
        `${opts.spin ? " (polling, not sleeping)" : ""} and ` +
        `${opts.megabytes} MB in one stream per run, ` +
        `sidecar container -> service container over the pod's loopback`,
    );
    const run = async (mode: "off" | "on", round: number): Promise<Run> => {
      const args = mode === "on" ? [...base, "--with-sockops"] : base;
      const kupod = await startKupod(runner, args, await runner.tempPath(`k-${++started}.out`));
      const h0 = hostCpuSeconds(), t0 = performance.now();
      // small messages
      const pin = opts.pin !== 0, wait = opts.spin ? ["spin"] : [];
      const srv = spawnIn(
        runner,
        "pp-server",
        pod,
        app,
        pinned(pin, [pingpong, "server", ...wait]),
      );
      const port = await listeningPort(srv);
      const cli = spawnIn(
        runner,
        "pp-client",
        pod,
        proxy,
        pinned(pin, [pingpong, "client", port, String(opts.trips), ...wait]),
      );
      if (!(await cli.wait(120_000)).success) throw new Error(`ping-pong: ${cli.output()}`);
      const p50Ns = Number(cli.stdout.text().trim());
      await runner.stop(srv);
      // one bulk stream
      const bulk = spawnIn(runner, "bulk-server", pod, app, [
        DENO,
        "run",
        "--allow-net",
        `${ROOT}tests/fixtures/tcp_transfer.ts`,
        "server",
        "127.0.0.1",
        "0",
      ]);
      const bport = await listeningPort(bulk);
      const client = spawnIn(runner, "bulk-client", pod, proxy, [
        DENO,
        "run",
        "--allow-net",
        `${ROOT}tests/fixtures/tcp_transfer.ts`,
        "client",
        "127.0.0.1",
        bport,
        "--bytes",
        `${opts.megabytes}M`,
        "--timeout",
        "120",
      ]);
      await client.wait(150_000);
      const r = JSON.parse(client.stdout.text().trim().split("\n").at(-1) ?? "{}");
      if (!r.ok) throw new Error(`bulk transfer: ${client.output()}`);
      await runner.stop(bulk);
      // HTTP through the sidecar, upstream connections made now
      let rps = NaN;
      if (opts["http-seconds"] > 0) {
        await reloadNginx(proxy);
        rps = (await runWrk(runner, `http://${pod.podIP}:${proxy.port}/`, {
          connections: WRK_CONNECTIONS,
          seconds: opts["http-seconds"],
          close: false,
        })).rps;
      }
      const wall = (performance.now() - t0) / 1000, h1 = hostCpuSeconds();
      // connections redirected while kupod ran hold its sk_msg program until they close
      await stopKupod(kupod, "socket", false, async () => {
        if (mode === "on" && opts["http-seconds"] > 0) await reloadNginx(proxy);
      });
      const out: Run = {
        mode,
        round,
        p50Ns,
        mbps: r.mbps,
        rps,
        stealCores: (h1.steal - h0.steal) / wall,
      };
      runs.push(out);
      console.error(
        `  round ${round} ${mode}: p50 ${f(p50Ns / 1000, 1)} us, bulk ${f(r.mbps, 0)} Mbit/s, ` +
          `HTTP ${f(rps, 0)} req/s`,
      );
      return out;
    };
    await pairedRounds(opts.rounds, run, (gone) => dropRuns(runs, gone));
    const p50 = pairedRatio(runs, (r) => r.p50Ns);
    const bulk = pairedRatio(runs, (r) => r.mbps);
    console.log("");
    console.log(
      `small-message round trip p50 with/without redirect: ${f(p50.ratio, 3)}${
        interval(p50.interval, 3)
      } (median, 90% interval; target <= 0.8)`,
    );
    console.log(
      `bulk throughput with/without redirect: ${f(bulk.ratio, 3)}${
        interval(bulk.interval, 3)
      } (target >= 1.0)`,
    );
    if (opts["http-seconds"] > 0) {
      const http = pairedRatio(runs, (r) => r.rps);
      console.log(
        `HTTP through the sidecar (wrk -c${WRK_CONNECTIONS} keep-alive, nginx -> service ` +
          `redirected) with/without redirect: ${f(http.ratio, 3)}${
            interval(http.interval, 3)
          } (target >= 1.0)`,
      );
    }
  },
);

Deno.exit(code);
