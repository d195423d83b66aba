/**
 * The scrape endpoint and the Pushgateway pusher against real servers: the exporter on a free
 * 127.0.0.1 port, a real Prometheus (Debian's `prometheus`) scraping it, and a real Pushgateway
 * (Debian's `prometheus-pushgateway`) receiving pushes. Servers are ended by pid and their temp
 * dirs removed, also when an assertion fails.
 */

import { KupodError } from "../base/errors.ts";
import { KupodMetrics } from "../exporters/metrics.ts";
import { startExporter } from "../exporters/prometheus.ts";
import { groupingPath, startPushgateway } from "../exporters/pushgateway.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { freePort } from "./helpers/process.ts";
import {
  parseExposition,
  promQuery,
  seriesKey,
  startPrometheus,
  startPushgatewayServer,
  waitFor,
} from "./helpers/prom.ts";
import { ContainerCounts } from "./helpers/tcp_stats.ts";

const POD = { namespace: "shop", pod: "web-0", container: "app" };

/** A closed inbound connection that sent `bytes_sent`. */
const closed = (bytes_sent: number) => ({
  bytes_sent,
  bytes_received: 10,
  rtt_us: 300,
  duration_us: 500_000,
});

/** Metrics holding `accepts` inbound and `connects` outbound connections of POD (and the counts). */
function metricsWith(accepts: number, connects: number): [KupodMetrics, ContainerCounts] {
  const metrics = new KupodMetrics();
  const app = new ContainerCounts(POD).accept(accepts).connect(connects);
  app.report(metrics);
  return [metrics, app];
}

async function get(url: string, init?: RequestInit) {
  const res = await fetch(url, init);
  return {
    status: res.status,
    type: res.headers.get("content-type") ?? "",
    body: await res.text(),
  };
}

Deno.test("exporter serves /metrics and /healthz, 404 elsewhere, refreshes on scrape", async () => {
  const [metrics] = metricsWith(3, 1);
  let scrapes = 0;
  await using exporter = await startExporter({
    address: "127.0.0.1",
    port: 0,
    metrics,
    onScrape: () => metrics.setProbeStats("socket", { events: ++scrapes * 10, lost: 0n }),
  });
  assertEquals(exporter.url, `http://127.0.0.1:${exporter.port}`);

  const m = await get(`${exporter.url}/metrics`);
  assertEquals(m.status, 200);
  assertEquals(m.type, "text/plain; version=0.0.4; charset=utf-8");
  const s = parseExposition(m.body);
  assertEquals(
    s.get(seriesKey("kupod_tcp_connections_total", { ...POD, direction: "inbound" })),
    3,
  );
  assertEquals(s.get(seriesKey("kupod_events_total", { probe: "socket" })), 10);
  const again = parseExposition((await get(`${exporter.url}/metrics`)).body);
  assertEquals(again.get(seriesKey("kupod_events_total", { probe: "socket" })), 20);

  assertEquals(await get(`${exporter.url}/healthz`), {
    status: 200,
    type: "text/plain; charset=utf-8",
    body: "ok\n",
  });
  assertEquals((await get(`${exporter.url}/`)).status, 404);
  assertEquals((await get(`${exporter.url}/metrics/extra`)).status, 404);
  assertEquals((await get(`${exporter.url}/metrics`, { method: "POST", body: "x" })).status, 405);
  const head = await fetch(`${exporter.url}/metrics`, { method: "HEAD" });
  await head.body?.cancel();
  assertEquals(head.status, 200);
  assertEquals(scrapes, 3, "onScrape runs once per scrape of /metrics");
});

Deno.test("a port in use is a one-line KupodError; closing frees the port", async () => {
  const metrics = new KupodMetrics();
  const first = await startExporter({ address: "127.0.0.1", port: 0, metrics });
  const port = first.port;
  try {
    let error: unknown;
    try {
      await using _second = await startExporter({ address: "127.0.0.1", port, metrics });
    } catch (err) {
      error = err;
    }
    assert(error instanceof KupodError, `expected a KupodError, got ${error}`);
    assertEquals(
      error.message,
      `cannot serve metrics on 127.0.0.1:${port}: address already in use`,
    );
    assert(!error.message.includes("\n"), "one line");
  } finally {
    await first.close();
  }
  await first.close(); // idempotent
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  l.close();
});

Deno.test("exporter url names the bound address as printed", async () => {
  await using exporter = await startExporter({
    address: "0.0.0.0",
    port: 0,
    metrics: new KupodMetrics(),
  });
  assertEquals(exporter.url, `http://0.0.0.0:${exporter.port}`);
  assertEquals((await get(`http://127.0.0.1:${exporter.port}/healthz`)).body, "ok\n");
});

Deno.test("a real Prometheus scrapes the exporter and sees the values", async () => {
  const [metrics, app] = metricsWith(3, 2);
  app.close(closed(1500)).report(metrics);
  await using exporter = await startExporter({ address: "127.0.0.1", port: 0, metrics });
  await using prometheus = await startPrometheus(`127.0.0.1:${exporter.port}`, "1s");

  const byDirection = await waitFor("kupod_tcp_connections_total in Prometheus", async () => {
    const r = await promQuery(prometheus, "kupod_tcp_connections_total");
    return r.length === 2 ? r : undefined;
  });
  const values = Object.fromEntries(byDirection.map((r) => [r.metric.direction, r.value]));
  assertEquals(values, { inbound: 3, outbound: 2 });
  for (const r of byDirection) {
    assertEquals(
      [r.metric.job, r.metric.namespace, r.metric.pod, r.metric.container],
      ["kupod", "shop", "web-0", "app"],
    );
  }
  assertEquals((await promQuery(prometheus, "kupod_tcp_sent_bytes_total"))[0]?.value, 1500);
  assertEquals((await promQuery(prometheus, "kupod_tcp_rtt_seconds_count"))[0]?.value, 1);
  assertEquals((await promQuery(prometheus, `up{job="kupod"}`))[0]?.value, 1);

  // later events show up in later scrapes
  app.accept(4).report(metrics);
  await waitFor("the new inbound count", async () => {
    const r = await promQuery(prometheus, `kupod_tcp_connections_total{direction="inbound"}`);
    return r[0]?.value === 7 ? true : undefined;
  });
});

Deno.test("grouping path: @base64 for empty values and values with a slash", () => {
  assertEquals(
    groupingPath("kupod", { node: "node-1", namespace: "default", pod: "web-0" }),
    "/metrics/job/kupod/node/node-1/namespace/default/pod/web-0",
  );
  assertEquals(
    groupingPath("kupod", { node: "n 1", namespace: "", pod: "a/b" }),
    "/metrics/job/kupod/node/n%201/namespace@base64/=/pod@base64/YS9i",
  );
  let error: unknown;
  try {
    groupingPath("kupod", { "bad-name": "x" });
  } catch (err) {
    error = err;
  }
  assert(error instanceof KupodError, "a bad label name is a KupodError");
});

/** The Pushgateway's samples of group job="kupod" with the given grouping labels. */
async function gatewaySample(
  gateway: { url: string },
  name: string,
  labels: Record<string, string>,
): Promise<number | undefined> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return parseExposition(text).get(seriesKey(name, { job: "kupod", instance: "", ...labels }));
}

Deno.test("a real Pushgateway gets the pushes, and the final values on stop()", async () => {
  await using gateway = await startPushgatewayServer();
  const [metrics, app] = metricsWith(2, 1);
  const errors: string[] = [];
  const grouping = { node: "node-1", namespace: "shop", pod: "web-0" };
  const pusher = startPushgateway({
    target: gateway.address,
    grouping,
    metrics,
    intervalSeconds: 60, // only the push at start and the final one happen in this test
    onError: (m) => errors.push(m),
  });
  try {
    assertEquals(
      pusher.url,
      `http://${gateway.address}/metrics/job/kupod/node/node-1/namespace/shop/pod/web-0`,
    );
    const inbound = { ...grouping, container: "app", direction: "inbound" };
    await waitFor("the first push", async () => {
      const v = await gatewaySample(gateway, "kupod_tcp_connections_total", inbound);
      return v === 2 ? true : undefined;
    }, 10_000);

    app.accept(5).close(closed(4096)).report(metrics);
    metrics.setProbeStats("socket", { events: 9, lost: 1n });
  } finally {
    await pusher.stop();
  }
  // stop() returns after the final push landed: no waiting needed
  assertEquals(
    await gatewaySample(gateway, "kupod_tcp_connections_total", {
      ...grouping,
      container: "app",
      direction: "inbound",
    }),
    7,
  );
  assertEquals(
    await gatewaySample(gateway, "kupod_tcp_sent_bytes_total", { ...grouping, container: "app" }),
    4096,
  );
  assertEquals(
    await gatewaySample(gateway, "kupod_events_lost_total", { ...grouping, probe: "socket" }),
    1,
  );
  assertEquals(errors, []);
  await pusher.stop(); // idempotent
});

Deno.test("Pushgateway grouping with an empty namespace and a slash in the pod", async () => {
  await using gateway = await startPushgatewayServer();
  const [metrics] = metricsWith(1, 0);
  const pusher = startPushgateway({
    target: gateway.address,
    grouping: { node: "node-1", namespace: "", pod: "local/1234" },
    metrics,
    intervalSeconds: 60,
  });
  await pusher.stop();
  const res = await fetch(`${gateway.url}/api/v1/metrics`);
  const groups = (await res.json()).data as { labels: Record<string, string> }[];
  assertEquals(groups.map((g) => g.labels), [{
    job: "kupod",
    namespace: "",
    node: "node-1",
    pod: "local/1234",
  }]);
});

Deno.test("an unreachable Pushgateway is reported once and retried until it is up", async () => {
  const port = freePort();
  const [metrics] = metricsWith(1, 0);
  const errors: string[] = [];
  const pusher = startPushgateway({
    target: `127.0.0.1:${port}`,
    grouping: { node: "node-1", namespace: "shop", pod: "web-0" },
    metrics,
    intervalSeconds: 0.2,
    onError: (m) => errors.push(m),
  });
  try {
    await waitFor("the first failure", () => Promise.resolve(errors.length ? true : undefined));
    await new Promise((r) => setTimeout(r, 1000)); // several more failing intervals
    assertEquals(errors, [
      `cannot push metrics to the Pushgateway at 127.0.0.1:${port}: connection refused`,
    ]);

    await using gateway = await startPushgatewayServer(port);
    await waitFor("a push once the gateway is up", async () => {
      const v = await gatewaySample(gateway, "kupod_tcp_connections_total", {
        node: "node-1",
        ...POD,
        direction: "inbound",
      });
      return v === 1 ? true : undefined;
    }, 10_000);
    await pusher.stop();
    assertEquals(errors.length, 1, `no further errors: ${errors.join(" | ")}`);
  } finally {
    await pusher.stop();
  }
});

Deno.test("a push that cannot reach the gateway on stop() is reported, not thrown", async () => {
  const port = freePort();
  const errors: string[] = [];
  const pusher = startPushgateway({
    target: `127.0.0.1:${port}`,
    grouping: { node: "n" },
    metrics: new KupodMetrics(),
    intervalSeconds: 60,
    onError: (m) => errors.push(m),
  });
  await pusher.stop();
  assert(errors.length >= 1, "the final failure is reported");
  assertEquals(
    errors.at(-1),
    `final push: cannot push metrics to the Pushgateway at 127.0.0.1:${port}: connection refused`,
  );
});
