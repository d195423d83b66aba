/** The version of kupod, and what `kupod version` prints. */

export const VERSION = "0.1.0";

/** kupod's version, the Deno runtime running it and the target triple; no trailing newline. */
export function versionText(): string {
  const { deno, v8, typescript } = Deno.version;
  return [
    `kupod ${VERSION}`,
    `deno ${deno} (v8 ${v8}, typescript ${typescript})`,
    `target ${Deno.build.target}`,
  ].join("\n");
}
