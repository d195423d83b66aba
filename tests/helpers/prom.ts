/**
 * The real Prometheus tools in tests: promtool, a Prometheus server and a Pushgateway from
 * Debian's packages, each on a free 127.0.0.1 port with its files in a temp dir, ended by pid
 * and cleaned up on dispose. Plus a parser of the text exposition format for exact assertions.
 */

import { Child, freePort } from "./process.ts";

/** Debian package of each tool (scripts/setup installs them). */
const PACKAGE_OF: Record<string, string> = {
  promtool: "prometheus",
  prometheus: "prometheus",
  "prometheus-pushgateway": "prometheus-pushgateway",
};

/** The path of `tool`; throws a clear error naming the package when it is missing. */
export function requireTool(tool: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin").split(":")) {
    try {
      const path = `${dir}/${tool}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not in this dir
    }
  }
  throw new Error(
    `${tool} not found on PATH: install Debian's ${PACKAGE_OF[tool] ?? tool} package ` +
      `(scripts/setup does)`,
  );
}

/** `promtool check metrics` on `text`: whether it passed and what it said. */
export async function promtoolCheck(text: string): Promise<{ ok: boolean; output: string }> {
  const child = new Deno.Command(requireTool("promtool"), {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const decoder = new TextDecoder();
  return {
    ok: out.success,
    output: (decoder.decode(out.stdout) + decoder.decode(out.stderr)).trim(),
  };
}

/**
 * Samples of a text exposition, keyed `name{a="x",b="y"}` with labels sorted by name (so the
 * order a library prints them in does not matter), `name` alone when there are none.
 */
export function parseExposition(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(\s+\S+)?$/.exec(line);
    if (!m) throw new Error(`not an exposition sample line: ${line}`);
    const labels = m[2] ? parseLabels(m[2].slice(1, -1)) : [];
    samples.set(seriesKey(m[1], Object.fromEntries(labels)), parseValue(m[3]));
  }
  return samples;
}

/** The key parseExposition uses for a series. */
export function seriesKey(name: string, labels: Record<string, string> = {}): string {
  const entries = Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!entries.length) return name;
  return `${name}{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`;
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function parseLabels(body: string): [string, string][] {
  const out: [string, string][] = [];
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/y;
  let m;
  while (re.lastIndex < body.length && (m = re.exec(body))) {
    out.push([m[1], m[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c))]);
  }
  if (re.lastIndex !== body.length && body.slice(re.lastIndex).trim()) {
    throw new Error(`bad label set: {${body}}`);
  }
  return out;
}

function parseValue(v: string): number {
  if (v === "+Inf") return Infinity;
  if (v === "-Inf") return -Infinity;
  return Number(v);
}

/** Polls `probe` until it returns a value other than undefined, or throws after `ms`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 30_000,
): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** A server process with a temp dir; dispose ends it by pid and removes the dir. */
export class ServerProcess implements AsyncDisposable {
  constructor(
    readonly child: Child,
    readonly dir: string,
    /** http://127.0.0.1:<port> */
    readonly url: string,
    /** 127.0.0.1:<port> */
    readonly address: string,
  ) {}

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 5000)));
      const ended = await Promise.race([this.child.process.status, grace]);
      clearTimeout(timer);
      if (ended === "late") this.child.kill("SIGKILL");
      await this.child.wait();
    } finally {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }
}

/** Starts `cmd args` and waits until GET url/-/ready answers 200 (or the process dies). */
async function startReady(
  cmd: string,
  args: string[],
  dir: string,
  port: number,
): Promise<ServerProcess> {
  const child = new Child(cmd, args);
  const address = `127.0.0.1:${port}`;
  const server = new ServerProcess(child, dir, `http://${address}`, address);
  let exited = false;
  child.process.status.then(() => (exited = true));
  try {
    await waitFor(`${cmd} ready on ${address}`, async () => {
      if (exited) throw new Error(`${cmd} exited: ${child.stderr.slice(-5).join(" | ")}`);
      const res = await fetch(`${server.url}/-/ready`);
      await res.body?.cancel();
      return res.ok ? true : undefined;
    }, 20_000);
    return server;
  } catch (err) {
    await server[Symbol.asyncDispose]();
    throw err;
  }
}

/** A real Prometheus server scraping `target` (host:port) every `interval` as job "kupod". */
export async function startPrometheus(target: string, interval = "1s"): Promise<ServerProcess> {
  const bin = requireTool("prometheus");
  const dir = await Deno.makeTempDir({ prefix: "kupod-prometheus-" });
  try {
    await Deno.writeTextFile(
      `${dir}/prometheus.yml`,
      [
        "global:",
        `  scrape_interval: ${interval}`,
        `  evaluation_interval: ${interval}`,
        "scrape_configs:",
        "  - job_name: kupod",
        `    scrape_interval: ${interval}`,
        `    scrape_timeout: ${interval}`,
        "    static_configs:",
        `      - targets: ["${target}"]`,
        "",
      ].join("\n"),
    );
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  const port = freePort();
  return startReady(
    bin,
    [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    dir,
    port,
  );
}

/** A real Pushgateway without persistence, on `port` (a free one by default). */
export async function startPushgatewayServer(port = freePort()): Promise<ServerProcess> {
  const bin = requireTool("prometheus-pushgateway");
  const dir = await Deno.makeTempDir({ prefix: "kupod-pushgateway-" });
  // Debian's build persists to /var/lib/prometheus by default; empty = in memory only
  return startReady(
    bin,
    [
      `--web.listen-address=127.0.0.1:${port}`,
      "--persistence.file=",
      "--log.level=warn",
    ],
    dir,
    port,
  );
}

export interface PromSample {
  metric: Record<string, string>;
  value: number;
}

/** An instant query against a Prometheus server's HTTP API. */
export async function promQuery(server: ServerProcess, query: string): Promise<PromSample[]> {
  const res = await fetch(`${server.url}/api/v1/query?query=${encodeURIComponent(query)}`);
  const body = await res.json() as {
    status: string;
    error?: string;
    data?: {
      resultType: string;
      result: { metric: Record<string, string>; value: [number, string] }[];
    };
  };
  if (body.status !== "success" || !body.data) {
    throw new Error(`query ${query}: ${body.error ?? res.status}`);
  }
  return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
}
