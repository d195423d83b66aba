/**
 * Kubernetes access: kubeconfig discovery and parsing, every way of authenticating, in-cluster
 * config, the REST client's errors, selectors and watches, against the HTTPS API stand-in.
 */

import { KupodError } from "../base/errors.ts";
import type { ClusterAccess } from "../k8s/access.ts";
import { ALL_NAMESPACES, describeCluster, KubeApiError, KubeClient } from "../k8s/client.ts";
import { inClusterAccess } from "../k8s/in_cluster.ts";
import { discoverAccess, kubeconfigFiles, loadKubeconfig } from "../k8s/kubeconfig.ts";
import type { Pod, WatchEvent } from "../k8s/types.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { closedPort, KubeEnv, samplePods, TOKENS, USERS } from "./helpers/kube.ts";

/** Runs `f` expecting a one-line KupodError whose message matches `pattern`; returns it. */
async function rejects(f: () => unknown, pattern: RegExp): Promise<KupodError> {
  try {
    await f();
  } catch (e) {
    assert(e instanceof KupodError, `expected a KupodError, got ${e}`);
    assert(
      pattern.test(e.message),
      `message ${JSON.stringify(e.message)} does not match ${pattern}`,
    );
    assert(!e.message.includes("\n"), `not one line: ${e.message}`);
    return e;
  }
  throw new Error(`did not throw (expected ${pattern})`);
}

function client(access: ClusterAccess, timeoutMs?: number): KubeClient {
  return new KubeClient(access, { timeoutMs });
}

function names(pods: Pod[]): string[] {
  return pods.map((p) => p.metadata.name);
}

/** The next `n` events of a watch, as "TYPE name" strings; fails after `ms`. */
async function take(
  it: AsyncIterator<WatchEvent<Pod>>,
  n: number,
  ms = 5000,
): Promise<string[]> {
  const out: string[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`only ${out.length}/${n} events: ${out}`)), ms);
  });
  try {
    while (out.length < n) {
      const r = await Promise.race([it.next(), deadline]);
      if (r.done) throw new Error(`watch ended after ${out}`);
      out.push(`${r.value.type} ${r.value.object.metadata.name}`);
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// Authentication

for (
  const [variant, user, authBy] of [
    ["cert", USERS.cert, "cert"],
    ["cert-data", USERS.cert, "cert"],
    ["token", USERS.token, "token"],
    ["token-file", USERS.tokenFile, "token"],
    ["exec", USERS.exec, "token"],
    ["basic", USERS.basic, "basic"],
  ] as const
) {
  Deno.test(`k8s auth: ${variant} kubeconfig reaches the API as ${user}`, async () => {
    await using env = await KubeEnv.start();
    using kube = client(loadKubeconfig([env.kubeconfig(variant, { namespace: "shop" })]));
    assertEquals(kube.access.namespace, "shop");
    const pod = await kube.getPod("shop", "web-0");
    assertEquals(pod.metadata.name, "web-0");
    assertEquals(pod.spec.nodeName, "node-a");
    const seen = env.api.requests.at(-1)!;
    assertEquals([seen.user, seen.authBy], [user, authBy]);
  });
}

Deno.test("k8s auth: exec plugin v1beta1, cached across requests, given the cluster", async () => {
  await using env = await KubeEnv.start();
  const path = env.kubeconfig("exec", {
    exec: { apiVersion: "client.authentication.k8s.io/v1beta1" },
  });
  using kube = client(loadKubeconfig([path]));
  await kube.getPod("shop", "web-0");
  await kube.listPods("shop");
  await kube.getNode("node-a");
  const runs = env.pluginRuns();
  assertEquals(runs.length, 1, "one plugin run for three requests");
  const [arg, info] = [
    runs[0].slice(0, runs[0].indexOf(" ")),
    runs[0].slice(runs[0].indexOf(" ") + 1),
  ];
  assertEquals(arg, "--cluster=stand-in");
  const spec = JSON.parse(info);
  assertEquals(spec.apiVersion, "client.authentication.k8s.io/v1beta1");
  assertEquals(spec.spec.interactive, false);
  assertEquals(spec.spec.cluster.server, env.api.url);
  assertEquals(atob(spec.spec.cluster["certificate-authority-data"]), env.pki.caPem);
});

Deno.test("k8s auth: exec credential is fetched again once it expires", async () => {
  await using env = await KubeEnv.start();
  const path = env.kubeconfig("exec", {
    exec: { status: { token: TOKENS.exec, expirationTimestamp: "2001-01-01T00:00:00Z" } },
  });
  using kube = client(loadKubeconfig([path]));
  await kube.getPod("shop", "web-0");
  await kube.getPod("shop", "web-1");
  assertEquals(env.pluginRuns().length, 2);
});

Deno.test("k8s auth: exec plugin giving a client certificate", async () => {
  await using env = await KubeEnv.start();
  const path = env.kubeconfig("exec", {
    exec: {
      status: { clientCertificateData: env.pki.clientCertPem, clientKeyData: env.pki.clientKeyPem },
    },
  });
  using kube = client(loadKubeconfig([path]));
  await kube.getPod("shop", "web-0");
  const seen = env.api.requests.at(-1)!;
  assertEquals([seen.user, seen.authBy], [USERS.cert, "cert"]);
});

Deno.test("k8s auth: a rejected exec credential is fetched again once per 401", async () => {
  await using env = await KubeEnv.start();
  // A plugin printing whatever token the test puts into a file.
  const tokenFile = env.write("plugin-token", "stale");
  env.write(
    "bin/rotating",
    `#!/bin/sh\necho run >> "${env.dir}/rotating.log"\n` +
      `printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",` +
      `"status":{"token":"%s"}}' "$(cat ${tokenFile})"\n`,
    0o755,
  );
  const path = env.write(
    "rotating.kubeconfig",
    [
      "apiVersion: v1",
      "kind: Config",
      "current-context: c",
      "contexts: [{name: c, context: {cluster: s, user: u}}]",
      `clusters: [{name: s, cluster: {server: "${env.api.url}", certificate-authority: pki/ca.crt}}]`,
      "users:",
      "- name: u",
      "  user:",
      "    exec: {apiVersion: client.authentication.k8s.io/v1, command: bin/rotating}",
    ].join("\n"),
  );
  using kube = client(loadKubeconfig([path]));
  const runs = () => Deno.readTextFileSync(`${env.dir}/rotating.log`).trim().split("\n").length;
  await rejects(() => kube.getPod("shop", "web-0"), /rejected the credentials of user "u"/);
  assertEquals(runs(), 2, "run, 401, run again, 401: give up");
  Deno.writeTextFileSync(tokenFile, TOKENS.exec);
  await kube.getPod("shop", "web-0");
  assertEquals(runs(), 3);
  assertEquals(env.api.requests.at(-1)!.user, USERS.exec);
});

Deno.test("k8s auth: a rotated token file is read again after a 401", async () => {
  await using env = await KubeEnv.start();
  const path = env.kubeconfig("token-file");
  env.write("secrets/token", "not-yet-valid");
  using kube = client(loadKubeconfig([path]));
  await rejects(
    () => kube.getPod("shop", "web-0"),
    /rejected the credentials of user "token-file-user" \(401 Unauthorized\)$/,
  );
  // The kubelet rotates the token; the cached one is refused once, then the file is read again.
  env.write("secrets/token", TOKENS.tokenFile);
  await kube.getPod("shop", "web-0");
  assertEquals(env.api.requests.map((r) => r.user), ["", "", "", USERS.tokenFile]);
});

Deno.test("k8s auth: bad exec plugins are one-line errors naming the plugin", async () => {
  await using env = await KubeEnv.start();
  const cases: [Parameters<KubeEnv["kubeconfig"]>[1], RegExp][] = [
    [
      { exec: { exitCode: 3, stderr: "login expired: run cloud-auth login" } },
      /exec credential plugin "[^"]+-plugin" of user "exec-user" failed \(exit 3\): login expired: run cloud-auth login$/,
    ],
    [{ exec: { rawOutput: "not json" } }, /printed no ExecCredential JSON/],
    [
      {
        exec: {
          rawOutput:
            '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"x"}}',
        },
      },
      /apiVersion "client.authentication.k8s.io\/v1beta1" \(expected "client.authentication.k8s.io\/v1"\)/,
    ],
    [{ exec: { status: {} } }, /returned neither a token nor a client certificate/],
    [
      { exec: { status: { token: "x", expirationTimestamp: "tomorrow" } } },
      /expirationTimestamp that is not RFC 3339/,
    ],
  ];
  for (const [i, [spec, pattern]] of cases.entries()) {
    using kube = client(
      loadKubeconfig([env.kubeconfig("exec", { ...spec, file: `bad${i}.kubeconfig` })]),
    );
    await rejects(() => kube.getPod("shop", "web-0"), pattern);
  }
  const missing = env.write(
    "missing-plugin.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("exec")).replace(
      /^(\s*)command: .*$/m,
      "$1command: kupod-no-such-plugin\n$1installHint: install it with 'apt install kupod-auth'",
    ),
  );
  using kube = client(loadKubeconfig([missing]));
  await rejects(
    () => kube.version(),
    /exec credential plugin "kupod-no-such-plugin" of user "exec-user" not found: install it with 'apt install kupod-auth'/,
  );
});

Deno.test("k8s auth: insecure-skip-tls-verify works without a CA, still with the client certificate", async () => {
  await using env = await KubeEnv.start();
  const path = env.write(
    "insecure.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("cert")).replace(
      /certificate-authority: .*/,
      "insecure-skip-tls-verify: true",
    ),
  );
  using kube = client(loadKubeconfig([path]));
  assert(kube.access.insecureSkipTlsVerify);
  assertEquals(kube.access.caPem, "");
  assertEquals((await kube.getPod("shop", "web-0")).metadata.name, "web-0");
  assertEquals(env.api.requests.at(-1)!.authBy, "cert");
  const both = env.write(
    "both.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("cert")).replace(
      /^(\s*)certificate-authority: .*$/m,
      "$&\n$1insecure-skip-tls-verify: true",
    ),
  );
  await rejects(
    () => loadKubeconfig([both]),
    /both a certificate authority and insecure-skip-tls-verify/,
  );
});

Deno.test("k8s auth: a client certificate from another CA, or none, authenticates nobody", async () => {
  await using env = await KubeEnv.start();
  const rogue = env.write(
    "rogue.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("cert-data")).replace(
      /client-certificate-data: .*\n(\s*)client-key-data: .*/,
      `client-certificate-data: ${btoa(env.pki.rogueCertPem)}\n$1client-key-data: ${
        btoa(env.pki.rogueKeyPem)
      }`,
    ),
  );
  using kube = client(loadKubeconfig([rogue]));
  await rejects(
    () => kube.getPod("shop", "web-0"),
    /rejected the credentials of user "cert-data-user" \(401 Unauthorized\)/,
  );
  using anon = client(loadKubeconfig([env.kubeconfig("none")]));
  await rejects(
    () => anon.getPod("shop", "web-0"),
    /refused a request without credentials \(401 Unauthorized\): user "none-user" of kubeconfig .* has none/,
  );
});

// ---------------------------------------------------------------------------------------------
// In-cluster config and discovery

Deno.test("k8s in-cluster: service account token, CA and namespace from injected paths", async () => {
  await using env = await KubeEnv.start();
  const paths = {
    token: env.write("sa/token", TOKENS.tokenFile + "\n"),
    ca: env.write("sa/ca.crt", env.pki.caPem),
    namespace: env.write("sa/namespace", "shop"),
  };
  const vars = {
    KUBERNETES_SERVICE_HOST: "127.0.0.1",
    KUBERNETES_SERVICE_PORT: String(env.api.port),
  };
  const access = discoverAccess({
    env: { ...vars, HOME: `${env.dir}/nohome` },
    adminConf: `${env.dir}/no-admin.conf`,
    inCluster: paths,
  });
  assertEquals(access.server, env.api.url);
  assertEquals(access.namespace, "shop");
  assert(access.source.startsWith("in-cluster"), access.source);
  using kube = client(access);
  assertEquals(names((await kube.listPods(access.namespace, { labelSelector: "app=web" })).items), [
    "web-0",
    "web-1",
  ]);
  assertEquals(env.api.requests.at(-1)!.user, USERS.tokenFile);

  assertEquals(
    inClusterAccess({ KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" }, paths)
      .server,
    "https://[fd00::1]:443",
  );
  await rejects(
    () => inClusterAccess(vars, { ...paths, token: `${env.dir}/sa/missing` }),
    /^in-cluster config: cannot read the service account token .*\/sa\/missing: no such file$/,
  );
  await rejects(() => inClusterAccess({}, paths), /not set \(not running in a pod\)/);
});

Deno.test("k8s discovery: --kubeconfig, then $KUBECONFIG, then ~/.kube/config, then admin.conf, then in-cluster", async () => {
  await using env = await KubeEnv.start();
  const flag = env.kubeconfig("token", { file: "flag.kubeconfig" });
  const listed = env.kubeconfig("token", { file: "listed.kubeconfig" });
  const home = `${env.dir}/home`;
  const homeConfig = env.kubeconfig("token", { file: "home/.kube/config" });
  const admin = env.kubeconfig("token", { file: "admin.conf" });
  const vars = {
    KUBERNETES_SERVICE_HOST: "127.0.0.1",
    KUBERNETES_SERVICE_PORT: String(env.api.port),
  };
  const sa = {
    token: env.write("sa/token", TOKENS.tokenFile),
    ca: env.write("sa/ca.crt", env.pki.caPem),
    namespace: `${env.dir}/sa/namespace`,
  };
  const envv = { HOME: home, KUBECONFIG: `${env.dir}/missing:${listed}`, ...vars };
  const opts = { adminConf: admin, inCluster: sa };
  assertEquals(kubeconfigFiles({ ...opts, kubeconfig: flag, env: envv }), [flag]);
  assertEquals(kubeconfigFiles({ ...opts, env: envv }), [listed]);
  assertEquals(kubeconfigFiles({ ...opts, env: { ...envv, KUBECONFIG: "" } }), [homeConfig]);
  assertEquals(kubeconfigFiles({ ...opts, env: { ...vars, HOME: `${env.dir}/elsewhere` } }), [
    admin,
  ]);
  const inCluster = discoverAccess({
    adminConf: `${env.dir}/none`,
    inCluster: sa,
    env: { ...vars, HOME: `${env.dir}/elsewhere` },
  });
  assert(inCluster.source.startsWith("in-cluster"), inCluster.source);
  assert(discoverAccess({ ...opts, env: envv }).source.includes("listed.kubeconfig"));
  await rejects(
    () =>
      discoverAccess({
        adminConf: `${env.dir}/none`,
        inCluster: sa,
        env: { HOME: `${env.dir}/elsewhere` },
      }),
    /^no Kubernetes configuration found: give --kubeconfig, set \$KUBECONFIG or create .*\/elsewhere\/\.kube\/config/,
  );
  await rejects(
    () => kubeconfigFiles({ env: { KUBECONFIG: `${env.dir}/a:${env.dir}/b` } }),
    /^\$KUBECONFIG names no existing file/,
  );
  await rejects(
    () => discoverAccess({ kubeconfig: `${env.dir}/nope`, env: envv }),
    /^cannot read kubeconfig .*\/nope: no such file$/,
  );
});

Deno.test("k8s discovery: $KUBECONFIG files merge, the first file winning per name", async () => {
  await using env = await KubeEnv.start();
  // First file: the current context and its user; second: the cluster, and a decoy user.
  const first = env.write(
    "kc/first.yaml",
    [
      "current-context: merged",
      "contexts:",
      "- {name: merged, context: {cluster: shared, user: me, namespace: shop}}",
      "users:",
      `- {name: me, user: {token: ${TOKENS.token}}}`,
    ].join("\n"),
  );
  const second = env.write(
    "kc2/second.yaml",
    [
      "current-context: other",
      "clusters:",
      `- {name: shared, cluster: {server: "${env.api.url}", certificate-authority: ../pki/ca.crt}}`,
      "users:",
      "- {name: me, user: {token: wrong}}",
    ].join("\n"),
  );
  const access = discoverAccess({ env: { KUBECONFIG: `${first}:${second}` } });
  assertEquals(access.namespace, "shop");
  assertEquals(access.credentials.token, TOKENS.token);
  assertEquals(access.caPem, env.pki.caPem, "relative to the file that names it");
  using kube = client(access);
  await kube.getPod("shop", "web-0");
  assertEquals(env.api.requests.at(-1)!.user, USERS.token);
});

Deno.test("k8s kubeconfig: every bad input is a one-line error naming the file", async () => {
  await using env = await KubeEnv.start();
  const good = Deno.readTextFileSync(env.kubeconfig("cert"));
  const bad = (name: string, text: string) => env.write(`bad/${name}`, text);
  /** The good kubeconfig with the user's fields replaced by `lines`. */
  const withUser = (lines: string) =>
    good.replace(
      /^(\s*)client-certificate: .*\n\s*client-key: .*$/m,
      (_, indent) => lines.split("\n").map((l) => indent + l).join("\n"),
    );
  const cases: [string, RegExp][] = [
    [
      bad("malformed", "clusters:\n  - name: a\n   cluster: {server: x\n"),
      /^kubeconfig .*\/bad\/malformed: malformed YAML: /,
    ],
    [bad("scalar", "just words"), /^kubeconfig .*\/bad\/scalar: not a kubeconfig/],
    [
      bad("nocontext", good.replace(/current-context: .*\n/, "")),
      /^kubeconfig .*\/bad\/nocontext has no current-context \(choose one with 'kubectl config use-context NAME'\)$/,
    ],
    [
      bad("wrongcontext", good.replace(/current-context: .*/, "current-context: prod")),
      /^kubeconfig .*\/bad\/wrongcontext: context "prod" not found \(contexts: stand-in-cert\)$/,
    ],
    [
      bad("nocluster", good.replace(/cluster: stand-in$/m, "cluster: gone")),
      /: cluster "gone" of context "stand-in-cert" not found$/,
    ],
    [
      bad("nouser", good.replace(/user: cert-user$/m, "user: ghost")),
      /: user "ghost" of context "stand-in-cert" not found$/,
    ],
    [
      bad("noserver", good.replace(/server: .*/, "server: ''")),
      /: cluster "stand-in" has no server$/,
    ],
    [
      bad("nocert", good.replace("pki/client.crt", "pki/missing.crt")),
      /^kubeconfig .*\/bad\/nocert: cannot read client-certificate .*\/bad\/pki\/missing.crt of user "cert-user": no such file$/,
    ],
    [
      bad("noca", good.replace("pki/ca.crt", "../pki/nope.crt")),
      /cannot read certificate-authority .*\/pki\/nope.crt of cluster "stand-in": no such file$/,
    ],
    [
      bad("notpem", good.replace("pki/client.key", "../pki/ca.crt")),
      /client-key .*\/pki\/ca.crt of user "cert-user" holds no PEM private key$/,
    ],
    [
      bad("nokey", good.replace(/\n\s*client-key: .*/, "")),
      /user "cert-user" has a client certificate but no client key$/,
    ],
    [
      bad(
        "baddata",
        good.replace(/certificate-authority: .*/, "certificate-authority-data: '%%%'"),
      ),
      /certificate-authority-data of cluster "stand-in" is not valid base64$/,
    ],
    [
      bad("tokenandbasic", withUser("token: a\nusername: b")),
      /user "cert-user" has both a token and a username\/password/,
    ],
    [
      bad("authprovider", withUser("auth-provider: {name: gcp}")),
      /uses auth-provider "gcp", which kupod does not support/,
    ],
    [
      bad(
        "alpha",
        withUser("exec: {apiVersion: client.authentication.k8s.io/v1alpha1, command: x}"),
      ),
      /exec of user "cert-user" has apiVersion "client.authentication.k8s.io\/v1alpha1"/,
    ],
    [bad("notlist", "clusters: {a: 1}"), /clusters is not a list$/],
  ];
  // Relative paths of the bad files resolve against bad/: give them the PKI there too.
  Deno.mkdirSync(`${env.dir}/bad/pki`, { recursive: true });
  Deno.copyFileSync(`${env.dir}/pki/client.crt`, `${env.dir}/bad/pki/client.crt`);
  Deno.copyFileSync(`${env.dir}/pki/client.key`, `${env.dir}/bad/pki/client.key`);
  Deno.copyFileSync(`${env.dir}/pki/ca.crt`, `${env.dir}/bad/pki/ca.crt`);
  for (const [path, pattern] of cases) await rejects(() => loadKubeconfig([path]), pattern);
  await rejects(
    () => loadKubeconfig([`${env.dir}/absent`]),
    /^cannot read kubeconfig .*\/absent: no such file$/,
  );
  await rejects(() => loadKubeconfig([env.dir]), /^cannot read kubeconfig .*: is a directory$/);
});

// ---------------------------------------------------------------------------------------------
// API errors

Deno.test("k8s client: unreachable, 401, 403, 404 and timeouts are one-line errors", async () => {
  await using env = await KubeEnv.start({ forbidden: [USERS.basic] });
  const port = closedPort();
  using down = client(
    loadKubeconfig([
      env.kubeconfig("cert", { file: "down.kubeconfig", server: `https://127.0.0.1:${port}` }),
    ]),
  );
  const e = await rejects(
    () => down.getPod("shop", "web-0"),
    new RegExp(
      `^cannot reach the Kubernetes API at https://127\\.0\\.0\\.1:${port}: connection refused$`,
    ),
  );
  assertEquals((e as KubeApiError).code, 0);

  env.write("secrets/wrong", "no-such-token");
  const wrong = env.write(
    "wrong.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("token")).replace(
      `token: ${TOKENS.token}`,
      "token: no-such-token",
    ),
  );
  using unauthorized = client(loadKubeconfig([wrong]));
  await rejects(
    () => unauthorized.getPod("shop", "web-0"),
    new RegExp(
      `^the Kubernetes API at ${env.api.url} rejected the credentials of user "token-user" \\(401 Unauthorized\\)$`,
    ),
  );

  using forbidden = client(loadKubeconfig([env.kubeconfig("basic")]));
  const f = await rejects(
    () => forbidden.getPod("shop", "web-0"),
    /refused: pods "web-0" is forbidden: User "basic-user" cannot get resource "pods" in API group "" in the namespace "shop" \(403 Forbidden\)$/,
  );
  assertEquals([(f as KubeApiError).code, (f as KubeApiError).reason], [403, "Forbidden"]);
  await rejects(
    () => forbidden.watchPods("shop").next(),
    /pods is forbidden: User "basic-user" cannot list resource "pods"/,
  );

  using kube = client(loadKubeconfig([env.kubeconfig("cert")]));
  const nf = await rejects(
    () => kube.getPod("shop", "web-9"),
    /^pod "web-9" not found in namespace "shop"$/,
  );
  assertEquals((nf as KubeApiError).reason, "NotFound");
  await rejects(() => kube.getNode("node-z"), /^node "node-z" not found$/);
  await rejects(
    () => kube.listPods("shop", { labelSelector: "app in web" }),
    /answered 400 BadRequest: unable to parse requirement/,
  );
  await rejects(
    () => kube.listPods("shop", { fieldSelector: "spec.color=red" }),
    /answered 400 BadRequest: field label not supported: spec.color/,
  );

  // A server that accepts connections and never answers.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of silent) held.push(c);
  })();
  try {
    const addr = silent.addr as Deno.NetAddr;
    using slow = client(
      loadKubeconfig([
        env.kubeconfig("cert", {
          file: "slow.kubeconfig",
          server: `https://127.0.0.1:${addr.port}`,
        }),
      ]),
      300,
    );
    await rejects(
      () => slow.version(),
      /^the Kubernetes API at https:\/\/127\.0\.0\.1:\d+ did not answer within 0\.3 s \(GET \/version\)$/,
    );
  } finally {
    silent.close();
    for (const c of held) c.close();
    await accepting.catch(() => {});
  }
});

Deno.test("k8s client: a server trusted by another CA is named as an untrusted certificate", async () => {
  await using env = await KubeEnv.start();
  const path = env.write(
    "other-ca.kubeconfig",
    Deno.readTextFileSync(env.kubeconfig("cert")).replace("pki/ca.crt", "pki/rogue-ca.crt"),
  );
  using kube = client(loadKubeconfig([path]));
  await rejects(
    () => kube.version(),
    /^cannot reach the Kubernetes API at .*: its TLS certificate is not trusted \(UnknownIssuer\): check the certificate authority in kubeconfig .*other-ca.kubeconfig/,
  );
});

// ---------------------------------------------------------------------------------------------
// Reads

Deno.test("k8s client: version, nodes, pods of one or all namespaces", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("cert")]));
  const v = await kube.version();
  assertEquals([v.major, v.minor, v.gitVersion], ["1", "29", "v1.29.4"]);
  assert(
    describeCluster(kube.access, v).startsWith(
      `Kubernetes v1.29.4 at ${env.api.url} as user "cert-user", from kubeconfig `,
    ),
  );
  assertEquals(names((await kube.listPods("shop")).items), ["web-0", "web-1", "db-0"]);
  assertEquals(names((await kube.listPods(ALL_NAMESPACES)).items), [
    "web-0",
    "web-1",
    "db-0",
    "coredns-0",
  ]);
  assertEquals((await kube.listPods("nowhere")).items, []);
  const node = await kube.getNode("node-b");
  assertEquals(node.status?.addresses?.[0], { type: "InternalIP", address: "192.168.50.11" });
  assertEquals((await kube.listNodes()).items.map((n) => n.metadata.name), ["node-a", "node-b"]);
});

Deno.test("k8s client: label and field selectors", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("token")]));
  const cases: [string, { labelSelector?: string; fieldSelector?: string }, string[]][] = [
    ["shop", { labelSelector: "app=web" }, ["web-0", "web-1"]],
    ["shop", { labelSelector: "app==db" }, ["db-0"]],
    ["shop", { labelSelector: "app!=web" }, ["db-0"]],
    ["shop", { labelSelector: "tier in (frontend, backend),app notin (db)" }, ["web-0", "web-1"]],
    ["shop", { labelSelector: "canary" }, ["web-1"]],
    ["shop", { labelSelector: "!canary" }, ["web-0", "db-0"]],
    ["", { labelSelector: "tier notin (frontend)" }, ["db-0", "coredns-0"]],
    ["", { fieldSelector: "spec.nodeName=node-a" }, ["web-0", "db-0", "coredns-0"]],
    ["", { fieldSelector: "metadata.namespace!=shop" }, ["coredns-0"]],
    ["shop", { fieldSelector: "status.phase=Running,metadata.name!=web-1" }, ["web-0"]],
    ["shop", { fieldSelector: "metadata.name==db-0" }, ["db-0"]],
    ["", { labelSelector: "app=web", fieldSelector: "spec.nodeName=node-b" }, ["web-1"]],
  ];
  for (const [ns, sel, want] of cases) {
    assertEquals(names((await kube.listPods(ns, sel)).items), want, JSON.stringify(sel));
  }
  const seen = env.api.requests.at(-1)!;
  assertEquals([seen.path, seen.query.labelSelector, seen.query.fieldSelector], [
    "/api/v1/pods",
    "app=web",
    "spec.nodeName=node-b",
  ]);
});

// ---------------------------------------------------------------------------------------------
// Watch

/**
 * The next `n` events of `it`, with `act` run while they are awaited (a pull-based watch only
 * opens its stream once asked for the next event).
 */
async function during(
  it: AsyncIterator<WatchEvent<Pod>>,
  n: number,
  act: () => void | Promise<void>,
): Promise<string[]> {
  const pending = take(it, n);
  try {
    await act();
  } catch (err) {
    pending.catch(() => {});
    throw err;
  }
  return await pending;
}

Deno.test("k8s watch: the current pods, then ADDED, MODIFIED, DELETED in order", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("cert")]));
  const ac = new AbortController();
  const it = kube.watchPods("shop", { labelSelector: "app=web" }, ac.signal);
  let added: Pod | undefined;
  try {
    assertEquals(await take(it, 2), ["ADDED web-0", "ADDED web-1"]);
    const got = await during(it, 4, async () => {
      await until(() => env.api.watchCount === 1);
      const web2 = samplePods()[0];
      web2.metadata.name = "web-2";
      added = env.api.upsertPod(web2);
      web2.status.phase = "Failed";
      env.api.upsertPod(web2);
      const leaving = samplePods()[1];
      leaving.metadata.labels = { app: "web-old" }; // leaves the selection: DELETED for this watch
      env.api.upsertPod(leaving);
      env.api.deletePod("shop", "web-2");
      env.api.deletePod("shop", "db-0"); // not selected: not seen
    });
    assertEquals(got, ["ADDED web-2", "MODIFIED web-2", "DELETED web-1", "DELETED web-2"]);
    const watchReq = env.api.requests.find((r) => r.query.watch)!;
    assertEquals(watchReq.query.labelSelector, "app=web");
    assertEquals(watchReq.query.allowWatchBookmarks, "true");
    assert(Number(watchReq.query.resourceVersion) < Number(added!.metadata.resourceVersion));
  } finally {
    ac.abort();
    assertEquals((await it.next()).done, true, "an aborted watch ends");
  }
  await until(() => env.api.watchCount === 0);
});

Deno.test("k8s watch: made again from the last resourceVersion when the server ends it", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("token")]));
  const it = kube.watchPods("shop", { timeoutSeconds: 60 });
  let changed: Pod | undefined;
  try {
    assertEquals((await take(it, 3)).length, 3);
    const first = await during(it, 1, async () => {
      await until(() => env.api.watchCount === 1);
      const p = samplePods()[0];
      p.status.phase = "Failed";
      changed = env.api.upsertPod(p);
    });
    assertEquals(first, ["MODIFIED web-0"]);
    let elsewhere: Pod | undefined;
    const second = await during(it, 1, () => {
      elsewhere = env.api.upsertPod(samplePods()[3]); // another namespace: no event here
      env.api.bookmark(); // moves the client's resourceVersion on without an event
      env.api.endWatches();
      env.api.deletePod("shop", "web-1"); // while no watch is open: replayed on reconnect
    });
    assertEquals(second, ["DELETED web-1"]);
    const watches = env.api.requests.filter((r) => r.query.watch);
    assertEquals(watches.length, 2);
    assertEquals(watches[0].query.timeoutSeconds, "60");
    assert(Number(elsewhere!.metadata.resourceVersion) > Number(changed!.metadata.resourceVersion));
    assertEquals(
      watches[1].query.resourceVersion,
      elsewhere!.metadata.resourceVersion,
      "from the bookmark",
    );
  } finally {
    await it.return();
  }
  await until(() => env.api.watchCount === 0);
});

Deno.test("k8s watch: 410 Expired relists and reports what changed meanwhile", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("cert-data")]));
  const it = kube.watchPods("shop");
  try {
    assertEquals(await take(it, 3), ["ADDED web-0", "ADDED web-1", "ADDED db-0"]);
    const diff = await during(it, 3, async () => {
      await until(() => env.api.watchCount === 1);
      const changed = samplePods()[1];
      changed.status.phase = "Failed";
      const fresh = samplePods()[0];
      fresh.metadata.name = "web-3";
      env.api.expireWatches({ upsert: [changed, fresh], delete: [["shop", "db-0"]] });
    });
    assertEquals(diff, ["MODIFIED web-1", "ADDED web-3", "DELETED db-0"]);
    const live = await during(it, 1, async () => {
      await until(() => env.api.watchCount === 1);
      env.api.deletePod("shop", "web-3");
    });
    assertEquals(live, ["DELETED web-3"], "live again after the relist");
    assertEquals(
      env.api.requests.filter((r) => !r.query.watch && r.path.endsWith("/pods")).length,
      2,
    );
  } finally {
    await it.return();
  }
});

Deno.test("k8s watch: an expired starting resourceVersion relists", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("basic")]));
  const it = kube.watchPods(ALL_NAMESPACES, {
    resourceVersion: "5",
    fieldSelector: "spec.nodeName=node-a",
  });
  try {
    assertEquals(await take(it, 3), ["ADDED web-0", "ADDED db-0", "ADDED coredns-0"]);
  } finally {
    await it.return();
  }
  assertEquals(env.api.requests[0].query.resourceVersion, "5");
  assertEquals(env.api.requests[0].path, "/api/v1/pods");
});

Deno.test("k8s watch: breaking out of the loop closes the stream", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("cert")]));
  const it = kube.watchPods("kube-system", { resourceVersion: env.api.resourceVersion });
  const got = await during(it, 1, async () => {
    await until(() => env.api.watchCount === 1);
    const p = samplePods()[3];
    p.status.phase = "Pending";
    env.api.upsertPod(p);
  });
  assertEquals(got, ["MODIFIED coredns-0"]);
  await it.return();
  await until(() => env.api.watchCount === 0);
});

Deno.test("k8s watch: gives up with a one-line error once the server stays away", async () => {
  await using env = await KubeEnv.start();
  using kube = client(loadKubeconfig([env.kubeconfig("token")]));
  const it = kube.watchPods("shop", { retries: 2 });
  try {
    assertEquals((await take(it, 3)).length, 3);
    const started = Date.now();
    const failed = rejects(
      () => it.next(),
      new RegExp(`^cannot reach the Kubernetes API at ${env.api.url}: connection refused$`),
    );
    await until(() => env.api.watchCount === 1);
    await env.api.close();
    await failed;
    assert(Date.now() - started >= 750, "two backoffs (250 ms, 500 ms) before giving up");
  } finally {
    await it.return();
  }
});
