/**
 * --with-sockops on a test pod: a client in the sidecar container and a server in the service
 * container talk over the pod's loopback, each moved into its container's cgroups before it
 * makes a socket. Every stream is checked end to end by SHA-256 (tests/fixtures/tcp_transfer.ts:
 * the client half-closes and the server answers with the count and hash of what it got, then
 * an echo the client checks): a 1 GiB transfer, concurrent connections with churn and mixed
 * write sizes, and kupod stopped by SIGTERM or SIGKILL in the middle of a transfer. The redirect
 * must really happen (the metrics count the bytes), the socket probe's byte counts stay exact,
 * and nothing stays attached.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { run as runCommand } from "./helpers/netns.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { inContainer } from "./helpers/pod_exec.ts";
import { Child, DENO, freePort, ROOT, startKupod } from "./helpers/process.ts";
import { parseExposition, seriesKey } from "./helpers/prom.ts";

const TRANSFER = `${ROOT}tests/fixtures/tcp_transfer.ts`;
const GiB = 1 << 30;

interface Transfer {
  ok: boolean;
  error?: string;
  connections: number;
  bytes_sent: number;
  bytes_received: number;
}

async function withServer(
  fn: (pod: TestPod, run: (...opts: string[]) => Child, port: string) => Promise<void>,
): Promise<void> {
  await using pod = await createTestPod();
  {
    await using server = inContainer(pod, pod.container("app"), [
      DENO,
      "run",
      "--allow-net",
      TRANSFER,
      "server",
      "127.0.0.1",
      "0",
    ]);
    const port = (await server.waitForLine(/^listening \d+/)).split(" ")[1];
    const run = (...opts: string[]) =>
      inContainer(pod, pod.container("proxy"), [
        DENO,
        "run",
        "--allow-net",
        TRANSFER,
        "client",
        "127.0.0.1",
        port,
        "--timeout",
        "120",
        ...opts,
      ]);
    await fn(pod, run, port);
  }
  assertEquals(await waitNoKupodPrograms(), [], "nothing of kupod left loaded");
  const tree = new TextDecoder().decode(
    (await new Deno.Command("bpftool", { args: ["cgroup", "tree"] }).output()).stdout,
  );
  assert(!/sock_ops|sockops|kupod/.test(tree), `no cgroup attachment left:\n${tree}`);
}

async function result(client: Child): Promise<Transfer> {
  const status = await client.wait();
  const line = client.stdout.find((l) => l.startsWith("{"));
  assert(line, `client output: ${client.stdout.join("|")} ${client.stderr.join("|")}`);
  const r = JSON.parse(line) as Transfer;
  assert(r.ok && status.code === 0, `transfer failed: ${line}`);
  return r;
}

function kupodArgs(pod: TestPod, port: number): string[] {
  return [
    "monitor",
    "kernel",
    "socket",
    "--veth",
    pod.hostVeth,
    "--with-sockops",
    "--quiet",
    "--exporter-address",
    "127.0.0.1",
    "--exporter-port",
    String(port),
  ];
}

async function metrics(port: number): Promise<Map<string, number>> {
  return parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
}

/**
 * Bytes TCP itself carried (acknowledged) on the pod's open connections to the server's port:
 * redirected sends never reach TCP, so this stays near 0 while they are redirected.
 */
async function tcpAcked(pod: TestPod, port: string): Promise<number> {
  const out = await runCommand("ip", [
    "netns",
    "exec",
    pod.netns,
    "ss",
    "-tinH",
    "dst",
    `127.0.0.1:${port}`,
  ]);
  let sum = 0;
  for (const m of out.matchAll(/bytes_acked:(\d+)/g)) {
    sum += Number(m[1]);
  }
  return sum;
}

/** Containers of a local target are named after their processes. */
const of = (container: string) => ({ namespace: "", pod: "", container });

Deno.test("sockops: 1 GiB redirected between two containers, intact, counted exactly", () =>
  withServer(async (pod, run) => {
    const port = freePort();
    await using kupod = await startKupod(kupodArgs(pod, port));
    await kupod.waitForLine(/^Sockops redirection started!$/, 5_000); // the attach is announced
    const r = await result(run("--bytes", "1G", "--echo", "16M"));
    assertEquals([r.bytes_sent, r.bytes_received], [GiB, 16 << 20]);
    await new Promise((r) => setTimeout(r, 1200)); // the counters are read every second
    const m = await metrics(port);
    // the client sends a 16-byte header before its payload; the server a reply line before its echo
    const sent = m.get(seriesKey("kupod_sockops_redirected_bytes_total", of("deno")))!;
    const redirected = m.get(seriesKey("kupod_sockops_redirected_bytes_total", of("nginx")))!;
    assertEquals(redirected, GiB + 16, "all the client's bytes went straight to the server");
    assert(sent >= 16 << 20, `server redirected ${sent}`);
    // the socket probe counts what the applications wrote, redirected or not
    assertEquals(m.get(seriesKey("kupod_tcp_sent_bytes_total", of("nginx"))), GiB + 16);
    assertEquals(m.get(seriesKey("kupod_tcp_sent_bytes_total", of("deno"))), sent);
    assertEquals(m.get(seriesKey("kupod_tcp_received_bytes_total", of("deno"))), GiB + 16);
    assertEquals(
      m.get(seriesKey("kupod_sockops_sockets", of(""))),
      0,
      "closed sockets leave the map",
    );
  }));

Deno.test("sockops: concurrent connections, churn, tiny and large writes, half-close", () =>
  withServer(async (pod, run) => {
    const port = freePort();
    await using _kupod = await startKupod(kupodArgs(pod, port));
    const r = await result(
      run("--conns", "16", "--repeat", "8", "--bytes", "300K", "--echo", "70K", "--mixed"),
    );
    assertEquals(r.connections, 128);
    await new Promise((r) => setTimeout(r, 1200));
    const m = await metrics(port);
    assertEquals(
      m.get(seriesKey("kupod_sockops_redirected_bytes_total", of("nginx"))),
      128 * (300 * 1024 + 16),
    );
    assertEquals(m.get(seriesKey("kupod_sockops_redirect_errors_total", of("nginx"))), 0);
  }));

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`sockops: kupod ended by ${signal} mid-transfer loses nothing; new connections work`, () =>
    withServer(async (pod, run, serverPort) => {
      const port = freePort();
      const kupod = await startKupod(kupodArgs(pod, port));
      try {
        const client = run("--bytes", "768M", "--echo", "64M", "--conns", "2");
        await new Promise((r) => setTimeout(r, 300));
        const m = await metrics(port);
        const moving = m.get(seriesKey("kupod_sockops_redirected_bytes_total", of("nginx")));
        assert(moving! > 0, `redirected before the stop: ${moving}`);
        // two connections, both ends in the map
        assertEquals(m.get(seriesKey("kupod_sockops_sockets", of(""))), 4);
        kupod.kill(signal);
        await kupod.wait();
        let acked = 0, done = false;
        client.process.status.then(() => done = true);
        while (!done) {
          acked = Math.max(acked, await tcpAcked(pod, serverPort));
          await new Promise((r) => setTimeout(r, 20));
        }
        // SIGTERM: their sends went back to TCP; SIGKILL: the kernel keeps redirecting them
        if (signal === "SIGTERM") {
          assert(acked > 64 << 20, `TCP carried ${acked} bytes after the stop`);
        } else {
          assert(acked < 1 << 20, `TCP carried ${acked} bytes after SIGKILL`);
        }
        const r = await result(client);
        assertEquals(r.bytes_sent, 2 * 768 * (1 << 20));
        assertEquals(await waitNoKupodPrograms(), []);
        const after = await result(run("--bytes", "8M", "--echo", "1M", "--conns", "4"));
        assertEquals(after.connections, 4);
      } finally {
        await kupod[Symbol.asyncDispose]();
      }
    }));
}

Deno.test("sockops: a target without a cgroup v2 directory of its own is refused in one line", async () => {
  // this test's own process sits in the root of the v2 hierarchy here: never attached to
  const self = new TextDecoder().decode(await Deno.readFile("/proc/self/cgroup"));
  if (!/^0::\/$/m.test(self)) return; // elsewhere the process has a cgroup of its own
  const out = await new Deno.Command(`${ROOT}kupod`, {
    args: ["monitor", "kernel", "socket", "--pid", String(Deno.pid), "--with-sockops"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr).trim().split("\n");
  assertEquals(out.code, 1);
  assert(
    err.some((l) => /^Error: --with-sockops: container .* has no cgroup v2 directory/.test(l)),
    err.join("|"),
  );
  assertEquals(await waitNoKupodPrograms(), []);
});
