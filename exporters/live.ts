/**
 * The live view behind the exporter's port: GET / (the page, everything inline: it works offline),
 * GET /api/summary (the whole run so far, JSON) and GET /api/events (server-sent events: each
 * second a summary of the last WINDOW_MS, only while a page listens). A window longer than the
 * tick keeps rates steady and percentiles meaningful at a few requests a second.
 */

import type { SummaryEvent } from "../probes/events.ts";
import { LIVE_PAGE } from "./live_page.ts";
import { type Reading, summarize, type SummarySource } from "./summary.ts";

const TICK_MS = 1000;
const WINDOW_MS = 10_000;
const encoder = new TextEncoder();

export class LiveView {
  #listeners = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  /** Readings of the last WINDOW_MS, oldest first: the window starts at the first. */
  #readings: Reading[] = [];

  /**
   * `refresh` asks the probes for fresh counts (they arrive in `source` synchronously), for the
   * whole-run answers; the stream uses what the probes reported on their own.
   */
  constructor(readonly source: SummarySource, readonly refresh: () => void) {}

  /** The response for `path`, or undefined when the path is not the view's. */
  serve(path: string): Response | undefined {
    switch (path) {
      case "/":
        return new Response(LIVE_PAGE, {
          headers: {
            "content-type": "text/html; charset=utf-8",
            // the page loads nothing from anywhere: no CDN, no inline code from elsewhere
            "content-security-policy":
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
          },
        });
      case "/api/summary":
        return Response.json(this.#run());
      case "/api/events":
        return this.#stream();
    }
    return undefined;
  }

  /** Stops the ticks and ends every stream (the exporter is closing). */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const c of this.#listeners) {
      try {
        c.close();
      } catch { /* already cancelled by the browser */ }
    }
    this.#listeners.clear();
  }

  #run(): SummaryEvent {
    this.refresh();
    return summarize(this.source.started, this.source.reading(), "run");
  }

  #stream(): Response {
    let self: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        this.#listeners.add(controller);
        // the first message is the run so far, so a page has totals at once
        controller.enqueue(encoder.encode(`data: ${JSON.stringify(this.#run())}\n\n`));
        this.#timer ??= setInterval(() => this.#tick(), TICK_MS);
      },
      cancel: () => this.#forget(self),
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  #forget(c: ReadableStreamDefaultController<Uint8Array>): void {
    this.#listeners.delete(c);
    if (!this.#listeners.size) {
      clearInterval(this.#timer);
      this.#timer = undefined;
      this.#readings = [];
    }
  }

  #tick(): void {
    // the probes report their counts every second by themselves: a tick only reads them
    const now = this.source.reading();
    const readings = this.#readings;
    while (readings.length > 1 && now.at - readings[1].at >= WINDOW_MS) readings.shift();
    const from = readings.length && now.at - readings[0].at <= WINDOW_MS
      ? readings[0]
      : this.source.started;
    readings.push(now);
    const summary = summarize(from, now, "interval");
    const message = encoder.encode(`data: ${JSON.stringify(summary)}\n\n`);
    for (const c of this.#listeners) {
      try {
        c.enqueue(message);
      } catch {
        this.#forget(c);
      }
    }
  }
}
