/**
 * The stack probe as tests see it: its metrics read back per hook, drop reason and direction,
 * its programs and links in the kernel, and the tc filters it leaves (or not) on a veth.
 */

import { BPF } from "../../bpf/abi.ts";
import { libc } from "../../bpf/ffi.ts";
import { assertEquals } from "./assert.ts";
import { bpftoolJson } from "./bpf_state.ts";
import { run } from "./netns.ts";
import type { Child } from "./process.ts";
import { parseExposition } from "./prom.ts";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function stopAndWait(kupod: Child): Promise<void> {
  kupod.kill("SIGTERM");
  const status = await kupod.wait();
  assertEquals(status.code, 0, `kupod exit code; stderr: ${kupod.stderr.join(" | ")}`);
}

/** Samples of metric `name`, each with its labels. */
export function series(
  samples: Map<string, number>,
  name: string,
): { labels: Record<string, string>; value: number }[] {
  const out = [];
  for (const [key, value] of samples) {
    const m = /^([^{]+)(?:\{(.*)\})?$/.exec(key)!;
    if (m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ labels, value });
  }
  return out;
}

/** What the stack probe counted so far, from its /metrics: only non-zero entries. */
export interface StackCounts {
  hooks: Record<string, number>;
  drops: Record<string, number>;
  /** Packets on the veth: rx from the pod, tx to the pod. */
  nic: { rx: number; tx: number };
  /** Timed hops ("from->to": count). */
  hops: Record<string, number>;
}

export async function stackCounts(exporterUrl: string): Promise<StackCounts> {
  const samples = parseExposition(await (await fetch(`${exporterUrl}/metrics`)).text());
  const nonZero = (metric: string, label: string) =>
    Object.fromEntries(
      series(samples, metric).filter((s) => s.value > 0).map((s) => [s.labels[label], s.value]),
    );
  const nic = (direction: string) =>
    series(samples, "kupod_nic_packets_total").find((s) => s.labels.direction === direction)
      ?.value ?? 0;
  return {
    hooks: nonZero("kupod_stack_packets_total", "hook"),
    drops: nonZero("kupod_stack_drops_total", "reason"),
    nic: { rx: nic("rx"), tx: nic("tx") },
    hops: sorted(Object.fromEntries(
      series(samples, "kupod_stack_hop_latency_seconds_count").filter((s) => s.value > 0)
        .map((s) => [`${s.labels.from}->${s.labels.to}`, s.value]),
    )),
  };
}

/** The exporter URL a started kupod printed. */
export async function exporterUrl(kupod: Child): Promise<string> {
  return (await kupod.waitForLine(/^Exporter at: /)).slice("Exporter at: ".length);
}

/*
 * The stack object's programs are all named kupod_stk_*: checking those (not every kupod_*
 * program) keeps the test exact while other kupod runs share the machine.
 */
const STACK_PREFIX = "kupod_stk_";

export async function stackPrograms(): Promise<Map<number, string>> {
  const progs = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
  return new Map(
    progs.filter((p) => p.name?.startsWith(STACK_PREFIX)).map((p) => [p.id, p.name!]),
  );
}

/** Link types bpftool 7.1 prints as numbers (enum bpf_link_type). */
const LINK_TYPES: Record<number, string> = { 10: "netfilter", 11: "tcx" };

/** The stack object's links, by type ("raw_tracepoint" for tp_btf, "netfilter", "tcx"). */
export async function stackLinks(): Promise<string[]> {
  const progs = await stackPrograms();
  const links = await bpftoolJson(["link", "show"]) as { prog_id: number; type?: unknown }[];
  return links.filter((l) => progs.has(l.prog_id))
    .map((l) => LINK_TYPES[l.type as number] ?? String(l.type)).sort();
}

/** Waits until `probe` is empty (the kernel releases programs and links after exit). */
export async function waitEmpty<T>(
  probe: () => Promise<T[] | Map<number, string>>,
): Promise<unknown[]> {
  const until = Date.now() + 5000;
  let left = await probe();
  const size = (x: T[] | Map<number, string>) => (x instanceof Map ? x.size : x.length);
  while (size(left) && Date.now() < until) {
    await sleep(100);
    left = await probe();
  }
  return left instanceof Map ? [...left.values()] : left;
}

/**
 * What is hooked on `dev`'s ingress or egress: netlink TC filters (as `tc` prints them) and tcx
 * programs ("tcx: N programs", asked of the kernel with BPF_PROG_QUERY: bpftool 7.1 shows tcx
 * links without their device). "" when nothing is.
 */
export async function tcFilters(dev: string, dir: "ingress" | "egress"): Promise<string> {
  const tc = (await run("tc", ["filter", "show", "dev", dev, dir])).trim();
  const tcx = tcxPrograms(dev, dir);
  return [tc, tcx ? `tcx: ${tcx} programs` : ""].filter(Boolean).join("\n");
}

/** Programs attached to `dev` by tcx in direction `dir` (0 when none or no such device). */
function tcxPrograms(dev: string, dir: "ingress" | "egress"): number {
  let ifindex: number;
  try {
    ifindex = Number(Deno.readTextFileSync(`/sys/class/net/${dev}/ifindex`));
  } catch {
    return 0;
  }
  // union bpf_attr, BPF_PROG_QUERY: target_ifindex, attach_type, ..., prog_cnt at 24
  const attr = new Uint8Array(64);
  const v = new DataView(attr.buffer);
  v.setUint32(0, ifindex, true);
  v.setUint32(4, dir === "ingress" ? BPF.ATTACH_TCX_INGRESS : BPF.ATTACH_TCX_EGRESS, true);
  const nr = Deno.build.arch === "aarch64" ? BPF.SYS_BPF_ARM64 : BPF.SYS_BPF_X86_64;
  const rc = Number(libc().syscall(BigInt(nr), BigInt(BPF_PROG_QUERY), attr, BigInt(attr.length)));
  return rc < 0 ? 0 : v.getUint32(24, true);
}

const BPF_PROG_QUERY = 16;

/** Nothing of the stack probe is left after it stopped: no tc filter on `veth`, no link, no program. */
export async function assertStackGone(veth: string): Promise<void> {
  assertEquals(await tcFilters(veth, "ingress"), "", "tc ingress filters after stop");
  assertEquals(await tcFilters(veth, "egress"), "", "tc egress filters after stop");
  assertEquals(await waitEmpty(stackLinks), [], "stack links after stop");
  assertEquals(await waitEmpty(stackPrograms), [], "stack programs after stop");
}

/** A TCP connect to a port nothing listens on: the pod answers RST and drops the SYN. */
export async function connectRefused(host: string, port: number): Promise<void> {
  try {
    const conn = await Deno.connect({ hostname: host, port });
    conn.close();
    throw new Error(`port ${port} of ${host} unexpectedly open`);
  } catch (e) {
    if (!(e instanceof Deno.errors.ConnectionRefused)) throw e;
  }
}

/** `ping -c count` to `addr`, which must answer every echo. */
export async function ping(addr: string, count: number): Promise<void> {
  const out = await new Deno.Command("ping", {
    args: ["-c", String(count), "-i", "0.05", "-W", "2", addr],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success || !text.includes(` ${count} received`)) {
    throw new Error(`ping ${addr}: ${text}`);
  }
}

/** Hooks a packet crosses from the host into the pod: host veth egress to the pod's LOCAL_IN. */
export const INTO_POD = [
  "tc_egress",
  "net_dev_queue",
  "net_dev_start_xmit",
  "netif_rx",
  "net_dev_xmit",
  "netif_receive_skb",
  "nf_pre_routing",
  "nf_local_in",
] as const;
/** Hooks a packet crosses from the pod's LOCAL_OUT to the host: ends at the host veth ingress. */
export const OUT_OF_POD = [
  "nf_local_out",
  "nf_post_routing",
  "net_dev_queue",
  "net_dev_start_xmit",
  "netif_rx",
  "net_dev_xmit",
  "netif_receive_skb",
  "tc_ingress",
] as const;
/** The hooks of the path between host and pod (not where packets end: deliver, drop, consume). */
export const PATH_HOOKS: readonly string[] = [...new Set([...INTO_POD, ...OUT_OF_POD])];

/** `counts` with its keys in order, so that equal counts compare equal. */
export function sorted(counts: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Counts per hook of `into` packets into the pod and `out` packets out of it, plus `ends`. */
export function pathCounts(
  into: number,
  out: number,
  ends: Record<string, number> = {},
): Record<string, number> {
  const counts: Record<string, number> = { ...ends };
  for (const [hooks, n] of [[INTO_POD, into], [OUT_OF_POD, out]] as const) {
    for (const h of hooks) if (n) counts[h] = (counts[h] ?? 0) + n;
  }
  return sorted(counts);
}

/** Only the path hooks of `hooks`, sorted. */
export function pathOnly(hooks: Record<string, number>): Record<string, number> {
  return sorted(Object.fromEntries(Object.entries(hooks).filter(([h]) => PATH_HOOKS.includes(h))));
}
