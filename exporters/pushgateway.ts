/**
 * Pushes the metrics to a Prometheus Pushgateway (`--prometheus host:port`): a PUT of the whole
 * registry every interval, replacing the group job/node/namespace/pod, and once more on stop() so
 * the last values reach the gateway before kupod exits.
 *
 * The grouping labels take precedence at the gateway: pushed series get node, namespace and pod
 * from the group, even where the series had them empty.
 *
 * A failed push never ends the run: it is reported once through `onError` (repeats of the same
 * failure stay silent until a push succeeds again) and the next interval tries again.
 *
 * @example
 * ```ts
 * import { KupodMetrics } from "./metrics.ts";
 * import { startPushgateway } from "./pushgateway.ts";
 * const pusher = startPushgateway({
 *   target: "127.0.0.1:9091",
 *   grouping: { node: "node-1", namespace: "default", pod: "web-0" },
 *   metrics: new KupodMetrics(),
 *   onError: (message) => console.error(`Warning: ${message}`),
 * });
 * // ... on exit:
 * await pusher.stop();
 * ```
 */

import { KupodError } from "../base/errors.ts";
import type { ExpositionSource } from "./metrics.ts";

/** Where and what startPushgateway pushes. */
export interface PushgatewayOptions {
  /** The Pushgateway as host:port (or a base URL with scheme). */
  target: string;
  /** Job label of the group; "kupod". */
  job?: string;
  /** Further grouping labels, in URL order: kupod uses { node, namespace, pod }. */
  grouping: Readonly<Record<string, string>>;
  /** The registry to push (a KupodMetrics). */
  metrics: ExpositionSource;
  /** Seconds between pushes; 15. */
  intervalSeconds?: number;
  /** Called before each push, e.g. to refresh probe stats. */
  onPush?: () => void;
  /** One line per failure (not repeated while the same failure goes on). */
  onError?: (message: string) => void;
}

/** A running pusher; stop() (or `await using`) makes the final push. */
export interface Pushgateway extends AsyncDisposable {
  /** Where the pushes go: http://host:port/metrics/job/kupod/node/…/namespace/…/pod/… */
  readonly url: string;
  /** One push now; rejects on failure (a one-line KupodError). */
  push(): Promise<void>;
  /** Stops the timer and makes the final push; settles once it is done or failed. Idempotent. */
  stop(): Promise<void>;
}

/** Time a periodic push may take (at most the interval), and the final push on stop(). */
const MAX_PUSH_SECONDS = 10;
const FINAL_PUSH_SECONDS = 5;

/**
 * Starts pushing at once and then every `intervalSeconds`. Throws a {@link KupodError} for an
 * unusable target or grouping; an unreachable gateway is only reported through `onError`.
 */
export function startPushgateway(options: PushgatewayOptions): Pushgateway {
  return new Pusher(options);
}

/** The group's URL path, with each value escaped as the Pushgateway's URL scheme wants. */
export function groupingPath(job: string, grouping: Readonly<Record<string, string>>): string {
  const parts = [segment("job", job)];
  for (const [name, value] of Object.entries(grouping)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) || name === "job") {
      throw new KupodError(`invalid Pushgateway grouping label name "${name}"`);
    }
    parts.push(segment(name, value));
  }
  return `/metrics/${parts.join("/")}`;
}

/**
 * name/value, or name@base64/<base64url> for a value a path segment cannot carry: an empty one
 * ("=" is the empty value's form) or one with a "/".
 */
function segment(name: string, value: string): string {
  if (value === "") return `${name}@base64/=`;
  if (value.includes("/")) return `${name}@base64/${base64url(value)}`;
  return `${name}/${encodeURIComponent(value)}`;
}

function base64url(value: string): string {
  let binary = "";
  for (const byte of new TextEncoder().encode(value)) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_");
}

function baseUrl(target: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(target) ? target : `http://${target}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new KupodError(`invalid Pushgateway address "${target}": want host:port`);
  }
  if (!url.hostname || (url.protocol !== "http:" && url.protocol !== "https:")) {
    throw new KupodError(`invalid Pushgateway address "${target}": want host:port`);
  }
  return url;
}

class Pusher implements Pushgateway {
  readonly url: string;
  readonly #target: string;
  readonly #options: PushgatewayOptions;
  readonly #intervalMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #inflight: { done: Promise<void>; abort: AbortController } | undefined;
  #stopping: Promise<void> | undefined;
  /** The failure last reported, so the same one is not reported at every interval. */
  #failure: string | undefined;

  constructor(options: PushgatewayOptions) {
    const base = baseUrl(options.target);
    const prefix = base.pathname.replace(/\/+$/, "");
    this.url = `${base.origin}${prefix}${groupingPath(options.job ?? "kupod", options.grouping)}`;
    this.#target = options.target;
    this.#options = options;
    const seconds = options.intervalSeconds ?? 15;
    if (!(seconds > 0)) throw new KupodError(`invalid push interval ${seconds}: want seconds > 0`);
    this.#intervalMs = seconds * 1000;
    this.#schedule(0);
  }

  push(): Promise<void> {
    return this.#push(Math.min(this.#intervalMs / 1000, MAX_PUSH_SECONDS));
  }

  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      // the final push replaces whatever an interrupted one would have sent
      this.#inflight?.abort.abort();
      await this.#inflight?.done.catch(() => {});
      try {
        await this.#push(FINAL_PUSH_SECONDS);
      } catch (err) {
        this.#options.onError?.(`final push: ${(err as Error).message}`);
      }
    })();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  #schedule(delayMs: number): void {
    const timer = setTimeout(() => {
      this.#timer = undefined;
      this.push().catch((err: Error) => {
        if (this.#stopping) return; // interrupted by stop(), whose final push reports itself
        if (err.message !== this.#failure) this.#options.onError?.(err.message);
        this.#failure = err.message;
      }).finally(() => {
        if (!this.#stopping) this.#schedule(this.#intervalMs);
      });
    }, delayMs);
    // pushing alone does not keep kupod running; stop() makes the last push
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  async #push(timeoutSeconds: number): Promise<void> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error("timed out")), timeoutSeconds * 1000);
    const done = (async () => {
      this.#options.onPush?.();
      const body = await this.#options.metrics.text();
      const res = await fetch(this.url, {
        method: "PUT",
        headers: { "content-type": this.#options.metrics.contentType },
        body,
        signal: abort.signal,
      });
      const reply = await res.text();
      if (!res.ok) {
        const said = oneLine(reply).slice(0, 200) || "(no body)";
        throw new Error(`HTTP ${res.status} ${res.statusText}: ${said}`);
      }
    })();
    this.#inflight = { done, abort };
    try {
      await done;
      this.#failure = undefined;
    } catch (err) {
      const why = abort.signal.aborted && abort.signal.reason instanceof Error
        ? abort.signal.reason.message
        : describe(err);
      throw new KupodError(
        `cannot push metrics to the Pushgateway at ${this.#target}: ${oneLine(why)}`,
        { cause: err },
      );
    } finally {
      clearTimeout(timer);
      if (this.#inflight?.done === done) this.#inflight = undefined;
    }
  }
}

/** The innermost useful words of a fetch failure ("connection refused"), not the whole chain. */
function describe(err: unknown): string {
  let innermost = err;
  while (innermost instanceof Error && innermost.cause instanceof Error) {
    innermost = innermost.cause;
  }
  const message = innermost instanceof Error ? innermost.message : String(innermost);
  const os = /:\s*([^:()]+?)\s*\(os error \d+\)/.exec(message);
  return os ? os[1].toLowerCase() : message;
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, " ").trim();
}
