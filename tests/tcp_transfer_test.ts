import { assert, assertEquals } from "./helpers/assert.ts";
import { Child, DENO, ROOT } from "./helpers/process.ts";
import {
  compareSummary,
  decodeHeader,
  ECHO_SEED_XOR,
  encodeHeader,
  parseSize,
  Pattern,
  patternSummary,
  Tally,
  verifyBuffer,
} from "./fixtures/tcp_transfer.ts";

const FIXTURE = `${ROOT}tests/fixtures/tcp_transfer.ts`;

interface Outcome {
  code: number;
  result: Record<string, unknown>;
}

/** Runs the client CLI to completion; it has its own timeout, the kill is a last resort. */
async function runClient(port: number, args: string[]): Promise<Outcome> {
  const client = new Child(DENO, [
    "run",
    "--allow-net",
    FIXTURE,
    "client",
    "127.0.0.1",
    String(port),
    "--timeout",
    "30",
    ...args,
  ]);
  try {
    const { code } = await client.wait();
    assertEquals(client.stdout.length, 1, `one JSON line (stderr: ${client.stderr.join(" | ")})`);
    return { code, result: JSON.parse(client.stdout[0]) };
  } finally {
    client.kill("SIGKILL");
  }
}

async function withServer(body: (port: number) => Promise<void>): Promise<void> {
  const server = new Child(DENO, ["run", "--allow-net", FIXTURE, "server", "127.0.0.1", "0"]);
  try {
    const line = await server.waitForLine(/^listening \d+ \d+$/);
    const [, port, pid] = line.split(" ").map(Number);
    assertEquals(pid, server.pid);
    await body(port);
  } finally {
    server.kill("SIGKILL");
    await server.wait();
  }
}

Deno.test("tcp_transfer: one connection, 4 MiB up and 1 MiB back", async () => {
  await withServer(async (port) => {
    const { code, result } = await runClient(port, ["--bytes", "4M", "--echo", "1M"]);
    assertEquals(code, 0, JSON.stringify(result));
    assertEquals(result.ok, true);
    assertEquals(result.connections, 1);
    assertEquals(result.bytes_sent, 4 << 20);
    assertEquals(result.bytes_received, 1 << 20);
    assert(typeof result.seconds === "number" && typeof result.mbps === "number");
  });
});

Deno.test("tcp_transfer: 8 parallel connections × 5 rounds with mixed write sizes", async () => {
  await withServer(async (port) => {
    const { code, result } = await runClient(port, [
      "--bytes",
      "256K",
      "--echo",
      "10000",
      "--conns",
      "8",
      "--repeat",
      "5",
      "--mixed",
      "--write-size",
      "5000",
    ]);
    assertEquals(code, 0, JSON.stringify(result));
    assertEquals(result.ok, true);
    assertEquals(result.connections, 40);
    assertEquals(result.bytes_sent, 40 * 256 * 1024);
    assertEquals(result.bytes_received, 40 * 10000);
  });
});

Deno.test("tcp_transfer: the verifier catches a flipped, a missing and a swapped byte", () => {
  const data = new Uint8Array(200_000);
  new Pattern(7, 3).fill(data);
  assertEquals(verifyBuffer(data, 7, 3), undefined);

  const flipped = data.slice();
  flipped[123_456] ^= 1;
  const flip = verifyBuffer(flipped, 7, 3);
  assert(flip?.startsWith("connection 3: sha256 mismatch"), String(flip));

  // One byte lost at the front: compared with the pattern's prefix of the same length.
  const short = verifyBuffer(data.subarray(1), 7, 3);
  assert(short?.includes("sha256 mismatch"), String(short));
  const counted = compareSummary("c", { bytes: 5, sha256: "x" }, { bytes: 6, sha256: "x" });
  assertEquals(counted, "c: byte count mismatch: got 5, want 6");

  assert(data[10] !== data[70_000], "swap bytes that differ");
  const swapped = data.slice();
  [swapped[10], swapped[70_000]] = [data[70_000], data[10]];
  assert(verifyBuffer(swapped, 7, 3) !== undefined, "reordering detected");

  // A different stream (another connection or seed) never passes as this one.
  assert(verifyBuffer(data, 7, 4) !== undefined);
  assert(verifyBuffer(data, 8, 3) !== undefined);
});

Deno.test("tcp_transfer: pattern is independent of how it is read", () => {
  const whole = new Uint8Array(150_001);
  new Pattern(1, 0).fill(whole);
  const pieces = new Uint8Array(whole.length), p = new Pattern(1, 0);
  for (let off = 0, i = 0; off < pieces.length; i++) {
    const n = Math.min([1, 7, 4096, 70_000][i % 4], pieces.length - off);
    p.fill(pieces.subarray(off, off + n));
    off += n;
  }
  assert(pieces.every((b, i) => b === whole[i]), "same bytes whatever the read sizes");
  const tally = new Tally();
  tally.update(whole);
  assertEquals(tally.summary(), patternSummary(1, 0, whole.length));
});

Deno.test("tcp_transfer: sizes and header", () => {
  assertEquals(
    ["0", "123", "64K", "1m", "2G"].map(parseSize),
    [0, 123, 65536, 1 << 20, 2 * 2 ** 30],
  );
  for (const bad of ["", "1.5M", "-1", "1T", "K"]) {
    let threw = false;
    try {
      parseSize(bad);
    } catch {
      threw = true;
    }
    assert(threw, `"${bad}" rejected`);
  }
  assertEquals(decodeHeader(encodeHeader(2 ** 40 + 5, 0xffffffff, 39)), {
    echo: 2 ** 40 + 5,
    seed: 0xffffffff,
    index: 39,
  });
});

/**
 * A server in this process that damages its answer: the client must report it, name the
 * connection, and exit 1.
 */
async function againstFaultyServer(damage: "line" | "echo"): Promise<Outcome> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const conn = await listener.accept();
    try {
      const buf = new Uint8Array(65536), all: Uint8Array[] = [];
      for (let n; (n = await conn.read(buf)) !== null;) all.push(buf.slice(0, n));
      const stream = new Uint8Array(all.reduce((s, c) => s + c.length, 0));
      all.reduce((off, c) => (stream.set(c, off), off + c.length), 0);
      const { echo, seed, index } = decodeHeader(stream);
      const tally = new Tally();
      tally.update(stream.subarray(16, damage === "line" ? stream.length - 1 : stream.length));
      const { bytes, sha256 } = tally.summary();
      await conn.write(new TextEncoder().encode(`${bytes} ${sha256}\n`));
      const body = new Uint8Array(echo);
      new Pattern((seed ^ ECHO_SEED_XOR) >>> 0, index).fill(body);
      if (damage === "echo") body[echo >> 1] ^= 0x80;
      for (let off = 0; off < body.length;) off += await conn.write(body.subarray(off));
    } finally {
      conn.close();
    }
  })();
  try {
    return await runClient((listener.addr as Deno.NetAddr).port, [
      "--bytes",
      "100K",
      "--echo",
      "50K",
    ]);
  } finally {
    listener.close();
    await serving;
  }
}

Deno.test("tcp_transfer: the client reports a damaged transfer in either direction", async () => {
  const line = await againstFaultyServer("line");
  assertEquals(line.code, 1);
  assertEquals(line.result.ok, false);
  const lineError = String(line.result.error);
  assert(lineError.startsWith("connection 0: server received: byte count mismatch"), lineError);

  const echo = await againstFaultyServer("echo");
  assertEquals(echo.code, 1);
  assertEquals(echo.result.ok, false);
  const echoError = String(echo.result.error);
  assert(echoError.startsWith("connection 0: echo: sha256 mismatch"), echoError);
});
