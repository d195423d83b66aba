/** Errors that carry the process exit code, so the entry point can map any failure to one. */

/** A runtime failure (exit 1): a probe would not load, the cluster is unreachable, ... */
export class KupodError extends Error {
  readonly exitCode: number;

  constructor(message: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KupodError";
    this.exitCode = options.exitCode ?? 1;
  }
}

/**
 * A bad command line (exit 2, as for a usage error in most CLIs). `message` is one line, printed
 * as `Error: <message>`; `hint` is the line printed after it, pointing at the right `--help`.
 */
export class UsageError extends KupodError {
  readonly hint: string;

  constructor(message: string, hint = "Run 'kupod --help' for usage.") {
    // Newlines would break the one-line contract of the error output; fold them.
    super(message.replace(/\s*\n\s*/g, " "), { exitCode: 2 });
    this.name = "UsageError";
    this.hint = hint;
  }
}
