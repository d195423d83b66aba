/**
 * The real launcher with bad input and unmet requirements: one line on
 * stderr, the documented exit code, no stack trace, nothing on stdout and
 * nothing left loaded.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { ROOT } from "./helpers/process.ts";

async function kupod(args: string[], opts: { asNobody?: boolean } = {}) {
  const [cmd, cmdArgs] = opts.asNobody
    ? ["setpriv", [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--inh-caps=-all",
      `${ROOT}kupod`,
      ...args,
    ]]
    : [`${ROOT}kupod`, args];
  const out = await new Deno.Command(cmd, {
    args: cmdArgs as string[],
    stdout: "piped",
    stderr: "piped",
    // a Deno cache the unprivileged user can write
    env: opts.asNobody ? { DENO_DIR: await Deno.makeTempDir() } : {},
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr).trimEnd(),
  };
}

function assertOneLineError(r: { stderr: string; stdout: string }, pattern: RegExp): void {
  const lines = r.stderr.split("\n").filter((l) => !l.startsWith("Run '"));
  assertEquals(lines.length, 1, `one error line, got: ${r.stderr}`);
  assert(pattern.test(lines[0]), `${lines[0]} !~ ${pattern}`);
  assert(!/\bat .*\.ts:\d+/.test(r.stderr), "no stack trace");
  assertEquals(r.stdout, "", "nothing on stdout");
}

Deno.test("run: usage errors exit 2 with one line and a hint", async () => {
  const r = await kupod(["monitor", "kernel", "socket", "--exporter-port", "70000"]);
  assertEquals(r.code, 2);
  assertOneLineError(r, /^Error: .*exporter-port/);
  assert(r.stderr.includes("Run 'kupod monitor kernel socket --help'"), r.stderr);
});

Deno.test("run: a pid that does not exist is refused before anything loads", async () => {
  const r = await kupod(["monitor", "kernel", "socket", "--pid", "2147483646"]);
  assertEquals(r.code, 2);
  assertOneLineError(r, /^Error: .*2147483646/);
});

Deno.test("run: monitor user all runs one capture for http and grpc and leaves nothing", async () => {
  const r = await kupod(["monitor", "user", "all", "--pid", String(Deno.pid), "--duration", "1"]);
  assertEquals(r.code, 0, r.stderr);
  assert(r.stdout.includes("HTTP and gRPC monitor started!"), r.stdout);
  assertEquals(await waitNoKupodPrograms(), [], "nothing left loaded");
});

Deno.test("run: no target is one line, exit 1", async () => {
  const r = await kupod(["monitor", "kernel", "socket"]);
  assertEquals(r.code, 1);
  assertOneLineError(r, /^Error: no target/);
});

Deno.test("run: without root the preflight refuses in one line", async () => {
  const r = await kupod(["monitor", "kernel", "socket", "--pid", "1"], { asNobody: true });
  assertEquals(r.code, 1);
  assertOneLineError(r, /^Error: kupod needs root/);
});

Deno.test("run: version and help go to stdout and exit 0", async () => {
  const v = await kupod(["version"]);
  assertEquals(v.code, 0);
  assert(/kupod 0\.\d+\.\d+/.test(v.stdout), v.stdout);
  const h = await kupod(["monitor", "kernel", "--help"]);
  assertEquals(h.code, 0);
  assert(h.stdout.includes("socket") && h.stdout.includes("--with-sockops"), h.stdout);
});
