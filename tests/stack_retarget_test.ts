/**
 * The stack probe follows a re-created pod: deleted and created again under the same name (new
 * netns, new veth), found again through the Kubernetes API stand-in (--pod) or by its network
 * namespace's name (--netns). The probe must leave the old pod's hooks and hook the new pod's,
 * counting the echos to both pods exactly.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { KubeEnv } from "./helpers/kube.ts";
import { createTestPod, type TestPod, type TestPodOptions } from "./helpers/pod.ts";
import { type Child, startKupod } from "./helpers/process.ts";
import {
  assertStackGone,
  exporterUrl,
  pathCounts,
  pathOnly,
  ping,
  sleep,
  stackCounts,
  stackLinks,
  tcFilters,
} from "./helpers/stack.ts";

const NODE = "node-a";
const BEFORE = 5, AFTER = 3;
const STACK_ICMP = ["monitor", "kernel", "stack", "--output", "json", "--stack-protocol", "icmp"];

/** Waits until the stack probe's tc filters are on `veth` (the re-created pod's). */
async function waitHooked(veth: string): Promise<void> {
  for (const until = Date.now() + 10_000; Date.now() < until; await sleep(100)) {
    if (await tcFilters(veth, "egress").catch(() => "") !== "") return;
  }
  throw new Error(`no tc filter on ${veth}`);
}

/**
 * Pings the pod, re-creates it with `recreate`, pings the new one; the counts must hold both, and
 * only the new pod's hooks may be attached.
 */
async function followsRecreation(
  opts: TestPodOptions,
  target: string[],
  recreate: (old: TestPod, kupod: Child) => Promise<TestPod>,
  onPod: (pod: TestPod) => void = () => {},
): Promise<string[]> {
  let pod = await createTestPod(opts);
  try {
    onPod(pod);
    const kupod = await startKupod([...STACK_ICMP, ...target]);
    try {
      const url = await exporterUrl(kupod);
      const oldVeth = pod.hostVeth;
      assert(await tcFilters(oldVeth, "egress") !== "", "tc on the first pod's veth");
      await ping(pod.podIP, BEFORE);

      pod = await recreate(pod, kupod);
      assert(pod.hostVeth !== oldVeth, "a new veth");
      await waitHooked(pod.hostVeth);
      assert(await tcFilters(pod.hostVeth, "ingress") !== "", "tc ingress on the new veth");
      const links = await stackLinks();
      assertEquals(
        links.filter((t) => t === "netfilter").length,
        10,
        `only the new pod's: ${links}`,
      );
      await ping(pod.podIP, AFTER);

      const c = await stackCounts(url);
      const n = BEFORE + AFTER;
      assertEquals(pathOnly(c.hooks), pathCounts(n, n), "echos to both pods");
      assertEquals(c.nic, { rx: n, tx: n });
      kupod.kill("SIGTERM");
      assertEquals((await kupod.wait()).code, 0, kupod.stderr.join(" | "));
      return kupod.stderr;
    } finally {
      await kupod[Symbol.asyncDispose]();
      await assertStackGone(pod.hostVeth);
    }
  } finally {
    await pod.dispose();
  }
}

Deno.test("stack retarget: --pod re-created through the API is unhooked and hooked again", async () => {
  await using kube = await KubeEnv.start();
  const kubeconfig = kube.kubeconfig("cert");
  const opts: TestPodOptions = { name: "web-0", namespace: "shop-st", nodeName: NODE };
  const stderr = await followsRecreation(
    opts,
    ["--pod", "web-0", "--namespace", "shop-st", "--nodename", NODE, "--kubeconfig", kubeconfig],
    async (old, kupod) => {
      await old.dispose();
      kube.api.deletePod("shop-st", "web-0");
      await kupod.waitForLine(/target changed: pod shop-st\/web-0 was deleted/);
      const pod = await createTestPod(opts);
      kube.api.upsertPod(pod.podJson(NODE));
      return pod;
    },
    (pod) => kube.api.upsertPod(pod.podJson(NODE)),
  );
  // the deleted pod's hooks went with it: retargeting to it failed in one warning
  assert(stderr.some((l) => /stack: no network interface/.test(l)), stderr.join(" | "));
});

Deno.test("stack retarget: --netns re-created under its name is unhooked and hooked again", async () => {
  const netnsName = `kupodt-re-${Deno.pid}`;
  await followsRecreation({ netnsName }, ["--netns", netnsName], async (old) => {
    await old.dispose();
    return await createTestPod({ netnsName });
  });
});
