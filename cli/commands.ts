/** The command tree, shaped like the LMP kupod's cobra commands. Help and completion walk it. */

import { FlagSpec, HELP_FLAG, MONITOR_FLAGS } from "./flags.ts";
import type { Layer, ProbeName } from "./options.ts";

export type Shell = "bash" | "zsh" | "fish";

/** What running a command does. */
export type Action =
  | { kind: "monitor"; layer: Layer; probes: ProbeName[] }
  | { kind: "version" }
  | { kind: "completion"; shell: Shell }
  | { kind: "help" };

export interface CommandSpec {
  name: string;
  /** Words after the command in its usage line, e.g. "[command]" for `help`. */
  args?: string;
  short: string;
  long?: string;
  /** Example lines, shown indented under "Examples:". */
  examples?: readonly string[];
  /** Flags of this command and every command below it (cobra's persistent flags). */
  flags?: readonly FlagSpec[];
  children?: readonly CommandSpec[];
  /** Absent: the command only groups its children, and running it prints its help (as cobra). */
  action?: Action;
}

const POD = "--pod web-0 --namespace shop";

function probe(
  layer: "kernel" | "user",
  name: ProbeName,
  short: string,
  examples: string[],
): CommandSpec {
  return { name, short, examples, action: { kind: "monitor", layer, probes: [name] } };
}

const KERNEL: CommandSpec = {
  name: "kernel",
  short: "Observe pods from the kernel: sockets, the network stack and container resources",
  examples: [
    `kupod monitor kernel socket ${POD}`,
    "kupod monitor kernel stack --veth veth1a2b3c --duration 20",
    "kupod monitor kernel socket --pid 4242 --output json",
  ],
  children: [
    {
      name: "all",
      short: "Run every kernel probe: socket, stack and resources",
      examples: [`kupod monitor kernel all ${POD} --prometheus pushgateway.monitoring:9091`],
      action: { kind: "monitor", layer: "kernel", probes: ["socket", "stack", "resources"] },
    },
    probe("kernel", "socket", "Trace the TCP connections and transfers of the pod's processes", [
      `kupod monitor kernel socket ${POD}`,
      "kupod monitor kernel socket --pid 4242 --output json",
    ]),
    probe("kernel", "stack", "Trace packets through the kernel network stack of the pod", [
      "kupod monitor kernel stack --veth veth1a2b3c --duration 20",
      "kupod monitor kernel stack --netns cni-5f2c9a --veth veth1a2b3c",
    ]),
    probe(
      "kernel",
      "resources",
      "Measure CPU, memory, network and I/O of the pod's containers, and run-queue waits",
      [`kupod monitor kernel resources ${POD}`, "kupod monitor kernel resources --veth veth1a2b3c"],
    ),
  ],
};

const USER: CommandSpec = {
  name: "user",
  short: "Observe pods from user space: HTTP requests and gRPC calls",
  examples: [
    `kupod monitor user http ${POD}`,
    "kupod monitor user grpc --grpcpod orders-0 --namespace shop --jaeger-agent jaeger.tracing:6831",
    "kupod monitor user all --pod-label app=checkout --namespace shop --output json",
  ],
  children: [
    {
      name: "all",
      short: "Run every user-space probe: http and grpc",
      examples: [
        "kupod monitor user all --pod-label app=checkout --otlp-endpoint http://otel.tracing:4318",
      ],
      action: { kind: "monitor", layer: "user", probes: ["http", "grpc"] },
    },
    probe("user", "http", "Trace the HTTP/1.x requests the pod's containers serve and make", [
      `kupod monitor user http ${POD}`,
      "kupod monitor user http --pid 4242 --duration 30",
    ]),
    probe("user", "grpc", "Trace the gRPC calls served by the pod", [
      "kupod monitor user grpc --grpcpod orders-0 --namespace shop",
    ]),
  ],
};

const MONITOR: CommandSpec = {
  name: "monitor",
  short: "Observe pods with eBPF probes in the kernel and in user space",
  examples: [
    `kupod monitor all ${POD}`,
    `kupod monitor kernel socket ${POD}`,
    "kupod monitor user http --pod-label app=checkout --namespace shop",
  ],
  flags: MONITOR_FLAGS,
  children: [
    {
      name: "all",
      short: "Run every probe, kernel and user space",
      examples: [`kupod monitor all ${POD} --duration 60`],
      action: {
        kind: "monitor",
        layer: "all",
        probes: ["socket", "stack", "resources", "http", "grpc"],
      },
    },
    KERNEL,
    USER,
  ],
};

const INSTALL: Record<Shell, string> = {
  bash: "source <(kupod completion bash)",
  zsh: 'kupod completion zsh > "${fpath[1]}/_kupod"',
  fish: "kupod completion fish > ~/.config/fish/completions/kupod.fish",
};

const COMPLETION: CommandSpec = {
  name: "completion",
  short: "Print a shell completion script for bash, zsh or fish",
  examples: Object.values(INSTALL),
  children: (["bash", "zsh", "fish"] as const).map((shell) => ({
    name: shell,
    short: `Print the ${shell} completion script`,
    examples: [INSTALL[shell]],
    action: { kind: "completion", shell },
  })),
};

export const ROOT: CommandSpec = {
  name: "kupod",
  short: "Observe Kubernetes pods with eBPF",
  long: "kupod observes Kubernetes pods with eBPF: sockets and the network stack in the kernel,\n" +
    "HTTP and gRPC in user space, exported to Prometheus, Jaeger or OpenTelemetry.",
  examples: [
    `kupod monitor kernel socket ${POD}`,
    "kupod monitor all --pid 4242 --duration 30",
    "kupod help monitor kernel",
  ],
  children: [
    MONITOR,
    { name: "version", short: "Print the version of kupod", action: { kind: "version" } },
    COMPLETION,
    {
      name: "help",
      args: "[command]",
      short: "Help about any command",
      long: "Print the help of any command, e.g. kupod help monitor kernel.",
      action: { kind: "help" },
    },
  ],
};

/** Follows `words` down the tree; `rest` holds the words that named no subcommand. */
export function resolve(words: readonly string[]): { chain: CommandSpec[]; rest: string[] } {
  const chain = [ROOT];
  let i = 0;
  for (; i < words.length; i++) {
    const child = chain[chain.length - 1].children?.find((c) => c.name === words[i]);
    if (!child) break;
    chain.push(child);
  }
  return { chain, rest: words.slice(i) };
}

/** "kupod monitor kernel" for the chain root → monitor → kernel. */
export function commandPath(chain: readonly CommandSpec[]): string {
  return chain.map((c) => c.name).join(" ");
}

/**
 * A command's flags as cobra splits them: its own (with `--help`) and those inherited from the
 * commands above it, which help shows as "Global Flags".
 */
export function flagsOf(
  chain: readonly CommandSpec[],
): { local: FlagSpec[]; inherited: FlagSpec[] } {
  const last = chain[chain.length - 1];
  return {
    local: [...(last.flags ?? []), HELP_FLAG],
    inherited: chain.slice(0, -1).flatMap((c) => c.flags ?? []),
  };
}

/** Every flag of the tree by long name: lets the parser split words from flag values. */
export function allFlags(): Map<string, FlagSpec> {
  const all = new Map<string, FlagSpec>([[HELP_FLAG.name, HELP_FLAG]]);
  const visit = (c: CommandSpec) => {
    for (const f of c.flags ?? []) all.set(f.name, f);
    c.children?.forEach(visit);
  };
  visit(ROOT);
  return all;
}

/** Children in the order help and completion list them: by name, as cobra sorts them. */
export function sortedChildren(c: CommandSpec): CommandSpec[] {
  return [...(c.children ?? [])].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}
