/**
 * kupod's entry point: parse, dispatch, and turn every failure into one
 * line on stderr and an exit code (2 for usage, 1 for runtime failures).
 */

import { completionScript } from "./completion.ts";
import { KupodError, UsageError } from "../base/errors.ts";
import { runMonitor } from "./monitor.ts";
import { parseArgs } from "./parse.ts";
import { versionText } from "../base/version.ts";
import { libbpfVersion } from "../bpf/ffi.ts";

const encoder = new TextEncoder();

function print(out: typeof Deno.stdout | typeof Deno.stderr, text: string): void {
  out.writeSync(encoder.encode(text.endsWith("\n") ? text : text + "\n"));
}

/** Runs kupod with `args`; returns the exit code. Never exits the process itself. */
export async function main(args: string[]): Promise<number> {
  try {
    const command = parseArgs(args);
    switch (command.kind) {
      case "help":
        print(Deno.stdout, command.text);
        return 0;
      case "version":
        print(Deno.stdout, versionText(libbpfVersion()));
        return 0;
      case "completion":
        print(Deno.stdout, completionScript(command.shell));
        return 0;
      case "monitor":
        await runMonitor(command.options);
        return 0;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      print(Deno.stderr, `Error: ${e.message}\n${e.hint}`);
      return e.exitCode;
    }
    if (e instanceof KupodError) {
      print(Deno.stderr, `Error: ${e.message}`);
      if (Deno.env.get("KUPOD_DEBUG")) print(Deno.stderr, `${e.stack ?? ""}`);
      return e.exitCode;
    }
    // A bug, not bad input: still one line, the stack only on request.
    const err = e instanceof Error ? e : new Error(String(e));
    print(Deno.stderr, `Error: ${err.message.split("\n")[0]} (set KUPOD_DEBUG=1 for details)`);
    if (Deno.env.get("KUPOD_DEBUG")) print(Deno.stderr, `${err.stack ?? ""}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
