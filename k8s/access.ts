/** What it takes to talk to one API server: where it is, whom to trust, who we are. */

/** An exec credential plugin of a kubeconfig user (client.authentication.k8s.io). */
export interface ExecConfig {
  apiVersion: "client.authentication.k8s.io/v1" | "client.authentication.k8s.io/v1beta1";
  /** Absolute path, or a bare name looked up in PATH. */
  command: string;
  args: string[];
  env: Record<string, string>;
  installHint: string;
  provideClusterInfo: boolean;
}

/** How requests authenticate; several fields may be set (a client cert and a token, say). */
export interface Credentials {
  /** PEM client certificate and key for mutual TLS. */
  clientCertPem?: string;
  clientKeyPem?: string;
  token?: string;
  /** Read again when it changes (bound service-account tokens rotate). */
  tokenFile?: string;
  username?: string;
  password?: string;
  exec?: ExecConfig;
}

/** One API server and the way in, as read from a kubeconfig or the in-cluster files. */
export interface ClusterAccess {
  /** Base URL without a trailing slash, e.g. "https://10.96.0.1:443". */
  server: string;
  /** PEM CA bundle trusted for the server's certificate; "" = the system roots. */
  caPem: string;
  insecureSkipTlsVerify: boolean;
  credentials: Credentials;
  /** The user as error messages name it: the kubeconfig user, or "in-cluster service account". */
  userName: string;
  /** The context's namespace ("" when it sets none). */
  namespace: string;
  /** Where this came from, e.g. "kubeconfig /root/.kube/config (context kind-kind)". */
  source: string;
}
