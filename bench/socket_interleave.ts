/**
 * Interleaved socket bench: what the socket probe's kernel programs cost a pod's throughput,
 * measured in windows of a second, attached and detached in turn under one continuous load.
 *
 *   deno task bench:interleave [--pairs 150] [--window-ms 1000] [--settle-ms 150]
 *                              [--connections 32] [--warmup-seconds 5]
 *
 * Why: on a virtual machine each vCPU's speed moves by 10-30% within seconds, independently
 * of the other's (measured here: the same pinned keep-alive load ran at 16k to 33k req/s over a
 * minute, a fixed CPU loop's windows of 0.7 s differ by 12%). bench/socket.ts restarts kupod
 * for every "on" run, so its paired runs lie ~15 s apart and a round's ratio scatters by
 * +-15%: its median over 9 rounds cannot tell 0.97 from 0.91. Here the same programs are
 * switched at every window and compared with the window next to them, hundreds of times.
 *
 * Needs root, wrk, nginx and the BPF objects (deno task bpf). ~2 x pairs x window, ~5 min:
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
 * What it leaves out: kupod's user-space agent (bench/socket.ts measures it: ~0.01 cores under
 * this load, 0.002-0.003 per 10k req/s, i.e. ~0.5% of the pod's busy CPU) and its start.
 * Exit status: 0 when the measurement ran, 1 on errors (wrk failing, the probe not loading), 130
 * when interrupted; the programs are detached and the pod disposed on any exit.
 */

import { disposeAll } from "../bpf/link.ts";
import type { Attachment } from "../bpf/link.ts";
import { RODATA } from "../bpf/gen/socket.ts";
import { resolveVeth } from "../k8s/local.ts";
import { ProbeObject } from "../probes/probe_object.ts";
import {
  benchMain,
  f,
  interval,
  MAX_STEAL,
  median,
  medianInterval,
  parseOptions,
  runWrk,
  sleep,
  sourceVersion,
  UsageError,
} from "./overhead.ts";
import { hostCpuSeconds } from "./socket_proc.ts";

const DEFAULTS = {
  pairs: 150,
  "window-ms": 1000,
  "settle-ms": 150,
  connections: 32,
  "warmup-seconds": 5,
};
type Options = typeof DEFAULTS;

interface Window {
  pair: number;
  attached: boolean;
  rate: number;
  steal: number;
}

function options(): Options {
  const o = parseOptions(DEFAULTS, Deno.args);
  if (o.pairs < 3) throw new UsageError("--pairs must be >= 3");
  if (o["window-ms"] < 100) throw new UsageError("--window-ms must be >= 100");
  if (o.connections < 1) throw new UsageError("--connections must be >= 1");
  return o;
}

/** A counter of the host veth's statistics. */
function vethCounter(veth: string, name: string): number {
  return Number(Deno.readTextFileSync(`/sys/class/net/${veth}/statistics/${name}`));
}

if (import.meta.main) {
  Deno.exit(
    await benchMain("interleave", ["wrk", "nginx"], options, async (runner, o, pod) => {
      const started = performance.now();
      const seconds = Math.ceil(
        (2 * o.pairs * (o["window-ms"] + o["settle-ms"])) / 1000 * 1.05 + 5,
      );
      console.log(
        `interleaved socket bench: pod ${pod.name} ${pod.podIP} (veth ${pod.hostVeth}), ` +
          `wrk -t1 -c${o.connections} keep-alive, ${o.pairs} pairs of ${o["window-ms"]} ms ` +
          `windows (${o["settle-ms"]} ms after each switch); ${navigator.hardwareConcurrency} CPUs`,
      );
      console.log(`kupod: ${await sourceVersion()}`);
      const url = pod.url(8080);
      if (o["warmup-seconds"] > 0) {
        await runWrk(runner, url, {
          connections: o.connections,
          seconds: o["warmup-seconds"],
          close: false,
        });
      }

      let events = 0;
      const probe = ProbeObject.open({
        object: "socket",
        target: await resolveVeth(pod.hostVeth),
        rodataLayout: RODATA,
        rodata: { close_events: false, timing_events: false },
        ringBytes: 1 << 21,
        attach: () => [],
        onSample: () => events++,
      });
      let links: Attachment[] = [];
      const programs = probe.object.programs().map((p) => p.name);
      const setAttached = (on: boolean) => {
        if (on && !links.length) links = probe.object.programs().map((p) => p.attach());
        if (!on && links.length) disposeAll(links.splice(0));
      };
      runner.defer(async () => {
        disposeAll(links.splice(0));
        await probe.close();
      });
      const reading = probe.read();

      const load = runWrk(runner, url, { connections: o.connections, seconds, close: false });
      let loadDone = false;
      load.finally(() => loadDone = true).catch(() => {});
      await sleep(1000);
      const windows: Window[] = [];
      for (let pair = 1; pair <= o.pairs; pair++) {
        for (const attached of pair % 2 ? [false, true] : [true, false]) {
          setAttached(attached);
          await sleep(o["settle-ms"]);
          const [n0, h0, t0] = [
            vethCounter(pod.hostVeth, "rx_packets"),
            hostCpuSeconds(),
            performance.now(),
          ];
          await sleep(o["window-ms"]);
          runner.check();
          if (loadDone) throw new Error("wrk ended before the windows did");
          const wall = (performance.now() - t0) / 1000;
          windows.push({
            pair,
            attached,
            rate: (vethCounter(pod.hostVeth, "rx_packets") - n0) / wall,
            steal: (hostCpuSeconds().steal - h0.steal) / wall,
          });
        }
      }
      setAttached(false);
      const wrk = await load;
      const rounds: number[] = [];
      let stolen = 0;
      for (let pair = 1; pair <= o.pairs; pair++) {
        const [a, b] = windows.filter((w) => w.pair === pair);
        if (Math.max(a.steal, b.steal) > MAX_STEAL) {
          stolen++;
          continue;
        }
        const [on, off] = a.attached ? [a, b] : [b, a];
        rounds.push(on.rate / off.rate);
      }
      const rate = (attached: boolean) =>
        median(windows.filter((w) => w.attached === attached).map((w) => w.rate));
      console.log("");
      console.log(
        `wrk: ${f(wrk.rps, 0)} req/s over ${f(wrk.seconds, 0)} s, p50 ${f(wrk.p50Ms, 2)} ms, ` +
          `p99 ${f(wrk.p99Ms, 2)} ms; replies/s median of windows: off ${f(rate(false), 0)}, ` +
          `on ${f(rate(true), 0)}; ring events ${events}; programs ${programs.join(", ")}`,
      );
      if (stolen) {
        console.log(`${stolen} of ${o.pairs} pairs left out: steal above ${MAX_STEAL} cores`);
      }
      if (rounds.length < 3) throw new Error("fewer than 3 pairs without steal: no ratio");
      const ratio = median(rounds);
      const sorted = [...rounds].sort((x, y) => x - y);
      const q = (p: number) => sorted[Math.floor(p * (sorted.length - 1))];
      console.log(
        `pairs: on/off quartiles ${f(q(0.25), 3)} ${f(q(0.5), 3)} ${f(q(0.75), 3)}, ` +
          `5th-95th percentile ${f(q(0.05), 3)}-${f(q(0.95), 3)}`,
      );
      await probe.close();
      await reading;
      console.log("");
      console.log(`total ${f((performance.now() - started) / 1000, 0)} s`);
      console.log(
        `socket kernel programs: throughput ratio on/off = ${f(ratio, 3)}${
          interval(medianInterval(rounds), 3)
        } (${rounds.length} pairs of ${o["window-ms"]} ms windows)`,
      );
    }),
  );
}
