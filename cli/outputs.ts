/**
 * Where a monitor run's events go, and the owner of each destination: the
 * console, the Prometheus registry behind /metrics, the Pushgateway pusher
 * and the OTLP span sender. Heavy exporters are loaded only when used.
 */

import { ConsoleSink } from "../exporters/console.ts";
import type { KupodMetrics } from "../exporters/metrics.ts";
import type { OtlpSpans } from "../exporters/otlp.ts";
import type { Exporter } from "../exporters/prometheus.ts";
import type { Pushgateway } from "../exporters/pushgateway.ts";
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

  private constructor(opts: MonitorOptions) {
    this.console = new ConsoleSink(opts.output, opts.verbosity, Deno.stdout, CONSOLE_FLUSH_MS);
    this.#sinks = [this.console];
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
      const metrics = out.#metrics = new KupodMetrics();
      out.#sinks.push(metrics);
      out.#exporter = await startExporter({
        address: opts.exporterAddress,
        port: opts.exporterPort,
        metrics,
        onScrape: () => out.#refreshStats(),
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
    if (this.#exporter) lines.push(`Exporter at: ${this.#exporter.url}`);
    if (this.#push) lines.push(`Pushing to: ${this.#push.url}`);
    if (this.#spans) lines.push(`Spans to: ${this.#spans.url}`);
    return lines;
  }

  /** Probes whose counts (events, lost) become kupod's own metrics. */
  watch(probes: Probe[]): void {
    this.#probes = probes;
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
    this.#refreshStats();
    this.console.flush();
    await this.#push?.stop();
    await this.#spans?.close();
    await this.#exporter?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
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
