/**
 * A running probe follows its target while connections come and go: rewriting the filter maps
 * (a pod's processes or containers changed) must never leave a moment in which the pod's own
 * keys are missing, or connections claimed then are lost for good.
 */

import { resolveVeth } from "../k8s/local.ts";
import { SocketProbe } from "../probes/socket.ts";
import { assertEquals } from "./helpers/assert.ts";
import { countSyns } from "./helpers/nft.ts";
import { createTestPod } from "./helpers/pod.ts";
import { wrkClose } from "./helpers/pod_http.ts";
import { sleep } from "./helpers/stack.ts";

const LOAD_SECONDS = 3;

Deno.test("retarget: every connection is counted while the target is rewritten without pause", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  const proxy = pod.container("proxy");
  const syns = await countSyns(pod, proxy.port);
  const target = await resolveVeth(pod.hostVeth);
  await using probe = SocketProbe.start(target, { event() {}, flush() {} }, { openEvents: false });
  let loading = true;
  const load = wrkClose(pod, proxy.port, LOAD_SECONDS).finally(() => (loading = false));
  let rewrites = 0;
  while (loading) {
    for (let i = 0; i < 100; i++) probe.retarget(target);
    rewrites += 100;
    await sleep(0); // let the load's promise settle
  }
  await load;
  const accepted = await syns();
  const inbound = () =>
    probe.tcpStats().connections.find((c) => c.container === "nginx" && c.direction === "inbound");
  // closes are read at the kernel's pace: wait until every accepted connection closed
  for (let i = 0; i < 50 && inbound()?.closed !== accepted; i++) await sleep(100);
  const c = inbound();
  assertEquals(
    [c?.opened, c?.closed],
    [accepted, accepted],
    `the sidecar's connections, with ${rewrites} rewrites of the target meanwhile`,
  );
});
