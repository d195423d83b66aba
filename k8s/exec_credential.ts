/**
 * Exec credential plugins (client.authentication.k8s.io v1 / v1beta1): run the kubeconfig user's
 * command, read the ExecCredential it prints, as kubectl does for gke-gcloud-auth-plugin,
 * `aws eks get-token`, kubelogin and the like.
 */

import { KupodError } from "../base/errors.ts";
import type { ExecConfig } from "./access.ts";

/** What a plugin run yields; `expiresAt` is ms since the epoch (Infinity = no expiry given). */
export interface ExecResult {
  token?: string;
  clientCertPem?: string;
  clientKeyPem?: string;
  expiresAt: number;
}

export interface ExecContext {
  /** The kubeconfig user, for messages. */
  userName: string;
  /** Sent in KUBERNETES_EXEC_INFO when the plugin asks for provideClusterInfo. */
  server: string;
  caPem: string;
  insecureSkipTlsVerify: boolean;
  /** How long the plugin may run; default 30 s. */
  timeoutMs?: number;
}

/** Runs the plugin once and returns its credential; every failure is a one-line KupodError. */
export async function runExecPlugin(exec: ExecConfig, ctx: ExecContext): Promise<ExecResult> {
  const who = `exec credential plugin "${exec.command}" of user "${ctx.userName}"`;
  const spec: Record<string, unknown> = { interactive: false };
  if (exec.provideClusterInfo) {
    spec.cluster = {
      server: ctx.server,
      ...(ctx.caPem ? { "certificate-authority-data": btoa(ctx.caPem) } : {}),
      ...(ctx.insecureSkipTlsVerify ? { "insecure-skip-tls-verify": true } : {}),
    };
  }
  const info = { apiVersion: exec.apiVersion, kind: "ExecCredential", spec };
  const timeoutMs = ctx.timeoutMs ?? 30_000;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(exec.command, {
      args: exec.args,
      env: { ...exec.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      const hint = exec.installHint.trim().split("\n")[0];
      throw new KupodError(`${who} not found${hint ? `: ${hint}` : ""}`, { cause: err });
    }
    if (err instanceof Deno.errors.PermissionDenied) {
      throw new KupodError(`${who} is not executable`, { cause: err });
    }
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new KupodError(`${who} could not run: ${msg}`, { cause: err });
  }
  if (out.signal) {
    throw new KupodError(
      out.signal === "SIGTERM"
        ? `${who} did not finish within ${timeoutMs / 1000} s`
        : `${who} was killed by ${out.signal}`,
    );
  }
  if (!out.success) {
    const last = new TextDecoder().decode(out.stderr).trim().split("\n").pop()?.trim();
    throw new KupodError(`${who} failed (exit ${out.code})${last ? `: ${last}` : ""}`);
  }
  let cred: unknown;
  try {
    cred = JSON.parse(new TextDecoder().decode(out.stdout));
  } catch (err) {
    throw new KupodError(`${who} printed no ExecCredential JSON`, { cause: err });
  }
  return parseExecCredential(cred, exec.apiVersion, who);
}

/** Checks the printed ExecCredential and takes its status. */
export function parseExecCredential(cred: unknown, apiVersion: string, who: string): ExecResult {
  const c = cred as {
    apiVersion?: unknown;
    kind?: unknown;
    status?: {
      token?: unknown;
      clientCertificateData?: unknown;
      clientKeyData?: unknown;
      expirationTimestamp?: unknown;
    };
  };
  if (typeof c !== "object" || c === null || c.kind !== "ExecCredential") {
    throw new KupodError(`${who} printed JSON that is not an ExecCredential`);
  }
  if (c.apiVersion !== apiVersion) {
    throw new KupodError(
      `${who} printed an ExecCredential of apiVersion "${c.apiVersion}" (expected "${apiVersion}")`,
    );
  }
  const s = c.status ?? {};
  const result: ExecResult = { expiresAt: Infinity };
  if (typeof s.token === "string" && s.token) result.token = s.token;
  if (typeof s.clientCertificateData === "string" && s.clientCertificateData) {
    result.clientCertPem = s.clientCertificateData;
  }
  if (typeof s.clientKeyData === "string" && s.clientKeyData) {
    result.clientKeyPem = s.clientKeyData;
  }
  if (!!result.clientCertPem !== !!result.clientKeyPem) {
    throw new KupodError(
      `${who} returned clientCertificateData and clientKeyData only in part (both are needed)`,
    );
  }
  if (!result.token && !result.clientCertPem) {
    throw new KupodError(`${who} returned neither a token nor a client certificate`);
  }
  if (s.expirationTimestamp !== undefined && s.expirationTimestamp !== null) {
    const t = typeof s.expirationTimestamp === "string" ? Date.parse(s.expirationTimestamp) : NaN;
    if (Number.isNaN(t)) {
      throw new KupodError(
        `${who} returned an expirationTimestamp that is not RFC 3339: ${s.expirationTimestamp}`,
      );
    }
    result.expiresAt = t;
  }
  return result;
}
