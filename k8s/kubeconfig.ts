/**
 * Finding and reading kubeconfig files: discovery in kubectl's order (then the in-cluster service
 * account), merging of a `$KUBECONFIG` list, and the chosen context turned into a ClusterAccess.
 * Every problem is a one-line KupodError naming the file and what is wrong.
 *
 * @example
 * ```ts
 * import { discoverAccess } from "./kubeconfig.ts";
 * const access = discoverAccess({ kubeconfig: "/etc/kupod/kubeconfig" });
 * console.log(access.server, access.source);
 * ```
 */

// The ES module build of npm:yaml, typed by the package: plain `from "yaml"` resolves to the
// CommonJS build under Deno, whose loading costs ~30 ms more at start-up (measured).
// @ts-types="yaml"
import { parse } from "../node_modules/yaml/browser/index.js";
import { KupodError } from "../base/errors.ts";
import type { ClusterAccess, Credentials, ExecConfig } from "./access.ts";
import { dirOf, exists, readTextOrThrow, resolveFrom } from "./files.ts";
import { inClusterAccess, inClusterAvailable, type InClusterPaths } from "./in_cluster.ts";

export const ADMIN_CONF = "/etc/kubernetes/admin.conf";

export interface DiscoverOptions {
  /** `--kubeconfig`: when set, only this file is used and it must exist. */
  kubeconfig?: string;
  /** Context to use instead of the file's current-context. */
  context?: string;
  /** The environment (KUBECONFIG, HOME, KUBERNETES_SERVICE_HOST/PORT); default Deno's. */
  env?: Record<string, string | undefined>;
  /** kubeadm's admin kubeconfig, tried after ~/.kube/config; default /etc/kubernetes/admin.conf. */
  adminConf?: string;
  /** The in-cluster service account files, tried last. */
  inCluster?: InClusterPaths;
}

/**
 * The kubeconfig files to read, in kubectl's order: `--kubeconfig`, the existing files of
 * `$KUBECONFIG` (merged, the first file wins), `~/.kube/config`, /etc/kubernetes/admin.conf.
 * Empty when none applies (then in-cluster access is next).
 */
export function kubeconfigFiles(opts: DiscoverOptions = {}): string[] {
  const env = opts.env ?? Deno.env.toObject();
  if (opts.kubeconfig) return [opts.kubeconfig];
  const list = (env.KUBECONFIG ?? "").split(":").filter((p) => p !== "");
  if (list.length) {
    const found = list.filter(exists);
    if (!found.length) {
      throw new KupodError(`$KUBECONFIG names no existing file (${list.join(", ")})`);
    }
    return found;
  }
  if (env.HOME && exists(`${env.HOME}/.kube/config`)) return [`${env.HOME}/.kube/config`];
  const admin = opts.adminConf ?? ADMIN_CONF;
  if (exists(admin)) return [admin];
  return [];
}

/** The access to the cluster that the command line and environment point at. */
export function discoverAccess(opts: DiscoverOptions = {}): ClusterAccess {
  const env = opts.env ?? Deno.env.toObject();
  const files = kubeconfigFiles({ ...opts, env });
  if (files.length) return loadKubeconfig(files, { context: opts.context, env });
  if (inClusterAvailable(env)) return inClusterAccess(env, opts.inCluster);
  const home = env.HOME ? `${env.HOME}/.kube/config` : "~/.kube/config";
  throw new KupodError(
    `no Kubernetes configuration found: give --kubeconfig, set $KUBECONFIG or create ${home} ` +
      `(${opts.adminConf ?? ADMIN_CONF} and the in-cluster service account are absent too)`,
  );
}

type Obj = Record<string, unknown>;

/** A named entry of clusters/contexts/users and the file it came from. */
interface Entry {
  body: Obj;
  file: string;
}

interface Merged {
  label: string;
  currentContext: string;
  clusters: Map<string, Entry>;
  contexts: Map<string, Entry>;
  users: Map<string, Entry>;
}

/**
 * Reads and merges `files` (the first file wins per name, as kubectl merges `$KUBECONFIG`) and
 * resolves the context (`opts.context`, else current-context) into a ClusterAccess.
 */
export function loadKubeconfig(
  files: string[],
  opts: { context?: string; env?: Record<string, string | undefined> } = {},
): ClusterAccess {
  const env = opts.env ?? Deno.env.toObject();
  const merged: Merged = {
    label: files.join(":"),
    currentContext: "",
    clusters: new Map(),
    contexts: new Map(),
    users: new Map(),
  };
  for (const file of files) {
    const doc = readDoc(file);
    const cur = doc["current-context"];
    if (!merged.currentContext && typeof cur === "string") merged.currentContext = cur;
    for (
      const [key, inner] of [["clusters", "cluster"], ["contexts", "context"], ["users", "user"]]
    ) {
      const map = merged[key as "clusters" | "contexts" | "users"];
      for (const [name, body] of namedList(doc, key, inner, file)) {
        if (!map.has(name)) map.set(name, { body, file });
      }
    }
  }
  const where = `kubeconfig ${merged.label}`;
  const contextName = opts.context || merged.currentContext;
  if (!contextName) {
    throw new KupodError(
      `${where} has no current-context (choose one with 'kubectl config use-context NAME')`,
    );
  }
  const context = merged.contexts.get(contextName);
  if (!context) {
    const known = [...merged.contexts.keys()].join(", ") || "none";
    throw new KupodError(`${where}: context "${contextName}" not found (contexts: ${known})`);
  }
  const clusterName = str(context.body, "cluster", `context "${contextName}"`, context.file);
  if (!clusterName) {
    throw new KupodError(`kubeconfig ${context.file}: context "${contextName}" names no cluster`);
  }
  const cluster = merged.clusters.get(clusterName);
  if (!cluster) {
    throw new KupodError(
      `${where}: cluster "${clusterName}" of context "${contextName}" not found`,
    );
  }
  const userName = str(context.body, "user", `context "${contextName}"`, context.file) ?? "";
  const user = userName ? merged.users.get(userName) : { body: {}, file: context.file };
  if (!user) {
    throw new KupodError(`${where}: user "${userName}" of context "${contextName}" not found`);
  }
  const server = readCluster(clusterName, cluster);
  return {
    ...server,
    credentials: readUser(userName, user, env.HOME),
    userName: userName || "anonymous",
    namespace: str(context.body, "namespace", `context "${contextName}"`, context.file) ?? "",
    source: `${where} (context ${contextName})`,
  };
}

function readDoc(file: string): Obj {
  const text = readTextOrThrow(file, `cannot read kubeconfig ${file}`);
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new KupodError(`kubeconfig ${file}: malformed YAML: ${msg}`, { cause: err });
  }
  if (doc === null || doc === undefined) return {};
  if (!isObj(doc)) {
    throw new KupodError(`kubeconfig ${file}: not a kubeconfig (the top level is not a mapping)`);
  }
  return doc;
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The entries of `doc[key]` (e.g. clusters) as [name, body] pairs, body being `entry[inner]`. */
function namedList(doc: Obj, key: string, inner: string, file: string): [string, Obj][] {
  const list = doc[key];
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new KupodError(`kubeconfig ${file}: ${key} is not a list`);
  return list.map((item, i) => {
    if (!isObj(item) || item.name === undefined || item.name === null || item.name === "") {
      throw new KupodError(`kubeconfig ${file}: ${key}[${i}] has no name`);
    }
    const body = item[inner] ?? {};
    if (!isObj(body)) {
      throw new KupodError(
        `kubeconfig ${file}: ${key}[${i}] ("${item.name}"): ${inner} is not a mapping`,
      );
    }
    return [String(item.name), body];
  });
}

function str(o: Obj, key: string, what: string, file: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  throw new KupodError(`kubeconfig ${file}: ${key} of ${what} is not a string`);
}

function bool(o: Obj, key: string, what: string, file: string): boolean {
  const v = o[key];
  if (v === undefined || v === null) return false;
  if (typeof v === "boolean") return v;
  if (v === "true" || v === "false") return v === "true";
  throw new KupodError(`kubeconfig ${file}: ${key} of ${what} is not true or false`);
}

/** base64 `*-data` → PEM text, checked to hold `marker` ("CERTIFICATE", "PRIVATE KEY"). */
function pemData(b64: string, marker: string, field: string, what: string, file: string): string {
  let text = "";
  try {
    text = new TextDecoder().decode(
      Uint8Array.from(atob(b64.replace(/\s+/g, "")), (c) => c.charCodeAt(0)),
    );
  } catch {
    throw new KupodError(`kubeconfig ${file}: ${field} of ${what} is not valid base64`);
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${marker}-----`).test(text)) {
    throw new KupodError(
      `kubeconfig ${file}: ${field} of ${what} holds no PEM ${marker.toLowerCase()}`,
    );
  }
  return text;
}

/** A PEM file referenced by the kubeconfig (relative to its directory). */
function pemFile(
  path: string,
  marker: string,
  field: string,
  what: string,
  file: string,
  home?: string,
): string {
  const full = resolveFrom(dirOf(file), path, home);
  const text = readTextOrThrow(full, `kubeconfig ${file}: cannot read ${field} ${full} of ${what}`);
  if (!new RegExp(`-----BEGIN [A-Z ]*${marker}-----`).test(text)) {
    throw new KupodError(
      `kubeconfig ${file}: ${field} ${full} of ${what} holds no PEM ${marker.toLowerCase()}`,
    );
  }
  return text;
}

function readCluster(
  name: string,
  entry: Entry,
): Pick<ClusterAccess, "server" | "caPem" | "insecureSkipTlsVerify"> {
  const { body, file } = entry;
  const what = `cluster "${name}"`;
  const raw = str(body, "server", what, file);
  if (!raw) throw new KupodError(`kubeconfig ${file}: ${what} has no server`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new KupodError(`kubeconfig ${file}: server "${raw}" of ${what} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new KupodError(`kubeconfig ${file}: server "${raw}" of ${what} is not http(s)`);
  }
  const insecure = bool(body, "insecure-skip-tls-verify", what, file);
  const caData = str(body, "certificate-authority-data", what, file);
  const caFile = str(body, "certificate-authority", what, file);
  let caPem = "";
  if (caData) caPem = pemData(caData, "CERTIFICATE", "certificate-authority-data", what, file);
  else if (caFile) caPem = pemFile(caFile, "CERTIFICATE", "certificate-authority", what, file);
  if (caPem && insecure) {
    throw new KupodError(
      `kubeconfig ${file}: ${what} sets both a certificate authority and insecure-skip-tls-verify`,
    );
  }
  return { server: url.href.replace(/\/+$/, ""), caPem, insecureSkipTlsVerify: insecure };
}

function readUser(name: string, entry: Entry, home?: string): Credentials {
  const { body, file } = entry;
  const what = `user "${name}"`;
  const creds: Credentials = {};
  if (body["auth-provider"] !== undefined) {
    const provider = isObj(body["auth-provider"]) ? String(body["auth-provider"].name ?? "") : "";
    throw new KupodError(
      `kubeconfig ${file}: ${what} uses auth-provider "${provider}", which kupod does not ` +
        `support: use an exec credential plugin`,
    );
  }
  const certData = str(body, "client-certificate-data", what, file);
  const certFile = str(body, "client-certificate", what, file);
  const keyData = str(body, "client-key-data", what, file);
  const keyFile = str(body, "client-key", what, file);
  if (certData) {
    creds.clientCertPem = pemData(certData, "CERTIFICATE", "client-certificate-data", what, file);
  } else if (certFile) {
    creds.clientCertPem = pemFile(certFile, "CERTIFICATE", "client-certificate", what, file, home);
  }
  if (keyData) creds.clientKeyPem = pemData(keyData, "PRIVATE KEY", "client-key-data", what, file);
  else if (keyFile) {
    creds.clientKeyPem = pemFile(keyFile, "PRIVATE KEY", "client-key", what, file, home);
  }
  if (!!creds.clientCertPem !== !!creds.clientKeyPem) {
    const has = creds.clientCertPem
      ? "a client certificate but no client key"
      : "a client key but no client certificate";
    throw new KupodError(`kubeconfig ${file}: ${what} has ${has}`);
  }
  const token = str(body, "token", what, file);
  const tokenFile = str(body, "tokenFile", what, file);
  if (token) creds.token = token;
  else if (tokenFile) {
    creds.tokenFile = resolveFrom(dirOf(file), tokenFile, home);
    readTextOrThrow(
      creds.tokenFile,
      `kubeconfig ${file}: cannot read tokenFile ${creds.tokenFile} of ${what}`,
    );
  }
  const username = str(body, "username", what, file);
  const password = str(body, "password", what, file);
  if (username || password) {
    if (creds.token || creds.tokenFile) {
      throw new KupodError(
        `kubeconfig ${file}: ${what} has both a token and a username/password (only one may be set)`,
      );
    }
    creds.username = username ?? "";
    creds.password = password ?? "";
  }
  if (body.exec !== undefined && body.exec !== null) {
    creds.exec = readExec(body.exec, what, file, home);
  }
  return creds;
}

const EXEC_VERSIONS = ["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"];

function readExec(raw: unknown, what: string, file: string, home?: string): ExecConfig {
  if (!isObj(raw)) throw new KupodError(`kubeconfig ${file}: exec of ${what} is not a mapping`);
  const where = `exec of ${what}`;
  const apiVersion = str(raw, "apiVersion", where, file) ?? "";
  if (!EXEC_VERSIONS.includes(apiVersion)) {
    throw new KupodError(
      `kubeconfig ${file}: ${where} has apiVersion "${apiVersion}" (supported: ${
        EXEC_VERSIONS.join(", ")
      })`,
    );
  }
  const command = str(raw, "command", where, file);
  if (!command) throw new KupodError(`kubeconfig ${file}: ${where} has no command`);
  const args = raw.args ?? [];
  if (!Array.isArray(args)) {
    throw new KupodError(`kubeconfig ${file}: args of ${where} is not a list`);
  }
  const env: Record<string, string> = {};
  const envList = raw.env ?? [];
  if (!Array.isArray(envList)) {
    throw new KupodError(`kubeconfig ${file}: env of ${where} is not a list`);
  }
  for (const e of envList) {
    if (!isObj(e) || typeof e.name !== "string") {
      throw new KupodError(`kubeconfig ${file}: env of ${where} has an entry without a name`);
    }
    env[e.name] = e.value === undefined || e.value === null ? "" : String(e.value);
  }
  return {
    apiVersion: apiVersion as ExecConfig["apiVersion"],
    // A relative path with a directory is relative to the kubeconfig; a bare name is looked up
    // in PATH (as client-go does).
    command: command.includes("/") ? resolveFrom(dirOf(file), command, home) : command,
    args: args.map(String),
    env,
    installHint: str(raw, "installHint", where, file) ?? "",
    provideClusterInfo: bool(raw, "provideClusterInfo", where, file),
  };
}
