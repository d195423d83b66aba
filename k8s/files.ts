/** Reading the small files that configure cluster access, with one-line errors. */

import { KupodError } from "../base/errors.ts";

/** Why a file could not be read, in the words of `ls`/`cat`. */
export function fileProblem(err: unknown): string {
  if (err instanceof Deno.errors.NotFound) return "no such file";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (err instanceof Deno.errors.IsADirectory) return "is a directory";
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0].replace(/:? ?\(os error \d+\).*$/, "").replace(/,\s*$/, "");
}

/** The text of `path`; `what` prefixes the error ("kubeconfig /x: cannot read ..."). */
export function readTextOrThrow(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    throw new KupodError(`${what}: ${fileProblem(err)}`, { cause: err });
  }
}

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (err) {
    // A file we may not read still exists: reading it reports the permission problem.
    return !(err instanceof Deno.errors.NotFound);
  }
}

export function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** `path` as the kubeconfig at `dir` means it: relative paths are relative to its directory. */
export function resolveFrom(dir: string, path: string, home?: string): string {
  if (path.startsWith("/")) return path;
  if (home && (path === "~" || path.startsWith("~/"))) return home + path.slice(1);
  return `${dir === "/" ? "" : dir}/${path.replace(/^\.\//, "")}`;
}
