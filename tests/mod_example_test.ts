/**
 * mod.ts's JSDoc example is a real program: run as written (its import pointed at this
 * checkout's mod.ts) against a real TCP server, it prints exactly the accepts of the known
 * connections and metrics that count them, and leaves nothing loaded.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { Child, connectTimes, DENO, ROOT, startServer } from "./helpers/process.ts";

/** The first ```ts block of mod.ts's module comment, importing this checkout's mod.ts. */
async function exampleProgram(): Promise<string> {
  const source = await Deno.readTextFile(`${ROOT}mod.ts`);
  const block = /```ts\n([\s\S]*?)```/.exec(source);
  assert(block, "mod.ts has a ```ts example");
  const code = block[1].split("\n").map((l) => l.replace(/^ \* ?/, "")).join("\n");
  assert(code.includes('from "./mod.ts"'), "the example imports ./mod.ts");
  return code.replace('from "./mod.ts"', `from "${ROOT}mod.ts"`);
}

Deno.test("mod.ts example: a process's accepts as events and as metrics, library only", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kupod-example-" });
  try {
    const file = `${dir}/example.ts`;
    await Deno.writeTextFile(file, await exampleProgram());
    await using srv = await startServer();
    const N = 5;
    await using example = new Child(DENO, [
      "run",
      "--allow-all",
      "--config",
      `${ROOT}deno.json`,
      file,
      String(srv.server.pid),
      "3",
    ]);
    await example.waitForLine(/started!/, 30_000);
    await connectTimes("127.0.0.1", srv.port, N);
    const status = await example.wait();
    assertEquals(status.code, 0, example.stderr.join("\n"));
    const accepts = example.stdout.filter((l) => l.startsWith("tcp_accept "));
    assertEquals(accepts.length, N, example.stdout.join("\n"));
    assert(accepts.every((l) => l.includes(`127.0.0.1:${srv.port}`)), accepts.join("\n"));
    assertEquals(example.stdout.filter((l) => l.startsWith("tcp_connect ")).length, 0);
    const inbound = example.stdout.find((l) =>
      l.startsWith("kupod_tcp_connections_total{") && l.includes('direction="inbound"')
    );
    assert(inbound, `inbound connections metric in:\n${example.stdout.join("\n")}`);
    assertEquals(Number(inbound.split(" ").at(-1)), N, inbound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
