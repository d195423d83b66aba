/**
 * The release file as a stranger runs it: scripts/build-release makes dist/kupod-linux-<arch>
 * (or KUPOD_RELEASE_FILE names one), the file alone is copied into an empty directory and run
 * as root in a mount namespace where the repository, node_modules, Deno, the machine's libbpf,
 * libelf and zlib, and clang are hidden (scripts/release/stranger.ts). Against a test pod it must
 * count exactly, with its own libbpf loaded; it unpacks once into a private versioned cache,
 * refuses a damaged file in one line, and two versions run side by side.
 */

import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod } from "./helpers/pod.ts";
import { httpGet } from "./helpers/pod_http.ts";
import { Child, freePort } from "./helpers/process.ts";
import {
  assertStackGone,
  exporterUrl,
  pathCounts,
  pathOnly,
  ping,
  sleep,
  stackCounts,
  stopAndWait,
} from "./helpers/stack.ts";
import { count, eventsAfter, N } from "./helpers/traffic.ts";
import { buildId, buildRelease, releaseFile as release } from "../scripts/release/build.ts";
import { Stranger } from "../scripts/release/stranger.ts";
import { VERSION } from "../base/version.ts";

const MAX_BYTES = 60 * 1000 * 1000;

/** kupod from the release file in the stranger's namespace, with a free local exporter port. */
function strangerKupod(s: Stranger, args: string[], name?: string): Child {
  const port = ["--exporter-address", "127.0.0.1", "--exporter-port", String(freePort())];
  const [cmd, argv] = s.argv([...args, ...port, "--interval", "0"], {}, name);
  return new Child(cmd, argv);
}

/** Names in the stranger's /var/cache/kupod, sorted. */
function cacheEntries(s: Stranger): string[] {
  return [...Deno.readDirSync(s.cache)].map((e) => e.name).sort();
}

/** Shared libraries a process has mapped, by path. */
async function mappedLibraries(pid: number): Promise<string[]> {
  const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
  return [...new Set(maps.split("\n").map((l) => l.split(/\s+/)[5] ?? "").filter((p) => p))]
    .filter((p) => /\.so(\.|$)/.test(p));
}

Deno.test("release: the file alone runs version and --help, unpacks once into a private cache", async () => {
  const file = await release();
  const size = (await Deno.stat(file)).size;
  assert(size <= MAX_BYTES, `${file}: ${size} bytes, more than ${MAX_BYTES}`);
  const id = await buildId(file);
  await using s = await Stranger.copy(file);
  // what a first start killed mid-unpack leaves: the next first start clears it
  await Deno.mkdir(`${s.cache}/.unpack-${id}-Xy12ab/app`, { recursive: true, mode: 0o700 });

  const first = await s.run(["version"]);
  assertEquals(first.code, 0, first.stderr);
  assertEquals(
    first.stderr,
    `kupod: first start of ${id}: unpacking into /var/cache/kupod/${id}\n`,
  );
  const lines = first.stdout.trimEnd().split("\n");
  assertEquals(lines[0], `kupod ${VERSION}`);
  assert(/^commit [0-9a-f]{7,}(-dirty)?$/.test(lines[1]), lines[1]);
  assertEquals(lines[2], "build self-extracting");
  assertEquals(lines[3], `libbpf 1.1 (/var/cache/kupod/${id}/lib/libbpf.so.1)`);
  assert(lines[4].startsWith("deno "), lines[4]);

  // root's cache: /var/cache/kupod/<version>-<hash>, private to root, with the unpack's lock
  assertEquals(cacheEntries(s), [`.${id}.lock`, id]);
  for (const dir of [s.cache, `${s.cache}/${id}`]) {
    const st = await Deno.stat(dir);
    assertEquals([st.uid, st.mode! & 0o777], [0, 0o700], dir);
  }
  const runtime = await Deno.stat(`${s.cache}/${id}/deno`);

  const help = await s.run(["--help"]);
  assertEquals(help.code, 0, help.stderr);
  assertEquals(help.stderr, "", "a warm start says nothing");
  assert(help.stdout.includes("Usage:") && help.stdout.includes("monitor"), help.stdout);
  const again = await Deno.stat(`${s.cache}/${id}/deno`);
  assertEquals([again.ino, again.mtime], [runtime.ino, runtime.mtime], "the unpacked runtime");
});

Deno.test("release: monitor kernel stack --veth counts a pod's echos exactly, on its own libbpf", async () => {
  const file = await release();
  const id = await buildId(file);
  await using pod = await createTestPod();
  await using s = await Stranger.copy(file);
  const addr = pod.podIP;
  const kupod = strangerKupod(s, [
    "monitor",
    "kernel",
    "stack",
    "--veth",
    pod.hostVeth,
    "--output",
    "json",
    "--stack-protocol",
    "icmp",
    "--stack-address",
    addr,
    "--stack-duty-cycle", // exact counts along the path: traced the whole run
    "1",
  ]);
  try {
    await kupod.waitForLine(/started!/, 60000);
    // the pid is kupod's (every step of the namespace execs the next)
    const libs = await mappedLibraries(kupod.pid);
    const own = `/var/cache/kupod/${id}/lib/`;
    for (const lib of ["libbpf.so.1", "libelf.so.1", "libz.so.1"]) {
      assert(libs.includes(own + lib), `${lib} from the file: ${libs.join(" ")}`);
    }
    assertEquals(libs.filter((l) => /lib(bpf|elf|z)\.so/.test(l) && !l.startsWith(own)), []);

    const url = await exporterUrl(kupod);
    await ping(addr, N);
    await sleep(200);
    const c = await stackCounts(url);
    await stopAndWait(kupod);
    assertEquals(pathOnly(c.hooks), pathCounts(N, N), "echo requests in, replies out");
    assertEquals(c.nic, { rx: N, tx: N });
    assertEquals(c.hooks.consume, N, "requests consumed in the pod");
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
  await assertStackGone(pod.hostVeth);
});

Deno.test("release: monitor kernel socket --pid --output json sees exactly the service's accepts", async () => {
  const file = await release();
  await using pod = await createTestPod({ upstreamKeepAlive: false });
  await using s = await Stranger.copy(file);
  const app = pod.container("app");
  await using kupod = strangerKupod(s, [
    "monitor",
    "kernel",
    "socket",
    "--pid",
    String(app.mainPid),
    "--output",
    "json",
  ]);
  await kupod.waitForLine(/started!/, 60000);
  await httpGet(pod.podIP, pod.container("proxy").port, { count: N, keepAlive: false });
  const evs = await eventsAfter(kupod);
  assertEquals(evs.length, N, JSON.stringify(evs));
  assertEquals(count(evs, "tcp_accept", evs[0].container!), N);
  assert(evs.every((e) => e.role === "service" && e.pid === app.mainPid), "all the service's");
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("release: a damaged file is refused in one line and unpacks nothing", async () => {
  const file = await release();
  await using s = await Stranger.copy(file);
  const copy = `${s.work}/node/${s.name}`;
  const bytes = await Deno.readFile(copy);
  const flipped = bytes.length - 1024 * 1024; // inside the payload
  bytes[flipped] ^= 0x40;
  await Deno.writeFile(copy, bytes);
  const r = await s.run(["version"]);
  assertEquals(r.code, 1);
  assertEquals(r.stdout, "");
  assertEquals(
    r.stderr,
    "Error: this kupod file is damaged (payload SHA-256 does not match): download it again\n",
  );
  assertEquals(
    cacheEntries(s).filter((n) => !n.endsWith(".lock")),
    [],
    "nothing unpacked, no temporary left",
  );

  await Deno.writeFile(copy, bytes.subarray(0, bytes.length - 4096));
  const cut = await s.run(["version"]);
  assertEquals([cut.code, cut.stdout], [1, ""]);
  assert(/^Error: this kupod file is damaged \([^)]+\): download it again\n$/.test(cut.stderr));
});

Deno.test("release: two versions side by side, each started twice at once, do not clash", async () => {
  const file = await release();
  await using s = await Stranger.copy(file);
  const side = `${s.work}/kupod-side`;
  await buildRelease(["--version", `${VERSION}-side`, "--out", side]);
  await s.add(side, "kupod-side");
  const ids = [await buildId(file), await buildId(side)];
  assert(ids[0] !== ids[1], `${ids}`);

  // four first starts racing for two cache entries
  const runs = await Promise.all([
    s.run(["version"]),
    s.run(["version"], {}, "kupod-side"),
    s.run(["version"]),
    s.run(["version"], {}, "kupod-side"),
  ]);
  runs.forEach((r, i) => {
    assertEquals(r.code, 0, r.stderr);
    const v = i % 2 ? `${VERSION}-side` : VERSION;
    assert(r.stdout.startsWith(`kupod ${v}\n`), r.stdout);
    assert(r.stdout.includes(`/var/cache/kupod/${ids[i % 2]}/lib/libbpf.so.1`), r.stdout);
  });
  assertEquals(cacheEntries(s), [...ids.map((id) => `.${id}.lock`), ...ids].sort());

  // and both run at once
  const monitors = [undefined, "kupod-side"].map((name) =>
    strangerKupod(s, ["monitor", "kernel", "socket", "--pid", String(Deno.pid)], name)
  );
  try {
    for (const m of monitors) await m.waitForLine(/started!/, 60000);
    for (const m of monitors) m.kill("SIGTERM");
    for (const m of monitors) assertEquals((await m.wait()).code, 0, m.stderr.join("|"));
  } finally {
    for (const m of monitors) await m[Symbol.asyncDispose]();
  }
  assertEquals(await waitNoKupodPrograms(), []);
});
