/**
 * The release file's figures: its size, its first start (hash check, unpack, first compile of
 * the program) and its warm start, each to the readiness line ("started"), for
 * `monitor kernel socket --pid <this process>` (no Kubernetes); the source launcher for
 * comparison. Targets: ≤ 60 MB, warm start ≤ 0.3 s.
 *
 *   deno task bench:release        # builds dist/ first unless KUPOD_RELEASE_FILE names a file
 */

import { Child, ROOT } from "../tests/helpers/process.ts";
import { releaseFile } from "../scripts/release/build.ts";

const FIRST_RUNS = 3;
const WARM_RUNS = 10;

/** Seconds from spawning `cmd` to its "started" line; then SIGTERM, and exit 0 checked. */
async function toStarted(cmd: string, args: string[], env: Record<string, string>) {
  const t0 = performance.now();
  const kupod = new Child(cmd, args, { env });
  try {
    await kupod.waitForLine(/started!/, 60000);
    const seconds = (performance.now() - t0) / 1000;
    kupod.kill("SIGTERM");
    const status = await kupod.wait();
    if (status.code !== 0) throw new Error(`exit ${status.code}: ${kupod.stderr.join(" | ")}`);
    return seconds;
  } finally {
    await kupod[Symbol.asyncDispose]();
  }
}

function summary(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return `median ${q(0.5).toFixed(3)} s, min ${s[0].toFixed(3)} s, max ${s.at(-1)!.toFixed(3)} s ` +
    `(${xs.length} runs)`;
}

const file = await releaseFile();
const size = (await Deno.stat(file)).size;
/** The command line, with a free port for the exporter each time. */
function args(): string[] {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return [
    ...["monitor", "kernel", "socket", "--pid", String(Deno.pid), "--quiet", "--interval", "0"],
    ...["--exporter-address", "127.0.0.1", "--exporter-port", String(port)],
  ];
}
const cacheRoot = await Deno.makeTempDir({ prefix: "kupod-bench-release-" });
try {
  const first: number[] = [];
  for (let i = 0; i < FIRST_RUNS; i++) {
    // a new cache each time: hash check, unpack, Deno's first compile of the program
    first.push(await toStarted(file, args(), { KUPOD_CACHE_DIR: `${cacheRoot}/first-${i}` }));
  }
  const warmCache = `${cacheRoot}/first-0`;
  const warm: number[] = [];
  for (let i = 0; i < WARM_RUNS; i++) {
    warm.push(await toStarted(file, args(), { KUPOD_CACHE_DIR: warmCache }));
  }
  const source: number[] = [];
  for (let i = 0; i < WARM_RUNS; i++) {
    source.push(await toStarted(`${ROOT}kupod`, args(), {}));
  }
  console.log(`release file     ${file}`);
  console.log(
    `size             ${size} bytes (${(size / 1e6).toFixed(1)} MB; target ≤ 60 MB)`,
  );
  console.log(`first start      ${summary(first)}`);
  console.log(`warm start       ${summary(warm)} (target ≤ 0.3 s)`);
  console.log(`source launcher  ${summary(source)}`);
} finally {
  await Deno.remove(cacheRoot, { recursive: true });
}
