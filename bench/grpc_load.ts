/**
 * The gRPC load of bench:ab (--load grpc): the grpc-go fixture server and load client
 * (tests/fixtures/grpc_go), built into bench/.output/grpc_go with Debian's golang-go and
 * golang-google-grpc-dev (GOPATH mode, offline; go's build cache makes a rebuild quick), and
 * the load client run for the whole bench: one continuous load whose channels stay open, so
 * that kupod always starts on connections whose HPACK state it never saw.
 */

import { ROOT } from "./overhead.ts";

const FIXTURES = `${ROOT}tests/fixtures/grpc_go`;
const OUT = `${ROOT}bench/.output/grpc_go`;
/** For the load client's "ready" line (its dials) and each count it is asked for. */
const REPLY_MS = 15_000;
const STOP_MS = 5_000;

export interface GrpcGoBinaries {
  server: string;
  loadclient: string;
}

let built: Promise<GrpcGoBinaries> | undefined;

/** The server and the load client, built once per bench (go's cache makes it quick). */
export function buildGrpcGo(): Promise<GrpcGoBinaries> {
  return built ??= build();
}

async function build(): Promise<GrpcGoBinaries> {
  // GOPATH mode finds the fixtures' packages (kupodtest/...) under <GOPATH>/src
  const src = `${OUT}/gopath/src`;
  await Deno.mkdir(src, { recursive: true });
  await Deno.remove(`${src}/kupodtest`).catch(() => {});
  await Deno.symlink(FIXTURES, `${src}/kupodtest`);
  const bins = { server: `${OUT}/server`, loadclient: `${OUT}/loadclient` };
  for (const [name, path] of Object.entries(bins)) {
    const out = await new Deno.Command("go", {
      args: ["build", "-o", path, `kupodtest/${name}`],
      cwd: `${src}/kupodtest`,
      env: { GOPATH: `${OUT}/gopath:/usr/share/gocode`, GO111MODULE: "off", GOFLAGS: "" },
      stdout: "piped",
      stderr: "piped",
    }).output().catch((e) => {
      if (e instanceof Deno.errors.NotFound) {
        throw new Error("go is not installed (scripts/setup installs golang-go)");
      }
      throw e;
    });
    if (!out.success) throw new Error(`go build ${name}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return bins;
}

export interface Count {
  calls: number;
  errors: number;
  /** The load client's clock when it counted. */
  seconds: number;
}

/**
 * The load client: `channels` channels to `addr`, `inflight` Unary calls in flight over them
 * until stop(). It exits by itself when this process dies (the end of its stdin).
 */
export class GrpcLoad {
  readonly #proc: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;
  #stderr = "";
  #stopped = false;

  private constructor(bin: string, args: string[]) {
    const proc = new Deno.Command(bin, { args, stdin: "piped", stdout: "piped", stderr: "piped" })
      .spawn();
    this.#proc = proc;
    this.#stdin = proc.stdin.getWriter();
    this.#lines = lines(proc.stdout);
    (async () => {
      // a stalled sidecar's message, kept short
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) {
        this.#stderr = (this.#stderr + chunk).slice(-2000);
      }
    })().catch(() => {});
  }

  static async start(
    bin: string,
    addr: string,
    o: { channels: number; inflight: number },
  ): Promise<GrpcLoad> {
    const load = new GrpcLoad(bin, [addr, String(o.channels), String(o.inflight)]);
    try {
      const line = await load.#next();
      if (line !== "ready") throw new Error(`load client: ${line}`);
    } catch (e) {
      await load.stop();
      throw e;
    }
    return load;
  }

  get pid(): number {
    return this.#proc.pid;
  }

  /** Calls completed and failed so far, counted the moment it is asked. */
  async count(): Promise<Count> {
    await this.#stdin.write(new TextEncoder().encode("\n"));
    const line = await this.#next();
    const [calls, errors, ns] = line.split(" ").map(Number);
    if (!(ns > 0)) throw new Error(`load client: ${line}`);
    return { calls, errors, seconds: ns / 1e9 };
  }

  /** What it wrote to stderr last (its first failed call, if any). */
  get stderr(): string {
    return this.#stderr.trim();
  }

  /** "done", then SIGKILL by pid if it has not exited in STOP_MS. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#stdin.write(new TextEncoder().encode("done\n")).catch(() => {});
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        this.#proc.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
    }, STOP_MS);
    await this.#proc.status;
    clearTimeout(timer);
  }

  async #next(): Promise<string> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("load client did not answer")), REPLY_MS);
    });
    try {
      const r = await Promise.race([this.#lines.next(), late]);
      if (r.done) throw new Error("load client exited");
      return r.value;
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${this.stderr || "(no stderr)"}`);
    } finally {
      clearTimeout(timer);
    }
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    yield* parts;
  }
}
