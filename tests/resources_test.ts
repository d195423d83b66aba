/**
 * The resources probe against known loads in a test pod's container: a process burning half a
 * core, one touching 256 MiB, 50 MB through the pod's interface, an OOM kill under a memory
 * limit, and threads contending for one CPU; each figure cross-checked with the kernel's own
 * files in the same test. Nothing is left loaded.
 */

import type { ResourcesEvent } from "../probes/events.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod, type TestContainer, type TestPod } from "./helpers/pod.ts";
import { cgroupDirs } from "./helpers/pod_exec.ts";
import { Child, DENO, freePort, ROOT, startKupod } from "./helpers/process.ts";
import { parseExposition, seriesKey } from "./helpers/prom.ts";

const MiB = 1 << 20;

async function withPod(fn: (pod: TestPod) => Promise<void>): Promise<void> {
  await using pod = await createTestPod();
  await fn(pod);
  assertEquals(await waitNoKupodPrograms(), []);
}

/**
 * Starts the load fixture (or a command that speaks its "ready <pid>" / "go" protocol) in the
 * pod's network namespace (optionally pinned to the first CPU:
 * "cpu0" first), moves it into the container's cgroups (v2 and v1) and then lets it run; with
 * `hold` it waits for "go" on stdin. (`ip netns exec` mounts a sysfs of the namespace's own, so
 * the move is made from here, where the cgroup hierarchies are mounted.)
 */
async function loadIn(
  pod: TestPod,
  c: TestContainer,
  args: string[],
  opts: { hold?: boolean } = {},
): Promise<Child> {
  const pin = args[0] === "cpu0" ? ["taskset", "-c", "0"] : [];
  if (pin.length) args = args.slice(1);
  const fixture = ["burn", "touch", "grow"].includes(args[0]);
  const program = fixture
    ? [DENO, "run", "--allow-all", `${ROOT}tests/fixtures/load.ts`, ...args]
    : args;
  const [cmd, ...rest] = [...pin, "ip", "netns", "exec", pod.netns, ...program];
  const load = new Child(cmd, rest, { stdin: true });
  const pid = Number((await load.waitForLine(/^ready \d+/)).split(" ")[1]);
  for (const dir of cgroupDirs(c)) await Deno.writeTextFile(`${dir}/cgroup.procs`, String(pid));
  if (!opts.hold) await load.writeLine("go");
  return load;
}

/** The service container's resources events (a local target names it by its process: deno). */
function resources(kupod: Child): ResourcesEvent[] {
  return kupod.stdout.filter((l) => l.includes('"type":"resources"')).map((l) => JSON.parse(l))
    .filter((e: ResourcesEvent) => e.role === "service");
}

const SERVICE = { namespace: "", pod: "", container: "deno" };

async function metrics(port: number): Promise<Map<string, number>> {
  return parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
}

function resourcesArgs(pod: TestPod, port: number): string[] {
  return [
    "monitor",
    "kernel",
    "resources",
    "--veth",
    pod.hostVeth,
    "--output",
    "json",
    "--exporter-address",
    "127.0.0.1",
    "--exporter-port",
    String(port),
  ];
}

Deno.test("resources: half a core, 256 MiB touched, and the cgroup files agree", () =>
  withPod(async (pod) => {
    const port = freePort();
    const app = pod.container("app");
    await using kupod = await startKupod(resourcesArgs(pod, port));
    await using burn = await loadIn(pod, app, ["burn", "0.5"]);
    // the second interval of 5 s after the load started lies wholly under it
    const before = resources(kupod).length;
    const deadline = Date.now() + 20_000;
    while (resources(kupod).length < before + 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert(resources(kupod).length >= before + 2, `resources events: ${kupod.stdout.length} lines`);
    const cpu = resources(kupod).at(-1)!.cpu_cores;
    assert(Math.abs(cpu - 0.5) <= 0.05, `cpu ${cpu} cores, want 0.5 ± 0.05`);
    const usage = (m: Map<string, number>) =>
      m.get(seriesKey("container_cpu_usage_seconds_total", SERVICE))!;
    // the metric is the v2 cpu.stat the kernel keeps, read afresh at the scrape
    const stat = () =>
      Number(/usage_usec (\d+)/.exec(Deno.readTextFileSync(`${app.cgroupV2Dir}/cpu.stat`))![1]) /
      1e6;
    const s0 = stat(), m = await metrics(port), s1 = stat();
    assert(usage(m) >= s0 && usage(m) <= s1, `metric ${usage(m)} between ${s0} and ${s1}`);
    burn.kill("SIGKILL");

    const ws = (m: Map<string, number>) =>
      m.get(seriesKey("container_memory_working_set_bytes", SERVICE))!;
    const w0 = ws(await metrics(port));
    await using touch = await loadIn(pod, app, ["touch", "256"]);
    await touch.waitForLine(/^touched/, 30_000);
    const w1 = ws(await metrics(port));
    const grew = (w1 - w0) / MiB;
    assert(Math.abs(grew - 256) <= 256 * 0.05, `working set grew by ${grew} MiB, want 256 ± 5%`);
    const memDir = app.cgroupV1Paths.memory;
    if (memDir) {
      const usageFile = Number(Deno.readTextFileSync(`${memDir}/memory.usage_in_bytes`));
      assert(w1 <= usageFile + 4 * MiB, `working set ${w1} within usage ${usageFile}`);
    }
  }));

Deno.test("resources: 50 MB through the pod's interface, counted as its veth's peer counts it", () =>
  withPod(async (pod) => {
    const port = freePort();
    await using _kupod = await startKupod(resourcesArgs(pod, port));
    const tx = (m: Map<string, number>) =>
      m.get(seriesKey("container_network_transmit_bytes_total", {
        namespace: "",
        pod: "",
        container: "",
        interface: "eth0",
      }));
    const host = () =>
      Number(Deno.readTextFileSync(`/sys/class/net/${pod.hostVeth}/statistics/rx_bytes`));
    const m0 = await metrics(port), h0 = host();
    const size = 50_000_000;
    const curl = await new Deno.Command("curl", {
      args: [
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        pod.url(pod.container("app").port, `/?size=${size}`),
      ],
      stdout: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(curl.stdout), String(size));
    const m1 = await metrics(port), h1 = host();
    const sent = tx(m1)! - tx(m0)!, received = h1 - h0;
    assert(sent >= size, `pod sent ${sent} bytes for a ${size}-byte body`);
    assert(Math.abs(sent - received) <= received * 0.01, `pod sent ${sent}, host got ${received}`);
  }));

Deno.test("resources: an OOM kill under a memory limit is seen with its victim", () =>
  withPod(async (pod) => {
    const port = freePort();
    const app = pod.container("app");
    const memDir = app.cgroupV1Paths.memory;
    assert(memDir, "the test pod has a v1 memory cgroup on this machine");
    await using kupod = await startKupod(resourcesArgs(pod, port));
    const limit = `${memDir}/memory.limit_in_bytes`;
    const old = Deno.readTextFileSync(limit).trim();
    try {
      // the service's own pages stay charged to the cgroup it started in: the limit is for newcomers
      await using grow = await loadIn(pod, app, ["grow", "512"], { hold: true });
      const used = Number(Deno.readTextFileSync(`${memDir}/memory.usage_in_bytes`));
      Deno.writeTextFileSync(limit, String(used + 96 * MiB));
      await grow.writeLine("go");
      const victim = Number(grow.stdout[0].split(" ")[1]); // "ready <pid>"
      const status = await Promise.race([
        grow.wait(),
        new Promise<never>((_, no) =>
          setTimeout(() => no(new Error("no OOM kill in 30 s")), 30_000)
        ),
      ]);
      assertEquals(status.signal, "SIGKILL", "the OOM killer ended it");
      const oom = await kupod.waitForLine(/"type":"oom_kill"/, 10_000);
      const e = JSON.parse(oom);
      assertEquals([e.container, e.role, e.victim_pid], ["deno", "service", victim]);
      assert(e.victim_comm, "the victim's name");
      const m = await metrics(port);
      assertEquals(m.get(seriesKey("kupod_container_oom_kills_total", SERVICE)), 1);
      assertEquals(m.get(seriesKey("container_oom_events_total", SERVICE)), 1);
    } finally {
      Deno.writeTextFileSync(limit, old);
    }
  }));

/** The median of the container's run-queue waits between two scrapes (upper bound of its slot). */
function runqueueP50(m0: Map<string, number>, m1: Map<string, number>): number {
  const name = "kupod_container_runqueue_latency_seconds";
  const count = (m: Map<string, number>) => m.get(seriesKey(`${name}_count`, SERVICE)) ?? 0;
  const total = count(m1) - count(m0);
  assert(total > 20, `${total} run-queue waits`);
  for (let k = 10; k <= 32; k++) {
    const le = String(2 ** k * 1e-9);
    const at = (m: Map<string, number>) =>
      m.get(seriesKey(`${name}_bucket`, { ...SERVICE, le })) ?? 0;
    if (at(m1) - at(m0) >= total / 2) return 2 ** k * 1e-9;
  }
  return Infinity;
}

Deno.test("resources: run-queue waits of a task sharing a CPU with two hogs, and alone", () =>
  withPod(async (pod) => {
    const port = freePort();
    await using _kupod = await startKupod(resourcesArgs(pod, port));
    // the task: one thread, busy 20 ms then asleep 20 ms, alone in its container and on its CPU
    await using _sleeper = await loadIn(pod, pod.container("app"), [
      "cpu0",
      "python3",
      "-c",
      "import os, sys, time\nprint('ready', os.getpid(), flush=True)\nsys.stdin.readline()\n" +
      "while True:\n t = time.monotonic()\n while time.monotonic() - t < 0.02: pass\n time.sleep(0.02)",
    ]);
    await new Promise((r) => setTimeout(r, 500));
    const a0 = await metrics(port);
    await new Promise((r) => setTimeout(r, 2000));
    const alone = runqueueP50(a0, await metrics(port));
    // two hogs on the same CPU, in the other container
    await using _hog1 = await loadIn(pod, pod.container("proxy"), ["cpu0", "burn", "1"]);
    await using _hog2 = await loadIn(pod, pod.container("proxy"), ["cpu0", "burn", "1"]);
    await new Promise((r) => setTimeout(r, 500));
    const b0 = await metrics(port);
    await new Promise((r) => setTimeout(r, 3000));
    const shared = runqueueP50(b0, await metrics(port));
    assert(shared >= 1e-3, `with two hogs on its CPU: p50 ${shared * 1e3} ms, want ≥ 1 ms`);
    assert(alone < shared / 4, `alone p50 ${alone * 1e3} ms, shared ${shared * 1e3} ms`);
  }));
