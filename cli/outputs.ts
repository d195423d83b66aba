/**
 * Where a monitor run's events go, and the owner of each destination: the
 * console (with a summary every --interval seconds and one at exit), the
 * Prometheus registry behind /metrics and the live view beside it, the
 * Pushgateway pusher and the OTLP span sender. Heavy exporters are loaded only
 * when used.
 */

import { ConsoleSink } from "../exporters/console.ts";
import type { KupodMetrics } from "../exporters/metrics.ts";
import type { OtlpSpans } from "../exporters/otlp.ts";
import type { Exporter } from "../exporters/prometheus.ts";
import type { Pushgateway } from "../exporters/pushgateway.ts";
import { type Reading, summarize, SummarySource } from "../exporters/summary.ts";
import type { Target } from "../k8s/target.ts";
import type { EventSink, KupodEvent } from "../probes/events.ts";
import type { Probe } from "../probes/probe.ts";
import type { Logger } from "./log.ts";
import type { MonitorOptions } from "./options.ts";

const CONSOLE_FLUSH_MS = 100;

/** Whether the run sends spans (--otlp-endpoint or --jaeger-agent): probes then emit closes. */
export function spansWanted(opts: Pick<MonitorOptions, "otlpEndpoint" | "jaegerAgent">): boolean {
  return opts.otlpEndpoint !== "" || opts.jaegerAgent.trim() !== "";
}

export class Outputs implements EventSink, AsyncDisposable {
  readonly console: ConsoleSink;
  #sinks: EventSink[];
  #metrics: KupodMetrics | undefined;
  #exporter: Exporter | undefined;
  #push: Pushgateway | undefined;
  #spans: OtlpSpans | undefined;
  #probes: Probe[] = [];
  #closed = false;
  readonly #summaries = new SummarySource();
  /** Seconds between printed summaries; 0 when none are printed. */
  readonly #interval: number;
  #summaryTimer: ReturnType<typeof setInterval> | undefined;
  #lastSummary: Reading;

  private constructor(opts: MonitorOptions) {
    this.console = new ConsoleSink(opts.output, opts.verbosity, Deno.stdout, CONSOLE_FLUSH_MS);
    this.#sinks = [this.console, this.#summaries];
    this.#interval = opts.verbosity === "quiet" ? 0 : opts.interval;
    this.#lastSummary = this.#summaries.started;
  }

  /**
   * Opens every destination the flags ask for. The metrics endpoint is bound here, before any
   * probe loads, so a port in use is refused with nothing attached.
   */
  static async open(opts: MonitorOptions, target: Target, log: Logger): Promise<Outputs> {
    const out = new Outputs(opts);
    try {
      const { KupodMetrics } = await import("../exporters/metrics.ts");
      const { startExporter } = await import("../exporters/prometheus.ts");
      const { LiveView } = await import("../exporters/live.ts");
      const metrics = out.#metrics = new KupodMetrics();
      out.#sinks.push(metrics);
      out.#exporter = await startExporter({
        address: opts.exporterAddress,
        port: opts.exporterPort,
        metrics,
        onScrape: () => out.#refreshStats(),
        pages: new LiveView(out.#summaries, () => out.#refreshStats()),
      });
      if (opts.prometheus) {
        const { startPushgateway } = await import("../exporters/pushgateway.ts");
        out.#push = startPushgateway({
          target: opts.prometheus,
          grouping: { node: target.node, namespace: target.namespace, pod: target.pod },
          metrics,
          onPush: () => out.#refreshStats(),
          onError: (m) => log.warn(m),
        });
      }
      const { otlpEndpointFor } = await import("../exporters/otlp.ts");
      const endpoint = otlpEndpointFor(opts);
      if (endpoint) {
        const { OtlpSpans } = await import("../exporters/otlp.ts");
        const spans = out.#spans = new OtlpSpans({
          endpoint,
          onError: rateLimited((m) => log.warn(m), 10_000),
        });
        out.#sinks.push(spans);
      }
      return out;
    } catch (e) {
      await out.close();
      throw e;
    }
  }

  /** The OTLP span sender, when the run sends spans. */
  get spans(): EventSink | undefined {
    return this.#spans;
  }

  /** The lines printed once everything is attached. */
  readyLines(): string[] {
    const lines: string[] = [];
    if (this.#exporter) {
      lines.push(`Exporter at: ${this.#exporter.url}`);
      lines.push(`Live view at: ${liveUrl(this.#exporter.address, this.#exporter.port)}`);
    }
    if (this.#push) lines.push(`Pushing to: ${this.#push.url}`);
    if (this.#spans) lines.push(`Spans to: ${this.#spans.url}`);
    return lines;
  }

  /**
   * Probes whose counts (events, lost) become kupod's own metrics and whose counters are
   * summarised; the periodic summaries start here, once everything is attached.
   */
  watch(probes: Probe[]): void {
    this.#probes = probes;
    if (this.#interval > 0 && this.#summaryTimer === undefined) {
      this.#summaryTimer = setInterval(() => this.#printSummary(), this.#interval * 1000);
    }
  }

  /** The summary of the last interval on the console. */
  #printSummary(): void {
    this.#refreshStats();
    const now = this.#summaries.reading();
    this.console.event(summarize(this.#lastSummary, now, "interval"));
    this.#lastSummary = now;
    this.console.flush();
  }

  /** Before a scrape or a push: the probes' counts and a fresh copy of their kernel counters. */
  #refreshStats(): void {
    for (const p of this.#probes) {
      this.#metrics?.setProbeStats(p.name, p.stats());
      p.reportCounters?.();
    }
  }

  event(e: KupodEvent): void {
    for (const s of this.#sinks) s.event(e);
  }

  flush(): void {
    this.console.flush();
  }

  /** After the probes stopped: final stats, last push, pending spans, then the endpoint. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#summaryTimer);
    this.#refreshStats();
    if (this.#summaryTimer !== undefined) {
      // the probes stopped and reported their last counts: the whole run in one block
      this.console.event(summarize(this.#summaries.started, this.#summaries.reading(), "run"));
    }
    this.console.flush();
    await this.#push?.stop();
    await this.#spans?.close();
    await this.#exporter?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Where a browser on this host reaches the exporter: a wildcard address is served on loopback too. */
function liveUrl(address: string, port: number): string {
  if (address === "0.0.0.0") return `http://127.0.0.1:${port}/`;
  if (address === "::") return `http://[::1]:${port}/`;
  return `http://${address.includes(":") ? `[${address}]` : address}:${port}/`;
}

/** At most one report per `ms`, with a count of what was held back. */
function rateLimited(report: (m: string) => void, ms: number): (e: Error) => void {
  let last = 0;
  let held = 0;
  return (e) => {
    const now = Date.now();
    if (now - last < ms) {
      held++;
      return;
    }
    report(held ? `${e.message} (and ${held} more)` : e.message);
    last = now;
    held = 0;
  };
}
