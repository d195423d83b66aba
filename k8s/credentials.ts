/**
 * The credentials of each request, kept fresh: static tokens and client certificates, token files
 * re-read as they rotate, exec plugins run again when their credential expires or is rejected.
 */

import { KupodError } from "../base/errors.ts";
import type { ClusterAccess } from "./access.ts";
import { type ExecResult, runExecPlugin } from "./exec_credential.ts";
import { fileProblem } from "./files.ts";

/** What one request presents. Empty strings mean "none". */
export interface RequestAuth {
  /** The Authorization header ("Bearer …" or "Basic …"). */
  authorization: string;
  /** PEM client certificate and key for mutual TLS. */
  clientCertPem: string;
  clientKeyPem: string;
}

/** How long a token file is trusted before it is read again (client-go uses a minute too). */
const TOKEN_FILE_TTL_MS = 60_000;

export class CredentialSource {
  readonly #access: ClusterAccess;
  readonly #now: () => number;
  #exec: ExecResult | undefined;
  #execRun: Promise<ExecResult> | undefined;
  #fileToken = "";
  #fileReadAt = -Infinity;

  constructor(access: ClusterAccess, opts: { now?: () => number } = {}) {
    this.#access = access;
    this.#now = opts.now ?? Date.now;
  }

  /** The credentials for the next request (may run the exec plugin, may read the token file). */
  async current(): Promise<RequestAuth> {
    const c = this.#access.credentials;
    let token = c.token ?? "";
    let certPem = c.clientCertPem ?? "";
    let keyPem = c.clientKeyPem ?? "";
    if (c.tokenFile) token = this.#readTokenFile(c.tokenFile);
    if (c.exec) {
      const got = await this.#execCredential();
      if (got.token) token = got.token;
      if (got.clientCertPem) {
        certPem = got.clientCertPem;
        keyPem = got.clientKeyPem ?? "";
      }
    }
    let authorization = "";
    if (token) authorization = `Bearer ${token}`;
    else if (c.username !== undefined) {
      const bytes = new TextEncoder().encode(`${c.username}:${c.password ?? ""}`);
      authorization = `Basic ${btoa(String.fromCharCode(...bytes))}`;
    }
    return { authorization, clientCertPem: certPem, clientKeyPem: keyPem };
  }

  /**
   * Forgets what may have gone stale after a 401 (the exec credential, the token file's text).
   * True when that can change the next request, so retrying once makes sense.
   */
  invalidate(): boolean {
    const c = this.#access.credentials;
    this.#exec = undefined;
    this.#fileReadAt = -Infinity;
    return !!c.exec || !!c.tokenFile;
  }

  #readTokenFile(path: string): string {
    if (this.#now() - this.#fileReadAt < TOKEN_FILE_TTL_MS) return this.#fileToken;
    try {
      this.#fileToken = Deno.readTextFileSync(path).trim();
    } catch (err) {
      throw new KupodError(
        `cannot read the token file ${path} of user "${this.#access.userName}": ${
          fileProblem(err)
        }`,
        { cause: err },
      );
    }
    this.#fileReadAt = this.#now();
    return this.#fileToken;
  }

  #execCredential(): Promise<ExecResult> {
    if (this.#exec && this.#now() < this.#exec.expiresAt) return Promise.resolve(this.#exec);
    // One plugin run at a time; concurrent requests share it.
    this.#execRun ??= runExecPlugin(this.#access.credentials.exec!, {
      userName: this.#access.userName,
      server: this.#access.server,
      caPem: this.#access.caPem,
      insecureSkipTlsVerify: this.#access.insecureSkipTlsVerify,
    }).then((got) => {
      this.#exec = got;
      return got;
    }).finally(() => {
      this.#execRun = undefined;
    });
    return this.#execRun;
  }
}
