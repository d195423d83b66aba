/**
 * kupod on a busy node: 100k short connections through a pod under `monitor kernel all
 * --with-sockops` (exact counts, bounded maps, memory printed); a SIGKILL during
 * load that leaves nothing of the killed run in the kernel, after which a new run counts
 * exactly; two monitors on one pod that do not disturb each other; a pod re-created 50 times
 * under `--pod`, followed each time with nothing left behind. What a run owns is found from its
 * file descriptors, so other kupod runs on the machine do not matter.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { bpftoolJson } from "./helpers/bpf_state.ts";
import { KubeEnv } from "./helpers/kube.ts";
import { countSyns } from "./helpers/nft.ts";
import { wrkClose } from "./helpers/pod_http.ts";
import { createTestPod, type TestPodOptions } from "./helpers/pod.ts";
import { type Child, startKupod } from "./helpers/process.ts";
import { parseExposition } from "./helpers/prom.ts";
import {
  exporterUrl,
  pathCounts,
  pathOnly,
  ping,
  series,
  sleep,
  stackCounts,
  stackLinks,
  stopAndWait,
  tcFilters,
} from "./helpers/stack.ts";

interface Owned {
  programs: number[];
  links: number[];
}

/**
 * The BPF programs and links process `pid` holds, from its file descriptors' fdinfo (a link's
 * fdinfo names its program too): what the kernel must free when the process dies.
 */
function ownedBy(pid: number): Owned {
  const programs = new Set<number>(), links = new Set<number>();
  for (const fd of Deno.readDirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd.name}`);
    } catch {
      continue; // closed meanwhile
    }
    const prog = /^prog_id:\s+(\d+)/m.exec(info), link = /^link_id:\s+(\d+)/m.exec(info);
    if (prog) programs.add(Number(prog[1]));
    if (link) links.add(Number(link[1]));
  }
  const sorted = (ids: Set<number>) => [...ids].sort((a, b) => a - b);
  return { programs: sorted(programs), links: sorted(links) };
}

/** Which of `owned` still exist, anywhere: loaded, linked, or attached to a cgroup. */
async function remaining(owned: Owned): Promise<string[]> {
  const loaded = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
  const progs = new Map(loaded.map((p) => [p.id, p.name ?? "?"]));
  const links = new Set((await bpftoolJson(["link", "show"]) as { id: number }[]).map((l) => l.id));
  const tree = await bpftoolJson(["cgroup", "tree"]) as {
    cgroup: string;
    programs: { id: number }[];
  }[];
  const inCgroups = new Set(tree.flatMap((c) => c.programs.map((p) => p.id)));
  return [
    ...owned.programs.filter((id) => progs.has(id)).map((id) => `program ${id} ${progs.get(id)}`),
    ...owned.programs.filter((id) => inCgroups.has(id)).map((id) => `cgroup program ${id}`),
    ...owned.links.filter((id) => links.has(id)).map((id) => `link ${id}`),
  ];
}

/**
 * Waits until nothing of `owned` exists: the kernel frees a dead process's objects after RCU
 * grace periods, which a loaded machine can stretch to seconds.
 */
async function assertReleased(owned: Owned): Promise<void> {
  let left = await remaining(owned);
  for (const until = Date.now() + 20_000; left.length && Date.now() < until; await sleep(100)) {
    left = await remaining(owned);
  }
  assertEquals(left, [], "objects of the killed run");
}

/** Resident memory of process `pid` now (VmRSS) or at its peak (VmHWM), in bytes. */
function rss(pid: number, field: "VmRSS" | "VmHWM"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
}

const CONNECTIONS = 100_000;

Deno.test("busy node: 100k short connections under monitor kernel all --with-sockops: exact, maps bounded", async () => {
  await using pod = await createTestPod();
  const port = pod.container("proxy").port;
  const syns = await countSyns(pod, port);
  const kupod = await startKupod([
    "monitor",
    "kernel",
    "all",
    "--with-sockops",
    "--veth",
    pod.hostVeth,
    "--quiet",
  ]);
  try {
    const url = await exporterUrl(kupod);
    // resident memory while the churn runs, sampled, and what it was once started
    await sleep(1000);
    const first = rss(kupod.pid, "VmRSS");
    let most = first;
    const sampler = setInterval(() => (most = Math.max(most, rss(kupod.pid, "VmRSS"))), 200);
    try {
      for (const until = Date.now() + 240_000; await syns() < CONNECTIONS;) {
        assert(Date.now() < until, `only ${await syns()} connections in 4 minutes`);
        await wrkClose(pod, port, 5);
      }
      await sleep(2500); // every close read, the counts reported
    } finally {
      clearInterval(sampler);
    }
    const accepted = await syns();
    const samples = parseExposition(await (await fetch(`${url}/metrics`)).text());
    const metric = (name: string, labels: Record<string, string>) =>
      series(samples, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        ?.value;
    // a pod found by its veth names containers by their processes: the sidecar is nginx
    assertEquals(
      metric("kupod_tcp_connections_total", { container: "nginx", direction: "inbound" }),
      accepted,
      "every connection the sidecar accepted",
    );
    // the redirection map holds open local connections only: the churn went through it
    const sockets = metric("kupod_sockops_sockets", {}) ?? 0;
    assert(sockets <= 64, `sockets left in the sockhash: ${sockets}`);
    const mb = (n: number) => (n / (1 << 20)).toFixed(1);
    console.log(
      `${accepted} connections, ${sockets} sockets in the map after, RSS under the churn up to ${
        mb(most)
      } MB (peak since start ${mb(rss(kupod.pid, "VmHWM"))} MB), events lost ${
        JSON.stringify(series(samples, "kupod_events_lost_total"))
      }; RSS before it ${mb(first)} MB`,
    );
    // memory is printed, not asserted: V8 lets its heap grow under any steady work before it
    // collects, so a figure here says little; bench:ab measures it against the 80 MB target
    await stopAndWait(kupod);
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
});

const STACK_ICMP = ["monitor", "kernel", "stack", "--stack-protocol", "icmp", "--quiet"];

Deno.test("busy node: SIGKILL under load leaves nothing of the run; the next run counts exactly", async () => {
  const pod = await createTestPod();
  let redirecting: Owned = { programs: [], links: [] };
  try {
    const port = pod.container("proxy").port;
    const kupod = await startKupod([
      "monitor",
      "kernel",
      "all",
      "--with-sockops",
      "--veth",
      pod.hostVeth,
      "--quiet",
    ]);
    let owned: Owned;
    try {
      owned = ownedBy(kupod.pid);
      assert(owned.programs.length > 10 && owned.links.length > 10, JSON.stringify(owned));
      const load = wrkClose(pod, port, 3);
      await sleep(1500);
      kupod.kill("SIGKILL");
      await kupod.wait();
      await load;
    } finally {
      await kupod[Symbol.asyncDispose]();
    }
    // The sk_msg program is the one thing a live connection may still hold: every socket it
    // redirected keeps it (through the kernel's psock) until it closes, which is what lets
    // those connections go on without losing data; it is attached to nothing.
    const skMsg = await programsNamed(owned.programs, "kupod_sk_msg");
    redirecting = { programs: skMsg, links: [] };
    await assertReleased({ ...owned, programs: owned.programs.filter((p) => !skMsg.includes(p)) });
    assertEquals(await tcFilters(pod.hostVeth, "ingress"), "", "veth ingress");
    assertEquals(await tcFilters(pod.hostVeth, "egress"), "", "veth egress");

    const again = await startKupod([...STACK_ICMP, "--veth", pod.hostVeth]);
    try {
      const url = await exporterUrl(again);
      await ping(pod.podIP, 7);
      await sleep(200);
      const c = await stackCounts(url);
      assertEquals(pathOnly(c.hooks), pathCounts(7, 7), "the next run");
      assertEquals(c.nic, { rx: 7, tx: 7 });
      await stopAndWait(again);
    } finally {
      await again[Symbol.asyncDispose]();
    }
  } finally {
    await pod.dispose();
  }
  // the pod's connections are closed now: the last of them took the sk_msg program along
  await assertReleased(redirecting);
});

/** Which of `ids` are programs named `name`. */
async function programsNamed(ids: number[], name: string): Promise<number[]> {
  const loaded = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
  return loaded.filter((p) => p.name === name && ids.includes(p.id)).map((p) => p.id);
}

Deno.test("busy node: two monitors on one pod count alike; killing one leaves the other's hooks", async () => {
  await using pod = await createTestPod();
  const start = () => startKupod([...STACK_ICMP, "--veth", pod.hostVeth]);
  const first = await start();
  let second: Child | undefined;
  try {
    second = await start();
    const urls = [await exporterUrl(first), await exporterUrl(second)];
    assert((await tcFilters(pod.hostVeth, "ingress")).includes("tcx: 2 programs"), "both hooked");
    await ping(pod.podIP, 5);
    await sleep(200);
    for (const url of urls) assertEquals((await stackCounts(url)).nic, { rx: 5, tx: 5 });

    const owned = ownedBy(first.pid);
    first.kill("SIGKILL");
    await first.wait();
    await assertReleased(owned);
    assert((await tcFilters(pod.hostVeth, "egress")).includes("tcx: 1 programs"), "one left");
    await ping(pod.podIP, 3);
    await sleep(200);
    const c = await stackCounts(urls[1]);
    assertEquals(pathOnly(c.hooks), pathCounts(8, 8), "the survivor counts on");
    await stopAndWait(second);
  } finally {
    await first[Symbol.asyncDispose]();
    await second?.[Symbol.asyncDispose]();
  }
});

const NODE = "node-a";
const RECREATIONS = 50;

/** Open file descriptors of process `pid`. */
function fds(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

Deno.test("busy node: a pod re-created 50 times is followed each time, nothing left behind", async () => {
  await using kube = await KubeEnv.start();
  const opts: TestPodOptions = {
    name: "churn-0",
    namespace: "shop-churn",
    nodeName: NODE,
    containers: [{ name: "app", kind: "http", port: 9090 }],
  };
  let pod = await createTestPod(opts);
  kube.api.upsertPod(pod.podJson(NODE));
  const kupod = await startKupod([
    ...STACK_ICMP,
    "--pod",
    "churn-0",
    "--namespace",
    "shop-churn",
    "--nodename",
    NODE,
    "--kubeconfig",
    kube.kubeconfig("cert"),
  ]);
  try {
    const url = await exporterUrl(kupod);
    await ping(pod.podIP, 2);
    const before = { fds: fds(kupod.pid), owned: ownedBy(kupod.pid) };
    for (let i = 1; i <= RECREATIONS; i++) {
      await pod.dispose();
      kube.api.deletePod("shop-churn", "churn-0");
      pod = await createTestPod(opts);
      kube.api.upsertPod(pod.podJson(NODE));
      // hooked: TC on the new veth and netfilter in the new netns (attached after TC)
      for (const until = Date.now() + 10_000;; await sleep(50)) {
        const tc = (await tcFilters(pod.hostVeth, "egress")).includes("tcx: 1 programs");
        if (tc && (await stackLinks()).filter((t) => t === "netfilter").length === 10) break;
        assert(Date.now() < until, `re-creation ${i}: the new pod was not hooked`);
      }
      await ping(pod.podIP, 2);
    }
    await sleep(200);
    const c = await stackCounts(url);
    const n = 2 * (RECREATIONS + 1);
    assertEquals(c.nic, { rx: n, tx: n }, "every pod's echos");
    assertEquals(pathOnly(c.hooks), pathCounts(n, n));
    const after = { fds: fds(kupod.pid), owned: ownedBy(kupod.pid) };
    assertEquals(after.owned.programs, before.owned.programs, "the same programs, none more");
    assertEquals(after.owned.links.length, before.owned.links.length, "as many links");
    assert(after.fds <= before.fds + 2, `file descriptors ${before.fds} -> ${after.fds}`);
    await stopAndWait(kupod);
  } finally {
    await kupod[Symbol.asyncDispose]();
    await pod.dispose();
  }
});
