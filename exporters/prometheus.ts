/**
 * The Prometheus scrape endpoint: GET /metrics (text exposition format), GET /healthz ("ok"),
 * the live view's paths when it is given (exporters/live.ts), 404 for anything else.
 *
 * @example
 * ```ts
 * import { KupodMetrics } from "./metrics.ts";
 * import { startExporter } from "./prometheus.ts";
 * await using exporter = await startExporter({
 *   address: "127.0.0.1",
 *   port: 0,
 *   metrics: new KupodMetrics(),
 * });
 * console.log(`Exporter at: ${exporter.url}`); // http://127.0.0.1:<port>
 * ```
 */

import { KupodError } from "../base/errors.ts";
import type { ExpositionSource } from "./metrics.ts";

/** What startExporter serves, and where. */
export interface ExporterOptions {
  /** Address to bind, e.g. "0.0.0.0" (all IPv4), "::" or "127.0.0.1". */
  address: string;
  /** Port to bind; 0 picks a free one (see `port` of the result). */
  port: number;
  /** The registry to serve (a KupodMetrics). */
  metrics: ExpositionSource;
  /** Called before each scrape is rendered, e.g. to refresh probe stats. */
  onScrape?: () => void;
  /** Other pages served beside /metrics (the live view): a response, or undefined for 404. */
  pages?: { serve(path: string): Response | undefined; close(): void };
}

/** A running scrape endpoint; `await using` or close() shuts it down. */
export interface Exporter extends AsyncDisposable {
  /** Where the endpoint is, as printed: "http://0.0.0.0:8765". */
  readonly url: string;
  /** The address bound, as given. */
  readonly address: string;
  /** The bound port (the chosen one when asked for 0). */
  readonly port: number;
  /** Stops accepting, lets scrapes in progress finish, and releases the port. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `metrics` on address:port. Rejects with a one-line {@link KupodError} when the port
 * cannot be bound ("cannot serve metrics on 0.0.0.0:8765: address already in use").
 */
export function startExporter(options: ExporterOptions): Promise<Exporter> {
  const { address, metrics, onScrape, pages } = options;
  const where = hostPort(address, options.port);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: address,
      port: options.port,
      onListen: () => {}, // the monitor prints the readiness line itself
      onError: (err) =>
        new Response(`scrape failed: ${oneLine(err)}\n`, {
          status: 500,
          headers: { "content-type": "text/plain; charset=utf-8" },
        }),
    }, async (req) => {
      const path = new URL(req.url).pathname;
      if (req.method !== "GET" && req.method !== "HEAD") {
        return text(405, "method not allowed\n", { allow: "GET, HEAD" });
      }
      if (path === "/healthz") return text(200, "ok\n");
      if (path !== "/metrics") {
        return pages?.serve(path) ?? text(404, "not found: try /metrics or /healthz\n");
      }
      onScrape?.();
      return text(200, await metrics.text(), { "content-type": metrics.contentType });
    });
  } catch (err) {
    return Promise.reject(
      new KupodError(`cannot serve metrics on ${where}: ${bindFailure(err)}`, { cause: err }),
    );
  }

  const port = server.addr.port;
  let closing: Promise<void> | undefined;
  // open event streams would hold the shutdown until the browser goes away
  const close = () => (closing ??= (pages?.close(), server.shutdown()));
  return Promise.resolve({
    url: `http://${hostPort(address, port)}`,
    address,
    port,
    close,
    [Symbol.asyncDispose]: close,
  });
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}

function hostPort(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Why binding failed, in the words of the OS error users know. */
function bindFailure(err: unknown): string {
  if (err instanceof Deno.errors.AddrInUse) return "address already in use";
  if (err instanceof Deno.errors.AddrNotAvailable) return "address not available on this host";
  if (err instanceof Deno.errors.PermissionDenied) return "permission denied";
  return oneLine(err);
}

function oneLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, " ").trim();
}
