/** The version of kupod, how this copy was built, and what `kupod version` prints. */

/** What scripts/build-release writes beside the program (app/build.json) in a release file. */
export interface BuildInfo {
  version: string;
  commit: string;
  /** "self-extracting" or "deno-compile" for a release file; "source" for the repository. */
  kind: string;
  /** The libbpf the release file carries, as the build saw it. */
  libbpf?: string;
}

const SOURCE_VERSION = "0.1.0";

function releaseBuild(): BuildInfo | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(new URL("../build.json", import.meta.url)));
  } catch {
    return undefined;
  }
}

const RELEASE = releaseBuild();

export const VERSION: string = RELEASE?.version ?? SOURCE_VERSION;

/** The release's build record, or for a source tree its git commit (read only when asked). */
export function buildInfo(): BuildInfo {
  if (RELEASE) return RELEASE;
  let commit = "unknown";
  try {
    const dir = new URL("..", import.meta.url).pathname;
    const out = new Deno.Command("git", {
      args: ["-C", dir, "rev-parse", "--short=12", "HEAD"],
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    if (out.success) commit = new TextDecoder().decode(out.stdout).trim();
  } catch {
    // no git on this machine: the commit stays unknown
  }
  return { version: VERSION, commit, kind: "source" };
}

/**
 * kupod's version, commit, build kind, the libbpf in use (`libbpf`: the caller's line, since
 * base/ sits below the FFI binding), the Deno runtime and the target; no trailing newline.
 */
export function versionText(libbpf?: string): string {
  const { deno, v8, typescript } = Deno.version;
  const build = buildInfo();
  return [
    `kupod ${VERSION}`,
    `commit ${build.commit}`,
    `build ${build.kind}`,
    ...(libbpf ? [`libbpf ${libbpf}`] : []),
    `deno ${deno} (v8 ${v8}, typescript ${typescript})`,
    `target ${Deno.build.target}`,
  ].join("\n");
}
