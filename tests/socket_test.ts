/**
 * The socket probe end to end: the real CLI attaches real BPF programs, the
 * test makes a known number of real connections, and the events on stdout
 * must match them exactly; afterwards no kupod program may be loaded.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import {
  Child,
  connectTimes,
  DENO,
  kupodChild,
  ROOT,
  socketJson,
  startKupod,
  startServer,
} from "./helpers/process.ts";

interface Event {
  ts: string;
  type: string;
  pid: number;
  comm: string;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  family: string;
  container?: string;
  role?: string;
}

function events(kupod: Child): Event[] {
  return kupod.stdout.map((line) => JSON.parse(line) as Event);
}

async function stopAndWait(kupod: Child, signal: Deno.Signal = "SIGTERM"): Promise<void> {
  kupod.kill(signal);
  const status = await kupod.wait();
  assertEquals(status.code, 0, `kupod exit code; stderr: ${kupod.stderr.join(" | ")}`);
}

Deno.test("socket: a close counts every byte written, also more than 4 GiB without a read", async () => {
  // write_seq, which the probe counts writes by, wraps at 4 GiB
  const size = 4 * 2 ** 30 + 12_345;
  await using server = new Child(DENO, [
    "run",
    "--allow-net",
    `${ROOT}tests/fixtures/bulk_server.ts`,
    String(size),
  ]);
  const port = Number((await server.waitForLine(/^listening \d+/)).split(" ")[1]);
  await using kupod = await startKupod(socketJson("--pid", String(server.pid), "--verbose"));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(1 << 20);
  let received = 0;
  for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) received += n;
  conn.close();
  await server.wait();
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod);
  const closes = kupod.stdout.map((l) => JSON.parse(l)).filter((e) => e.type === "tcp_close");
  assertEquals(received, size);
  assertEquals(closes.map((c) => [c.bytes_sent, c.bytes_received]), [[size, 0]]);
});

Deno.test("socket: exactly one tcp_accept per accepted IPv4 connection, nothing else on stdout", async () => {
  await using srv = await startServer("127.0.0.1");
  const { server, port } = srv;
  await using kupod = await startKupod(socketJson("--pid", String(server.pid)));
  const N = 25;
  await connectTimes("127.0.0.1", port, N);
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod);

  const evs = events(kupod);
  assertEquals(evs.length, N, "events on stdout");
  for (const e of evs) {
    assertEquals(e.type, "tcp_accept");
    assertEquals(e.pid, server.pid);
    assertEquals(e.family, "ipv4");
    assertEquals(e.saddr, "127.0.0.1");
    assertEquals(e.sport, port);
    assertEquals(e.daddr, "127.0.0.1");
    assertEquals(e.role, "service");
    assert(e.dport > 0 && e.dport !== port, `peer port ${e.dport}`);
    assert(!Number.isNaN(Date.parse(e.ts)), `ts ${e.ts}`);
  }
  assertEquals(new Set(evs.map((e) => e.dport)).size, N, "distinct client ports");
  assert(kupod.stderr.some((l) => l === "TCP Connect started!"), "readiness line on stderr");
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("socket: IPv6 accepts carry IPv6 addresses", async () => {
  await using srv = await startServer("::1");
  await using kupod = await startKupod(socketJson("--pid", String(srv.server.pid)));
  await connectTimes("::1", srv.port, 5);
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod, "SIGINT");
  const evs = events(kupod);
  assertEquals(evs.length, 5);
  for (const e of evs) {
    assertEquals([e.type, e.family, e.saddr, e.daddr, e.sport], [
      "tcp_accept",
      "ipv6",
      "::1",
      "::1",
      srv.port,
    ]);
  }
});

Deno.test("socket: exactly one tcp_connect per outbound connection of the target", async () => {
  await using srv = await startServer("127.0.0.1");
  await using client = new Child(DENO, [
    "run",
    "--allow-net",
    `${ROOT}tests/fixtures/tcp_client.ts`,
    "127.0.0.1",
    String(srv.port),
    "17",
  ], { stdin: true });
  await using kupod = await startKupod(socketJson("--pid", String(client.pid)));
  await client.writeLine("go");
  await client.waitForLine(/^done 17$/);
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod);
  const evs = events(kupod);
  assertEquals(evs.length, 17, "events");
  for (const e of evs) {
    assertEquals([e.type, e.pid, e.daddr, e.dport], [
      "tcp_connect",
      client.pid,
      "127.0.0.1",
      srv.port,
    ]);
    assert(e.sport > 0, "source port is known at connect");
  }
});

/**
 * Waits until `ready` holds for the Recv-Q of the connections (any state but LISTEN) whose
 * local port is `port`. A write on loopback returns once its data is queued for the softirq,
 * which a busy host may run later.
 */
async function waitServerSockets(port: number, ready: (recvQs: number[]) => boolean) {
  let lines: string[] = [];
  for (let i = 0; i < 200; i++) {
    const out = await new Deno.Command("ss", {
      args: ["-Htna", "exclude", "listening", `( sport = :${port} )`],
      stdout: "piped",
    }).output();
    lines = new TextDecoder().decode(out.stdout).trim().split("\n").filter((l) => l);
    if (ready(lines.map((l) => Number(l.trim().split(/\s+/)[1])))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`connections of :${port} not as expected: ${lines.join(" | ")}`);
}

Deno.test("socket: connections ended by a reset are counted, sent by an abort or received", async () => {
  const N = 4;
  await using srv = await startServer("127.0.0.1", "abort");
  const clientOf = () =>
    new Child(DENO, [
      "run",
      "--allow-net",
      `${ROOT}tests/fixtures/tcp_client.ts`,
      "127.0.0.1",
      String(srv.port),
      String(N),
      "send",
    ], { stdin: true });
  let accepted = 0; // by the server, over both runs
  const resets = async (target: number, client: Child) => {
    const kupod = await startKupod(socketJson("--pid", String(target), "--verbose"));
    await client.writeLine("go");
    // the server closes once every line waits unread in its socket: an abort each
    await client.waitForLine(new RegExp(`^sent ${N}$`));
    await srv.server.waitForLine(new RegExp(`^accepted ${accepted += N}$`));
    await waitServerSockets(
      srv.port,
      (recvQs) => recvQs.length === N && recvQs.every((q) => q > 0),
    );
    await srv.server.writeLine("close");
    // the client reads (and closes) only once the server's sockets are gone
    await waitServerSockets(srv.port, (recvQs) => recvQs.length === 0);
    await client.writeLine("finish");
    await client.waitForLine(new RegExp(`^done ${N}$`));
    await new Promise((r) => setTimeout(r, 1500)); // a tcp_stats report
    await stopAndWait(kupod);
    const evs = kupod.stdout.map((l) => JSON.parse(l));
    const stats = evs.filter((e) => e.type === "tcp_stats").at(-1);
    return {
      closes: evs.filter((e) => e.type === "tcp_close").length,
      resets: evs.filter((e) => e.type === "tcp_reset").map((e) => e.reset),
      counted: stats?.connections.reduce((n: number, c: { resets: number }) => n + c.resets, 0),
    };
  };
  // the server closes without reading the client's line: it aborts with a reset
  await using first = clientOf();
  assertEquals(await resets(srv.server.pid, first), {
    closes: N,
    resets: Array(N).fill("sent"),
    counted: N,
  });
  // the client, now the target, receives those resets
  await using second = clientOf();
  assertEquals(await resets(second.pid, second), {
    closes: N,
    resets: Array(N).fill("received"),
    counted: N,
  });
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("socket: processes forked by the target after start are followed", async () => {
  // The shell is the target; the server it starts later is its child.
  await using shell = new Child("bash", [
    "-c",
    `read; exec ${DENO} run --allow-net ${ROOT}tests/fixtures/tcp_server.ts 127.0.0.1 & wait`,
  ], { stdin: true });
  await using kupod = await startKupod(socketJson("--pid", String(shell.pid)));
  await shell.writeLine("go");
  const [, port, serverPid] = (await shell.waitForLine(/^listening \d+/)).split(" ").map(Number);
  try {
    await connectTimes("127.0.0.1", port, 8);
  } finally {
    Deno.kill(serverPid, "SIGKILL");
  }
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod);
  const evs = events(kupod);
  assertEquals(evs.length, 8);
  assert(evs.every((e) => e.type === "tcp_accept" && e.pid !== shell.pid), "accepts by the child");
});

Deno.test("socket: --duration ends the run by itself with every event written", async () => {
  await using srv = await startServer("127.0.0.1");
  const kupod = kupodChild(socketJson("--pid", String(srv.server.pid), "--duration", "3"));
  await using _k = kupod;
  await kupod.waitForLine(/started!/);
  await connectTimes("127.0.0.1", srv.port, 10);
  const status = await kupod.wait();
  assertEquals(status.code, 0);
  assertEquals(events(kupod).length, 10);
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("socket: text output has one readable line per event after the readiness line", async () => {
  await using srv = await startServer("127.0.0.1");
  await using kupod = await startKupod([
    "monitor",
    "kernel",
    "socket",
    "--pid",
    String(srv.server.pid),
  ]);
  await connectTimes("127.0.0.1", srv.port, 3);
  await new Promise((r) => setTimeout(r, 300));
  await stopAndWait(kupod);
  const lines = kupod.stdout.filter((l) => l.includes("tcp_accept"));
  assertEquals(lines.length, 3);
  for (const l of lines) {
    assert(new RegExp(`127\\.0\\.0\\.1:${srv.port} <- 127\\.0\\.0\\.1:\\d+`).test(l), l);
  }
  const ready = kupod.stdout.indexOf("TCP Connect started!");
  assert(ready >= 0 && ready < kupod.stdout.indexOf(lines[0]), "readiness before events");
});

Deno.test("socket: nothing stays loaded after SIGKILL either", async () => {
  await using srv = await startServer("127.0.0.1");
  const kupod = await startKupod(["monitor", "kernel", "socket", "--pid", String(srv.server.pid)]);
  kupod.kill("SIGKILL");
  await kupod.wait();
  assertEquals(await waitNoKupodPrograms(), []);
});
