/**
 * The stack probe counts exactly what was sent: ICMP echos, UDP datagrams and HTTP over IPv4 and
 * IPv6 into a test pod, selected with --stack-protocol/--stack-port/--stack-address so that no
 * other packet counts; drops of a closed port and of a firewall rule in the pod with their reason.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { podNft, podNftCounters } from "./helpers/nft.ts";
import { createTestPod, type TestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { Child, DENO, freePort, ROOT, startKupod } from "./helpers/process.ts";
import {
  connectRefused,
  exporterUrl,
  INTO_POD,
  OUT_OF_POD,
  pathCounts,
  pathOnly,
  ping,
  sleep,
  sorted,
  type StackCounts,
  stackCounts,
  stopAndWait,
} from "./helpers/stack.ts";

const N = 7;
/** Hops of N echo requests consumed in the pod and their N replies read or dropped. */
function echoHops(drops: Record<string, number>): Record<string, number> {
  const hops: Record<string, number> = {};
  for (const path of [INTO_POD, OUT_OF_POD]) {
    for (let i = 1; i < path.length; i++) {
      const hop = `${path[i - 1]}->${path[i]}`;
      hops[hop] = (hops[hop] ?? 0) + N;
    }
  }
  hops["nf_local_in->consume"] = N;
  hops[drops.no_socket ? "tc_ingress->drop" : "tc_ingress->deliver"] = N;
  return sorted(hops);
}

/** Runs `traffic` under `monitor kernel stack` with packet selection `select`; its counts. */
async function counted(
  pod: TestPod,
  select: string[],
  traffic: () => Promise<void>,
): Promise<StackCounts> {
  const kupod = await startKupod(
    ["monitor", "kernel", "stack", "--veth", pod.hostVeth, "--output", "json", ...select],
  );
  try {
    const url = await exporterUrl(kupod);
    await traffic();
    await sleep(200); // the last frees after the reply reached its reader
    const counts = await stackCounts(url);
    await stopAndWait(kupod);
    console.log(`${select.join(" ")}: ${JSON.stringify(counts)}`);
    return counts;
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
}

const UDP = `${ROOT}tests/fixtures/udp_echo.ts`;

/** `udp_echo.ts send` from the host; every datagram must be echoed when `wait`. */
async function sendUdp(host: string, port: number, n: number, wait: boolean): Promise<void> {
  const args = ["run", "--unstable-net", "--allow-net", UDP, "send", host, String(port), String(n)];
  const out = await new Deno.Command(DENO, { args: wait ? [...args, "wait"] : args }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assertEquals(text, `sent ${n} echoed ${wait ? n : 0}`, new TextDecoder().decode(out.stderr));
}

/** A UDP echo server in the pod's netns, killed by pid on dispose. */
async function udpServer(pod: TestPod, port: number): Promise<Child> {
  const server = new Child("ip", [
    "netns",
    "exec",
    pod.netns,
    DENO,
    "run",
    "--unstable-net",
    "--allow-net",
    UDP,
    "serve",
    String(port),
  ], { env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } });
  await server.waitForLine(/^listening$/);
  return server;
}

Deno.test("stack flows: N ICMP echos over IPv4 and IPv6, counted exactly per hook", async () => {
  await using pod = await createTestPod({ ipv6: true });
  for (const addr of [pod.podIP, pod.podIP6]) {
    const c = await counted(
      pod,
      ["--stack-protocol", "icmp", "--stack-address", addr],
      () => ping(addr, N),
    );
    // requests into the pod, replies out of it
    assertEquals(pathOnly(c.hooks), pathCounts(N, N), addr);
    assertEquals(c.nic, { rx: N, tx: N }, `${addr}: echo replies rx, requests tx`);
    // the pod answers each request and frees it
    assertEquals(c.hooks.consume, N, `${addr}: requests consumed in the pod`);
    // each reply is read by ping's socket, or (ping reading a raw socket's copy) freed as
    // having no ping socket
    const noSocket = c.drops.no_socket ?? 0;
    assertEquals((c.hooks.deliver ?? 0) + noSocket, N, `${addr}: replies read or dropped`);
    assertEquals(c.drops, noSocket ? { no_socket: N } : {}, `${addr}: drops`);
    // a quiet pod: every request and reply is timed, at each hop
    assertEquals(c.hops, echoHops(c.drops), `${addr}: hops timed`);
  }
});

Deno.test("stack flows: N UDP datagrams echoed in the pod, N to a closed port dropped", async () => {
  await using pod = await createTestPod({ ipv6: true });
  const port = freePort(); // the pod's own netns: free there as well
  await using _server = await udpServer(pod, port);
  for (const addr of [pod.podIP, pod.podIP6]) {
    const c = await counted(
      pod,
      ["--stack-protocol", "udp", "--stack-port", String(port), "--stack-address", addr],
      () => sendUdp(addr, port, N, true),
    );
    assertEquals(pathOnly(c.hooks), pathCounts(N, N), `${addr}: datagrams and echoes`);
    assertEquals(c.nic, { rx: N, tx: N }, `${addr}: echoes rx, datagrams tx`);
    assertEquals(c.drops, {}, `${addr}: no drops`);
  }
  const closed = port + 1;
  for (const addr of [pod.podIP, pod.podIP6]) {
    // the pod's ICMP port unreachable answers have no ports: not selected
    const c = await counted(
      pod,
      ["--stack-protocol", "udp", "--stack-port", String(closed), "--stack-address", addr],
      () => sendUdp(addr, closed, N, false),
    );
    assertEquals(
      sorted(c.hooks),
      pathCounts(N, 0, { drop: N }),
      `${addr}: datagrams to a closed port`,
    );
    assertEquals(c.drops, { no_socket: N }, `${addr}: dropped for want of a socket`);
    assertEquals(c.nic, { rx: 0, tx: N }, addr);
  }
});

Deno.test("stack flows: a SYN to a closed port is one no_socket drop, its RST one packet out", async () => {
  await using pod = await createTestPod({ ipv6: true });
  const port = freePort(); // an ephemeral port: the pod listens on 8080 and 9090 only
  for (const addr of [pod.podIP, pod.podIP6]) {
    const c = await counted(
      pod,
      ["--stack-port", String(port), "--stack-address", addr],
      () => connectRefused(addr, port),
    );
    assertEquals(pathOnly(c.hooks), pathCounts(1, 1), `${addr}: SYN in, RST out`);
    assertEquals(c.drops, { no_socket: 1 }, `${addr}: the SYN`);
  }
});

/** Counters of the pod's port `port` packets at each netfilter hook, in the pod's netns. */
function countersFor(port: number): string {
  const chain = (name: string, hook: string, match: string) =>
    `chain ${name} { type filter hook ${hook} priority 0; ${match} ${port} counter; }`;
  return `table inet kupodt {
    ${chain("pre", "prerouting", "tcp dport")}
    ${chain("in", "input", "tcp dport")}
    ${chain("out", "output", "tcp sport")}
    ${chain("post", "postrouting", "tcp sport")}
  }\n`;
}

Deno.test("stack flows: HTTP over IPv4 and IPv6, per hook as the pod's nftables counters", async () => {
  await using pod = await createTestPod({ ipv6: true });
  const port = pod.container("proxy").port;
  await podNft(pod.netns, countersFor(port));
  for (const addr of [pod.podIP, pod.podIP6]) {
    const before = await podNftCounters(pod.netns, "inet", "kupodt");
    const c = await counted(
      pod,
      ["--stack-port", String(port), "--stack-address", addr, "--stack-tcp"],
      async () => {
        const http = await httpGet(addr, port, { count: N });
        assertEquals(http.replies.map((r) => r.status), new Array(N).fill(200));
      },
    );
    const after = await podNftCounters(pod.netns, "inet", "kupodt");
    const nft = (chain: string) => after[chain] - (before[chain] ?? 0);
    // at least SYN, request, ACK and FIN of every connection, each way
    assert(nft("pre") >= 4 * N && nft("out") >= 4 * N, `nft ${JSON.stringify(after)}`);
    assertEquals(nft("in"), nft("pre"), "nothing dropped between PRE_ROUTING and LOCAL_IN");
    assertEquals(nft("post"), nft("out"), "nothing dropped between LOCAL_OUT and POST_ROUTING");
    assertEquals(pathOnly(c.hooks), pathCounts(nft("pre"), nft("out")), addr);
    assertEquals(c.nic, { rx: nft("out"), tx: nft("pre") }, addr);
    // TCP's own points: every request reaches an established socket (handshake ACKs and
    // segments after the close do not), and nginx writes every response (once or in parts)
    const tcpRecv = c.hooks.tcp_recv ?? 0, tcpSend = c.hooks.tcp_send ?? 0;
    assert(tcpRecv >= N && tcpRecv <= nft("in"), `${addr}: tcp_recv ${tcpRecv}, in ${nft("in")}`);
    assert(tcpSend >= N && tcpSend <= 4 * N, `${addr}: tcp_send ${tcpSend}`);
  }
});

Deno.test("stack flows: the sidecar's loopback traffic to the service only with --stack-loopback", async () => {
  await using pod = await createTestPod();
  const app = pod.container("app").port;
  const both = (name: string, hook: string) =>
    `chain ${name} { type filter hook ${hook} priority 0; tcp dport ${app} counter; ` +
    `tcp sport ${app} counter; }`;
  await podNft(
    pod.netns,
    `table inet kupodt {\n ${both("pre", "prerouting")}\n ${both("in", "input")}\n ${
      both("out", "output")
    }\n ${both("post", "postrouting")}\n}\n`,
  );
  const proxied = async () => {
    const http = await httpGet(pod.podIP, pod.container("proxy").port, { count: N });
    assertEquals(http.replies.map((r) => r.status), new Array(N).fill(200));
  };
  for (const loopback of [false, true]) {
    const before = await podNftCounters(pod.netns, "inet", "kupodt");
    const c = await counted(
      pod,
      ["--stack-port", String(app), ...(loopback ? ["--stack-loopback"] : [])],
      proxied,
    );
    const after = await podNftCounters(pod.netns, "inet", "kupodt");
    const nft = (chain: string) => after[chain] - (before[chain] ?? 0);
    // at least every request and every reply
    assert(nft("out") >= 2 * N, `nft ${JSON.stringify(after)}`);
    const nfHooks = Object.fromEntries(
      ["nf_pre_routing", "nf_local_in", "nf_local_out", "nf_post_routing"].map((h) => [
        h,
        c.hooks[h] ?? 0,
      ]),
    );
    const want = loopback
      ? {
        nf_pre_routing: nft("pre"),
        nf_local_in: nft("in"),
        nf_local_out: nft("out"),
        nf_post_routing: nft("post"),
      }
      : { nf_pre_routing: 0, nf_local_in: 0, nf_local_out: 0, nf_post_routing: 0 };
    assertEquals(nfHooks, want, `--stack-loopback ${loopback}`);
    if (!loopback) assertEquals(c.hooks, {}, "nothing of the loopback path counts");
    assertEquals(c.nic, { rx: 0, tx: 0 }, "none of it crosses the veth");
  }
});

Deno.test("stack flows: a firewall rule in the pod drops N datagrams as netfilter_drop", async () => {
  await using pod = await createTestPod({ ipv6: true });
  const port = freePort();
  await podNft(
    pod.netns,
    `table inet kupodt {\n chain in { type filter hook input priority 0; udp dport ${port} drop; }\n}\n`,
  );
  for (const addr of [pod.podIP, pod.podIP6]) {
    const c = await counted(
      pod,
      ["--stack-protocol", "udp", "--stack-port", String(port), "--stack-address", addr],
      () => sendUdp(addr, port, N, false),
    );
    assertEquals(sorted(c.hooks), pathCounts(N, 0, { drop: N }), addr);
    assertEquals(c.drops, { netfilter_drop: N }, `${addr}: dropped by the rule`);
  }
});
