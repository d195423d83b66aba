/** nftables rules inside a test pod's network namespace (gone with the namespace). */

import type { TestPod } from "./pod.ts";

/** Loads `ruleset` (nft syntax) into network namespace `netns`. */
export async function podNft(netns: string, ruleset: string): Promise<void> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", netns, "nft", "-f", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(ruleset));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`nft: ${new TextDecoder().decode(out.stderr).trim()}`);
}

/** Packets counted by the counter of each chain of `family table`, by chain name. */
export async function podNftCounters(
  netns: string,
  family: string,
  table: string,
): Promise<Record<string, number>> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", netns, "nft", "-j", "list", "table", family, table],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`nft list: ${new TextDecoder().decode(out.stderr).trim()}`);
  const items = JSON.parse(new TextDecoder().decode(out.stdout)).nftables as {
    rule?: { chain: string; expr: { counter?: { packets: number } }[] };
  }[];
  const counts: Record<string, number> = {};
  for (const { rule } of items) {
    for (const e of rule?.expr ?? []) {
      if (e.counter) counts[rule!.chain] = (counts[rule!.chain] ?? 0) + e.counter.packets;
    }
  }
  return counts;
}

/** Counts SYNs to the sidecar's port in the pod: the connections the sidecar accepted. */
export async function countSyns(pod: TestPod, port: number): Promise<() => Promise<number>> {
  await podNft(
    pod.netns,
    `table inet kupodt {\n chain syns {\n  type filter hook input priority 0;\n  tcp dport ${port} tcp flags & (syn | ack) == syn counter\n }\n}\n`,
  );
  return async () => (await podNftCounters(pod.netns, "inet", "kupodt")).syns ?? 0;
}
