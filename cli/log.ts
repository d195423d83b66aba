/**
 * Operator-facing lines: preflight, info, readiness, warnings. In json
 * output they go to stderr so stdout carries only events.
 */

import type { OutputFormat, Verbosity } from "./options.ts";

const encoder = new TextEncoder();

export class Logger {
  readonly #out: { writeSync(p: Uint8Array): number };
  constructor(readonly output: OutputFormat, readonly verbosity: Verbosity) {
    this.#out = output === "json" ? Deno.stderr : Deno.stdout;
  }

  #write(line: string): void {
    try {
      this.#out.writeSync(encoder.encode(line + "\n"));
    } catch {
      // a closed terminal or pipe must not stop the run
    }
  }

  /** `[PREFLIGHT] ...` checks, shown unless --quiet. */
  preflight(line: string): void {
    if (this.verbosity !== "quiet") this.#write(`[PREFLIGHT] ${line}`);
  }

  /** `[INFO] ...` facts about the target, shown unless --quiet. */
  info(line: string): void {
    if (this.verbosity !== "quiet") this.#write(`[INFO] ${line}`);
  }

  /** Readiness lines ("... started!"): always shown, scripts wait for them. */
  ready(line: string): void {
    this.#write(line);
  }

  warn(line: string): void {
    this.#write(`[WARN] ${line}`);
  }

  /** Only with --verbose. */
  debug(line: string): void {
    if (this.verbosity === "verbose") this.#write(`[DEBUG] ${line}`);
  }
}
