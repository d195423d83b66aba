/** What a run's closing line says of the pod's own connections (bpf/http_mirror.h). */

import type { Child } from "./process.ts";

/**
 * Requests (HTTP/1) or calls (HTTP/2) whose server end did not frame them itself: its client end
 * reported them from its own framing with the server end's times, and those whose times were
 * gone. Zeros without the line.
 */
export function mirrored(kupod: Child, http2 = false): { reported: number; lost: number } {
  const m = kupod.stderr.join("\n").match(
    http2
      ? /(\d+) HTTP\/2 calls of the pod's own connections [^;\n]*? (\d+) lost/
      : /(\d+) requests of the pod's own connections [^;\n]*? (\d+) lost/,
  );
  return { reported: Number(m?.[1] ?? 0), lost: Number(m?.[2] ?? 0) };
}
