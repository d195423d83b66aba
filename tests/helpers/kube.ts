/**
 * Kubernetes test environment: a throwaway PKI made with openssl (CA, server cert for 127.0.0.1,
 * client certs), the API stand-in serving sample pods and nodes, and kubeconfig files for each
 * way of authenticating. Everything lives in one temp dir removed on dispose.
 */

import { stringify } from "yaml";
import { KubeApiStandIn, type StandInOptions } from "../fixtures/kube_apiserver.ts";
import type { Node, Pod } from "../../k8s/types.ts";

/** Users and secrets the stand-in knows, one per way of authenticating. */
export const USERS = {
  cert: "cert-user",
  token: "token-user",
  tokenFile: "file-user",
  exec: "exec-user",
  basic: "basic-user",
} as const;
export const TOKENS = {
  token: "t0ken-4-tests",
  tokenFile: "f1le-t0ken",
  exec: "ex3c-t0ken",
} as const;
export const BASIC_PASSWORD = "s3cret: pass";

export interface Pki {
  dir: string;
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  clientCertPem: string;
  clientKeyPem: string;
  /** A client certificate from another CA: must authenticate nobody. */
  rogueCertPem: string;
  rogueKeyPem: string;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

async function signed(
  dir: string,
  name: string,
  subject: string,
  ca: string,
  ext: string,
): Promise<void> {
  await Deno.writeTextFile(`${dir}/${name}.ext`, ext);
  await openssl(dir, [
    "req",
    ...EC,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.csr`,
    "-subj",
    subject,
  ]);
  const serial = "0x" +
    crypto.getRandomValues(new Uint8Array(8)).reduce(
      (s, b) => s + b.toString(16).padStart(2, "0"),
      "",
    );
  await openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.crt`,
    "-CAkey",
    `${ca}.key`,
    "-set_serial",
    serial,
    "-days",
    "2",
    "-out",
    `${name}.crt`,
    "-extfile",
    `${name}.ext`,
  ]);
}

async function selfSignedCa(dir: string, name: string, cn: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    ...EC,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/** Makes the CA, the server certificate (127.0.0.1, localhost) and client certificates in `dir`. */
export async function makePki(dir: string): Promise<Pki> {
  await Deno.mkdir(dir, { recursive: true });
  await Promise.all([
    selfSignedCa(dir, "ca", "kupod-test-ca"),
    selfSignedCa(dir, "rogue-ca", "rogue-ca"),
  ]);
  const leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n";
  await Promise.all([
    signed(
      dir,
      "server",
      "/CN=kube-apiserver",
      "ca",
      `${leaf}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`,
    ),
    signed(
      dir,
      "client",
      `/O=system:masters/CN=${USERS.cert}`,
      "ca",
      `${leaf}extendedKeyUsage=clientAuth\n`,
    ),
    signed(
      dir,
      "rogue",
      "/O=system:masters/CN=mallory",
      "rogue-ca",
      `${leaf}extendedKeyUsage=clientAuth\n`,
    ),
  ]);
  const read = (f: string) => Deno.readTextFile(`${dir}/${f}`);
  return {
    dir,
    caPem: await read("ca.crt"),
    serverCertPem: await read("server.crt"),
    serverKeyPem: await read("server.key"),
    clientCertPem: await read("client.crt"),
    clientKeyPem: await read("client.key"),
    rogueCertPem: await read("rogue.crt"),
    rogueKeyPem: await read("rogue.key"),
  };
}

export type AuthVariant = "cert" | "cert-data" | "token" | "token-file" | "exec" | "basic" | "none";

export interface ExecPluginSpec {
  apiVersion?: "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1";
  /** What the plugin prints as status (default: the exec token, no expiry). */
  status?: Record<string, unknown>;
  /** Printed instead of an ExecCredential (to test bad plugins). */
  rawOutput?: string;
  exitCode?: number;
  stderr?: string;
}

export interface KubeconfigSpec {
  /** File name inside the env dir; default "<variant>.kubeconfig". */
  file?: string;
  server?: string;
  namespace?: string;
  context?: string;
  exec?: ExecPluginSpec;
}

const b64 = (s: string) => btoa(s);

/** Sample cluster: two nodes, pods in "shop" and "kube-system". */
export function samplePods(): Pod[] {
  const pod = (
    ns: string,
    name: string,
    labels: Record<string, string>,
    node: string,
    phase: "Running" | "Pending",
    ip: string,
  ): Pod => ({
    metadata: { name, namespace: ns, uid: "", labels },
    spec: {
      nodeName: node,
      containers: [
        {
          name: "app",
          image: `registry.local/${labels.app ?? name}:1.0`,
          ports: [{ containerPort: 8080 }],
        },
        { name: "envoy", image: "envoyproxy/envoy:v1.30" },
      ],
    },
    status: {
      phase,
      podIP: ip,
      podIPs: [{ ip }],
      hostIP: node === "node-a" ? "192.168.50.10" : "192.168.50.11",
      qosClass: "Burstable",
      containerStatuses: phase === "Running"
        ? [
          {
            name: "app",
            image: `registry.local/${labels.app ?? name}:1.0`,
            containerID: `containerd://${name.replace(/-/g, "")}aa`,
            ready: true,
            restartCount: 0,
            state: { running: {} },
          },
          {
            name: "envoy",
            image: "envoyproxy/envoy:v1.30",
            containerID: `containerd://${name.replace(/-/g, "")}bb`,
            ready: true,
            restartCount: 1,
            state: { running: {} },
          },
        ]
        : [],
    },
  });
  return [
    pod("shop", "web-0", { app: "web", tier: "frontend" }, "node-a", "Running", "10.244.1.10"),
    pod(
      "shop",
      "web-1",
      { app: "web", tier: "frontend", canary: "true" },
      "node-b",
      "Running",
      "10.244.2.11",
    ),
    pod("shop", "db-0", { app: "db", tier: "backend" }, "node-a", "Pending", "10.244.1.12"),
    pod("kube-system", "coredns-0", { "k8s-app": "kube-dns" }, "node-a", "Running", "10.244.1.2"),
  ];
}

export function sampleNodes(): Node[] {
  const node = (name: string, ip: string, roles: string[]): Node =>
    ({
      metadata: {
        name,
        uid: "",
        labels: Object.fromEntries([
          ["kubernetes.io/hostname", name],
          ...roles.map((r) => [`node-role.kubernetes.io/${r}`, ""]),
        ]),
      },
      status: {
        addresses: [{ type: "InternalIP", address: ip }, { type: "Hostname", address: name }],
        nodeInfo: { containerRuntimeVersion: "containerd://1.7.13", kubeletVersion: "v1.29.4" },
        conditions: [{ type: "Ready", status: "True" }],
      },
    }) as Node;
  return [node("node-a", "192.168.50.10", ["control-plane"]), node("node-b", "192.168.50.11", [])];
}

/** A temp dir with a PKI, a running stand-in and kubeconfig writers; dispose to clean up. */
export class KubeEnv implements AsyncDisposable {
  readonly dir: string;
  readonly pki: Pki;
  readonly api: KubeApiStandIn;

  private constructor(dir: string, pki: Pki, api: KubeApiStandIn) {
    this.dir = dir;
    this.pki = pki;
    this.api = api;
  }

  /** Starts the stand-in with the sample pods/nodes and the test users (override with opts). */
  static async start(opts: Partial<Omit<StandInOptions, "tls">> = {}): Promise<KubeEnv> {
    const dir = await Deno.makeTempDir({ prefix: "kupod-kube-" });
    try {
      const pki = await makePki(`${dir}/pki`);
      const api = await KubeApiStandIn.start({
        pods: samplePods(),
        nodes: sampleNodes(),
        tokens: {
          [TOKENS.token]: USERS.token,
          [TOKENS.tokenFile]: USERS.tokenFile,
          [TOKENS.exec]: USERS.exec,
        },
        basicUsers: { [USERS.basic]: BASIC_PASSWORD },
        ...opts,
        tls: { certPem: pki.serverCertPem, keyPem: pki.serverKeyPem, caPem: pki.caPem },
      });
      return new KubeEnv(dir, pki, api);
    } catch (err) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** Writes `text` to `rel` inside the env dir (creating directories); returns the path. */
  write(rel: string, text: string, mode?: number): string {
    const path = `${this.dir}/${rel}`;
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(path, text, mode === undefined ? undefined : { mode });
    return path;
  }

  /**
   * Writes a kubeconfig for one way of authenticating and returns its path. File references
   * (CA, client cert, token file, exec plugin) are relative to the kubeconfig's directory.
   */
  kubeconfig(variant: AuthVariant, spec: KubeconfigSpec = {}): string {
    const file = spec.file ?? `${variant}.kubeconfig`;
    const name = spec.context ?? `stand-in-${variant}`;
    const user: Record<string, unknown> = {};
    switch (variant) {
      case "cert":
        user["client-certificate"] = "pki/client.crt";
        user["client-key"] = "pki/client.key";
        break;
      case "cert-data":
        user["client-certificate-data"] = b64(this.pki.clientCertPem);
        user["client-key-data"] = b64(this.pki.clientKeyPem);
        break;
      case "token":
        user.token = TOKENS.token;
        break;
      case "token-file":
        this.write("secrets/token", TOKENS.tokenFile + "\n");
        user.tokenFile = "secrets/token";
        break;
      case "basic":
        user.username = USERS.basic;
        user.password = BASIC_PASSWORD;
        break;
      case "exec":
        user.exec = this.#execPlugin(file, spec.exec ?? {});
        break;
      case "none":
        break;
    }
    const cluster: Record<string, unknown> = { server: spec.server ?? this.api.url };
    if (variant === "cert-data") cluster["certificate-authority-data"] = b64(this.pki.caPem);
    else cluster["certificate-authority"] = "pki/ca.crt";
    const context: Record<string, unknown> = { cluster: "stand-in", user: `${variant}-user` };
    if (spec.namespace) context.namespace = spec.namespace;
    const config = {
      apiVersion: "v1",
      kind: "Config",
      "current-context": name,
      clusters: [{ name: "stand-in", cluster }],
      contexts: [{ name, context }],
      users: [{ name: `${variant}-user`, user }],
      preferences: {},
    };
    return this.write(file, stringify(config));
  }

  /** Writes the exec plugin script for `kubeconfigFile`; returns the kubeconfig's exec stanza. */
  #execPlugin(kubeconfigFile: string, spec: ExecPluginSpec): Record<string, unknown> {
    const apiVersion = spec.apiVersion ?? "client.authentication.k8s.io/v1";
    const base = kubeconfigFile.replace(/[^A-Za-z0-9]+/g, "-");
    const output = spec.rawOutput ??
      JSON.stringify({
        apiVersion,
        kind: "ExecCredential",
        status: spec.status ?? { token: TOKENS.exec },
      });
    const script = [
      "#!/bin/sh",
      // Each run leaves a line, so tests can count runs and see what the plugin was given.
      `printf '%s %s\\n' "$1" "$KUBERNETES_EXEC_INFO" >> "$PLUGIN_LOG"`,
      spec.stderr ? `echo '${spec.stderr}' >&2` : "",
      "cat <<'KUPOD_EOF'",
      output,
      "KUPOD_EOF",
      `exit ${spec.exitCode ?? 0}`,
      "",
    ].join("\n");
    this.write(`bin/${base}-plugin`, script, 0o755);
    return {
      apiVersion,
      command: `./bin/${base}-plugin`,
      args: ["--cluster=stand-in"],
      env: [{ name: "PLUGIN_LOG", value: `${this.dir}/bin/${base}-plugin.log` }],
      interactiveMode: "Never",
      provideClusterInfo: true,
    };
  }

  /** Lines the exec plugin of `kubeconfigFile` logged (one per run). */
  pluginRuns(kubeconfigFile = "exec.kubeconfig"): string[] {
    const base = kubeconfigFile.replace(/[^A-Za-z0-9]+/g, "-");
    try {
      return Deno.readTextFileSync(`${this.dir}/bin/${base}-plugin.log`).split("\n").filter((l) =>
        l
      );
    } catch {
      return [];
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.api.close();
    } finally {
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    }
  }
}

/** A local TCP port nothing listens on (bound, then released). */
export function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
