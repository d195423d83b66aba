/**
 * The release file for tests and benches: $KUPOD_RELEASE_FILE when set (a file built earlier in
 * the same run), else dist/kupod-linux-<arch> built now by scripts/build-release (a few seconds
 * once the compressed runtime is in dist/.cache). Built at most once per process.
 */

const ROOT = new URL("../../", import.meta.url).pathname;

/** Runs scripts/build-release with `args`; throws with its stderr when it fails. */
export async function buildRelease(args: string[] = []): Promise<void> {
  const out = await new Deno.Command(`${ROOT}scripts/build-release`, {
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const text = new TextDecoder();
    throw new Error(
      `scripts/build-release failed: ${text.decode(out.stderr)}${text.decode(out.stdout)}`,
    );
  }
}

let built: Promise<string> | undefined;

export function releaseFile(): Promise<string> {
  built ??= (async () => {
    const given = Deno.env.get("KUPOD_RELEASE_FILE");
    if (given) return given;
    await buildRelease();
    return `${ROOT}dist/kupod-linux-${Deno.build.arch}`;
  })();
  return built;
}

/** The build id ("<version>-<hash>") in a release file's trailer: its cache directory's name. */
export async function buildId(file: string): Promise<string> {
  using f = await Deno.open(file);
  const size = (await f.stat()).size;
  const trailer = new Uint8Array(128);
  await f.seek(size - 128, Deno.SeekMode.Start);
  for (let got = 0; got < 128;) {
    const n = await f.read(trailer.subarray(got));
    if (n === null) throw new Error(`${file}: short read`);
    got += n;
  }
  if (new TextDecoder().decode(trailer.subarray(0, 8)) !== "KUPODSX1") {
    throw new Error(`${file}: not a kupod release file`);
  }
  return new TextDecoder().decode(trailer.subarray(56, 120)).replace(/\0+$/, "");
}
