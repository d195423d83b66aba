/**
 * Traces over OTLP/HTTP: each `tcp_close` event becomes one trace (see otlp_spans.ts), each
 * `http` event one span (otlp_http_spans.ts), each `grpc` event one span
 * (otlp_grpc_spans.ts); spans are batched (every second or 512 spans) and POSTed as protobuf
 * (`application/x-protobuf`) to `<endpoint>/v1/traces`. A failed send is retried once when
 * the receiver may recover (connection refused or reset, 429, 5xx); a batch that still fails
 * is reported through `onError` as a one-line KupodError and dropped. The sink never throws.
 *
 * @example
 * ```ts
 * import { OtlpSpans, otlpEndpointFor } from "./otlp.ts";
 * const endpoint = otlpEndpointFor({ otlpEndpoint: "", jaegerAgent: "jaeger:6831" });
 * if (endpoint) {
 *   await using spans = new OtlpSpans({ endpoint, onError: (e) => console.error(e.message) });
 *   // spans.event(e) for every event; close() (here: `await using`) sends the rest
 * }
 * ```
 */

import { KupodError, UsageError } from "../base/errors.ts";
import type { EventSink, KupodEvent } from "../probes/events.ts";
import { type TraceCodec, traceCodec } from "./otlp_proto.ts";
import { grpcSpan } from "./otlp_grpc_spans.ts";
import { httpSpan } from "./otlp_http_spans.ts";
import { connectionSpans, type IdSource, randomId, type SpanData } from "./otlp_spans.ts";

export { rfc3339ToUnixNanos, serviceName } from "./otlp_spans.ts";

/** Port of Jaeger's OTLP/HTTP receiver (jaeger-collector and all-in-one, Jaeger ≥ 1.35). */
export const JAEGER_OTLP_HTTP_PORT = 4318;

/**
 * The OTLP endpoint a run sends spans to, "" = off. `--otlp-endpoint` wins. `--jaeger-agent
 * host:port` (the old tool's flag) names Jaeger's classic agent, which takes Thrift over UDP
 * (6831/6832); kupod does not speak Thrift, so it sends OTLP/HTTP to Jaeger's OTLP receiver on
 * the same host instead: `http://host:4318/v1/traces` (the agent's port is not used).
 */
export function otlpEndpointFor(opts: { otlpEndpoint: string; jaegerAgent: string }): string {
  if (opts.otlpEndpoint) return opts.otlpEndpoint;
  const agent = opts.jaegerAgent.trim();
  if (!agent) return "";
  const host = jaegerHost(agent);
  if (!host) {
    throw new UsageError(`--jaeger-agent: expected host:port, got ${JSON.stringify(agent)}`);
  }
  return `http://${host}:${JAEGER_OTLP_HTTP_PORT}/v1/traces`;
}

/** The host of `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address, URL-ready. */
function jaegerHost(agent: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d*)?$/.exec(agent);
  if (bracketed) return `[${bracketed[1]}]`;
  const colons = agent.split(":").length - 1;
  if (colons > 1) return `[${agent}]`; // a bare IPv6 address
  const host = colons ? agent.slice(0, agent.indexOf(":")) : agent;
  return /^[A-Za-z0-9.-]+$/.test(host) ? host : "";
}

/**
 * The URL to POST traces to: the endpoint as given when it already ends with /v1/traces,
 * else `<endpoint>/v1/traces` (as the OTLP exporters' OTEL_EXPORTER_OTLP_ENDPOINT). An
 * endpoint without a scheme is taken as http://. Throws a UsageError for anything else.
 */
export function tracesUrl(endpoint: string): string {
  const raw = endpoint.trim();
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new UsageError(`not a valid OTLP endpoint: ${JSON.stringify(endpoint)}`);
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw new UsageError(
      `not a valid OTLP endpoint: ${JSON.stringify(endpoint)} (expected http(s)://host:port)`,
    );
  }
  if (url.pathname.replace(/\/+$/, "").endsWith("/v1/traces")) return url.href;
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/v1/traces`;
  return url.href;
}

export interface OtlpSpansOptions {
  /** Base endpoint (`http://collector:4318`) or the full traces URL. */
  endpoint: string;
  /** Told about every batch that could not be delivered; one-line messages. Default: stderr. */
  onError?: (error: KupodError) => void;
  /** Pending spans are sent this often (ms); default 1000. */
  flushIntervalMs?: number;
  /** ... and as soon as this many are pending; default 512. */
  maxBatchSpans?: number;
  /** Spans waiting behind a slow receiver beyond this are dropped (and reported); default 8192. */
  maxQueuedSpans?: number;
  /** Per request; default 10 000 ms. */
  timeoutMs?: number;
  /** Wait before the one retry; default 250 ms. */
  retryDelayMs?: number;
  /** Extra request headers (e.g. authorization for a hosted collector). */
  headers?: Record<string, string>;
  /** Trace and span id source; default crypto-random. */
  newId?: IdSource;
}

/** What happened to the spans so far (delivered = the receiver answered 2xx). */
export interface OtlpStats {
  delivered: number;
  dropped: number;
  requests: number;
}

/** An EventSink that turns `tcp_close` events into traces sent over OTLP/HTTP. */
export class OtlpSpans implements EventSink, AsyncDisposable {
  /** The URL spans are POSTed to. */
  readonly url: string;
  #pending: SpanData[] = [];
  #queued = 0;
  #tail: Promise<void> = Promise.resolve();
  readonly #timer: ReturnType<typeof setInterval>;
  #closed: Promise<void> | undefined;
  #client: Deno.HttpClient | undefined;
  #stats: OtlpStats = { delivered: 0, dropped: 0, requests: 0 };
  readonly #onError: (error: KupodError) => void;
  readonly #maxBatch: number;
  readonly #maxQueued: number;
  readonly #timeoutMs: number;
  readonly #retryDelayMs: number;
  readonly #headers: Record<string, string>;
  readonly #newId: IdSource;

  constructor(opts: OtlpSpansOptions) {
    this.url = tracesUrl(opts.endpoint);
    this.#onError = opts.onError ?? ((e) => console.error(`kupod: ${e.message}`));
    this.#maxBatch = Math.max(1, opts.maxBatchSpans ?? 512);
    this.#maxQueued = Math.max(this.#maxBatch, opts.maxQueuedSpans ?? 8192);
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#retryDelayMs = opts.retryDelayMs ?? 250;
    this.#headers = { ...opts.headers, "content-type": "application/x-protobuf" };
    this.#newId = opts.newId ?? randomId;
    this.#timer = setInterval(() => this.flush(), opts.flushIntervalMs ?? 1000);
    Deno.unrefTimer(this.#timer);
  }

  event(e: KupodEvent): void {
    if ((e.type !== "tcp_close" && e.type !== "http" && e.type !== "grpc") || this.#closed) return;
    let spans: SpanData[];
    try {
      spans = e.type === "http"
        ? [httpSpan(e, this.#newId)]
        : e.type === "grpc"
        ? [grpcSpan(e, this.#newId)]
        : connectionSpans(e, this.#newId);
    } catch (err) {
      this.#report(`OTLP: connection ${e.conn_id} skipped: ${message(err)}`, err);
      return;
    }
    for (const span of spans) this.#pending.push(span);
    if (this.#pending.length >= this.#maxBatch) this.flush();
  }

  /** Starts sending every pending span (in batches of at most maxBatchSpans); returns at once. */
  flush(): void {
    while (this.#pending.length) {
      const batch = this.#pending.splice(0, this.#maxBatch);
      if (this.#queued + batch.length > this.#maxQueued) {
        this.#stats.dropped += batch.length;
        this.#report(`OTLP receiver ${this.url} too slow: ${batch.length} spans dropped`);
        continue;
      }
      this.#queued += batch.length;
      this.#tail = this.#tail
        .then(() => this.#send(batch))
        .catch((e) => this.#report(`OTLP: ${batch.length} spans lost: ${message(e)}`, e))
        .finally(() => {
          this.#queued -= batch.length;
        });
    }
  }

  /** Sends what is pending and resolves once every send has ended; later events are ignored. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      clearInterval(this.#timer);
      this.flush();
      await this.#tail;
      this.#client?.close();
      this.#client = undefined;
    })();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  stats(): OtlpStats {
    return { ...this.#stats };
  }

  async #send(batch: SpanData[]): Promise<void> {
    let codec: TraceCodec;
    let body: Uint8Array;
    try {
      codec = await traceCodec();
      body = codec.encodeRequest(batch);
    } catch (e) {
      this.#stats.dropped += batch.length;
      this.#report(`OTLP: ${batch.length} spans dropped: ${message(e)}`, e);
      return;
    }
    let failure = await this.#post(body, codec, batch.length);
    if (failure?.retry) {
      await new Promise((r) => setTimeout(r, this.#retryDelayMs));
      failure = await this.#post(body, codec, batch.length);
    }
    if (failure) {
      this.#stats.dropped += batch.length;
      this.#report(
        `OTLP export to ${this.url} failed: ${failure.why}; ${batch.length} spans dropped`,
      );
    }
  }

  /** One POST; undefined when the receiver took the batch. */
  async #post(
    body: Uint8Array,
    codec: TraceCodec,
    spans: number,
  ): Promise<{ why: string; retry: boolean } | undefined> {
    this.#stats.requests++;
    this.#client ??= Deno.createHttpClient({});
    let res: Response;
    try {
      res = await fetch(this.url, {
        method: "POST",
        headers: this.#headers,
        body: body as Uint8Array<ArrayBuffer>,
        client: this.#client,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      const timedOut = e instanceof DOMException && e.name === "TimeoutError";
      return {
        why: timedOut ? `no answer in ${this.#timeoutMs} ms` : networkReason(e),
        retry: !timedOut,
      };
    }
    let answer: Uint8Array;
    try {
      answer = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      return { why: `reading the answer: ${networkReason(e)}`, retry: false };
    }
    if (!res.ok) {
      const status = `HTTP ${res.status}${res.statusText ? " " + res.statusText : ""}`;
      return { why: status, retry: res.status === 429 || res.status >= 500 };
    }
    let partial;
    try {
      partial = codec.decodeResponse(answer);
    } catch {
      partial = undefined; // a 2xx with a body that is not an ExportTraceServiceResponse: taken
    }
    const rejected = Math.min(partial?.rejectedSpans ?? 0, spans);
    this.#stats.delivered += spans - rejected;
    this.#stats.dropped += rejected;
    if (partial) {
      const why = partial.errorMessage ? `: ${oneLine(partial.errorMessage)}` : "";
      this.#report(`OTLP receiver ${this.url} rejected ${rejected} of ${spans} spans${why}`);
    }
    return undefined;
  }

  #report(msg: string, cause?: unknown): void {
    try {
      this.#onError(new KupodError(oneLine(msg), cause === undefined ? {} : { cause }));
    } catch {
      // a throwing error handler must not stop the exporter
    }
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, " ").trim();
}

/**
 * "connection refused" rather than "fetch failed" (whose cause holds reqwest's nested "error
 * sending request for url (...): client error (Connect): tcp connect error: ...").
 */
function networkReason(e: unknown): string {
  const chain: string[] = [];
  for (let x = e, depth = 0; x !== undefined && x !== null && depth < 8; depth++) {
    chain.push(message(x));
    x = x instanceof Error ? x.cause : undefined;
  }
  const all = chain.join(": ");
  const known =
    /connection refused|connection reset|broken pipe|no route to host|network is unreachable|failed to lookup address information: [^:(]*|certificate[^:(]*|requests to port \d+ are blocked/i
      .exec(all);
  if (known) return known[0].toLowerCase().trim();
  return oneLine(chain[chain.length - 1].replace(/^error sending request for url \([^)]*\): /, ""));
}
