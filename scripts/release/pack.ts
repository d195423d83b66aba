/**
 * Packs a self-extracting release file: the stub (scripts/release/stub.c), then an xz payload
 * holding Deno, kupod's program, its BPF objects, the npm packages it loads and libbpf with the
 * libraries it needs, then the trailer the stub reads. Run by scripts/build-release.
 *
 *   deno run --allow-all scripts/release/pack.ts --stub S --libs DIR --out FILE [--version V]
 *     [--deno DENO] [--denort DENORT]
 *
 * With --denort, `deno compile` (on that denort) makes the program one executable with the BPF
 * objects inside, and the payload carries it instead of Deno and the program's sources.
 */

import { parseArgs } from "node:util";
import { VERSION } from "../../base/version.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
/** The folders kupod runs from; the rest of the repository (tests, bench, scripts) stays out. */
const PROGRAM_DIRS = ["base", "bpf", "cli", "exporters", "k8s", "probes"];
/** The npm packages kupod imports at run time (package.json's others are tooling). */
const RUNTIME_PACKAGES = ["@opentelemetry/otlp-transformer", "yaml"];
const XZ_ARGS = ["-6", "-T2", "--check=crc64"];

const { values: opt } = parseArgs({
  options: {
    stub: { type: "string" },
    libs: { type: "string" },
    out: { type: "string" },
    version: { type: "string" },
    deno: { type: "string" },
    denort: { type: "string" },
  },
});
if (!opt.stub || !opt.libs || !opt.out) {
  throw new Error("usage: pack.ts --stub S --libs DIR --out FILE [--version V] [--deno D]");
}
const version = opt.version ?? VERSION;
if (!/^[A-Za-z0-9][A-Za-z0-9._+-]{0,40}$/.test(version)) throw new Error(`bad version ${version}`);

const enc = new TextEncoder();

/** One archive record as the stub reads it (kind 1 file, 2 directory, 0 end). */
function record(kind: 0 | 1 | 2, path: string, mode: number, size: number): Uint8Array {
  const p = enc.encode(path);
  const head = new Uint8Array(15 + p.length);
  const v = new DataView(head.buffer);
  v.setUint8(0, kind);
  v.setUint16(1, p.length, true);
  v.setUint32(3, mode, true);
  v.setBigUint64(7, BigInt(size), true);
  head.set(p, 15);
  return head;
}

class Archive {
  parts: Uint8Array[] = [];
  #dirs = new Set<string>();

  dir(path: string): void {
    const parent = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
    if (parent) this.dir(parent);
    if (this.#dirs.has(path)) return;
    this.#dirs.add(path);
    this.parts.push(record(2, path, 0o755, 0));
  }

  file(path: string, data: Uint8Array, mode = 0o644): void {
    if (path.includes("/")) this.dir(path.slice(0, path.lastIndexOf("/")));
    this.parts.push(record(1, path, mode, data.length), data);
  }

  /** A file of the repository or machine, refusing symlinks: the stub unpacks none. */
  copy(path: string, from: string): void {
    const st = Deno.lstatSync(from);
    if (!st.isFile) throw new Error(`${from}: not a regular file`);
    this.file(path, Deno.readFileSync(from), st.mode! & 0o111 ? 0o755 : 0o644);
  }

  tree(path: string, from: string, keep: (name: string) => boolean): void {
    const entries = [...Deno.readDirSync(from)].sort((a, b) => a.name < b.name ? -1 : 1);
    for (const e of entries) {
      if (e.isDirectory) this.tree(`${path}/${e.name}`, `${from}/${e.name}`, keep);
      else if (keep(e.name)) this.copy(`${path}/${e.name}`, `${from}/${e.name}`);
    }
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}

async function run(cmd: string, args: string[], input?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  // Read while writing: xz's output would fill its pipe and stop it otherwise.
  const output = child.output();
  if (input) {
    const w = child.stdin.getWriter();
    await w.write(input);
    await w.close();
  }
  const out = await output;
  if (!out.success) throw new Error(`${cmd} ${args.join(" ")} failed`);
  return out.stdout;
}

async function sha256(data: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** npm packages `names` and everything they depend on, found as npm laid them out. */
function npmClosure(names: string[]): string[] {
  const lock = JSON.parse(Deno.readTextFileSync(`${ROOT}package-lock.json`));
  const pkgs: Record<string, { dependencies?: Record<string, string> }> = lock.packages;
  const seen = new Set<string>();
  const visit = (from: string, name: string) => {
    // npm's lookup: the nearest node_modules/<name> walking up from the dependent package.
    let base = from;
    for (;;) {
      const at = `${base ? base + "/" : ""}node_modules/${name}`;
      if (pkgs[at]) {
        if (!seen.has(at)) {
          seen.add(at);
          for (const dep of Object.keys(pkgs[at].dependencies ?? {})) visit(at, dep);
        }
        return;
      }
      if (!base) {
        throw new Error(`npm package ${name} (needed by ${from || "kupod"}) is not locked`);
      }
      const up = base.lastIndexOf("/node_modules/");
      base = up < 0 ? "" : base.slice(0, up);
    }
  };
  for (const n of names) visit("", n);
  return [...seen].sort();
}

function gitCommit(): string {
  const git = (args: string[]) =>
    new TextDecoder().decode(
      new Deno.Command("git", { args: ["-C", ROOT, ...args], stdout: "piped" }).outputSync().stdout,
    ).trim();
  const commit = git(["rev-parse", "--short=12", "HEAD"]) || "unknown";
  // Uncommitted changes in what the file carries make it a build of no commit: say so.
  const dirty = git(["status", "--porcelain", "--", ...PROGRAM_DIRS, "package-lock.json"]);
  return dirty ? `${commit}-dirty` : commit;
}

function libbpfVersionOf(path: string): string {
  const lib = Deno.dlopen(path, { libbpf_version_string: { parameters: [], result: "pointer" } });
  try {
    const p = lib.symbols.libbpf_version_string();
    return p ? new Deno.UnsafePointerView(p).getCString().replace(/^v/, "") : "unknown";
  } finally {
    lib.close();
  }
}

const denoBin = opt.deno ?? Deno.execPath();
const commit = gitCommit();
const libbpf = libbpfVersionOf(`${opt.libs}/libbpf.so.1`);
const kind = opt.denort ? "deno-compile" : "self-extracting";
const build = { version, commit, kind, libbpf };

/** Writes `data` to `path` under `dir`, making its folders. */
function put(dir: string, path: string, data: Uint8Array, mode = 0o644): void {
  Deno.mkdirSync(`${dir}/${path}`.replace(/\/[^/]*$/, ""), { recursive: true });
  Deno.writeFileSync(`${dir}/${path}`, data, { mode });
}

/** Copies what kupod runs from into `dir`/app: never tests, bench or build tools. */
function stage(dir: string): void {
  const copy = (path: string, keep: (name: string) => boolean) => {
    for (const e of Deno.readDirSync(`${ROOT}${path}`)) {
      if (e.isDirectory) copy(`${path}/${e.name}`, keep);
      else if (e.isFile && keep(e.name)) {
        put(dir, `app/${path}/${e.name}`, Deno.readFileSync(`${ROOT}${path}/${e.name}`));
      }
    }
  };
  for (const d of PROGRAM_DIRS) copy(d, (name) => name.endsWith(".ts"));
  copy("bpf/.output", (name) => name.endsWith(".bpf.o"));
  for (const pkg of npmClosure(RUNTIME_PACKAGES)) copy(pkg, () => true);
  const denoJson = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`));
  const config = {
    nodeModulesDir: "manual",
    lock: false,
    compilerOptions: denoJson.compilerOptions,
  };
  put(dir, "app/deno.json", enc.encode(JSON.stringify(config, null, 2) + "\n"));
  const rootPkg = JSON.parse(Deno.readTextFileSync(`${ROOT}package.json`));
  const deps = Object.fromEntries(RUNTIME_PACKAGES.map((n) => [n, rootPkg.dependencies[n]]));
  put(dir, "app/package.json", enc.encode(JSON.stringify({ private: true, dependencies: deps })));
  put(dir, "app/build.json", enc.encode(JSON.stringify(build) + "\n"));
}

/** xz of `data`, kept in dist/.cache by content: the runtime changes only with Deno's version. */
async function xzCached(data: Uint8Array<ArrayBuffer>, what: string): Promise<Uint8Array> {
  const cacheDir = `${ROOT}dist/.cache`;
  Deno.mkdirSync(cacheDir, { recursive: true });
  const file = `${cacheDir}/${what}-${(await sha256(data)).slice(0, 16)}.xz`;
  try {
    return Deno.readFileSync(file);
  } catch {
    console.error(
      `[build-release] compressing ${what} (${data.length} bytes; kept for later builds)`,
    );
    const xz = await run("xz", [...XZ_ARGS, "-c"], data);
    Deno.writeFileSync(`${file}.tmp`, xz);
    Deno.renameSync(`${file}.tmp`, file);
    return xz;
  }
}

const staging = Deno.makeTempDirSync({ prefix: "kupod-release-" });
let headXz: Uint8Array, appXz: Uint8Array;
try {
  stage(staging);
  // The runtime (Deno, or the compiled kupod) is its own xz stream at the front: ~95 MB that
  // changes only with Deno's version, so its compressed form is reused by later builds.
  const head = new Archive();
  head.parts.push(enc.encode("KPA1"));
  const app = new Archive();
  if (opt.denort) {
    const args = [
      "compile",
      "--quiet",
      "--allow-all",
      "--no-prompt",
      "--v8-flags=--max-semi-space-size=2",
      "--config",
      `${staging}/app/deno.json`,
      "--include",
      `${staging}/app/bpf/.output`,
      "--include",
      `${staging}/app/build.json`,
      "--output",
      `${staging}/kupod`,
      `${staging}/app/cli/main.ts`,
    ];
    const out = await new Deno.Command(denoBin, {
      args,
      env: { DENORT_BIN: opt.denort },
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`deno compile with denort ${opt.denort} failed`);
    head.copy("kupod", `${staging}/kupod`);
  } else {
    head.copy("deno", denoBin);
    app.tree("app", `${staging}/app`, () => true);
  }
  for (const name of [...Deno.readDirSync(opt.libs)].map((e) => e.name).sort()) {
    app.copy(`lib/${name}`, `${opt.libs}/${name}`);
  }
  app.parts.push(record(0, "", 0, 0));
  // a compiled kupod changes with every build: only Deno itself is worth keeping compressed
  headXz = opt.denort
    ? await run("xz", [...XZ_ARGS, "-c"], head.bytes())
    : await xzCached(head.bytes() as Uint8Array<ArrayBuffer>, "runtime");
  appXz = await run("xz", [...XZ_ARGS, "-c"], app.bytes());
} finally {
  Deno.removeSync(staging, { recursive: true });
}

const stub = Deno.readFileSync(opt.stub);
const payload = new Uint8Array(headXz.length + appXz.length);
payload.set(headXz, 0);
payload.set(appXz, headXz.length);
const hash = await sha256(payload);
const id = `${version}-${hash.slice(0, 12)}`;

const trailer = new Uint8Array(128);
const tv = new DataView(trailer.buffer);
trailer.set(enc.encode("KUPODSX1"), 0);
tv.setBigUint64(8, BigInt(stub.length), true);
tv.setBigUint64(16, BigInt(payload.length), true);
trailer.set(hash.match(/../g)!.map((h) => parseInt(h, 16)), 24);
trailer.set(enc.encode(id), 56);
// What the stub starts: 0 `deno run` of app/cli/main.ts, 1 the compiled kupod.
trailer[120] = opt.denort ? 1 : 0;

const tmp = `${opt.out}.tmp`;
using f = Deno.openSync(tmp, { write: true, create: true, truncate: true, mode: 0o755 });
for (const part of [stub, payload, trailer]) {
  for (let at = 0; at < part.length;) at += f.writeSync(part.subarray(at));
}
Deno.chmodSync(tmp, 0o755);
Deno.renameSync(tmp, opt.out);
console.log(
  JSON.stringify({ file: opt.out, bytes: stub.length + payload.length + 128, id, ...build }),
);
