/**
 * Processes of the overhead benches: spawned, their output drained (only a bounded head and tail
 * kept), and always ended by pid; plus what /proc, bpftool and the kernel's BPF run-time
 * statistics say about them.
 */

const decoder = new TextDecoder();
const KEEP = 16 * 1024;

/** One output stream: a bounded head and tail of its text, the rest is dropped. */
class StreamTap {
  head = "";
  tail = "";
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.#pump(stream);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    try {
      for await (const chunk of stream) {
        if (this.head.length < KEEP) {
          this.head += decoder.decode(chunk.subarray(0, KEEP - this.head.length));
        }
        this.tail = (this.tail + decoder.decode(chunk.subarray(-KEEP))).slice(-KEEP);
      }
    } catch {
      // cancelled after exit
    }
  }

  /** Head and tail, without repeating what both hold. */
  text(): string {
    if (this.head.length < KEEP) return this.head;
    return `${this.head}\n[...]\n${this.tail}`;
  }
}

/** A child process whose stdout and stderr are tapped, not stored. */
export class Proc {
  readonly process: Deno.ChildProcess;
  readonly stdout: StreamTap;
  readonly stderr: StreamTap;
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;

  constructor(readonly name: string, cmd: string, args: string[], env?: Record<string, string>) {
    this.process = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      env,
    }).spawn();
    this.stdout = new StreamTap(this.process.stdout);
    this.stderr = new StreamTap(this.process.stderr);
    this.status = this.process.status.then((s) => {
      this.exited = true;
      return s;
    });
  }

  get pid(): number {
    return this.process.pid;
  }

  output(): string {
    return `stdout: ${this.stdout.text().trim() || "-"} | stderr: ${
      this.stderr.text().trim() || "-"
    }`.slice(-4000);
  }

  kill(signal: Deno.Signal): void {
    if (this.exited) return;
    try {
      Deno.kill(this.pid, signal);
    } catch {
      // exited meanwhile
    }
  }

  /** Exit status and the end of its output; SIGKILL after `ms`, then an error. */
  async wait(ms: number): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
    const first = await Promise.race([this.status, late]);
    clearTimeout(timer);
    if (first === "late") {
      this.kill("SIGKILL");
      await this.status;
      throw new Error(`${this.name} (pid ${this.pid}) still running after ${ms} ms: killed`);
    }
    // A grandchild holding the pipes cannot keep us here.
    await Promise.race([
      Promise.all([this.stdout.done, this.stderr.done]),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    return first;
  }
}

const CLK_TCK = 100; // USER_HZ: what /proc/<pid>/stat counts in on Linux

/**
 * CPU time the host spent busy (all but idle and iowait) and the time its hypervisor gave its
 * CPUs to others (steal), in seconds summed over CPUs.
 */
export function hostCpuSeconds(): { busy: number; steal: number } {
  const cpu = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
    .map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const [user, nice, system, , , irq, softirq, steal] = cpu;
  return { busy: (user + nice + system + irq + softirq) / CLK_TCK, steal: (steal ?? 0) / CLK_TCK };
}

/** CPU seconds of the process and of its waited-for children, 0 once it is gone. */
export function processTreeSeconds(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").slice(11, 15).map(Number);
    return (f[0] + f[1] + f[2] + f[3]) / CLK_TCK; // utime stime cutime cstime
  } catch {
    return 0;
  }
}

/** A "Vm...:" value of /proc/<pid>/status, in bytes. */
export function vmBytes(pid: number, key: "VmHWM" | "VmRSS"): number {
  const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(
    new RegExp(`^${key}:\\s+(\\d+) kB`, "m"),
  );
  if (!m) throw new Error(`no ${key} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

export interface BpfProg {
  id: number;
  name: string;
  /** With run-time statistics enabled only (0 otherwise). */
  runCnt: number;
  runTimeNs: number;
}

/** kupod's loaded programs (all are named kupod_*), as bpftool reads them. */
export async function kupodPrograms(): Promise<BpfProg[]> {
  const out = await new Deno.Command("bpftool", { args: ["-j", "prog", "show"] }).output();
  if (!out.success) throw new Error(`bpftool prog show: ${decoder.decode(out.stderr)}`);
  const progs = JSON.parse(decoder.decode(out.stdout).trim() || "[]") as {
    id: number;
    name?: string;
    run_cnt?: number;
    run_time_ns?: number;
  }[];
  return progs.filter((p) => p.name?.startsWith("kupod_")).map((p) => ({
    id: p.id,
    name: p.name!,
    runCnt: p.run_cnt ?? 0,
    runTimeNs: p.run_time_ns ?? 0,
  }));
}

/**
 * The kernel's BPF run-time statistics (run_cnt, run_time_ns per program), on while the
 * returned handle is open: BPF_ENABLE_STATS hands out a file descriptor, so they go off again
 * when it is closed, also if this process dies.
 */
export function enableBpfStats(): Disposable {
  const libbpf = Deno.dlopen("libbpf.so.1", {
    // int bpf_enable_stats(enum bpf_stats_type type)
    bpf_enable_stats: { parameters: ["i32"], result: "i32" },
  });
  const libc = Deno.dlopen("libc.so.6", { close: { parameters: ["i32"], result: "i32" } });
  const BPF_STATS_RUN_TIME = 0;
  const fd = libbpf.symbols.bpf_enable_stats(BPF_STATS_RUN_TIME);
  libbpf.close();
  if (fd < 0) {
    libc.close();
    throw new Error(`bpf_enable_stats: error ${-fd}`);
  }
  return {
    [Symbol.dispose]() {
      libc.symbols.close(fd);
      libc.close();
    },
  };
}
