/**
 * The stack probe's path windows (--stack-duty-cycle): the veth's TC counts every packet for the
 * whole run, the path's hooks are attached only while a window is open and then count exactly;
 * between windows nothing of the path is attached.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { createTestPod } from "./helpers/pod.ts";
import { startKupod } from "./helpers/process.ts";
import {
  assertStackGone,
  exporterUrl,
  pathCounts,
  ping,
  series,
  sleep,
  sorted,
  type StackCounts,
  stackCounts,
  stackLinks,
  stopAndWait,
} from "./helpers/stack.ts";
import { parseExposition } from "./helpers/prom.ts";

/** 1 s of every 5 s (probes/stack_window.ts PATH_PERIOD_MS), the first from the start. */
const DUTY = "0.2";
/** kupod reports its counts every second: a reading this long after traffic includes it. */
const REPORTED_MS = 1300;

/** Whether a path window is open now: the netfilter links are the path's. */
async function windowOpen(): Promise<boolean> {
  return (await stackLinks()).includes("netfilter");
}

/** Per-hook differences `b - a`, non-zero only. */
function added(a: StackCounts, b: StackCounts): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [hook, n] of Object.entries(b.hooks)) {
    if (n - (a.hooks[hook] ?? 0)) out[hook] = n - (a.hooks[hook] ?? 0);
  }
  return out;
}

async function tracedSeconds(url: string): Promise<number> {
  const samples = parseExposition(await (await fetch(`${url}/metrics`)).text());
  return series(samples, "kupod_stack_path_traced_seconds_total")[0]?.value ?? -1;
}

Deno.test("stack windows: the veth counts every packet, the path only while a window is open", async () => {
  await using pod = await createTestPod();
  const kupod = await startKupod([
    ...["monitor", "kernel", "stack", "--veth", pod.hostVeth, "--output", "json"],
    ...["--stack-protocol", "icmp", "--stack-address", pod.podIP, "--stack-duty-cycle", DUTY],
  ]);
  try {
    const url = await exporterUrl(kupod);
    const started = Date.now();
    // between the first window (0-1 s) and the second (5-6 s)
    await sleep(1500 - (Date.now() - started));
    assert(!await windowOpen(), "path attached between windows");
    const idle = await stackCounts(url);
    await ping(pod.podIP, 10);
    assert(!await windowOpen(), "a window opened during the echos (too slow a machine?)");
    await sleep(REPORTED_MS);
    const closed = await stackCounts(url);
    // replies ping reads from its raw socket's copy are dropped at the host's veth: counted too
    const { drop = 0, ...boundary } = added(idle, closed);
    assertEquals(sorted(boundary), { tc_egress: 10, tc_ingress: 10 }, "between windows");
    assertEquals(drop, (closed.drops.no_socket ?? 0) - (idle.drops.no_socket ?? 0), "drops");
    assertEquals(closed.nic, { rx: idle.nic.rx + 10, tx: idle.nic.tx + 10 }, "NIC counts");

    const until = started + 7000;
    while (!await windowOpen()) {
      assert(Date.now() < until, "no second window");
      await sleep(50);
    }
    await ping(pod.podIP, 5);
    assert(await windowOpen(), "the window closed during the echos (too slow a machine?)");
    await sleep(REPORTED_MS);
    const open = await stackCounts(url);
    const inWindow = added(closed, open);
    const path = Object.fromEntries(
      Object.entries(inWindow).filter(([h]) => h in pathCounts(5, 5)),
    );
    assertEquals(sorted(path), pathCounts(5, 5), "every hook of the path while the window is open");
    assertEquals(inWindow.consume, 5, "requests consumed in the pod");

    // two windows of 1 s so far (the second one may still be open)
    const traced = await tracedSeconds(url);
    assert(traced > 1.5 && traced <= 2.1, `traced ${traced} s`);
    await stopAndWait(kupod);
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
  await assertStackGone(pod.hostVeth);
});

Deno.test("stack windows: with a duty cycle of 0 only the veth and drops are hooked", async () => {
  await using pod = await createTestPod();
  const kupod = await startKupod(
    ["monitor", "kernel", "stack", "--veth", pod.hostVeth, "--stack-duty-cycle", "0", "--quiet"],
  );
  try {
    // tcx on both directions and the drop tracepoint (tp_btf)
    assertEquals(await stackLinks(), ["raw_tracepoint", "tcx", "tcx"]);
    await stopAndWait(kupod);
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
  await assertStackGone(pod.hostVeth);
});
