/**
 * The one table of flags. The parser, the help texts and the completion scripts are all
 * generated from it, so a flag is added, renamed or documented here and nowhere else.
 */

import { addrBytes } from "../probes/addr.ts";
import type { MonitorOptions } from "./options.ts";

export type FlagValue = string | number | boolean;

/** How a shell should complete a flag's value, beyond a fixed list of `choices`. */
export type ValueHint = "file" | "dir" | "pid" | "netns" | "iface";

export interface FlagSpec {
  name: string;
  short?: string;
  /** Shown after the flag in help (cobra shows the type); "bool" flags take no separate value. */
  type: "string" | "int" | "seconds" | "float" | "bool";
  default: FlagValue;
  usage: string;
  /** The only accepted values, offered by the completion scripts. */
  choices?: readonly string[];
  hint?: ValueHint;
  /** Converts and checks the text given to the flag; throws FlagValueError saying why not. */
  convert(text: string): FlagValue;
  /** Stores a converted value (or the default) into the options. */
  apply(o: MonitorOptions, value: FlagValue): void;
}

/** A refused flag value; the parser wraps the reason into a message naming the flag. */
export class FlagValueError extends Error {}

/** The option fields that hold a T, so a flag can only be bound to a field of its type. */
type FieldOf<T> = {
  [K in keyof MonitorOptions]: MonitorOptions[K] extends T ? K : never;
}[keyof MonitorOptions];

type Extra = Partial<Pick<FlagSpec, "short" | "choices" | "hint">>;

function store(field: keyof MonitorOptions) {
  return (o: MonitorOptions, v: FlagValue) => {
    (o as unknown as Record<string, FlagValue>)[field] = v;
  };
}

function str(
  name: string,
  field: FieldOf<string>,
  usage: string,
  opts: Extra & { default?: string; check?: (text: string) => void } = {},
): FlagSpec {
  const { check, default: def = "", ...extra } = opts;
  return {
    name,
    type: "string",
    default: def,
    usage,
    ...extra,
    convert(text) {
      if (opts.choices && !opts.choices.includes(text)) {
        throw new FlagValueError(`must be one of ${opts.choices.join(", ")}`);
      }
      // An empty value means "discover" or "off", the same as not giving the flag.
      if (text !== "") check?.(text);
      return text;
    },
    apply: store(field),
  };
}

function int(
  name: string,
  field: FieldOf<number>,
  usage: string,
  def: number,
  check: (n: number) => string | undefined,
  notInt = "not an integer",
  extra: Extra = {},
): FlagSpec {
  return {
    name,
    type: "int",
    default: def,
    usage,
    ...extra,
    convert(text) {
      if (!/^[+-]?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
        throw new FlagValueError(notInt);
      }
      const n = Number(text);
      const bad = check(n);
      if (bad) throw new FlagValueError(bad);
      return n;
    },
    apply: store(field),
  };
}

const TRUE = ["1", "t", "T", "true", "TRUE", "True"];
const FALSE = ["0", "f", "F", "false", "FALSE", "False"];

/** Accepts the same spellings as Go's strconv.ParseBool, for cobra compatibility. */
export function parseBool(text: string): boolean {
  if (TRUE.includes(text)) return true;
  if (FALSE.includes(text)) return false;
  throw new FlagValueError("must be true or false");
}

function bool(
  name: string,
  usage: string,
  apply: (o: MonitorOptions, v: boolean) => void,
  extra: Extra = {},
): FlagSpec {
  return {
    name,
    type: "bool",
    default: false,
    usage,
    ...extra,
    convert: parseBool,
    apply: (o, v) => apply(o, v === true),
  };
}

const inPortRange = (n: number) => n >= 1 && n <= 65535;

function hostPort(text: string): void {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(text);
  if (!m || !inPortRange(Number(m[2]))) throw new FlagValueError("must be host:port");
}

function addressList(text: string): void {
  for (const a of text.split(",")) {
    if (!addrBytes(a)) throw new FlagValueError(`${a} is not an IPv4 or IPv6 address`);
  }
}

function httpUrl(text: string): void {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch { /* reported below */ }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new FlagValueError("must be an http:// or https:// URL");
  }
}

// Kubernetes label syntax: a key (optionally prefix/name) and a value of [A-Za-z0-9._-].
const LABEL_TERM =
  /^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?=([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$/;

function labelSelector(text: string): void {
  if (!text.split(",").every((term) => LABEL_TERM.test(term))) {
    throw new FlagValueError("must be key=value[,key2=value2]");
  }
}

/** A non-negative decimal number, without exponent or sign other than "+". */
const DECIMAL = /^\+?(\d+(\.\d*)?|\.\d+)$/;

function seconds(name: string, field: FieldOf<number>, usage: string, def = 0): FlagSpec {
  return {
    name,
    type: "seconds",
    default: def,
    usage,
    convert(text) {
      if (!DECIMAL.test(text)) throw new FlagValueError("must be a non-negative number of seconds");
      return Number(text);
    },
    apply: store(field),
  };
}

function fraction(name: string, field: FieldOf<number>, usage: string, def: number): FlagSpec {
  return {
    name,
    type: "float",
    default: def,
    usage,
    convert(text) {
      if (!DECIMAL.test(text) || Number(text) > 1) {
        throw new FlagValueError("must be a number from 0 to 1");
      }
      return Number(text);
    },
    apply: store(field),
  };
}

/**
 * Flags of every `monitor` command. They are cobra "persistent" flags of `monitor`, so its
 * subcommands list them under "Global Flags". Order is free: help sorts them by name.
 */
export const MONITOR_FLAGS: readonly FlagSpec[] = [
  // The flags of the LMP kupod, same names and defaults (minus its demo images and IPs).
  int(
    "exporter-port",
    "exporterPort",
    "Port the Prometheus exporter listens on",
    8765,
    (n) => inPortRange(n) ? undefined : "must be in 1..65535",
  ),
  bool("force-minikube", "Skip the Minikube checks and assume a Minikube node", (o, v) => {
    o.forceMinikube = v;
  }),
  str(
    "grpcimagename",
    "grpcImageName",
    "Image of the containers whose gRPC calls to watch; empty watches every container",
  ),
  str(
    "grpcpod",
    "grpcPod",
    "Pod whose gRPC calls to watch, if not the run's target; empty is the target",
  ),
  str("imagename", "imageName", "Image of the container to watch for HTTP; empty discovers it"),
  str("jaeger-agent", "jaegerAgent", "Jaeger agent to send spans to, as host:port; empty is off", {
    check: hostPort,
  }),
  str("kubeconfig", "kubeconfig", "Kubeconfig file of the cluster; empty discovers it", {
    hint: "file",
  }),
  str("namespace", "namespace", "Namespace of the pods to watch", { default: "default" }),
  str("nodename", "nodeName", "Node this monitor runs on; empty discovers it"),
  str("pod", "pod", "Pod to watch, by name"),
  str("pod-label", "podLabel", "Watch the pods matching this label selector, k=v[,k2=v2]", {
    check: labelSelector,
  }),
  str("prometheus", "prometheus", "Pushgateway to push metrics to, as host:port; empty is off", {
    check: hostPort,
  }),
  str("sidecar-mode", "sidecarMode", "Kind of sidecar in the pod: envoy, demo or blur", {
    default: "blur",
    choices: ["envoy", "demo", "blur"],
  }),
  str("veth", "veth", "Host-side veth interface of the pod; empty discovers it", {
    hint: "iface",
  }),
  bool("with-sockops", "Speed up local traffic with sockops socket redirection", (o, v) => {
    o.withSockops = v;
  }),

  // kupod's own flags.
  int(
    "pid",
    "pid",
    "Watch this process instead of a pod",
    0,
    (n) => n > 0 ? undefined : "must be a positive integer",
    "must be a positive integer",
    { hint: "pid" },
  ),
  str("cgroup", "cgroup", "Watch the processes of this cgroup v2 directory instead of a pod", {
    hint: "dir",
  }),
  str("netns", "netns", "Watch this network namespace (a path or an 'ip netns' name)", {
    hint: "netns",
  }),
  str("stack-protocol", "stackProtocol", "Stack probe: follow only packets of tcp, udp or icmp", {
    check: (t) => {
      if (!["tcp", "udp", "icmp"].includes(t)) throw new FlagValueError("must be tcp, udp or icmp");
    },
  }),
  int(
    "stack-port",
    "stackPort",
    "Stack probe: follow only packets with this port at either end; 0 is any",
    0,
    (n) => n === 0 || inPortRange(n) ? undefined : "must be a port number (1-65535) or 0",
  ),
  str(
    "stack-address",
    "stackAddress",
    "Stack probe: follow only packets with one of these addresses (a,b,...) at either end",
    { check: addressList },
  ),
  bool(
    "stack-tcp",
    "Stack probe: also count TCP segments reaching sockets and TCP writes (costs more)",
    (o, v) => (o.stackTcp = v),
  ),
  fraction(
    "stack-duty-cycle",
    "stackDutyCycle",
    "Stack probe: share of the time the packet path and hop latencies are traced (0..1, in " +
      "windows every 5 s); the veth's counts and drops are always exact",
    0.1,
  ),
  bool(
    "stack-loopback",
    "Stack probe: also follow the pod's loopback traffic (e.g. sidecar to service)",
    (o, v) => (o.stackLoopback = v),
  ),
  int(
    "http-preview",
    "httpPreview",
    "HTTP probe: show this many bytes of each response body (never with credentials); 0 is off",
    0,
    (n) => n >= 0 && n <= 4096 ? undefined : "must be 0..4096",
    "must be a number of bytes (0..4096)",
  ),
  str("exporter-address", "exporterAddress", "Address the Prometheus exporter listens on", {
    default: "0.0.0.0",
  }),
  str("otlp-endpoint", "otlpEndpoint", "OpenTelemetry collector URL to export to; empty is off", {
    check: httpUrl,
  }),
  str("output", "output", "Format of the events printed: text or json", {
    default: "text",
    choices: ["text", "json"],
  }),
  seconds("duration", "duration", "Stop after this many seconds; 0 runs until Ctrl-C or SIGTERM"),
  seconds(
    "interval",
    "interval",
    "Print a summary of what the probes counted every this many seconds and at exit; 0 is off",
    5,
  ),
  // Both set one field; parse.ts rejects giving both, so the order of applying them is moot.
  bool("verbose", "Print debug messages", (o, v) => {
    if (v) o.verbosity = "verbose";
  }, { short: "v" }),
  bool("quiet", "Print only warnings and errors", (o, v) => {
    if (v) o.verbosity = "quiet";
  }, { short: "q" }),
];

/** `-h, --help`, which every command has; help.ts words its usage per command. */
export const HELP_FLAG: FlagSpec = bool("help", "help for this command", () => {}, { short: "h" });

/** Whether the flag takes a value (`--flag value`) rather than being a switch. */
export function takesValue(f: FlagSpec): boolean {
  return f.type !== "bool";
}

/** `-v, --verbose` or `--pod`, as pflag names a flag in its messages. */
export function flagLabel(f: FlagSpec): string {
  return f.short ? `-${f.short}, --${f.name}` : `--${f.name}`;
}
