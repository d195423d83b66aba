/**
 * Runs a release file the way a node that never saw the build would: in a mount namespace of its
 * own where the repository (with node_modules and Deno), the machine's libbpf, libelf and zlib,
 * clang/LLVM, bpftool and any Deno cache are hidden, from an empty directory holding only the
 * file, with a clean environment. Used by tests/release_test.ts and bench/release.ts.
 *
 * The namespace is made by `unshare` and a bash script that execs the file in the end, so the
 * process's pid is kupod's own (signals reach it; /proc/<pid>/maps shows what it loaded).
 */

const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Directories hidden under an empty tmpfs. */
const HIDDEN_DIRS = [
  ROOT,
  "/usr/lib/llvm-14",
  "/usr/include/bpf",
  "/root/.cache/deno",
  "/root/.deno",
];
/** Files (globs) hidden behind /dev/null: what a node without the build tools lacks. */
const HIDDEN_FILES = [
  "/usr/lib/*-linux-gnu/libbpf.so*",
  "/usr/lib/*-linux-gnu/libbpf.a",
  "/usr/lib/*-linux-gnu/libelf*.so*",
  "/usr/lib/*-linux-gnu/libz.so*",
  "/usr/bin/clang*",
  "/usr/bin/llc*",
  "/usr/sbin/bpftool",
  "/usr/bin/deno",
];

/**
 * The script run in the namespace. Debian's `ip` (which kupod runs to read a pod's interfaces)
 * links libbpf itself; a node without libbpf has an `ip` built without it, which the script
 * stands in for by giving `ip` private copies of its libraries before hiding the machine's.
 */
const SCRIPT = String.raw`
set -euo pipefail
trap 'echo "Error: the namespace setup failed at line $LINENO" >&2' ERR
if printenv KUPOD_STRANGER_TRACE >/dev/null; then set -x; fi
work="$1"
shift
# one directory per run: runs that share a work dir start at once, and a running ip cannot be
# overwritten (cp unlinks and recreates it, racing the other run)
priv="$(mktemp -d "$work/ip.XXXXXX")"
ipbin="$(readlink -f "$(command -v ip)")"
cp "$ipbin" "$priv/ip"
for lib in libbpf.so.1 libelf.so.1 libz.so.1; do
	path="$(ldd "$ipbin" | awk -v l="$lib" '$1 == l {print $3}')"
	if [[ -n $path ]]; then cp -L "$path" "$priv/$lib"; fi
done
printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s/ip "$@"\n' "$priv" "$priv" >"$priv/ip.sh"
chmod 0755 "$priv/ip.sh"
mount --bind "$priv/ip.sh" "$ipbin"
for d in ${HIDDEN_DIRS.map((d) => `"${d}"`).join(" ")}; do
	if [[ -d $d ]]; then mount -t tmpfs -o size=1m,mode=0755 kupod-hidden "$d"; fi
done
shopt -s nullglob
for f in ${HIDDEN_FILES.join(" ")}; do
	real="$(readlink -f "$f" || true)"
	if [[ -n $real && -f $real ]]; then mount --bind /dev/null "$real" 2>/dev/null || true; fi
done
mount --bind "$work/var-cache" /var/cache
cd "$work/node"
exec "$@"
`;

/**
 * A temporary home for one release file: `node/` (an empty directory with only the file),
 * `var-cache/` (mounted over /var/cache in the namespace, so root's default cache
 * /var/cache/kupod lands there and persists from one start to the next) and `ip/`. Disposing
 * removes all of it, the unpacked cache included.
 */
export class Stranger implements AsyncDisposable {
  readonly work: string;
  readonly name: string;

  private constructor(work: string, name: string) {
    this.work = work;
    this.name = name;
  }

  static async copy(file: string): Promise<Stranger> {
    const work = await Deno.makeTempDir({ prefix: "kupod-stranger-" });
    const name = file.slice(file.lastIndexOf("/") + 1);
    await Deno.mkdir(`${work}/node`);
    await Deno.mkdir(`${work}/var-cache`);
    await Deno.copyFile(file, `${work}/node/${name}`);
    await Deno.chmod(`${work}/node/${name}`, 0o755);
    return new Stranger(work, name);
  }

  /** Root's default cache directory as seen from outside the namespace. */
  get cache(): string {
    return `${this.work}/var-cache/kupod`;
  }

  /**
   * `env` and its arguments: `./<file> args...` in the namespace with only PATH, HOME and `vars`
   * in its environment. Every step execs the next, so the process's pid is kupod's.
   */
  argv(args: string[], vars: Record<string, string> = {}, name = this.name): ["env", string[]] {
    const environment = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", ...vars };
    return ["env", [
      "-i",
      ...Object.entries(environment).map(([k, v]) => `${k}=${v}`),
      "unshare",
      "--mount",
      "--propagation",
      "private",
      "bash",
      "-c",
      SCRIPT,
      "stranger",
      this.work,
      `./${name}`,
      ...args,
    ]];
  }

  /** Puts another file beside the first, as `name`. */
  async add(file: string, name: string): Promise<void> {
    await Deno.copyFile(file, `${this.work}/node/${name}`);
    await Deno.chmod(`${this.work}/node/${name}`, 0o755);
  }

  /** Runs `./<name> args...` to its end. */
  async run(args: string[], vars: Record<string, string> = {}, name = this.name) {
    const [cmd, argv] = this.argv(args, vars, name);
    const out = await new Deno.Command(cmd, { args: argv, stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder();
    return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.work, { recursive: true });
  }
}
