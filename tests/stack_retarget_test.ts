/**
 * The stack probe follows a re-created pod: `--pod` against the Kubernetes API stand-in, the pod
 * deleted and created again under the same name (new netns, new veth); the probe must leave the
 * old pod's hooks and hook the new pod's, counting the echos to both pods exactly.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { KubeEnv } from "./helpers/kube.ts";
import { createTestPod, type TestPod, type TestPodOptions } from "./helpers/pod.ts";
import { startKupod } from "./helpers/process.ts";
import {
  assertStackGone,
  exporterUrl,
  pathCounts,
  pathOnly,
  ping,
  stackCounts,
  stackLinks,
  stopAndWait,
  tcFilters,
} from "./helpers/stack.ts";

const NODE = "node-a";
const POD: TestPodOptions = { name: "web-0", namespace: "shop-st", nodeName: NODE };
const BEFORE = 5, AFTER = 3;

Deno.test("stack retarget: a re-created pod's new veth and netns are hooked, the old unhooked", async () => {
  await using kube = await KubeEnv.start();
  let pod: TestPod = await createTestPod(POD);
  try {
    kube.api.upsertPod(pod.podJson(NODE));
    const kupod = await startKupod([
      "monitor",
      "kernel",
      "stack",
      "--pod",
      "web-0",
      "--namespace",
      "shop-st",
      "--kubeconfig",
      kube.kubeconfig("cert"),
      "--nodename",
      NODE,
      "--output",
      "json",
      "--stack-protocol",
      "icmp",
    ]);
    try {
      const url = await exporterUrl(kupod);
      const oldVeth = pod.hostVeth;
      assert(await tcFilters(oldVeth, "egress") !== "", "tc on the first pod's veth");
      await ping(pod.podIP, BEFORE);

      await pod.dispose();
      kube.api.deletePod("shop-st", "web-0");
      await kupod.waitForLine(/target changed: pod shop-st\/web-0 was deleted/);
      pod = await createTestPod(POD);
      assert(pod.hostVeth !== oldVeth, "a new veth");
      kube.api.upsertPod(pod.podJson(NODE));
      await kupod.waitForLine(/target changed: pod shop-st\/web-0 changed/);
      assert(await tcFilters(pod.hostVeth, "ingress") !== "", "tc ingress on the new veth");
      assert(await tcFilters(pod.hostVeth, "egress") !== "", "tc egress on the new veth");
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
      await stopAndWait(kupod);
      assert(
        kupod.stderr.some((l) => /stack: no network interface/.test(l)),
        `the deleted pod's veth reported gone: ${kupod.stderr.join(" | ")}`,
      );
    } finally {
      await kupod[Symbol.asyncDispose]();
    }
    await assertStackGone(pod.hostVeth);
  } finally {
    await pod.dispose();
  }
});
