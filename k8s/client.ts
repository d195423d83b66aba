/**
 * A small Kubernetes REST client (core/v1 pods and nodes) over Deno's fetch: TLS with the cluster
 * CA and client certificates, bearer/basic/exec credentials, timeouts, and one-line errors.
 *
 * @example
 * ```ts
 * import { discoverAccess } from "./kubeconfig.ts";
 * import { KubeClient } from "./client.ts";
 * using kube = new KubeClient(discoverAccess());
 * const pod = await kube.getPod("shop", "web-0");
 * for await (const ev of kube.watchPods("shop", { labelSelector: "app=web" })) {
 *   console.log(ev.type, ev.object.metadata.name);
 * }
 * ```
 */

import { KupodError } from "../base/errors.ts";
import { VERSION } from "../base/version.ts";
import type { ClusterAccess } from "./access.ts";
import { CredentialSource } from "./credentials.ts";
import { createTransport, type Transport } from "./transport.ts";
import type { Node, NodeList, Pod, PodList, Status, VersionInfo, WatchEvent } from "./types.ts";

/** `namespace` argument meaning every namespace (as client-go's metav1.NamespaceAll). */
export const ALL_NAMESPACES = "";

export interface ClientOptions {
  /** Per request (for a watch: until the response starts); default 10 000 ms. */
  timeoutMs?: number;
}

export interface ListOptions {
  /** e.g. "app=web,tier!=db", "env in (prod,staging)", "!canary". */
  labelSelector?: string;
  /** e.g. "spec.nodeName=node-a,status.phase!=Succeeded". */
  fieldSelector?: string;
}

export interface WatchOptions extends ListOptions {
  /** Start after this version; without it the current pods come first, as ADDED events. */
  resourceVersion?: string;
  /** How long the server keeps one watch request open before it is made again; default 300. */
  timeoutSeconds?: number;
  /** Consecutive failed (re)connections tolerated, with backoff from 250 ms to 8 s; default 8. */
  retries?: number;
}

/** A failed API call. `code` is the HTTP status, or 0 when the server was not reached in time. */
export class KubeApiError extends KupodError {
  readonly code: number;
  /** The Status reason ("NotFound", "Forbidden", "Unauthorized", "Expired"), or "Unreachable"/"Timeout". */
  readonly reason: string;

  constructor(message: string, code: number, reason: string, options: { cause?: unknown } = {}) {
    super(message.replace(/\s*\n\s*/g, " "), options);
    this.name = "KubeApiError";
    this.code = code;
    this.reason = reason;
  }

  /** Worth trying again: not reached, timed out, throttled or a server-side failure. */
  get transient(): boolean {
    return this.code === 0 || this.code === 429 || this.code >= 500;
  }
}

export class KubeClient implements Disposable {
  readonly access: ClusterAccess;
  readonly #timeoutMs: number;
  readonly #creds: CredentialSource;
  readonly #transport: Transport;

  constructor(access: ClusterAccess, opts: ClientOptions = {}) {
    this.access = access;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#creds = new CredentialSource(access);
    this.#transport = createTransport(access);
  }

  /** GET /version: the server's build, for the [PREFLIGHT] line. */
  version(signal?: AbortSignal): Promise<VersionInfo> {
    return this.#getJson<VersionInfo>("/version", signal);
  }

  getPod(namespace: string, name: string, signal?: AbortSignal): Promise<Pod> {
    return this.#getJson<Pod>(
      `/api/v1/namespaces/${enc(namespace)}/pods/${enc(name)}`,
      signal,
      `pod "${name}" not found in namespace "${namespace}"`,
    );
  }

  /** Pods of `namespace` (ALL_NAMESPACES for every one) matching the selectors. */
  listPods(namespace: string, opts: ListOptions = {}, signal?: AbortSignal): Promise<PodList> {
    return this.#getJson<PodList>(podsPath(namespace) + query(opts), signal);
  }

  getNode(name: string, signal?: AbortSignal): Promise<Node> {
    return this.#getJson<Node>(`/api/v1/nodes/${enc(name)}`, signal, `node "${name}" not found`);
  }

  listNodes(opts: ListOptions = {}, signal?: AbortSignal): Promise<NodeList> {
    return this.#getJson<NodeList>("/api/v1/nodes" + query(opts), signal);
  }

  /**
   * The pods' changes as they happen, until `signal` aborts or the loop breaks. Without
   * `opts.resourceVersion` it lists first and reports the current pods as ADDED. The watch is made
   * again when the server ends it (from the last resourceVersion seen); when that version has
   * expired (410 Gone) it lists again and reports the difference as ADDED/MODIFIED/DELETED, so
   * the events always add up to the current state. BOOKMARK events are consumed here.
   */
  async *watchPods(
    namespace: string,
    opts: WatchOptions = {},
    signal?: AbortSignal,
  ): AsyncGenerator<WatchEvent<Pod>, void, undefined> {
    const known = new Map<string, Pod>();
    let rv = opts.resourceVersion ?? "";
    let needList = !rv;
    const retries = opts.retries ?? 8;
    const timeoutSeconds = opts.timeoutSeconds ?? 300;
    let failures = 0;
    while (!signal?.aborted) {
      try {
        if (needList) {
          const list = await this.listPods(namespace, opts, signal);
          rv = list.metadata.resourceVersion ?? "";
          needList = false;
          yield* relistEvents(known, list.items);
        }
        const path = podsPath(namespace) +
          query({
            ...opts,
            watch: "1",
            resourceVersion: rv,
            allowWatchBookmarks: "true",
            timeoutSeconds: String(timeoutSeconds),
          });
        const opened = await this.#open(path, signal, true);
        const openedAt = Date.now();
        let lines = 0;
        failures = 0;
        try {
          const idleMs = (timeoutSeconds + 30) * 1000;
          for await (const line of jsonLines(opened.res.body!, opened.abort, idleMs)) {
            lines++;
            const ev = line as WatchEvent<Pod | Status>;
            if (ev.type === "ERROR") {
              const st = ev.object as Status;
              if (st.code === 410) {
                needList = true;
                break;
              }
              throw this.#statusError(st.code ?? 500, st, path);
            }
            const pod = ev.object as Pod;
            if (pod.metadata?.resourceVersion) rv = pod.metadata.resourceVersion;
            if (ev.type === "BOOKMARK") continue;
            const key = podKey(pod);
            if (ev.type === "DELETED") known.delete(key);
            else known.set(key, pod);
            yield ev as WatchEvent<Pod>;
          }
        } finally {
          opened.release();
        }
        // A server ending watches at once must not make this a busy loop.
        if (!needList && lines === 0 && Date.now() - openedAt < 1000) await sleep(1000, signal);
      } catch (err) {
        if (signal?.aborted) return;
        if (err instanceof KubeApiError && err.code === 410) {
          needList = true;
          continue;
        }
        const retry = err instanceof KubeApiError ? err.transient : err instanceof WatchBroken;
        if (!retry || failures >= retries) {
          if (err instanceof KupodError) throw err;
          if (!(err instanceof WatchBroken)) throw this.#unreachable(err);
          throw new KubeApiError(
            `the Kubernetes API at ${this.access.server} broke off the pod watch: ${err.message}`,
            0,
            "WatchBroken",
            { cause: err },
          );
        }
        failures++;
        await sleep(Math.min(250 * 2 ** (failures - 1), 8000), signal);
      }
    }
  }

  close(): void {
    this.#transport[Symbol.dispose]();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  async #getJson<T>(path: string, signal?: AbortSignal, notFound?: string): Promise<T> {
    const opened = await this.#open(path, signal, false, notFound);
    try {
      const text = await opened.res.text();
      return parseJson<T>(text, () => this.#notKube(path, opened.res));
    } catch (err) {
      throw this.#failure(err, path, signal, opened.timedOut());
    } finally {
      opened.release();
    }
  }

  /**
   * Sends GET `path` and returns a 2xx response (its body unread). The timeout covers the whole
   * exchange until `release()`, or only the response head when `stream` is set. A 401 with
   * credentials that may have gone stale (exec plugin, token file) is retried once.
   */
  async #open(
    path: string,
    signal: AbortSignal | undefined,
    stream: boolean,
    notFound?: string,
  ): Promise<Opened> {
    for (let attempt = 0;; attempt++) {
      signal?.throwIfAborted();
      const auth = await this.#creds.current();
      signal?.throwIfAborted();
      const abort = new AbortController();
      const onAbort = () => abort.abort(signal!.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      let timedOut = false;
      let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
        timedOut = true;
        abort.abort(new DOMException("timed out", "TimeoutError"));
      }, this.#timeoutMs);
      const release = () => {
        clearTimeout(timer);
        timer = undefined;
        signal?.removeEventListener("abort", onAbort);
        abort.abort();
      };
      const headers: Record<string, string> = {
        accept: "application/json",
        "user-agent": `kupod/${VERSION}`,
      };
      if (auth.authorization) headers.authorization = auth.authorization;
      let res: Response;
      try {
        res = await this.#transport.get(
          { url: this.access.server + path, headers, signal: abort.signal },
          auth,
        );
      } catch (err) {
        release();
        throw this.#failure(err, path, signal, timedOut);
      }
      if (res.ok) {
        if (stream) clearTimeout(timer);
        if (!(res.headers.get("content-type") ?? "").includes("json")) {
          release();
          throw this.#notKube(path, res);
        }
        return { res, abort, release, timedOut: () => timedOut };
      }
      let body = "";
      try {
        body = await res.text();
      } catch (err) {
        release();
        throw this.#failure(err, path, signal, timedOut);
      }
      release();
      if (res.status === 401 && attempt === 0 && this.#creds.invalidate()) continue;
      if (res.status === 404 && notFound) throw new KubeApiError(notFound, 404, "NotFound");
      throw this.#statusError(res.status, parseStatus(body), path, res.statusText);
    }
  }

  #statusError(code: number, st: Status | undefined, path: string, statusText = ""): KubeApiError {
    const at = `the Kubernetes API at ${this.access.server}`;
    const reason = st?.reason || statusText || "Error";
    const msg = (st?.message ?? "").trim();
    if (code === 401) {
      return new KubeApiError(
        Object.keys(this.access.credentials).length === 0
          ? `${at} refused a request without credentials (401 Unauthorized): ` +
            `user "${this.access.userName}" of ${this.access.source} has none`
          : `${at} rejected the credentials of user "${this.access.userName}" (401 Unauthorized)`,
        code,
        "Unauthorized",
      );
    }
    if (code === 403) {
      return new KubeApiError(
        `${at} refused: ${msg || `GET ${path}`} (403 Forbidden)`,
        code,
        "Forbidden",
      );
    }
    if (code === 404) {
      return new KubeApiError(
        `${at} has no ${path.split("?")[0]} (404 Not Found)`,
        code,
        "NotFound",
      );
    }
    return new KubeApiError(
      `${at} answered ${code} ${reason}${msg ? `: ${msg}` : ""} (GET ${path.split("?")[0]})`,
      code,
      reason,
    );
  }

  #notKube(path: string, res: Response): KubeApiError {
    const type = res.headers.get("content-type") || "no content type";
    return new KubeApiError(
      `${this.access.server} answered GET ${
        path.split("?")[0]
      } with ${type}, not Kubernetes JSON: ` +
        `is it a Kubernetes API server?`,
      res.status,
      "NotKubernetes",
    );
  }

  /** A thrown fetch/body error as a KubeApiError (the caller's own abort passes through). */
  #failure(
    err: unknown,
    path: string,
    signal: AbortSignal | undefined,
    timedOut: boolean,
  ): unknown {
    if (err instanceof KupodError) return err;
    if (signal?.aborted) return signal.reason ?? err;
    if (timedOut) {
      return new KubeApiError(
        `the Kubernetes API at ${this.access.server} did not answer within ` +
          `${this.#timeoutMs / 1000} s (GET ${path.split("?")[0]})`,
        0,
        "Timeout",
        { cause: err },
      );
    }
    return this.#unreachable(err);
  }

  #unreachable(err: unknown): KubeApiError {
    return new KubeApiError(
      `cannot reach the Kubernetes API at ${this.access.server}: ${
        networkProblem(err, this.access)
      }`,
      0,
      "Unreachable",
      { cause: err },
    );
  }
}

/** The one-line [PREFLIGHT] description of the cluster kupod talks to. */
export function describeCluster(access: ClusterAccess, version: VersionInfo): string {
  return `Kubernetes ${version.gitVersion} at ${access.server} as user "${access.userName}", ` +
    `from ${access.source}`;
}

interface Opened {
  res: Response;
  abort: AbortController;
  release: () => void;
  timedOut: () => boolean;
}

/** A watch stream that broke off (reset, idle too long): made again like one that ended. */
class WatchBroken extends Error {}

function enc(s: string): string {
  return encodeURIComponent(s);
}

function podsPath(namespace: string): string {
  return namespace === ALL_NAMESPACES
    ? "/api/v1/pods"
    : `/api/v1/namespaces/${enc(namespace)}/pods`;
}

interface QueryParams extends ListOptions {
  watch?: string;
  resourceVersion?: string;
  allowWatchBookmarks?: string;
  timeoutSeconds?: number | string;
}

function query(opts: QueryParams): string {
  const params = opts as Record<string, unknown>;
  const q = new URLSearchParams();
  for (
    const key of [
      "labelSelector",
      "fieldSelector",
      "watch",
      "resourceVersion",
      "allowWatchBookmarks",
      "timeoutSeconds",
    ]
  ) {
    const v = params[key];
    if (v !== undefined && v !== "") q.set(key, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

function podKey(pod: Pod): string {
  return `${pod.metadata.namespace ?? ""}/${pod.metadata.name}`;
}

/** After a (re)list: what changed against `known`, as events; `known` becomes the list. */
function* relistEvents(known: Map<string, Pod>, items: Pod[]): Generator<WatchEvent<Pod>> {
  const seen = new Set<string>();
  for (const pod of items) {
    const key = podKey(pod);
    seen.add(key);
    const before = known.get(key);
    known.set(key, pod);
    if (!before) yield { type: "ADDED", object: pod };
    else if (before.metadata.resourceVersion !== pod.metadata.resourceVersion) {
      yield { type: "MODIFIED", object: pod };
    }
  }
  for (const [key, pod] of [...known]) {
    if (seen.has(key)) continue;
    known.delete(key);
    yield { type: "DELETED", object: pod };
  }
}

/** The JSON values of a newline-delimited stream; an idle stream is aborted after `idleMs`. */
async function* jsonLines(
  body: ReadableStream<Uint8Array>,
  abort: AbortController,
  idleMs: number,
): AsyncGenerator<unknown> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let timer = setTimeout(() => abort.abort(), idleMs);
  let buf = "";
  try {
    while (true) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (err) {
        throw new WatchBroken("watch stream broke off", { cause: err });
      }
      clearTimeout(timer);
      timer = setTimeout(() => abort.abort(), idleMs);
      if (chunk.done) break;
      buf += chunk.value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) {
          yield parseJson(
            line,
            () => new WatchBroken(`malformed watch event: ${line.slice(0, 80)}`),
          );
        }
      }
    }
    if (buf.trim()) {
      yield parseJson(buf, () => new WatchBroken(`malformed watch event: ${buf.slice(0, 80)}`));
    }
  } finally {
    clearTimeout(timer);
    reader.cancel().catch(() => {});
  }
}

function parseJson<T>(text: string, problem: () => Error): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw problem();
  }
}

function parseStatus(body: string): Status | undefined {
  try {
    const st = JSON.parse(body);
    return st && st.kind === "Status" ? st as Status : undefined;
  } catch {
    return undefined;
  }
}

/** What went wrong on the way to the server, in a few words ("connection refused"). */
export function networkProblem(err: unknown, access: ClusterAccess): string {
  const text = [err, (err as { cause?: unknown })?.cause]
    .map((e) => (e instanceof Error ? e.message : String(e ?? "")))
    .join(" ");
  const patterns: [RegExp, string][] = [
    [/refused/i, "connection refused"],
    [/dns error|failed to lookup|ENOTFOUND|Name or service not known/i, "host name not found"],
    [/timed out|ETIMEDOUT/i, "connection timed out"],
    [/No route to host|EHOSTUNREACH/i, "no route to host"],
    [/Network is unreachable|ENETUNREACH/i, "network unreachable"],
    [/reset by peer|ECONNRESET/i, "connection reset"],
    [
      /corrupt message|InvalidContentType|wrong version number|packet length too long/i,
      "no TLS there (does it speak plain HTTP?)",
    ],
  ];
  for (const [re, words] of patterns) if (re.test(text)) return words;
  const cert = /invalid peer certificate: ([^)\n]+)|certificate verify failed|unable to verify/i
    .exec(text);
  if (cert) {
    const why = cert[1] ? ` (${cert[1].trim()})` : "";
    return `its TLS certificate is not trusted${why}: check the certificate authority in ${access.source}`;
  }
  if (/certificate|tls|handshake|alert/i.test(text)) return `TLS failed: ${lastPart(text)}`;
  return lastPart(text);
}

function lastPart(text: string): string {
  const first = text.split("\n")[0].replace(/\s*\(os error \d+\)/g, "");
  const parts = first.split(": ").filter((p) => p.trim());
  return parts.slice(-2).join(": ") || "unknown error";
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
