/**
 * The live view in a real browser: kupod watches a test pod (nginx sidecar in front of the
 * service) with `monitor kernel all`; headless Chromium opens the page kupod serves at `/` while
 * pings and HTTP requests of known counts run. The page must load with no console error and
 * nothing from elsewhere, move while traffic flows, and then show exactly the totals /metrics
 * shows. A screenshot is written to tests/artifacts/live_view.png.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { Browser } from "./helpers/cdp.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { ROOT, startKupod } from "./helpers/process.ts";
import { parseExposition } from "./helpers/prom.ts";
import { ping, series, sleep, stopAndWait } from "./helpers/stack.ts";

const PINGS = 30;
const REQUESTS = 12;
const ARTIFACT = `${ROOT}tests/artifacts/live_view.png`;

/** Every `data-total` the page shows, as numbers. */
const TOTALS = `Object.fromEntries([...document.querySelectorAll("[data-total]")]
  .map((e) => [e.dataset.total, Number(e.textContent.replaceAll(",", ""))]))`;

async function waitFor<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(v)}`);
    await sleep(200);
  }
}

Deno.test("live view: Chromium shows the pod live, with the totals /metrics has", async () => {
  await using pod = await createTestPod();
  const kupod = await startKupod([
    "monitor",
    "kernel",
    "all",
    "--veth",
    pod.hostVeth,
    "--stack-protocol",
    "icmp",
    "--stack-address",
    pod.podIP,
  ]);
  try {
    const live = (await kupod.waitForLine(/^Live view at: /)).slice("Live view at: ".length);
    await using browser = await Browser.launch();
    await browser.navigate(live);
    const updates = () => browser.evaluate<number>(`Number(document.body.dataset.updates ?? 0)`);
    await waitFor("the first update", updates, (n) => n >= 1);
    assertEquals(await browser.evaluate(`document.getElementById("state").textContent`), "live");

    // while pings run, the page's count of packets to the pod grows
    const pinging = ping(pod.podIP, PINGS);
    const totals = () => browser.evaluate<Record<string, number>>(TOTALS);
    const first = await waitFor("packets to the pod", totals, (t) => (t["nic:tx"] ?? 0) > 0);
    await pinging;
    const http = await httpGet(pod.podIP, 8080, { count: REQUESTS });
    assertEquals(http.replies.map((r) => r.status), new Array(REQUESTS).fill(200));
    const moved = await waitFor("all pings", totals, (t) => t["nic:tx"] === PINGS);
    assert(first["nic:tx"] < PINGS, `seen during traffic: ${first["nic:tx"]} of ${PINGS}`);

    // after the traffic: the page's totals are those of /metrics, and exact
    await waitFor("every request", totals, (t) => t["accepted:nginx"] === REQUESTS);
    await sleep(1500);
    const shown = await totals();
    const samples = parseExposition(await (await fetch(new URL("/metrics", live))).text());
    assertEquals(await totals(), shown, "stable after the traffic");
    const metric = (name: string, labels: Record<string, string>) =>
      series(samples, name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        ?.value;
    assertEquals(shown["nic:tx"], metric("kupod_nic_packets_total", { direction: "tx" }));
    assertEquals(shown["nic:rx"], metric("kupod_nic_packets_total", { direction: "rx" }));
    assertEquals(shown["nic:rx"], PINGS, "echo replies from the pod");
    const hooks = Object.keys(shown).filter((k) => k.startsWith("hook:"));
    assert(hooks.length >= 8, `hooks on the page: ${hooks}`);
    for (const k of hooks) {
      assertEquals(shown[k], metric("kupod_stack_packets_total", { hook: k.slice(5) }), k);
    }
    assertEquals(shown["hook:tc_egress"], PINGS);
    assertEquals(
      shown["accepted:nginx"],
      metric("kupod_tcp_connections_total", { container: "nginx", direction: "inbound" }),
    );
    assertEquals(shown["sidecar:nginx"], REQUESTS, "requests through the sidecar");
    assertEquals(
      shown["sidecar:nginx"],
      metric("kupod_sidecar_process_duration_seconds_count", { container: "nginx" }),
    );
    assert(moved["nic:tx"] === PINGS);

    // everything came from kupod itself, and nothing went wrong in the page
    const origins = await browser.evaluate<string[]>(
      `performance.getEntriesByType("resource").map((e) => new URL(e.name).origin)`,
    );
    const own = new URL(live).origin;
    assert(origins.every((o) => o === own), `loaded from elsewhere: ${origins}`);
    const sections = await browser.evaluate<string[]>(
      `[...document.querySelectorAll("section:not([hidden]) h2")].map((h) => h.textContent)`,
    );
    for (const s of ["Packet path", "Sidecar", "Connections", "Resources"]) {
      assert(sections.includes(s), `section ${s} shown: ${sections}`);
    }
    assertEquals(browser.errors, [], "console errors");
    await Deno.mkdir(`${ROOT}tests/artifacts`, { recursive: true });
    await Deno.writeFile(ARTIFACT, await browser.screenshot());
    console.log(`screenshot: ${ARTIFACT}; totals ${JSON.stringify(shown)}`);
    await stopAndWait(kupod);
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
});
