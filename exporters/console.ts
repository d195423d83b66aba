/**
 * Events on the terminal: one readable line each (text) or one JSON object
 * per line (json). Connects, accepts and retransmits are shown by default;
 * closes and per-request sidecar timings, which metrics and spans summarise,
 * only with --verbose. Output is buffered and written in batches: at most
 * `flushAfterMs` after the first line of a batch (a timer armed only while
 * lines wait, so an idle agent does not wake for it) and on flush(), which the
 * monitor calls before exit, so nothing is lost.
 */

import type { EventSink, KupodEvent, StackStatsEvent } from "../probes/events.ts";
import { summaryLines } from "./summary_text.ts";

/** One readable line per event, or one JSON object per line. */
export type OutputFormat = "text" | "json";
/** quiet: nothing but errors; normal: the default events; verbose: every event. */
export type Verbosity = "quiet" | "normal" | "verbose";

/** Event types printed only with --verbose. */
const VERBOSE_ONLY = new Set<KupodEvent["type"]>([
  "tcp_close",
  "sidecar_timing",
  "sidecar_stats",
  "tcp_stats",
  "stack_stats",
  "http_stats",
  "resources_stats",
  "sockops_stats",
  "grpc_stats",
]);

/** Event types not printed with --quiet: one per request, the metrics count them. */
const QUIET_HIDDEN = new Set<KupodEvent["type"]>(["http", "grpc"]);

const encoder = new TextEncoder();
const FLUSH_BYTES = 64 * 1024;

export class ConsoleSink implements EventSink {
  /**
   * Lines wait here already encoded, in one buffer reused for every write: a string kept until
   * the batch is written outlives the young generation and fills the old one, and a fresh byte
   * buffer per batch is memory the garbage collector frees only when it runs; at thousands of
   * lines a second either costs tens of MB.
   */
  #buffer = new Uint8Array(2 * FLUSH_BYTES);
  #used = 0;
  #broken = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #format: (e: KupodEvent) => string;

  readonly #verbose: boolean;
  readonly #quiet: boolean;

  constructor(
    format: OutputFormat,
    verbosity: Verbosity = "normal",
    readonly out: { writeSync(p: Uint8Array): number } = Deno.stdout,
    readonly flushAfterMs?: number,
  ) {
    this.#format = format === "json" ? (e) => JSON.stringify(e) : textLine;
    this.#verbose = verbosity === "verbose";
    this.#quiet = verbosity === "quiet";
  }

  event(e: KupodEvent): void {
    if (!this.#verbose && VERBOSE_ONLY.has(e.type)) return;
    if (this.#quiet && QUIET_HIDDEN.has(e.type)) return;
    const line = this.#format(e) + "\n";
    if (!this.#append(line)) {
      this.flush();
      if (!this.#append(line)) {
        // UTF-8 takes at most 3 bytes per UTF-16 unit
        this.#buffer = new Uint8Array(line.length * 3);
        this.#append(line);
      }
    }
    if (this.#used >= FLUSH_BYTES) this.flush();
    else if (this.flushAfterMs !== undefined && this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), this.flushAfterMs);
    }
  }

  /** Encodes `line` after the waiting ones; false (nothing added) when it does not fit. */
  #append(line: string): boolean {
    const { read, written } = encoder.encodeInto(line, this.#buffer.subarray(this.#used));
    if (read < line.length) return false;
    this.#used += written;
    return true;
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#used) return;
    const bytes = this.#buffer.subarray(0, this.#used);
    this.#used = 0;
    if (this.#broken) return;
    try {
      for (let off = 0; off < bytes.length;) off += this.out.writeSync(bytes.subarray(off));
    } catch (e) {
      // a closed pipe (kupod ... | head) ends console output, not the run
      if (e instanceof Deno.errors.BrokenPipe) this.#broken = true;
      else throw e;
    }
  }
}

function endpoint(addr: string, port: number): string {
  return addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;
}

function mib(bytes: number): string {
  return `${(bytes / (1 << 20)).toFixed(1)}MiB`;
}

/** Bytes per second, in the largest unit that keeps a number ≥ 1. */
function rate(bps: number): string {
  if (bps >= 1 << 20) return `${(bps / (1 << 20)).toFixed(1)}MiB/s`;
  if (bps >= 1 << 10) return `${(bps / (1 << 10)).toFixed(1)}KiB/s`;
  return `${bps.toFixed(0)}B/s`;
}

function ms(seconds: number): string {
  return `${(seconds * 1000).toFixed(3)}ms`;
}

/** What the event says beyond who and when. */
function detail(e: KupodEvent): string {
  switch (e.type) {
    case "tcp_accept":
      return `${endpoint(e.saddr, e.sport)} <- ${endpoint(e.daddr, e.dport)}`;
    case "tcp_connect":
      return `${endpoint(e.saddr, e.sport)} -> ${endpoint(e.daddr, e.dport)}`;
    case "tcp_close":
      return `${endpoint(e.saddr, e.sport)} ${e.direction === "inbound" ? "<-" : "->"} ${
        endpoint(e.daddr, e.dport)
      } lasted ${ms(e.duration_seconds)} sent ${e.bytes_sent}B received ${e.bytes_received}B rtt ${
        ms(e.rtt_seconds)
      } retransmits ${e.retransmits}`;
    case "tcp_retransmit":
      return `${endpoint(e.saddr, e.sport)} -> ${endpoint(e.daddr, e.dport)} in ${e.state}`;
    case "tcp_reset":
      return `${endpoint(e.saddr, e.sport)} -> ${
        endpoint(e.daddr, e.dport)
      } reset ${e.reset} in ${e.state}`;
    case "sidecar_timing":
      return `${e.sidecar_container} -> ${e.service_container}: in sidecar ${
        ms(e.process_seconds)
      }, to service ${ms(e.to_service_seconds)}`;
    case "packet":
      return `${e.packet_id} ${e.from ? `${e.from} -> ` : ""}${e.hook}${
        e.latency_seconds !== undefined ? ` +${ms(e.latency_seconds)}` : ""
      } ${e.len}B${e.ifindex ? ` if ${e.ifindex}` : ""}${
        e.drop_reason ? ` reason ${e.drop_reason}` : ""
      }`;
    case "stack_stats":
      return stackSummary(e);
    case "tcp_stats":
      return e.connections.map((c) =>
        `${c.container || "-"} ${c.direction}: ${c.opened} opened, ${c.closed} closed, ` +
        `sent ${c.bytes_sent}B received ${c.bytes_received}B, ${c.retransmits} retransmits`
      ).join("; ");
    case "http":
      return `${e.side === "server" ? "served" : "called"} ${e.method} ${e.route} ${
        e.status || "-"
      } ${ms(e.duration_seconds)} req ${e.request_bytes}B resp ${e.response_bytes}B ${
        e.side === "server"
          ? `${endpoint(e.saddr, e.sport)} <- ${endpoint(e.daddr, e.dport)}`
          : `${endpoint(e.saddr, e.sport)} -> ${endpoint(e.daddr, e.dport)}`
      }${e.outcome === "complete" ? "" : ` (${e.outcome})`}${
        e.response_preview !== undefined ? ` ${JSON.stringify(e.response_preview)}` : ""
      }`;
    case "resources":
      return `cpu ${e.cpu_cores.toFixed(3)} cores, mem ${mib(e.memory_working_set_bytes)}, net rx ${
        rate(e.net_rx_bytes_per_second)
      } tx ${rate(e.net_tx_bytes_per_second)}, io r ${rate(e.io_read_bytes_per_second)} w ${
        rate(e.io_write_bytes_per_second)
      }, runq p99 ${ms(e.runqueue_p99_seconds)}, ${e.threads} threads`;
    case "oom_kill":
      return `OOM killer chose ${e.victim_comm}[${e.victim_pid}]`;
    case "resources_stats":
      return e.containers.map((c) =>
        `${c.container}: cpu ${c.cpu_seconds.toFixed(2)}s mem ${mib(c.memory_working_set_bytes)}`
      ).join("; ");
    case "grpc":
      return `${e.side === "server" ? "served" : "called"} ${e.service}/${e.method} ${e.kind} ` +
        `status ${e.grpc_status < 0 ? "-" : e.grpc_status} ${ms(e.duration_seconds)} msgs ` +
        `${e.request_messages}/${e.response_messages} bytes ${e.request_bytes}/${e.response_bytes} ${
          e.side === "server"
            ? `${endpoint(e.saddr, e.sport)} <- ${endpoint(e.daddr, e.dport)}`
            : `${endpoint(e.saddr, e.sport)} -> ${endpoint(e.daddr, e.dport)}`
        }${e.outcome === "complete" ? "" : ` (${e.outcome})`}`;
    case "grpc_stats":
      return `${
        e.series.reduce((n, s) => n + s.duration.count, 0)
      } calls, ${e.unknown_method_calls} with unknown method`;
    case "sockops_stats":
      return `${e.sockets} sockets redirected now; ` +
        e.containers.map((c) =>
          `${
            c.container || "-"
          }: ${c.redirected_bytes}B in ${c.redirected_messages} sends, ${c.redirect_errors} missed`
        ).join("; ");
    case "http_stats":
      return e.series.map((s) =>
        `${s.container || "-"} ${s.side} ${s.method} ${s.route} ${s.status}: ${s.duration.count}`
      ).join("; ");
    case "summary":
      return summaryLines(e).join("\n");
    case "sidecar_stats":
      return e.sidecars.map((s) =>
        `${s.container}: ${s.process.count} requests, mean in sidecar ${
          ms(s.process.count ? s.process.sum_seconds / s.process.count : 0)
        }, to service ${ms(s.to_service.count ? s.to_service.sum_seconds / s.to_service.count : 0)}`
      ).join("; ");
  }
}

/** One line per interval: the NIC, the busiest hops and the drops, cumulative. */
function stackSummary(e: StackStatsEvent): string {
  const nic = `${
    e.interface || "-"
  } rx ${e.nic.rx.packets}p/${e.nic.rx.bytes}B tx ${e.nic.tx.packets}p/${e.nic.tx.bytes}B`;
  const hops = [...e.hops].sort((a, b) => b.count - a.count).slice(0, 3)
    .map((h) =>
      `${h.from}->${h.to} ${h.count}x avg ${(h.sum_seconds / h.count * 1e6).toFixed(1)}µs`
    ).join(", ");
  const drops = Object.entries(e.drops).map(([r, n]) => `${r}=${n}`).join(" ") || "none";
  return `${nic}; ${Object.keys(e.hooks).length} hooks; hops ${hops || "none"}; drops ${drops}; ` +
    `followed ${e.tracked} vanished ${e.vanished}`;
}

/** The readable form: time, type, process, what happened, and where it belongs. */
export function textLine(e: KupodEvent): string {
  if (e.type === "summary") return detail(e); // a block of its own, not a line
  const time = e.ts.slice(11, 26);
  const proc = e.pid !== undefined ? `${e.comm}[${e.pid}]` : "-";
  const where = [e.namespace && e.pod ? `${e.namespace}/${e.pod}` : e.pod, e.container, e.role]
    .filter(Boolean).join(" ");
  return `${time} ${e.type.padEnd(14)} ${proc.padEnd(22)} ${detail(e)}${
    where ? `  (${where})` : ""
  }`;
}
