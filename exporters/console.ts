/**
 * Events on the terminal: one readable line each (text) or one JSON object
 * per line (json). Output is buffered and written in batches; flush() is
 * called by the monitor on a short timer and before exit, so nothing is lost.
 */

import type { EventSink, KupodEvent } from "../probes/events.ts";
import type { OutputFormat } from "../cli/options.ts";

const encoder = new TextEncoder();
const FLUSH_BYTES = 64 * 1024;

export class ConsoleSink implements EventSink {
  #pending: string[] = [];
  #pendingBytes = 0;
  #broken = false;
  readonly #format: (e: KupodEvent) => string;

  constructor(
    format: OutputFormat,
    readonly out: { writeSync(p: Uint8Array): number } = Deno.stdout,
  ) {
    this.#format = format === "json" ? (e) => JSON.stringify(e) : textLine;
  }

  event(e: KupodEvent): void {
    const line = this.#format(e) + "\n";
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    if (this.#pendingBytes >= FLUSH_BYTES) this.flush();
  }

  flush(): void {
    if (!this.#pending.length) return;
    const bytes = encoder.encode(this.#pending.join(""));
    this.#pending = [];
    this.#pendingBytes = 0;
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

/** The readable form: time, type, process, the connection, and where it belongs. */
export function textLine(e: KupodEvent): string {
  const time = e.ts.slice(11, 26);
  const proc = `${e.comm}[${e.pid}]`;
  const arrow = e.type === "tcp_accept" ? "<-" : "->";
  const where = [e.namespace && e.pod ? `${e.namespace}/${e.pod}` : e.pod, e.container, e.role]
    .filter(Boolean).join(" ");
  return `${time} ${e.type.padEnd(12)} ${proc.padEnd(22)} ${endpoint(e.saddr, e.sport)} ${arrow} ${
    endpoint(e.daddr, e.dport)
  }${where ? `  (${where})` : ""}`;
}
