/**
 * How requests reach the API server: Deno's fetch with an HttpClient that trusts the cluster CA
 * and presents the client certificate; node:https only for insecure-skip-tls-verify, which
 * Deno's fetch cannot do per client.
 */

import { KupodError } from "../base/errors.ts";
import type { ClusterAccess } from "./access.ts";
import type { RequestAuth } from "./credentials.ts";

export interface HttpRequest {
  url: string;
  headers: Record<string, string>;
  signal: AbortSignal;
}

export interface Transport extends Disposable {
  /** Sends a GET; rejects with the runtime's network error, or a KupodError for bad TLS input. */
  get(req: HttpRequest, auth: RequestAuth): Promise<Response>;
}

export function createTransport(access: ClusterAccess): Transport {
  return access.insecureSkipTlsVerify && access.server.startsWith("https:")
    ? new InsecureTransport()
    : new FetchTransport(access);
}

/** fetch over one Deno.HttpClient, made again when the client certificate changes. */
class FetchTransport implements Transport {
  readonly #access: ClusterAccess;
  #client: Deno.HttpClient | undefined;
  #clientCert = "";

  constructor(access: ClusterAccess) {
    this.#access = access;
  }

  get(req: HttpRequest, auth: RequestAuth): Promise<Response> {
    return fetch(req.url, {
      headers: req.headers,
      signal: req.signal,
      client: this.#httpClient(auth),
    });
  }

  #httpClient(auth: RequestAuth): Deno.HttpClient | undefined {
    const { caPem } = this.#access;
    if (!caPem && !auth.clientCertPem) return undefined;
    if (this.#client && this.#clientCert === auth.clientCertPem) return this.#client;
    this.#client?.close();
    this.#client = undefined;
    try {
      this.#client = Deno.createHttpClient({
        ...(caPem ? { caCerts: [caPem] } : {}),
        ...(auth.clientCertPem ? { cert: auth.clientCertPem, key: auth.clientKeyPem } : {}),
      });
    } catch (err) {
      const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
      const what = auth.clientCertPem
        ? `the client certificate/key of user "${this.#access.userName}" or the cluster CA`
        : "the cluster CA";
      throw new KupodError(`${this.#access.source}: ${what} cannot be used: ${msg}`, {
        cause: err,
      });
    }
    this.#clientCert = auth.clientCertPem;
    return this.#client;
  }

  [Symbol.dispose](): void {
    this.#client?.close();
    this.#client = undefined;
  }
}

/** node:https with certificate checks off: only for clusters marked insecure-skip-tls-verify. */
class InsecureTransport implements Transport {
  async get(req: HttpRequest, auth: RequestAuth): Promise<Response> {
    const https = await import("node:https");
    const { Readable } = await import("node:stream");
    return await new Promise<Response>((resolve, reject) => {
      const r = https.request(req.url, {
        method: "GET",
        headers: req.headers,
        signal: req.signal,
        rejectUnauthorized: false,
        ...(auth.clientCertPem ? { cert: auth.clientCertPem, key: auth.clientKeyPem } : {}),
      }, (res) => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(", ") : v);
        }
        const body = Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>;
        resolve(new Response(body, { status: res.statusCode ?? 0, headers }));
      });
      r.on("error", reject);
      r.end();
    });
  }

  [Symbol.dispose](): void {}
}
