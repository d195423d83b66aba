/**
 * Ring buffer bench: kupod's mmapped reader (bpf/ringbuf.ts + the generated
 * decoder) against a plain libbpf consumer in C (ring_buffer__poll), on the
 * same BPF object (bpf/loadgen.bpf.c), ring size and load.
 *
 *   deno task bench [--rounds 5] [--calls 20000] [--batch 256] [--ring 4194304]
 *                   [--drain-ring 16777216] [--paced-rate 1000000] [--paced-seconds 1] [--pin 1]
 *
 * Needs root, tracefs, bpf/.output/loadgen.bpf.o (deno task bpf), gcc and
 * libbpf-dev. One invocation:
 *   1. compiles bench/producer.c and bench/consumer.c (-O2) into bench/.output/
 *      (gitignored);
 *   2. stress: `rounds` times each, C and kupod alternating (C first in odd
 *      rounds), a fresh producer process calls getppid() `calls` times back to
 *      back, each call emitting `batch` events (total = calls x batch), and the
 *      consumer reads them as they come;
 *   3. drain: `rounds` times each, the producer fills a `drain-ring` ring 4
 *      times and the consumer reads each fill only once it is complete; all
 *      but the first (which warms up JIT and page tables) are timed: the
 *      readers' own speed, which the stress runs may not reach (see below);
 *   4. paced: once each, `paced-seconds` of events at `paced-rate` events/s,
 *      where neither reader should lose anything;
 *   5. prints every run, the medians, and the summary line of the stress runs:
 *      `ringbuf: kupod/C events/s ratio = X.XX (target >= 0.80), lost kupod=N
 *      C=M, uncounted U`.
 *
 * A run: the producer starts and blocks until SIGUSR1; the consumer (a child
 * process: bench/.output/consumer, or this module with --kupod-consumer) loads
 * the object with target_tgid = the producer's pid, attaches, starts reading,
 * releases the producer itself (so it times the run from the release) and
 * reads until received + lost == total, then prints JSON. events/s = events
 * read / seconds, from the release (drain: from the start of the read) to the
 * read of the last event. Each event is decoded (kupod: decodeLoadEvent into an
 * object; C: copied out of the ring) and its number checked: events are
 * numbered 0, 1, 2, ... in ring order, lost ones take no number. Losses are
 * allowed but must be counted (the object's per-CPU events_lost): a run with
 * received + lost != total, a gap or disorder in the numbers, or a loss at the
 * paced rate, and programs left loaded afterwards make the bench exit 1.
 * Children are killed by pid on any exit; no temp files are written.
 *
 * The producer runs pinned to CPU 0 and the consumer (all its threads) to CPU 1
 * (taskset; --pin 0 leaves placement to the scheduler).
 *
 * Reading the stress numbers: libbpf commits its consumer position after every
 * record, so a C reader that keeps up is woken again and again, and the
 * wake-ups (irq_work, IPIs) run on the producer's CPU: the producer slows down
 * to ~2M events/s and C loses nothing. Its events/s is then the producer's
 * throttled rate, not C's capacity (the bench prints a note when C's stress
 * rate is under half its drain rate). kupod commits every 256 records and
 * reads in large batches, so the producer runs at full speed (10-35M events/s
 * offered) and what kupod cannot read is lost. The stress ratio therefore
 * varies a lot between invocations; the drain line compares the readers.
 */

import { decodeLoadEvent, LOAD_EVENT_SIZE, type LoadEvent, RODATA } from "../bpf/gen/loadgen.ts";
import { BpfObject } from "../bpf/object.ts";
import { objectBytes, objectUrl } from "../bpf/objects.ts";
import { preflight } from "../bpf/preflight.ts";
import { RingBuffer } from "../bpf/ringbuf.ts";

const OBJECT_NAME = "kupod_loadgen";
const PROGRAM = "kupod_loadgen";
const RUN_TIMEOUT_MS = 120_000;
const STALL_MS = 10_000;

/** What one consumer prints, as JSON, on its last line. */
interface ConsumerReport {
  received: number;
  lost: number;
  seconds: number;
  /** Events received within `seconds` (all of them, but for the warm-up burst of a drain run). */
  timed: number;
  /** Event numbers skipped (an event neither received nor counted lost would show here). */
  gaps: number;
  /** Event numbers that went back (duplicate or reordered). */
  disorder: number;
  /** Records shorter than a load_event. */
  bad: number;
  /** Number of the last event received (received - 1 when none went missing), -1 if none. */
  last_seq: number;
}

// ---------------------------------------------------------------------------------------------
// kupod's consumer (child process)

async function kupodConsumer(
  pid: number,
  calls: number,
  batch: number,
  ring: number,
  /** Drain mode: this many bursts, each read once complete; the first is not timed. */
  bursts: number,
): Promise<number> {
  const drain = bursts > 0;
  const perBurst = calls * batch;
  let target = perBurst;
  let received = 0;
  let next = 0;
  let gaps = 0;
  let disorder = 0;
  let bad = 0;
  let lostSeen = 0;
  let end = 0;
  let last: LoadEvent | undefined;

  const onSample = (view: DataView, offset: number, length: number): void => {
    if (length < LOAD_EVENT_SIZE) {
      bad++;
      return;
    }
    const e = decodeLoadEvent(view, offset);
    const seq = Number(e.seq);
    if (seq !== next) {
      if (seq < next) disorder++;
      else gaps++;
    }
    next = seq + 1;
    last = e;
    if (++received + lostSeen >= target && end === 0) end = performance.now();
  };

  using obj = BpfObject.open(objectBytes("loadgen"), OBJECT_NAME);
  obj.setRodata(RODATA, { target_tgid: pid, batch });
  obj.setMaxEntries("events", ring);
  obj.load();
  using _link = obj.program(PROGRAM).attach();
  const reader = new RingBuffer(obj.map("events"), onSample, obj.map("events_lost"));
  let failure: unknown;
  let reading: Promise<void> | undefined;
  let start = 0;
  let seconds = 0;
  let timed = 0;
  let code = 0;

  /** Reads (drain) or polls the loss counter (run) until all of `target` is accounted for. */
  const settle = async (everyMs: number) => {
    let seen = -1;
    let progressAt = performance.now();
    for (;;) {
      if (drain) reader.drain();
      else await new Promise((resolve) => setTimeout(resolve, everyMs));
      if (failure) throw failure;
      lostSeen = Number(reader.lost());
      const now = performance.now();
      if (received + lostSeen >= target) {
        // The last event was read before this loss count: its time was not taken.
        if (end === 0) end = now;
        return;
      }
      if (received + lostSeen !== seen) {
        seen = received + lostSeen;
        progressAt = now;
      } else if (now - progressAt > STALL_MS) {
        console.error(`kupod consumer: stalled at ${seen} of ${target} events`);
        end = now;
        code = 3;
        return;
      }
    }
  };

  try {
    if (!drain) {
      reading = reader.run().catch((e) => {
        failure = e;
      });
      start = performance.now();
      Deno.kill(pid, "SIGUSR1");
      await settle(1);
      seconds = (end - start) / 1000;
      timed = received;
    } else {
      // Each burst is read once the producer has finished it (the ring is full); the first one
      // warms up (JIT, page faults on the ring), the others are timed.
      const stdin = new Lines(Deno.stdin.readable);
      for (let b = 0; b < bursts && code === 0; b++) {
        Deno.kill(pid, "SIGUSR1");
        if (await stdin.next() === undefined) {
          throw new Error("stdin closed before the burst's end");
        }
        target = (b + 1) * perBurst;
        lostSeen = Number(reader.lost());
        end = 0;
        const from = received;
        start = performance.now();
        await settle(0);
        if (b > 0) {
          seconds += (end - start) / 1000;
          timed += received - from;
        }
      }
    }
  } finally {
    await reader.stop();
    await reading;
  }
  if (failure) throw failure;
  const report: ConsumerReport = {
    received,
    lost: Number(reader.lost()),
    seconds,
    timed,
    gaps,
    disorder,
    bad,
    last_seq: last ? Number(last.seq) : -1,
  };
  console.log(JSON.stringify(report));
  return code;
}

// ---------------------------------------------------------------------------------------------
// Orchestration (parent process)

const BENCH_DIR = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const OUT = `${BENCH_DIR}/.output`;
const PRODUCER = `${OUT}/producer`;
const CONSUMER = `${OUT}/consumer`;
/** Bursts of a drain run: one to warm up, then timed ones. */
const DRAIN_BURSTS = 4;
/** Bytes one load_event takes in the ring: 8-byte header, rounded up to 8. */
const RECORD_BYTES = (LOAD_EVENT_SIZE + 8 + 7) & ~7;

/** Child processes alive, by pid, so that any exit path kills them. */
const children = new Map<number, Deno.ChildProcess>();

function spawn(cmd: string[], stdin: "null" | "piped" = "null"): Deno.ChildProcess {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.set(child.pid, child);
  child.status.then(() => children.delete(child.pid));
  return child;
}

function kill(pid: number): void {
  if (!children.has(pid)) return;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch {
    // exited meanwhile
  }
}

function killAll(): void {
  for (const pid of children.keys()) kill(pid);
}

async function compile(): Promise<void> {
  await Deno.mkdir(OUT, { recursive: true });
  const cc = Deno.env.get("CC") ?? "gcc";
  const flags = ["-O2", "-Wall", "-Wextra"];
  const builds = [
    [cc, ...flags, "-o", PRODUCER, `${BENCH_DIR}/producer.c`],
    [cc, ...flags, `-I${BENCH_DIR}/../bpf`, "-o", CONSUMER, `${BENCH_DIR}/consumer.c`, "-lbpf"],
  ];
  for (const cmd of builds) {
    const out = await new Deno.Command(cmd[0], { args: cmd.slice(1) }).output();
    const err = new TextDecoder().decode(out.stderr).trim();
    if (!out.success) throw new Error(`${cmd.join(" ")} failed:\n${err}`);
    if (err) console.error(err);
  }
}

/** Lines of a stream (a child's stdout, or stdin). */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  async next(): Promise<string | undefined> {
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        return line;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        const rest = this.#buffer;
        this.#buffer = "";
        return rest || undefined;
      }
      this.#buffer += value;
    }
  }
}

function timeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms);
    }),
  ]);
}

interface Scenario {
  name: "stress" | "drain" | "paced";
  calls: number;
  batch: number;
  ring: number;
  /** getppid() calls per second; 0 = back to back. */
  rate: number;
}

type Consumer = "C" | "kupod";

interface Run {
  scenario: Scenario["name"];
  round: number;
  consumer: Consumer;
  report: ConsumerReport;
  total: number;
  /** report.timed / report.seconds */
  eventsPerSecond: number;
  /** The rate the producer offered: events of a burst / the time it took for its calls. */
  offered: number;
}

/**
 * One run: a producer process waiting for its release, the consumer (a child process) that
 * loads the object for the producer's pid, releases it and reads, then the checks.
 */
async function runOnce(
  consumer: Consumer,
  s: Scenario,
  round: number,
  pin: boolean,
): Promise<Run> {
  const drain = s.name === "drain";
  const bursts = drain ? DRAIN_BURSTS : 1;
  const total = s.calls * s.batch * bursts;
  // Pinned: the producer on CPU 0, the consumer (all its threads) on CPU 1.
  const on = (cpu: number, cmd: string[]) => pin ? ["taskset", "-c", String(cpu), ...cmd] : cmd;
  const producer = spawn(on(0, [PRODUCER, String(s.calls), String(s.rate), String(bursts)]));
  const producerErr = new Response(producer.stderr).text();
  let child: Deno.ChildProcess | undefined;
  try {
    const lines = new Lines(producer.stdout);
    const ready = await timeout(lines.next(), 10_000, "producer start");
    const m = ready?.match(/^ready (\d+)$/);
    if (!m) throw new Error(`producer: unexpected output ${JSON.stringify(ready)}`);
    const pid = Number(m[1]);
    const args = [String(pid), String(s.calls), String(s.batch), String(s.ring)];
    if (drain) args.push(String(bursts));
    const cmd = consumer === "C"
      ? [CONSUMER, objectUrl("loadgen").pathname, ...args]
      : [Deno.execPath(), "run", "--allow-all", import.meta.filename!, "--kupod-consumer", ...args];
    child = spawn(on(1, cmd), drain ? "piped" : "null");
    // The producer prints a line per finished burst: a drain consumer reads once told so.
    const producerDone = (async () => {
      const stdin = drain ? child.stdin.getWriter() : undefined;
      let seconds = 0;
      for (let line = await lines.next(); line !== undefined; line = await lines.next()) {
        const done = line.match(/^done \d+ (\d+)$/);
        if (!done) continue;
        seconds = Number(done[1]) / 1e9;
        await stdin?.write(new TextEncoder().encode("go\n")).catch(() => {});
      }
      await stdin?.close().catch(() => {});
      return seconds;
    })();
    const [out, err, status] = await timeout(
      Promise.all([
        new Response(child.stdout).text(),
        new Response(child.stderr).text(),
        child.status,
      ]),
      RUN_TIMEOUT_MS,
      `${consumer} consumer`,
    );
    const last = out.trim().split("\n").pop() ?? "";
    if (!status.success || !last.startsWith("{")) {
      throw new Error(
        `${consumer} consumer exited with ${status.code}:\n${err.trim()}\n${out.trim()}`,
      );
    }
    const report = JSON.parse(last) as ConsumerReport;
    // Every event is accounted for, so the producer has made all its calls and exits.
    const [pstatus, producerSeconds] = await timeout(
      Promise.all([producer.status, producerDone]),
      10_000,
      "producer exit",
    );
    if (!pstatus.success || !producerSeconds) {
      throw new Error(`producer exited with ${pstatus.code}: ${await producerErr}`);
    }
    return {
      scenario: s.name,
      round,
      consumer,
      report,
      total,
      eventsPerSecond: report.timed / report.seconds,
      offered: (s.calls * s.batch) / producerSeconds,
    };
  } finally {
    if (child) kill(child.pid);
    kill(producer.pid);
    await producer.status;
    await child?.status;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const fmtRate = (n: number) => `${(n / 1e6).toFixed(2)}M`;

function problems(r: Run): string[] {
  const out: string[] = [];
  const uncounted = r.total - r.report.received - r.report.lost;
  if (uncounted) out.push(`uncounted ${uncounted}`);
  if (r.report.gaps) out.push(`gaps ${r.report.gaps}`);
  if (r.report.disorder) out.push(`disorder ${r.report.disorder}`);
  if (r.report.bad) out.push(`bad ${r.report.bad}`);
  if (r.report.last_seq !== r.report.received - 1) out.push(`last seq ${r.report.last_seq}`);
  if (r.scenario === "paced" && r.report.lost) out.push("lost at the paced rate");
  return out;
}

function printRun(r: Run): void {
  const p = problems(r);
  console.log(
    [
      r.scenario.padEnd(8),
      String(r.round).padStart(5),
      r.consumer.padEnd(6),
      String(r.report.received).padStart(10),
      String(r.report.lost).padStart(9),
      String(r.report.timed).padStart(9),
      r.report.seconds.toFixed(4).padStart(8),
      fmtRate(r.eventsPerSecond).padStart(9),
      fmtRate(r.offered).padStart(9),
      p.length ? `FAIL: ${p.join(", ")}` : "ok",
    ].join("  "),
  );
}

const DEFAULTS = {
  rounds: 5,
  calls: 20_000,
  batch: 256,
  ring: 4 << 20,
  "drain-ring": 16 << 20,
  "paced-rate": 1_000_000,
  "paced-seconds": 1,
  /** 1: producer on CPU 0, consumer on CPU 1 (taskset); 0: wherever the scheduler puts them. */
  pin: 1,
};
type Options = typeof DEFAULTS;

/** A bad command line: printed without a stack, exit 2. */
class UsageError extends Error {}

function parseOptions(args: string[]): Options {
  const opts: Options = { ...DEFAULTS };
  const usage = Object.keys(DEFAULTS).map((k) => `--${k} N`).join(" ");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const m = arg.match(/^--([a-z-]+)(?:=(.*))?$/);
    const name = m?.[1] as keyof Options | undefined;
    const value = m?.[2] ?? args[++i];
    if (!name || !(name in opts) || value === undefined || !/^\d+$/.test(value)) {
      throw new UsageError(`bad option ${JSON.stringify(arg)}: use ${usage}`);
    }
    opts[name] = Number(value);
  }
  if (opts.batch < 1 || opts.batch > 1024) throw new UsageError("--batch must be 1..1024");
  for (const ring of [opts.ring, opts["drain-ring"]]) {
    if (ring & (ring - 1) || ring < 4096) {
      throw new UsageError("ring sizes must be powers of two >= 4096");
    }
  }
  if (opts.rounds < 1) throw new UsageError("--rounds must be >= 1");
  return opts;
}

/** Ids of the loaded programs named like the bench's. */
async function benchProgramIds(): Promise<number[]> {
  const out = await new Deno.Command("bpftool", { args: ["-j", "prog", "show"] }).output();
  if (!out.success) throw new Error("bpftool prog show failed");
  const progs = JSON.parse(new TextDecoder().decode(out.stdout)) as { id: number; name?: string }[];
  return progs.filter((p) => p.name === PROGRAM).map((p) => p.id);
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  preflight();
  objectBytes("loadgen"); // fails early, with a hint, when the object is not built
  await compile();
  const before = new Set(await benchProgramIds());

  const { batch } = opts;
  const pin = opts.pin !== 0 && navigator.hardwareConcurrency >= 2;
  const stress: Scenario = { name: "stress", calls: opts.calls, batch, ring: opts.ring, rate: 0 };
  // A burst fills the ring: as many events as it holds, and one batch more.
  const drain: Scenario = {
    name: "drain",
    calls: Math.floor(opts["drain-ring"] / RECORD_BYTES / batch) + 1,
    batch,
    ring: opts["drain-ring"],
    rate: 0,
  };
  const pacedRate = Math.max(1, Math.round(opts["paced-rate"] / batch));
  const paced: Scenario = {
    name: "paced",
    calls: Math.max(1, Math.round(pacedRate * opts["paced-seconds"])),
    batch,
    ring: opts.ring,
    rate: pacedRate,
  };

  console.log(
    `ringbuf bench: ${navigator.hardwareConcurrency} CPUs, kernel ${Deno.osRelease()}, ` +
      `batch ${batch} events per getppid(), ` +
      (pin ? "producer pinned to CPU 0, consumer to CPU 1\n" : "not pinned\n") +
      `stress: ${stress.calls * batch} events back to back, ring ${stress.ring} bytes; ` +
      `events/s from the producer's release to the last event read\n` +
      `drain: ${DRAIN_BURSTS} bursts of ${drain.calls * batch} events filling a ` +
      `${drain.ring}-byte ring, each read once written; events/s of reading all but the ` +
      `1st (reader capacity)\n` +
      `paced: ${paced.calls * batch} events at ${paced.rate * batch} events/s, ` +
      `ring ${paced.ring} bytes\n` +
      `${opts.rounds} rounds of stress and drain, C and kupod alternating; medians\n`,
  );
  console.log(
    "scenario  round  reader  received       lost      timed   seconds   events/s   offered  check",
  );
  const runs: Run[] = [];
  const interrupted = () => {
    killAll();
    Deno.exit(130);
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, interrupted);
  try {
    for (const s of [stress, drain]) {
      for (let round = 1; round <= opts.rounds; round++) {
        const order: Consumer[] = round % 2 ? ["C", "kupod"] : ["kupod", "C"];
        for (const c of order) {
          const r = await runOnce(c, s, round, pin);
          runs.push(r);
          printRun(r);
        }
      }
    }
    for (const c of ["C", "kupod"] as const) {
      const r = await runOnce(c, paced, 1, pin);
      runs.push(r);
      printRun(r);
    }
  } finally {
    killAll();
    for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.removeSignalListener(sig, interrupted);
  }

  const leftover = (await benchProgramIds()).filter((id) => !before.has(id));
  const of = (scenario: Scenario["name"], c: Consumer) =>
    runs.filter((r) => r.scenario === scenario && r.consumer === c);
  const rate = (scenario: Scenario["name"], c: Consumer) =>
    median(of(scenario, c).map((r) => r.eventsPerSecond));
  const lost = (scenario: Scenario["name"], c: Consumer) =>
    of(scenario, c).reduce((n, r) => n + r.report.lost, 0);
  const uncounted = runs.reduce(
    (n, r) => n + Math.abs(r.total - r.report.received - r.report.lost),
    0,
  );
  const failed = runs.filter((r) => problems(r).length);
  const ratio = (scenario: Scenario["name"]) =>
    (rate(scenario, "kupod") / rate(scenario, "C")).toFixed(2);

  console.log(
    `\nstress medians: C ${fmtRate(rate("stress", "C"))} events/s, ` +
      `kupod ${fmtRate(rate("stress", "kupod"))} events/s` +
      `\ndrain medians (reader capacity): C ${fmtRate(rate("drain", "C"))} events/s, ` +
      `kupod ${fmtRate(rate("drain", "kupod"))} events/s, kupod/C = ${ratio("drain")}` +
      `\npaced at ${fmtRate(paced.rate * batch)} events/s: ` +
      `lost C=${lost("paced", "C")} kupod=${lost("paced", "kupod")}`,
  );
  if (rate("stress", "C") < rate("drain", "C") / 2) {
    console.log(
      "note: the C stress runs were not bound by the C reader (it reads far faster in the drain " +
        "runs) but by the producer, which C's wake-ups slow down (libbpf commits every record, so " +
        "a reader that keeps up is woken again and again); kupod's runs are bound by its reader. " +
        "The drain line compares the readers.",
    );
  }
  if (failed.length) console.log(`FAILED: ${failed.length} run(s), see the check column`);
  console.log(
    leftover.length
      ? `FAILED: ${PROGRAM} programs left loaded: ids ${leftover.join(", ")}`
      : `cleanup: children gone, no ${PROGRAM} program left loaded`,
  );
  console.log(
    `ringbuf: kupod/C events/s ratio = ${ratio("stress")} (target >= 0.80), ` +
      `lost kupod=${lost("stress", "kupod")} C=${lost("stress", "C")}, uncounted ${uncounted}`,
  );
  return failed.length || leftover.length ? 1 : 0;
}

if (import.meta.main) {
  let code: number;
  try {
    const [mode, ...rest] = Deno.args;
    if (mode === "--kupod-consumer") {
      const [pid, calls, batch, ring] = rest.slice(0, 4).map(Number);
      code = await kupodConsumer(pid, calls, batch, ring, Number(rest[4] ?? 0));
    } else {
      code = await main();
    }
  } catch (e) {
    killAll();
    if (e instanceof UsageError) {
      console.error(`ringbuf bench: ${e.message}`);
      code = 2;
    } else {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e);
      code = 1;
    }
  }
  Deno.exit(code);
}
