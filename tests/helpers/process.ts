/** Child processes of tests: started, read line by line, and always ended by pid. */

export const ROOT = new URL("../../", import.meta.url).pathname;
export const DENO = `${ROOT}node_modules/@deno/linux-x64-glibc/deno`;

const decoder = new TextDecoder();

/** A running child with its stdout and stderr collected as lines. */
export class Child implements AsyncDisposable {
  readonly process: Deno.ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  readonly #done: Promise<Deno.CommandStatus>;
  readonly #pumps: Promise<void>[];
  #waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  #stdin: WritableStreamDefaultWriter<Uint8Array> | undefined;

  constructor(
    cmd: string,
    args: string[],
    opts: { stdin?: boolean; env?: Record<string, string> } = {},
  ) {
    this.process = new Deno.Command(cmd, {
      args,
      stdin: opts.stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      env: opts.env,
    }).spawn();
    if (opts.stdin) this.#stdin = this.process.stdin.getWriter();
    this.#pumps = [
      this.#pump(this.process.stdout, this.stdout),
      this.#pump(this.process.stderr, this.stderr),
    ];
    this.#done = this.process.status;
  }

  get pid(): number {
    return this.process.pid;
  }

  async #pump(stream: ReadableStream<Uint8Array>, lines: string[]): Promise<void> {
    let rest = "";
    for await (const chunk of stream) {
      rest += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        lines.push(line);
        this.#waiters = this.#waiters.filter((w) => {
          if (!w.pattern.test(line)) return true;
          w.resolve(line);
          return false;
        });
      }
    }
    if (rest) lines.push(rest);
  }

  /** The first line (stdout or stderr) matching `pattern`, waiting up to `ms`. */
  waitForLine(pattern: RegExp, ms = 15000): Promise<string> {
    const seen = [...this.stdout, ...this.stderr].find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new Error(
            `no line matching ${pattern} within ${ms} ms; stderr: ${this.stderr.join(" | ")}`,
          ),
        );
      }, ms);
      this.#waiters.push({
        pattern,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      this.#done.then(() =>
        setTimeout(() => {
          clearTimeout(timer);
          reject(
            new Error(
              `exited before a line matching ${pattern}; stderr: ${this.stderr.join(" | ")}`,
            ),
          );
        }, 50)
      );
    });
  }

  async writeLine(line: string): Promise<void> {
    await this.#stdin!.write(new TextEncoder().encode(line + "\n"));
  }

  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.process.kill(signal);
    } catch {
      // already exited
    }
  }

  /**
   * Waits for exit and for its output. A grandchild still holding the pipes
   * cannot keep this waiting: after a grace period the streams are cancelled.
   */
  async wait(): Promise<Deno.CommandStatus> {
    const status = await this.#done;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, 2000)));
    await Promise.race([Promise.all(this.#pumps), grace]);
    clearTimeout(timer);
    return status;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.#stdin?.close();
    } catch {
      // closed already
    }
    this.kill("SIGKILL");
    await this.wait();
  }
}

/** Starts the test TCP server and waits for its port. */
export async function startServer(
  host = "127.0.0.1",
  mode: "reply" | "abort" = "reply",
): Promise<{ server: Child; port: number } & AsyncDisposable> {
  const server = new Child(DENO, [
    "run",
    "--allow-net",
    `${ROOT}tests/fixtures/tcp_server.ts`,
    host,
    "0",
    mode,
  ], { stdin: mode === "abort" }); // abort: a line on stdin closes what it holds
  const line = await server.waitForLine(/^listening \d+/);
  return {
    server,
    port: Number(line.split(" ")[1]),
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** A local TCP port nothing listens on right now (bound, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * kupod with `args`; unless the test picks its own, the metrics endpoint gets a free local
 * port so that runs never collide on the default one, and no summaries are printed: tests of
 * events read stdout as events only (tests/summary_test.ts asks for summaries).
 */
export function kupodChild(args: string[]): Child {
  const own = args.some((a) => a.startsWith("--exporter-port"));
  const extra = own
    ? []
    : ["--exporter-address", "127.0.0.1", "--exporter-port", String(freePort())];
  if (!args.some((a) => a.startsWith("--interval"))) extra.push("--interval", "0");
  // exact counts along the path need it traced the whole run; stack_window_test sets its own
  if (args[0] === "monitor" && !args.some((a) => a.startsWith("--stack-duty-cycle"))) {
    extra.push("--stack-duty-cycle", "1");
  }
  return new Child(`${ROOT}kupod`, [...args, ...extra]);
}

/** `kupod monitor kernel socket --output json` with `args` (the target, more flags). */
export function socketJson(...args: string[]): string[] {
  return ["monitor", "kernel", "socket", "--output", "json", ...args];
}

/** Starts kupod with `args` and waits for its readiness line. */
export async function startKupod(args: string[]): Promise<Child> {
  const kupod = kupodChild(args);
  await kupod.waitForLine(/started!/);
  return kupod;
}

/** `kupod monitor user grpc` on the pod behind `veth`, in JSON lines, with `extra` arguments. */
export function watchGrpc(veth: string, extra: string[] = []): Promise<Child> {
  return startKupod(["monitor", "user", "grpc", "--veth", veth, "--output", "json", ...extra]);
}

/** Makes `count` connections to host:port from this process, reading each reply. */
export async function connectTimes(host: string, port: number, count: number): Promise<void> {
  const buf = new Uint8Array(16);
  for (let i = 0; i < count; i++) {
    const conn = await Deno.connect({ hostname: host, port });
    await conn.read(buf);
    conn.close();
  }
}
