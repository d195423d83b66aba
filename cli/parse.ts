/** Command-line parsing: argv → Command. Pure apart from the injectable /proc check. */

import { allFlags, commandPath, CommandSpec, flagsOf, resolve } from "./commands.ts";
import { UsageError } from "../base/errors.ts";
import { flagLabel, FlagSpec, FlagValue, FlagValueError, takesValue } from "./flags.ts";
import { helpText } from "./help.ts";
import type { Command, MonitorOptions } from "./options.ts";

export interface ParseEnv {
  /** Whether a path exists; used to check that `--pid` names a live process. */
  exists?: (path: string) => boolean;
}

/** One flag as written: `token` is how the user spelled it, `text` its value (none for `-v`). */
interface FlagUse {
  spec: FlagSpec;
  token: string;
  text?: string;
}

const FLAGS = allFlags();
const BY_SHORT = new Map([...FLAGS.values()].filter((f) => f.short).map((f) => [f.short!, f]));

/**
 * Parses the arguments after the program name. Never prints or exits: a bad command line throws
 * UsageError. Flags may stand before, between or after the command words (cobra's persistent
 * flags); `--flag value`, `--flag=value`, `--bool`, `--bool=false` and `-vq` are accepted.
 */
export function parseArgs(args: string[], env: ParseEnv = {}): Command {
  const { words, uses, problem } = scan(args);
  const { chain, rest } = resolve(words);
  const cmd = chain[chain.length - 1];
  const path = commandPath(chain);
  const hint = `Run '${path} --help' for usage.`;
  const fail = (message: string): never => {
    throw new UsageError(message, hint);
  };

  // An unknown flag first: it may have swallowed or left behind a word, misleading the rest.
  if (problem) fail(problem);
  const action = cmd.action;
  if (rest.length > 0 && action?.kind !== "help") {
    fail(`unknown command "${rest[0]}" for "${path}"`);
  }

  const { local, inherited } = flagsOf(chain);
  const allowed = new Set([...local, ...inherited]);
  const values = new Map<string, FlagValue>();
  for (const use of uses) {
    if (!allowed.has(use.spec)) {
      fail(
        use.token.startsWith("--")
          ? `unknown flag: ${use.token}`
          : `unknown shorthand flag: '${use.spec.short}' in ${use.token}`,
      );
    }
    values.set(use.spec.name, convert(use, fail));
  }

  // As cobra: --help wins over everything but a malformed command line, and a command that only
  // groups others (`kupod monitor kernel`) prints its help.
  if (values.get("help") === true || !action) return { kind: "help", text: helpText(chain) };
  switch (action.kind) {
    case "help":
      return { kind: "help", text: helpText(resolveTopic(rest)) };
    case "version":
    case "completion":
      return action;
    case "monitor": {
      checkCombinations(values, fail);
      const selection = STACK_SELECTION.find((f) => given(values, f));
      if (selection && !action.probes.includes("stack")) {
        fail(
          `--${selection} is an option of the stack probe, which this command does not run`,
        );
      }
      // Verbosity starts at normal: --verbose and --quiet only ever move it away from there.
      const o = { layer: action.layer, probes: [...action.probes], verbosity: "normal" };
      const options = o as MonitorOptions;
      for (const f of [...local, ...inherited]) f.apply(options, values.get(f.name) ?? f.default);
      if (options.pid !== 0 && !(env.exists ?? pathExists)(`/proc/${options.pid}`)) {
        fail(`no process with pid ${options.pid}`);
      }
      return { kind: "monitor", options };
    }
  }
}

/** Splits argv into command words and flag uses; the first malformed flag is `problem`. */
function scan(args: string[]): { words: string[]; uses: FlagUse[]; problem?: string } {
  const words: string[] = [];
  const uses: FlagUse[] = [];
  let problem: string | undefined;
  const note = (p: string) => problem ??= p;
  // A following word is taken as a value unless it looks like a flag; "-5" stays a value so
  // that `--duration -5` is reported as negative rather than as a missing value.
  const valueAt = (i: number) => {
    const next = args[i];
    return next === undefined || (/^-./.test(next) && !/^-\d/.test(next)) ? undefined : next;
  };

  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      words.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const token = eq < 0 ? arg : arg.slice(0, eq);
      const spec = FLAGS.get(token.slice(2));
      if (!spec) {
        note(`unknown flag: ${token}`);
      } else if (eq >= 0) {
        uses.push({ spec, token, text: arg.slice(eq + 1) });
      } else if (!takesValue(spec)) {
        uses.push({ spec, token });
      } else if (valueAt(i + 1) === undefined) {
        note(`flag needs an argument: ${token}`);
      } else {
        uses.push({ spec, token, text: args[++i] });
      }
    } else if (arg.startsWith("-") && arg.length > 1) {
      // A cluster of shorthands, `-vq`; a shorthand taking a value ends it (`-n5`, `-n 5`).
      for (let j = 1; j < arg.length; j++) {
        const spec = BY_SHORT.get(arg[j]);
        if (!spec) {
          note(`unknown shorthand flag: '${arg[j]}' in ${arg}`);
          break;
        }
        const token = arg;
        if (arg[j + 1] === "=") {
          uses.push({ spec, token, text: arg.slice(j + 2) });
          break;
        }
        if (!takesValue(spec)) {
          uses.push({ spec, token });
          continue;
        }
        if (j + 1 < arg.length) uses.push({ spec, token, text: arg.slice(j + 1) });
        else if (valueAt(i + 1) === undefined) {
          note(`flag needs an argument: '${arg[j]}' in ${arg}`);
        } else uses.push({ spec, token, text: args[++i] });
        break;
      }
    } else {
      words.push(arg);
    }
  }
  return { words, uses, problem };
}

function convert(use: FlagUse, fail: (message: string) => never): FlagValue {
  if (use.text === undefined) return true; // a bare switch
  try {
    return use.spec.convert(use.text);
  } catch (e) {
    if (!(e instanceof FlagValueError)) throw e;
    return fail(`invalid argument "${use.text}" for "${flagLabel(use.spec)}" flag: ${e.message}`);
  }
}

function resolveTopic(topic: string[]): CommandSpec[] {
  const { chain, rest } = resolve(topic);
  if (rest.length > 0) {
    throw new UsageError(`unknown help topic "${topic.join(" ")}"`, "Run 'kupod help' for usage.");
  }
  return chain;
}

const KUBERNETES_TARGETS = ["pod", "pod-label"];
const STACK_SELECTION = [
  "stack-protocol",
  "stack-port",
  "stack-address",
  "stack-tcp",
  "stack-loopback",
];

/** Whether a flag was given a value; empty values (`--pod=`) mean "discover" or "off". */
function given(values: Map<string, FlagValue>, name: string): boolean {
  const v = values.get(name);
  return v !== undefined && v !== "" && v !== 0 && v !== false;
}
const LOCAL_TARGETS = ["pid", "cgroup", "netns"];

/**
 * Which targets combine. A run watches either what Kubernetes names or what the host names:
 * - --pod (one pod) and --pod-label (a selector) exclude each other;
 * - --pid, --cgroup and --netns each name the whole scope, so at most one of them is given;
 * - a Kubernetes target and a local target exclude each other;
 * - --veth names one pod's host-side interface, so it goes alone or with a target naming one
 *   pod or namespace (--pod, --netns, and also --pid, --cgroup), but not with --pod-label,
 *   whose selector may match many pods;
 * - --verbose and --quiet exclude each other.
 * No target at all is fine: the monitor then discovers what to watch.
 * Empty values (`--pod=`) count as not given, as they mean "discover".
 */
function checkCombinations(values: Map<string, FlagValue>, fail: (message: string) => never) {
  const isGiven = (name: string) => given(values, name);
  const together = (a: string, b: string, why = "") =>
    fail(`--${a} and --${b} cannot be used together${why}`);

  if (isGiven("verbose") && isGiven("quiet")) together("verbose", "quiet");
  if (isGiven("pod") && isGiven("pod-label")) together("pod", "pod-label");
  const k8s = KUBERNETES_TARGETS.find(isGiven);
  const local = LOCAL_TARGETS.filter(isGiven);
  if (k8s && local.length > 0) {
    fail(
      `--${k8s} cannot be used with --${local[0]}: watch either a Kubernetes target ` +
        "(--pod, --pod-label) or a local one (--pid, --cgroup, --netns)",
    );
  }
  if (local.length > 1) together(local[0], local[1], ": give one local target");
  if (isGiven("veth") && isGiven("pod-label")) {
    together("veth", "pod-label", ": a selector may match many pods, a veth belongs to one");
  }
}

/** True unless the path is known to be missing: without read permission, let the run find out. */
function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.NotFound);
  }
}
