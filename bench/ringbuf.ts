/**
 * Ring buffer bench: kupod's mmapped reader (bpf/ringbuf.ts + the generated
 * decoder) against a plain libbpf consumer in C, on the same BPF object
 * (bpf/loadgen.bpf.c), ring size and load.
 *
 *   deno task bench [--rounds 3] [--calls 10000] [--batch 256] [--ring 4194304]
 *                   [--paced-rate 1000000] [--paced-seconds 1]
 *
 * Needs root, tracefs and bpf/.output/loadgen.bpf.o (deno task bpf), gcc and
 * libbpf-dev. One invocation:
 *   1. compiles bench/producer.c and bench/consumer.c (-O2) into bench/.output/;
 *   2. stress: `rounds` times, alternately (C first in odd rounds, kupod first
 *      in even ones), runs each consumer against a fresh producer process that
 *      calls getppid() `calls` times back to back, each call emitting `batch`
 *      events: total = calls x batch;
 *   3. paced: the same at `paced-rate` events/s, where neither reader should
 *      lose anything, once per consumer;
 *   4. prints a table of every run and the summary line (medians of the
 *      stress runs).
 * A run: the producer starts and waits for SIGUSR1; the consumer (a child
 * process: bench/.output/consumer, or this module with --kupod-consumer) loads
 * the object with target_tgid = the producer's pid, attaches, starts reading,
 * releases the producer and reads until received + lost == total, then prints
 * JSON. events/s = received / seconds, seconds from the release to the read of
 * the last event. Losses are allowed but must be counted (the object's
 * per-CPU events_lost): any run with received + lost != total, or with event
 * numbers out of sequence, makes the bench exit 1.
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
  /** Event numbers skipped (an event neither received nor counted lost would show here). */
  gaps: number;
  /** Event numbers that went back (duplicate or reordered). */
  disorder: number;
  /** Short records, or payload/timestamp not as the BPF program wrote them. */
  bad: number;
}

interface Scenario {
  name: string;
  calls: number;
  batch: number;
  ring: number;
  /** getppid() calls per second; 0 = as fast as possible. */
  rate: number;
}

type Consumer = "C" | "kupod";

interface Run {
  scenario: string;
  round: number;
  consumer: Consumer;
  report: ConsumerReport;
  total: number;
  eventsPerSecond: number;
  /** The producer's own time for its calls, and so the rate it offered. */
  producerSeconds: number;
}

// ---------------------------------------------------------------------------------------------
// kupod's consumer (child process)

async function kupodConsumer(pid: number, calls: number, batch: number, ring: number) {
  const total = calls * batch;
  let received = 0;
  let next = 0;
  let lastTs = 0n;
  let gaps = 0;
  let disorder = 0;
  let bad = 0;
  let sum = 0;
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
    if (e.ts_ns < lastTs || e.payload[0] !== (seq & 0xff) || e.payload[31] !== (seq & 0xff)) bad++;
    lastTs = e.ts_ns;
    sum += e.cpu + e.pid;
    last = e;
    if (++received + lostSeen >= total && end === 0) end = performance.now();
  };

  using obj = BpfObject.open(objectBytes("loadgen"), OBJECT_NAME);
  obj.setRodata(RODATA, { target_tgid: pid, batch });
  obj.setMaxEntries("events", ring);
  obj.load();
  using _link = obj.program(PROGRAM).attach();
  const reader = new RingBuffer(obj.map("events"), onSample, obj.map("events_lost"));
  let failure: unknown;
  const reading = reader.run().catch((e) => {
    failure = e;
  });

  const start = performance.now();
  let code = 0;
  try {
    Deno.kill(pid, "SIGUSR1");
    let seen = 0;
    let progressAt = start;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (failure) throw failure;
      lostSeen = Number(reader.lost());
      const now = performance.now();
      if (received + lostSeen >= total) {
        // The last event was received before this loss count was read: its time was not taken.
        if (end === 0) end = now;
        break;
      }
      if (received + lostSeen !== seen) {
        seen = received + lostSeen;
        progressAt = now;
      } else if (now - progressAt > STALL_MS) {
        console.error(`kupod consumer: stalled at ${seen} of ${total} events`);
        end = now;
        code = 3;
        break;
      }
    }
  } finally {
    await reader.stop();
    await reading;
  }
  if (failure) throw failure;
  const report: ConsumerReport & { sink: number } = {
    received,
    lost: Number(reader.lost()),
    seconds: (end - start) / 1000,
    gaps,
    disorder,
    bad,
    sink: (sum + (last ? last.cpu : 0)) % 1000,
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

/** Child processes alive, by pid, so that any exit path kills them. */
const children = new Map<number, Deno.ChildProcess>();

function spawn(cmd: string[]): Deno.ChildProcess {
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  children.set(child.pid, child);
  child.status.then(() => children.delete(child.pid));
  return child;
}

function killAll(): void {
  for (const pid of children.keys()) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

async function compile(): Promise<void> {
  await Deno.mkdir(OUT, { recursive: true });
  const cc = Deno.env.get("CC") ?? "gcc";
  const builds = [
    [cc, "-O2", "-Wall", "-Wextra", "-o", PRODUCER, `${BENCH_DIR}/producer.c`],
    [
      cc,
      "-O2",
      "-Wall",
      "-Wextra",
      `-I${BENCH_DIR}/../bpf`,
      "-o",
      CONSUMER,
      `${BENCH_DIR}/consumer.c`,
      "-lbpf",
    ],
  ];
  for (const cmd of builds) {
    const out = await new Deno.Command(cmd[0], { args: cmd.slice(1) }).output();
    const err = new TextDecoder().decode(out.stderr).trim();
    if (!out.success) throw new Error(`${cmd.join(" ")} failed:\n${err}`);
    if (err) console.error(err);
  }
}

/** Reads lines from a child's stdout. */
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
  async rest(): Promise<string> {
    let all = "";
    for (let line = await this.next(); line !== undefined; line = await this.next()) {
      all += line + "\n";
    }
    return all;
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

async function runOnce(consumer: Consumer, s: Scenario, round: number): Promise<Run> {
  const total = s.calls * s.batch;
  const producer = spawn([PRODUCER, String(s.calls), ...(s.rate ? [String(s.rate)] : [])]);
  const producerErr = new Response(producer.stderr).text();
  try {
    const lines = new Lines(producer.stdout);
    const ready = await timeout(lines.next(), 10_000, "producer start");
    const m = ready?.match(/^ready (\d+)$/);
    if (!m) throw new Error(`producer: unexpected output ${JSON.stringify(ready)}`);
    const pid = Number(m[1]);
    const args = [String(pid), String(s.calls), String(s.batch), String(s.ring)];
    const cmd = consumer === "C"
      ? [CONSUMER, objectUrl("loadgen").pathname, ...args]
      : [Deno.execPath(), "run", "--allow-all", import.meta.filename!, "--kupod-consumer", ...args];
    const child = spawn(cmd);
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
    // The consumer has accounted for every event, so the producer has made all its calls.
    const [pstatus, pout] = await timeout(
      Promise.all([producer.status, lines.rest()]),
      10_000,
      "producer exit",
    );
    const done = pout.match(/^done \d+ (\d+)$/m);
    if (!pstatus.success || !done) {
      throw new Error(`producer exited with ${pstatus.code}: ${await producerErr}${pout}`);
    }
    return {
      scenario: s.name,
      round,
      consumer,
      report,
      total,
      eventsPerSecond: report.received / report.seconds,
      producerSeconds: Number(done[1]) / 1e9,
    };
  } finally {
    if (children.has(producer.pid)) {
      try {
        Deno.kill(producer.pid, "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
    await producer.status;
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
      r.report.seconds.toFixed(3).padStart(8),
      fmtRate(r.eventsPerSecond).padStart(9),
      fmtRate(r.total / r.producerSeconds).padStart(10),
      p.length ? `FAIL: ${p.join(", ")}` : "ok",
    ].join("  "),
  );
}

function parseOptions(args: string[]): Record<string, number> {
  const opts: Record<string, number> = {
    rounds: 3,
    calls: 10_000,
    batch: 256,
    ring: 4 << 20,
    "paced-rate": 1_000_000,
    "paced-seconds": 1,
  };
  for (let i = 0; i < args.length; i++) {
    const m = args[i].match(/^--([a-z-]+)(?:=(.*))?$/);
    const value = m?.[2] ?? args[++i];
    if (!m || !(m[1] in opts) || value === undefined || !/^\d+$/.test(value)) {
      throw new Error(`bad option ${args[i - (m?.[2] === undefined ? 1 : 0)] ?? ""}: ` +
        `use ${Object.keys(opts).map((k) => `--${k} N`).join(" ")}`);
    }
    opts[m[1]] = Number(value);
  }
  if (opts.batch < 1 || opts.batch > 1024) throw new Error("--batch must be 1..1024");
  if (opts.ring & (opts.ring - 1) || opts.ring < 4096) {
    throw new Error("--ring must be a power of two >= 4096");
  }
  return opts;
}

/** Ids of loaded programs named like the bench's. */
async function benchProgramIds(): Promise<number[]> {
  const out = await new Deno.Command("bpftool", { args: ["-j", "prog", "show"] }).output();
  if (!out.success) return [];
  const progs = JSON.parse(new TextDecoder().decode(out.stdout)) as { id: number; name?: string }[];
  return progs.filter((p) => p.name === PROGRAM).map((p) => p.id);
}

async function main(): Promise<number> {
  const opts = parseOptions(Deno.args);
  preflight();
  objectBytes("loadgen"); // fails early, with a hint, when the object is not built
  await compile();
  const before = new Set(await benchProgramIds());

  const stress: Scenario = {
    name: "stress",
    calls: opts.calls,
    batch: opts.batch,
    ring: opts.ring,
    rate: 0,
  };
  const pacedCallsPerSecond = Math.max(1, Math.round(opts["paced-rate"] / opts.batch));
  const paced: Scenario = {
    name: "paced",
    calls: Math.max(1, Math.round(pacedCallsPerSecond * opts["paced-seconds"])),
    batch: opts.batch,
    ring: opts.ring,
    rate: pacedCallsPerSecond,
  };

  console.log(
    `ringbuf bench: ${navigator.hardwareConcurrency} CPUs, kernel ${Deno.osRelease()}, ` +
      `ring ${opts.ring} bytes, batch ${opts.batch}\n` +
      `stress: ${stress.calls} getppid() x ${stress.batch} = ${stress.calls * stress.batch} ` +
      `events back to back, ${opts.rounds} rounds per consumer, alternating\n` +
      `paced: ${paced.calls * paced.batch} events at ${paced.rate * paced.batch} events/s\n`,
  );
  console.log(
    "scenario  round  reader  received       lost   seconds  events/s  offered/s  check",
  );
  const runs: Run[] = [];
  const record = (r: Run) => {
    runs.push(r);
    printRun(r);
  };
  try {
    for (let round = 1; round <= opts.rounds; round++) {
      const order: Consumer[] = round % 2 ? ["C", "kupod"] : ["kupod", "C"];
      for (const c of order) record(await runOnce(c, stress, round));
    }
    for (const c of ["C", "kupod"] as const) record(await runOnce(c, paced, 1));
  } finally {
    killAll();
  }

  const after = (await benchProgramIds()).filter((id) => !before.has(id));
  const of = (scenario: string, c: Consumer) =>
    runs.filter((r) => r.scenario === scenario && r.consumer === c);
  const cRate = median(of("stress", "C").map((r) => r.eventsPerSecond));
  const kRate = median(of("stress", "kupod").map((r) => r.eventsPerSecond));
  const lostSum = (rs: Run[]) => rs.reduce((n, r) => n + r.report.lost, 0);
  const uncounted = runs.reduce((n, r) => n + Math.abs(r.total - r.report.received - r.report.lost), 0);
  const failed = runs.filter((r) => problems(r).length);
  const pacedLost = runs.filter((r) => r.scenario === "paced" && r.report.lost);

  console.log(
    `\nstress medians: C ${fmtRate(cRate)} events/s, kupod ${fmtRate(kRate)} events/s` +
      `\npaced: lost C=${lostSum(of("paced", "C"))} kupod=${lostSum(of("paced", "kupod"))}` +
      (pacedLost.length ? " (expected 0: lower --paced-rate)" : " (both 0)"),
  );
  if (after.length) console.log(`leftover bench programs after the runs: ids ${after.join(", ")}`);
  console.log(
    `ringbuf: kupod/C events/s ratio = ${(kRate / cRate).toFixed(2)} (target >= 0.80), ` +
      `lost kupod=${lostSum(of("stress", "kupod"))} C=${lostSum(of("stress", "C"))}, ` +
      `uncounted ${uncounted}`,
  );
  return failed.length || after.length ? 1 : 0;
}

if (import.meta.main) {
  let code: number;
  try {
    if (Deno.args[0] === "--kupod-consumer") {
      const [pid, calls, batch, ring] = Deno.args.slice(1).map(Number);
      code = await kupodConsumer(pid, calls, batch, ring);
    } else {
      code = await main();
    }
  } catch (e) {
    killAll();
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    code = 1;
  }
  Deno.exit(code);
}
