/**
 * The socket probe's outputs end to end, from real requests through a test
 * pod's nginx sidecar: /metrics (checked by promtool and scraped by a real
 * Prometheus), the Pushgateway after exit, and OTLP spans decoded with the
 * official protobuf definitions.
 */

import { startOtlpReceiver } from "./fixtures/otlp_receiver.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { freePort, startKupod } from "./helpers/process.ts";
import {
  parseExposition,
  promQuery,
  promtoolCheck,
  seriesKey,
  startPrometheus,
  startPushgatewayServer,
  waitFor,
} from "./helpers/prom.ts";

const N = 15;

Deno.test("exporters: N requests → N inbound connections and N sidecar timings on /metrics, in Prometheus, the Pushgateway and as spans", async () => {
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  await using gateway = await startPushgatewayServer();
  const receiver = startOtlpReceiver();
  try {
    const port = freePort();
    await using prometheus = await startPrometheus(`127.0.0.1:${port}`);
    const kupod = await startKupod([
      "monitor",
      "kernel",
      "all",
      "--veth",
      pod.hostVeth,
      "--exporter-address",
      "127.0.0.1",
      "--exporter-port",
      String(port),
      "--prometheus",
      gateway.address,
      "--otlp-endpoint",
      receiver.url,
      "--output",
      "json",
    ]);
    await using _k = kupod;
    await kupod.waitForLine(new RegExp(`^Exporter at: http://127\\.0\\.0\\.1:${port}$`));
    const client = await httpGet(pod.podIP, pod.container("proxy").port, {
      count: N,
      keepAlive: false,
    });
    await new Promise((r) => setTimeout(r, 500));

    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const m = parseExposition(text);
    const sidecar = { namespace: "", pod: "", container: "nginx" };
    assertEquals(
      m.get(seriesKey("kupod_tcp_connections_total", { ...sidecar, direction: "inbound" })),
      N,
    );
    assertEquals(
      m.get(seriesKey("kupod_tcp_connections_total", { ...sidecar, direction: "outbound" })),
      N,
    );
    assertEquals(
      m.get(
        seriesKey("kupod_tcp_connections_total", {
          namespace: "",
          pod: "",
          container: "deno",
          direction: "inbound",
        }),
      ),
      N,
    );
    // bytes: nginx passes on what the client and the service send, nothing is lost between ends
    const service = { namespace: "", pod: "", container: "deno" };
    const bytes = (what: "sent" | "received", who: typeof sidecar) =>
      m.get(seriesKey(`kupod_tcp_${what}_bytes_total`, who)) ?? NaN;
    assert(bytes("received", service) > 0 && bytes("sent", service) > 0, "service bytes counted");
    assertEquals(bytes("received", sidecar), client.bytesSent + bytes("sent", service));
    assertEquals(bytes("sent", sidecar), client.bytesReceived + bytes("received", service));
    assertEquals(m.get(seriesKey("kupod_tcp_rtt_seconds_count", sidecar)), 2 * N);
    assertEquals(m.get(seriesKey("kupod_tcp_connection_duration_seconds_count", service)), N);
    assertEquals(m.get(seriesKey("kupod_long_connections_total", sidecar)), 0);
    assertEquals(m.get(seriesKey("kupod_sidecar_process_duration_seconds_count", sidecar)), N);
    assertEquals(m.get(seriesKey("kupod_sidecar_to_service_duration_seconds_count", sidecar)), N);
    const check = await promtoolCheck(text);
    assert(check.ok, check.output);
    assertEquals((await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).trim(), "ok");

    // a real Prometheus scrapes kupod and answers through its query API
    const samples = await waitFor("kupod series in Prometheus", async () => {
      const r = await promQuery(
        prometheus,
        'kupod_tcp_connections_total{direction="inbound",container="nginx"}',
      );
      return r.length && r[0].value === N ? r : undefined;
    });
    assertEquals(samples.length, 1);

    kupod.kill("SIGTERM");
    assertEquals((await kupod.wait()).code, 0);

    // after exit: the final push is in the Pushgateway under job="kupod"
    const pushed = parseExposition(await (await fetch(`${gateway.url}/metrics`)).text());
    const pushedInbound = [...pushed.entries()].find(([k]) =>
      k.startsWith("kupod_tcp_connections_total{") && k.includes('job="kupod"') &&
      k.includes('container="nginx"') && k.includes('direction="inbound"')
    );
    assertEquals(pushedInbound?.[1], N, "pushed inbound connections");

    // spans: one trace per connection: N client→sidecar, N sidecar→service (out), N at the service
    const spans = await receiver.waitForSpans(3 * N * 4, 10_000);
    const roots = spans.filter((s) => !s.parentSpanId);
    assertEquals(roots.filter((s) => s.name === "Inner Pod").length, 2 * N);
    assertEquals(roots.filter((s) => s.name === "Out of Pod").length, N);
    for (const root of roots) {
      const children = spans.filter((s) => s.parentSpanId === root.spanId).map((s) => s.name)
        .sort();
      assertEquals(children, [
        "Connection Establishment",
        "Connection Termination",
        "Data Transfer",
      ]);
      assert(root.startTimeUnixNano <= root.endTimeUnixNano, "times in order");
    }
  } finally {
    await receiver.close();
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
