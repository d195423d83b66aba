/**
 * The compiled BPF objects. Every probe gets its object's bytes here, read
 * relative to this module (never the working directory), so a single-file
 * build that includes bpf/.output/ carries them along.
 */

import { KupodError } from "../base/errors.ts";

export type ObjectName =
  | "socket"
  | "stack"
  | "http"
  | "sched"
  | "sockops"
  | "loadgen"
  | "features"
  | "features_storage"
  | "grpc_go";

const cache = new Map<ObjectName, Uint8Array<ArrayBuffer>>();

export function objectUrl(name: ObjectName): URL {
  return new URL(`./.output/${name}.bpf.o`, import.meta.url);
}

/** The ELF bytes of bpf/<name>.bpf.c as built by scripts/build-bpf. */
export function objectBytes(name: ObjectName): Uint8Array<ArrayBuffer> {
  let bytes = cache.get(name);
  if (!bytes) {
    try {
      bytes = Deno.readFileSync(objectUrl(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new KupodError(
          `BPF object ${name}.bpf.o is not built: run 'deno task bpf' (or scripts/setup)`,
        );
      }
      throw e;
    }
    cache.set(name, bytes);
  }
  return bytes;
}
