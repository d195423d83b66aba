// Tests of the command-line layer: parsing, errors, help texts and completion scripts.
// Help snapshots live in tests/snapshots/; refresh them with UPDATE_SNAPSHOTS=1.

import { completionScript } from "../cli/completion.ts";
import { KupodError, UsageError } from "../base/errors.ts";
import type { Command, MonitorOptions } from "../cli/options.ts";
import { parseArgs, ParseEnv } from "../cli/parse.ts";
import { VERSION, versionText } from "../base/version.ts";

// std is not available and node:assert needs @types/node, so a tiny assert of our own.
class AssertionError extends Error {}

function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a), kb = Object.keys(b);
  const ra = a as Record<string, unknown>, rb = b as Record<string, unknown>;
  return ka.length === kb.length && ka.every((k) => k in rb && same(ra[k], rb[k]));
}

const assert = {
  ok(value: unknown, message = "expected a true value") {
    if (!value) throw new AssertionError(message);
  },
  equal(actual: unknown, expected: unknown, message = "") {
    if (!Object.is(actual, expected)) {
      throw new AssertionError(
        `${message}\n  actual:   ${String(actual)}\n  expected: ${String(expected)}`,
      );
    }
  },
  deepEqual(actual: unknown, expected: unknown, message = "") {
    if (!same(actual, expected)) {
      const show = (v: unknown) => JSON.stringify(v, null, 2);
      throw new AssertionError(
        `${message}\n  actual:   ${show(actual)}\n  expected: ${show(expected)}`,
      );
    }
  },
  match(actual: string, re: RegExp, message = "") {
    if (!re.test(actual)) throw new AssertionError(`${message}: ${re} does not match\n${actual}`);
  },
};

/** Only pid 4242 "exists", so tests do not depend on the processes of the machine. */
const ENV: ParseEnv = { exists: (path) => path === "/proc/4242" };

function monitor(args: string[], env = ENV): MonitorOptions {
  const cmd = parseArgs(args, env);
  assert.equal(cmd.kind, "monitor", `${args.join(" ")} gave ${cmd.kind}`);
  return (cmd as Extract<Command, { kind: "monitor" }>).options;
}

function help(args: string[]): string {
  const cmd = parseArgs(args, ENV);
  assert.equal(cmd.kind, "help", `${args.join(" ")} gave ${cmd.kind}`);
  return (cmd as Extract<Command, { kind: "help" }>).text;
}

function usageError(args: string[], env = ENV): UsageError {
  try {
    parseArgs(args, env);
  } catch (e) {
    if (e instanceof UsageError) return e;
    throw e;
  }
  throw new AssertionError(`no UsageError for: ${args.join(" ")}`);
}

const SOCKET = ["monitor", "kernel", "socket"];

const DEFAULTS: MonitorOptions = {
  layer: "kernel",
  probes: ["socket"],
  exporterPort: 8765,
  exporterAddress: "0.0.0.0",
  forceMinikube: false,
  grpcImageName: "",
  grpcPod: "",
  imageName: "",
  jaegerAgent: "",
  kubeconfig: "",
  namespace: "default",
  nodeName: "",
  pod: "",
  podLabel: "",
  prometheus: "",
  sidecarMode: "blur",
  veth: "",
  withSockops: false,
  pid: 0,
  cgroup: "",
  netns: "",
  stackProtocol: "",
  stackPort: 0,
  stackAddress: "",
  stackTcp: false,
  stackLoopback: false,
  stackDutyCycle: 0.1,
  httpPreview: 0,
  otlpEndpoint: "",
  output: "text",
  duration: 0,
  interval: 5,
  verbosity: "normal",
};

Deno.test("defaults of a monitor command", () => {
  assert.deepEqual(monitor(SOCKET), DEFAULTS);
});

// [flag, value, field, parsed value]
const VALUE_FLAGS: [string, string, keyof MonitorOptions, unknown][] = [
  ["exporter-port", "9100", "exporterPort", 9100],
  ["exporter-address", "127.0.0.1", "exporterAddress", "127.0.0.1"],
  ["grpcimagename", "registry.local/orders:1.4", "grpcImageName", "registry.local/orders:1.4"],
  ["grpcpod", "orders-0", "grpcPod", "orders-0"],
  ["imagename", "registry.local/web:2.1", "imageName", "registry.local/web:2.1"],
  ["jaeger-agent", "jaeger.tracing:6831", "jaegerAgent", "jaeger.tracing:6831"],
  ["kubeconfig", "/etc/kubernetes/admin.conf", "kubeconfig", "/etc/kubernetes/admin.conf"],
  ["namespace", "shop", "namespace", "shop"],
  ["nodename", "node-3", "nodeName", "node-3"],
  ["pod", "web-0", "pod", "web-0"],
  ["pod-label", "app=web,tier=front", "podLabel", "app=web,tier=front"],
  ["prometheus", "pushgateway.monitoring:9091", "prometheus", "pushgateway.monitoring:9091"],
  ["sidecar-mode", "envoy", "sidecarMode", "envoy"],
  ["veth", "veth1a2b3c", "veth", "veth1a2b3c"],
  ["pid", "4242", "pid", 4242],
  ["cgroup", "/sys/fs/cgroup/kubepods.slice", "cgroup", "/sys/fs/cgroup/kubepods.slice"],
  ["netns", "cni-5f2c9a", "netns", "cni-5f2c9a"],
  ["otlp-endpoint", "http://otel.tracing:4318", "otlpEndpoint", "http://otel.tracing:4318"],
  ["interval", "0", "interval", 0],
  ["interval", "2.5", "interval", 2.5],
  ["output", "json", "output", "json"],
  ["duration", "20", "duration", 20],
  ["duration", "0.5", "duration", 0.5],
];

Deno.test("value flags: --flag value and --flag=value, after or before the command words", () => {
  for (const [flag, value, field, want] of VALUE_FLAGS) {
    for (
      const args of [
        [...SOCKET, `--${flag}`, value],
        [...SOCKET, `--${flag}=${value}`],
        [`--${flag}`, value, ...SOCKET],
        ["monitor", `--${flag}=${value}`, "kernel", "socket"],
      ]
    ) {
      assert.deepEqual(monitor(args)[field], want, args.join(" "));
    }
  }
});

Deno.test("stack packet selection flags, for the commands that run the stack probe", () => {
  const selection = ["--stack-protocol", "icmp", "--stack-port", "8080"];
  for (const words of [["kernel", "stack"], ["kernel", "all"], ["all"]]) {
    const o = monitor(["monitor", ...words, ...selection, "--stack-address", "10.0.0.2,fd00::2"]);
    assert.deepEqual(
      [o.stackProtocol, o.stackPort, o.stackAddress],
      ["icmp", 8080, "10.0.0.2,fd00::2"],
      words.join(" "),
    );
  }
});

Deno.test("bool flags: --flag, --flag=true|false", () => {
  for (
    const [flag, field] of [["force-minikube", "forceMinikube"], ["with-sockops", "withSockops"]]
  ) {
    const key = field as keyof MonitorOptions;
    assert.equal(monitor([...SOCKET, `--${flag}`])[key], true);
    assert.equal(monitor([`--${flag}`, ...SOCKET])[key], true);
    assert.equal(monitor([...SOCKET, `--${flag}=true`])[key], true);
    assert.equal(monitor([...SOCKET, `--${flag}=false`])[key], false);
    assert.equal(monitor([...SOCKET, `--${flag}=1`])[key], true);
  }
});

Deno.test("verbosity: -v, --verbose, -q, --quiet", () => {
  assert.equal(monitor([...SOCKET, "-v"]).verbosity, "verbose");
  assert.equal(monitor([...SOCKET, "--verbose"]).verbosity, "verbose");
  assert.equal(monitor(["-q", ...SOCKET]).verbosity, "quiet");
  assert.equal(monitor([...SOCKET, "--quiet"]).verbosity, "quiet");
  assert.equal(monitor([...SOCKET, "--verbose=false", "-q"]).verbosity, "quiet");
  assert.equal(monitor([...SOCKET, "--verbose=false"]).verbosity, "normal");
});

Deno.test("a later flag overrides an earlier one", () => {
  assert.equal(monitor([...SOCKET, "--namespace", "a", "--namespace=b"]).namespace, "b");
});

Deno.test("probes expand from the command words", () => {
  const cases: [string[], string, string[]][] = [
    [["monitor", "kernel", "all"], "kernel", ["socket", "stack", "resources"]],
    [["monitor", "kernel", "socket"], "kernel", ["socket"]],
    [["monitor", "kernel", "stack"], "kernel", ["stack"]],
    [["monitor", "user", "all"], "user", ["http", "grpc"]],
    [["monitor", "user", "http"], "user", ["http"]],
    [["monitor", "user", "grpc"], "user", ["grpc"]],
    [["monitor", "all"], "all", ["socket", "stack", "resources", "http", "grpc"]],
  ];
  for (const [args, layer, probes] of cases) {
    const o = monitor(args);
    assert.equal(o.layer, layer);
    assert.deepEqual(o.probes, probes);
  }
});

Deno.test("targets that combine", () => {
  assert.equal(monitor([...SOCKET, "--pod", "web-0", "--veth", "veth1a2b3c"]).veth, "veth1a2b3c");
  assert.equal(monitor([...SOCKET, "--netns", "cni-1", "--veth", "veth1a2b3c"]).netns, "cni-1");
  assert.equal(monitor([...SOCKET, "--pid", "4242", "--veth", "veth1a2b3c"]).pid, 4242);
  assert.equal(
    monitor([...SOCKET, "--pod-label", "app=web", "--namespace", "shop"]).podLabel,
    "app=web",
  );
  // An empty value means "discover", so it does not count as a second target.
  assert.equal(monitor([...SOCKET, "--pod=", "--pid", "4242"]).pid, 4242);
});

Deno.test("--pid is checked against /proc by default", () => {
  assert.equal(monitor([...SOCKET, "--pid", String(Deno.pid)], {}).pid, Deno.pid);
  assert.equal(
    usageError([...SOCKET, "--pid", "999999999"], {}).message,
    "no process with pid 999999999",
  );
});

Deno.test("help, version and completion commands", () => {
  const root = help([]);
  assert.equal(help(["--help"]), root);
  assert.equal(help(["-h"]), root);
  assert.equal(help(["help"]), root);
  const kernel = help(["monitor", "kernel"]);
  assert.equal(help(["monitor", "kernel", "--help"]), kernel);
  assert.equal(help(["monitor", "kernel", "-h"]), kernel);
  assert.equal(help(["help", "monitor", "kernel"]), kernel);
  assert.equal(help(["monitor"]), help(["monitor", "--help"]));
  // --help wins over values that would otherwise be refused together.
  assert.equal(
    help([...SOCKET, "--pod", "web-0", "--pod-label", "app=web", "--help"]),
    help(["help", ...SOCKET]),
  );
  assert.match(help(["completion"]), /^ {2}bash /m);
  assert.deepEqual(parseArgs(["version"]), { kind: "version" });
  for (const shell of ["bash", "zsh", "fish"]) {
    assert.deepEqual(parseArgs(["completion", shell]), { kind: "completion", shell });
  }
});

const CONFLICT = "watch either a Kubernetes target (--pod, --pod-label) or a local one " +
  "(--pid, --cgroup, --netns)";

// [args, the exact one-line message]
const BAD: [string[], string][] = [
  [["foo"], 'unknown command "foo" for "kupod"'],
  [["monitor", "kernel", "sockets"], 'unknown command "sockets" for "kupod monitor kernel"'],
  [[...SOCKET, "extra"], 'unknown command "extra" for "kupod monitor kernel socket"'],
  [[...SOCKET, "--", "--pod"], 'unknown command "--pod" for "kupod monitor kernel socket"'],
  [["completion", "powershell"], 'unknown command "powershell" for "kupod completion"'],
  [["help", "monitor", "foo"], 'unknown help topic "monitor foo"'],
  [[...SOCKET, "--foo"], "unknown flag: --foo"],
  [[...SOCKET, "--foo=1"], "unknown flag: --foo"],
  [["--foo", ...SOCKET], "unknown flag: --foo"],
  [[...SOCKET, "-x"], "unknown shorthand flag: 'x' in -x"],
  [[...SOCKET, "--help", "--foo"], "unknown flag: --foo"],
  [["version", "--pod", "web-0"], "unknown flag: --pod"],
  [["version", "-v"], "unknown shorthand flag: 'v' in -v"],
  [[...SOCKET, "--pod"], "flag needs an argument: --pod"],
  [[...SOCKET, "--pod", "--namespace", "shop"], "flag needs an argument: --pod"],
  [[...SOCKET, "--pod", "-h"], "flag needs an argument: --pod"],
  [
    [...SOCKET, "--exporter-port", "abc"],
    'invalid argument "abc" for "--exporter-port" flag: not an integer',
  ],
  [
    [...SOCKET, "--exporter-port=1.5"],
    'invalid argument "1.5" for "--exporter-port" flag: not an integer',
  ],
  [
    [...SOCKET, "--exporter-port=0"],
    'invalid argument "0" for "--exporter-port" flag: must be in 1..65535',
  ],
  [
    [...SOCKET, "--exporter-port", "65536"],
    'invalid argument "65536" for "--exporter-port" flag: must be in 1..65535',
  ],
  [
    [...SOCKET, "--exporter-port", "-1"],
    'invalid argument "-1" for "--exporter-port" flag: must be in 1..65535',
  ],
  [
    [...SOCKET, "--duration", "-5"],
    'invalid argument "-5" for "--duration" flag: must be a non-negative number of seconds',
  ],
  [
    [...SOCKET, "--duration=abc"],
    'invalid argument "abc" for "--duration" flag: must be a non-negative number of seconds',
  ],
  [
    [...SOCKET, "--duration=20s"],
    'invalid argument "20s" for "--duration" flag: must be a non-negative number of seconds',
  ],
  [
    [...SOCKET, "--stack-duty-cycle", "1.5"],
    'invalid argument "1.5" for "--stack-duty-cycle" flag: must be a number from 0 to 1',
  ],
  [
    [...SOCKET, "--stack-duty-cycle=-0.1"],
    'invalid argument "-0.1" for "--stack-duty-cycle" flag: must be a number from 0 to 1',
  ],
  [
    [...SOCKET, "--sidecar-mode", "istio"],
    'invalid argument "istio" for "--sidecar-mode" flag: must be one of envoy, demo, blur',
  ],
  [
    [...SOCKET, "--output", "yaml"],
    'invalid argument "yaml" for "--output" flag: must be one of text, json',
  ],
  [
    [...SOCKET, "--with-sockops=yes"],
    'invalid argument "yes" for "--with-sockops" flag: must be true or false',
  ],
  [[...SOCKET, "--pid", "0"], 'invalid argument "0" for "--pid" flag: must be a positive integer'],
  [
    [...SOCKET, "--pid", "-3"],
    'invalid argument "-3" for "--pid" flag: must be a positive integer',
  ],
  [[...SOCKET, "--pid=abc"], 'invalid argument "abc" for "--pid" flag: must be a positive integer'],
  [[...SOCKET, "--pid", "4243"], "no process with pid 4243"],
  [
    [...SOCKET, "--jaeger-agent", "jaeger"],
    'invalid argument "jaeger" for "--jaeger-agent" flag: must be host:port',
  ],
  [
    [...SOCKET, "--prometheus", "pgw:99999"],
    'invalid argument "pgw:99999" for "--prometheus" flag: must be host:port',
  ],
  [
    [...SOCKET, "--otlp-endpoint", "otel:4318"],
    'invalid argument "otel:4318" for "--otlp-endpoint" flag: must be an http:// or https:// URL',
  ],
  [
    [...SOCKET, "--pod-label", "app"],
    'invalid argument "app" for "--pod-label" flag: must be key=value[,key2=value2]',
  ],
  [
    [...SOCKET, "--stack-port", "80"],
    "--stack-port is an option of the stack probe, which this command does not run",
  ],
  [
    [...SOCKET, "--stack-protocol", "sctp"],
    'invalid argument "sctp" for "--stack-protocol" flag: must be tcp, udp or icmp',
  ],
  [
    [...SOCKET, "--stack-port", "65536"],
    'invalid argument "65536" for "--stack-port" flag: must be a port number (1-65535) or 0',
  ],
  [
    [...SOCKET, "--stack-address", "10.0.0.2,fd00::1::2"],
    'invalid argument "10.0.0.2,fd00::1::2" for "--stack-address" flag: fd00::1::2 is not an IPv4 or IPv6 address',
  ],
  [[...SOCKET, "--verbose", "--quiet"], "--verbose and --quiet cannot be used together"],
  [[...SOCKET, "-vq"], "--verbose and --quiet cannot be used together"],
  [
    [...SOCKET, "--pod", "web-0", "--pod-label", "app=web"],
    "--pod and --pod-label cannot be used together",
  ],
  [[...SOCKET, "--pod", "web-0", "--pid", "4242"], `--pod cannot be used with --pid: ${CONFLICT}`],
  [
    [...SOCKET, "--pod-label", "app=web", "--cgroup", "/sys/fs/cgroup/x"],
    `--pod-label cannot be used with --cgroup: ${CONFLICT}`,
  ],
  [
    [...SOCKET, "--netns", "cni-1", "--pod", "web-0"],
    `--pod cannot be used with --netns: ${CONFLICT}`,
  ],
  [
    [...SOCKET, "--pid", "4242", "--cgroup", "/sys/fs/cgroup/x"],
    "--pid and --cgroup cannot be used together: give one local target",
  ],
  [
    [...SOCKET, "--cgroup", "/sys/fs/cgroup/x", "--netns", "cni-1"],
    "--cgroup and --netns cannot be used together: give one local target",
  ],
  [
    [...SOCKET, "--veth", "veth1", "--pod-label", "app=web"],
    "--veth and --pod-label cannot be used together: a selector may match many pods, a veth belongs to one",
  ],
];

Deno.test("bad command lines throw a UsageError with a one-line message", () => {
  for (const [args, message] of BAD) {
    const e = usageError(args);
    assert.equal(e.message, message, args.join(" "));
    assert.ok(!e.message.includes("\n"));
    assert.equal(e.exitCode, 2);
    assert.ok(e instanceof KupodError);
  }
});

Deno.test("a usage error points at the help of the command it was for", () => {
  assert.equal(
    usageError([...SOCKET, "--foo"]).hint,
    "Run 'kupod monitor kernel socket --help' for usage.",
  );
  assert.equal(usageError(["--foo"]).hint, "Run 'kupod --help' for usage.");
  assert.equal(usageError(["version", "--pod=x"]).hint, "Run 'kupod version --help' for usage.");
  assert.equal(new KupodError("probe failed").exitCode, 1);
});

async function snapshot(name: string, actual: string) {
  const file = new URL(`./snapshots/${name}.txt`, import.meta.url);
  if (Deno.env.get("UPDATE_SNAPSHOTS") === "1") {
    await Deno.mkdir(new URL("./snapshots/", import.meta.url), { recursive: true });
    await Deno.writeTextFile(file, actual + "\n");
    return;
  }
  let expected: string;
  try {
    expected = await Deno.readTextFile(file);
  } catch {
    throw new Error(`missing snapshot ${file.pathname}; run with UPDATE_SNAPSHOTS=1`);
  }
  assert.equal(actual + "\n", expected, `${name} differs; run with UPDATE_SNAPSHOTS=1 if intended`);
}

Deno.test("help texts match their snapshots", async () => {
  const commands = [
    [],
    ["monitor"],
    ["monitor", "all"],
    ["monitor", "kernel"],
    ["monitor", "kernel", "socket"],
    ["monitor", "kernel", "stack"],
    ["monitor", "user"],
    ["monitor", "user", "http"],
    ["version"],
    ["completion"],
    ["completion", "bash"],
    ["help"],
  ];
  for (const words of commands) {
    await snapshot(["kupod", ...words].join("_"), help([...words, "--help"]));
  }
});

// The flags of the contract, listed here independently of cli/flags.ts.
const CONTRACT_FLAGS = [
  "--exporter-port int",
  "--force-minikube",
  "--grpcimagename string",
  "--grpcpod string",
  "--imagename string",
  "--jaeger-agent string",
  "--kubeconfig string",
  "--namespace string",
  "--nodename string",
  "--pod string",
  "--pod-label string",
  "--prometheus string",
  "--sidecar-mode string",
  "--veth string",
  "--with-sockops",
  "--pid int",
  "--cgroup string",
  "--netns string",
  "--exporter-address string",
  "--otlp-endpoint string",
  "--output string",
  "--duration seconds",
  "-v, --verbose",
  "-q, --quiet",
  "-h, --help",
];

Deno.test("monitor kernel/user help lists every flag, subcommand and default", () => {
  for (
    const [layer, subs] of [["kernel", ["all", "socket", "stack", "resources"]], ["user", [
      "all",
      "http",
      "grpc",
    ]]]
  ) {
    const text = help(["monitor", layer as string, "--help"]);
    for (const flag of CONTRACT_FLAGS) assert.ok(text.includes(`${flag} `), `${layer}: ${flag}`);
    for (const sub of subs) {
      assert.match(text, new RegExp(`^  ${sub} +\\S`, "m"), `${layer}: ${sub}`);
    }
    for (
      const part of [
        "Usage:",
        "Available Commands:",
        "Flags:",
        "Global Flags:",
        "Examples:",
        "(default 8765)",
        '(default "default")',
        '(default "blur")',
        '(default "0.0.0.0")',
        '(default "text")',
      ]
    ) {
      assert.ok(text.includes(part), `${layer}: ${part}`);
    }
    assert.ok(
      text.endsWith(
        `Use "kupod monitor ${layer} [command] --help" for more information about a command.`,
      ),
    );
  }
  assert.ok(
    help([]).endsWith('Use "kupod [command] --help" for more information about a command.'),
  );
  for (const cmd of ["completion", "help", "monitor", "version"]) {
    assert.match(help([]), new RegExp(`^  ${cmd} +\\S`, "m"));
  }
});

Deno.test("version text", () => {
  const text = versionText();
  assert.ok(text.includes(VERSION));
  assert.ok(text.includes(Deno.version.deno));
  assert.ok(text.includes(Deno.build.target));
});

/** Runs `shell args...` with `script` in a temporary file as the last argument. */
async function runShell(shell: string, args: string[], script: string) {
  const file = await Deno.makeTempFile({ suffix: `.${shell}` });
  try {
    await Deno.writeTextFile(file, script);
    const out = await new Deno.Command(shell, { args: [...args, file], stdin: "null" }).output();
    const decode = (b: Uint8Array) => new TextDecoder().decode(b);
    return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
  } finally {
    await Deno.remove(file);
  }
}

async function hasShell(shell: string): Promise<boolean> {
  try {
    await new Deno.Command(shell, { args: ["-c", "exit 0"], stdout: "null", stderr: "null" })
      .output();
    return true;
  } catch {
    return false;
  }
}

Deno.test("completion scripts pass the shells' syntax checks", async () => {
  for (const shell of ["bash", "zsh", "fish"] as const) {
    if (shell !== "bash" && !(await hasShell(shell))) continue; // bash is required, others optional
    const { code, stderr } = await runShell(shell, ["-n"], completionScript(shell));
    assert.equal(code, 0, `${shell} -n: ${stderr}`);
  }
});

Deno.test("bash completion completes commands, flags and values", async () => {
  const cases: [string[], string][] = [
    [["kupod", ""], "completion help monitor version"],
    [["kupod", "monitor", "ke"], "kernel"],
    [["kupod", "monitor", "kernel", ""], "all resources socket stack"],
    [["kupod", "monitor", "user", ""], "all grpc http"],
    [["kupod", "--pod", "web-0", "monitor", "u"], "user"],
    [["kupod", "monitor", "-v", "kernel", "s"], "socket stack"],
    [["kupod", "help", "monitor", "kernel", "s"], "socket stack"],
    [["kupod", "monitor", "kernel", "socket", "--sid"], "--sidecar-mode"],
    [["kupod", "monitor", "kernel", "socket", "--sidecar-mode", ""], "envoy demo blur"],
    [["kupod", "monitor", "kernel", "socket", "--output", "=", "j"], "json"],
    [["kupod", "monitor", "kernel", "socket", "--output=j"], "--output=json"],
    [["kupod", "version", "-"], "--help -h"],
  ];
  const calls = cases.map(([words]) => {
    const quoted = words.map((w) => `'${w}'`).join(" ");
    return `COMP_WORDS=(${quoted}); COMP_CWORD=${
      words.length - 1
    }; _kupod; echo "\${COMPREPLY[*]}"`;
  });
  const { code, stdout, stderr } = await runShell(
    "bash",
    [],
    `${completionScript("bash")}\n${calls.join("\n")}\n`,
  );
  assert.equal(code, 0, stderr);
  assert.deepEqual(stdout.trimEnd().split("\n"), cases.map(([, want]) => want));
});

Deno.test("zsh and fish completion complete commands, flags and values (when installed)", async () => {
  if (await hasShell("zsh")) {
    // Outside a completion widget, stand-ins for the completion builtins print what they got.
    const stubs = [
      "compdef() { :; }",
      'compadd() { shift; print -r -- "$*"; }',
      "compset() { :; }",
      '_describe() { local -a a; a=("${(@P)${@[-1]}}"); print -r -- "${(@)a%%:*}"; }',
    ].join("\n");
    const calls = [
      "words=(kupod monitor ''); CURRENT=3; _kupod",
      "words=(kupod --pod web-0 monitor kernel ''); CURRENT=6; _kupod",
      "words=(kupod monitor user http --sidecar-mode ''); CURRENT=6; _kupod",
      "words=(kupod monitor all --output=j); CURRENT=4; _kupod",
    ].join("\n");
    const { code, stdout, stderr } = await runShell(
      "zsh",
      [],
      `${stubs}\n${completionScript("zsh")}\n${calls}\n`,
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(stdout.trimEnd().split("\n"), [
      "all kernel user",
      "all socket stack",
      "envoy demo blur",
      "text json",
    ]);
  }
  if (await hasShell("fish")) {
    const lines = ["kupod monitor ", "kupod monitor kernel stack --side", "kupod help monitor u"];
    const calls = lines.map((l) => `complete -C'${l}' | string split -f1 \\t | string join ' '`);
    const { code, stdout, stderr } = await runShell(
      "fish",
      [],
      // `string join` fails when it had a single word to join: end on a clean status.
      `${completionScript("fish")}\n${calls.join("\n")}\nexit 0\n`,
    );
    assert.equal(code, 0, stderr);
    assert.deepEqual(stdout.trimEnd().split("\n"), ["all kernel user", "--sidecar-mode", "user"]);
  }
});
