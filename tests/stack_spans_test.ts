/**
 * Spans of `monitor kernel stack`: one trace per connection of the pod, in-pod (sidecar to
 * service) and out-of-pod (client to sidecar), with the old tool's phases, decoded by a receiver
 * of the official OTLP protobuf definitions; the console stays the stack probe's.
 */

import { startOtlpReceiver } from "./fixtures/otlp_receiver.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { startKupod } from "./helpers/process.ts";

const N = 6;

Deno.test("stack: with an OTLP endpoint, one trace per connection of the pod, in and out of it", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  const receiver = startOtlpReceiver();
  try {
    const kupod = await startKupod([
      "monitor",
      "kernel",
      "stack",
      "--veth",
      pod.hostVeth,
      "--otlp-endpoint",
      receiver.url,
      "--output",
      "json",
    ]);
    await using _k = kupod;
    await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
    // spans: client→sidecar (out of pod), sidecar→service and at the service (in pod)
    const spans = await receiver.waitForSpans(3 * N * 4, 10_000);
    const roots = spans.filter((s) => !s.parentSpanId);
    assertEquals(roots.filter((s) => s.name === "Inner Pod").length, 2 * N);
    assertEquals(roots.filter((s) => s.name === "Out of Pod").length, N);
    for (const root of roots) {
      const children = spans.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name);
      assertEquals(children.sort(), [
        "Connection Establishment",
        "Connection Termination",
        "Data Transfer",
      ]);
    }
    kupod.kill("SIGTERM");
    assertEquals((await kupod.wait()).code, 0);
    const types = new Set(kupod.stdout.map((l) => JSON.parse(l).type));
    assert(!types.has("tcp_accept") && !types.has("tcp_close"), `stack output only: ${[...types]}`);
  } finally {
    await receiver.close();
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
