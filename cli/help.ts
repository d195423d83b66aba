/** Help texts laid out as cobra lays them out, generated from the command and flag tables. */

import { commandPath, CommandSpec, flagsOf, ROOT, sortedChildren } from "./commands.ts";
import { FlagSpec, HELP_FLAG } from "./flags.ts";

/** Cobra pads command names to at least this width in "Available Commands". */
const MIN_NAME_PAD = 11;

/**
 * The help of the last command of `chain` (from ROOT down, as commands.resolve gives it).
 * Sections appear in cobra's order; the text has no trailing newline, so print it with
 * console.log.
 */
export function helpText(chain: readonly CommandSpec[] = [ROOT]): string {
  const cmd = chain[chain.length - 1];
  const path = commandPath(chain);
  const children = sortedChildren(cmd);
  const { local, inherited } = flagsOf(chain);
  const out = [cmd.long ?? cmd.short, "", "Usage:"];

  if (cmd.action) out.push(`  ${[path, cmd.args, "[flags]"].filter(Boolean).join(" ")}`);
  if (children.length) out.push(`  ${path} [command]`);
  if (cmd.examples?.length) out.push("", "Examples:", ...cmd.examples.map((e) => `  ${e}`));
  if (children.length) {
    const pad = Math.max(MIN_NAME_PAD, ...children.map((c) => c.name.length));
    out.push(
      "",
      "Available Commands:",
      ...children.map((c) => `  ${c.name.padEnd(pad)} ${c.short}`),
    );
  }
  const own = local.map((f) => f === HELP_FLAG ? { ...f, usage: `help for ${cmd.name}` } : f);
  out.push("", "Flags:", ...flagUsages(own));
  if (inherited.length) out.push("", "Global Flags:", ...flagUsages(inherited));
  if (children.length) {
    out.push("", `Use "${path} [command] --help" for more information about a command.`);
  }
  return out.join("\n");
}

/** pflag's layout: sorted by name, `  -s, --name type`, usage in a common column, then default. */
function flagUsages(flags: readonly FlagSpec[]): string[] {
  const rows = [...flags]
    .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    .map((f) => {
      const names = f.short ? `  -${f.short}, --${f.name}` : `      --${f.name}`;
      return { left: f.type === "bool" ? names : `${names} ${f.type}`, right: describe(f) };
    });
  const width = Math.max(...rows.map((r) => r.left.length));
  return rows.map((r) => `${r.left.padEnd(width)}   ${r.right}`);
}

/** The usage text with cobra's `(default ...)` suffix, omitted for zero values. */
function describe(f: FlagSpec): string {
  if (f.default === "" || f.default === 0 || f.default === false) return f.usage;
  const shown = typeof f.default === "string" ? JSON.stringify(f.default) : String(f.default);
  return `${f.usage} (default ${shown})`;
}
