/**
 * Giving memory back after a rare, large transient allocation (start-up, a Go binary's DWARF):
 * a full collection of the JS heap, whose old generation otherwise keeps that garbage until a
 * later major collection that a steady agent may not need for minutes, then glibc's trim of the
 * freed heap pages. `gc` exists when the runtime runs with --expose-gc (the launchers pass it).
 */

import { libc } from "./ffi.ts";

export function giveBackMemory(): void {
  (globalThis as { gc?: () => void }).gc?.();
  libc().malloc_trim(0n);
}
