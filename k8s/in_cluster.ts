/** Access from inside a pod: the service account Kubernetes mounts into every container. */

import { KupodError } from "../base/errors.ts";
import type { ClusterAccess } from "./access.ts";
import { exists, readTextOrThrow } from "./files.ts";

/** Where the service account's files are; tests inject their own. */
export interface InClusterPaths {
  token: string;
  ca: string;
  namespace: string;
}

export const SERVICE_ACCOUNT_PATHS: InClusterPaths = {
  token: "/var/run/secrets/kubernetes.io/serviceaccount/token",
  ca: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
  namespace: "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
};

/** True when the environment says we run in a pod (as client-go decides it). */
export function inClusterAvailable(env: Record<string, string | undefined>): boolean {
  return !!env.KUBERNETES_SERVICE_HOST && !!env.KUBERNETES_SERVICE_PORT;
}

/**
 * The in-cluster access: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, trusting the
 * mounted ca.crt and sending the mounted token (re-read as it rotates). Throws a one-line
 * KupodError when the environment is set but a file is missing.
 */
export function inClusterAccess(
  env: Record<string, string | undefined>,
  paths: InClusterPaths = SERVICE_ACCOUNT_PATHS,
): ClusterAccess {
  if (!inClusterAvailable(env)) {
    throw new KupodError(
      "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set " +
        "(not running in a pod)",
    );
  }
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT!;
  const token = readTextOrThrow(
    paths.token,
    `in-cluster config: cannot read the service account token ${paths.token}`,
  ).trim();
  if (!token) {
    throw new KupodError(`in-cluster config: the service account token ${paths.token} is empty`);
  }
  const caPem = readTextOrThrow(
    paths.ca,
    `in-cluster config: cannot read the service account CA ${paths.ca}`,
  );
  if (!caPem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new KupodError(`in-cluster config: ${paths.ca} holds no PEM certificate`);
  }
  const namespace = exists(paths.namespace)
    ? readTextOrThrow(paths.namespace, `in-cluster config: cannot read ${paths.namespace}`).trim()
    : "";
  return {
    server: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    caPem,
    insecureSkipTlsVerify: false,
    credentials: { tokenFile: paths.token },
    userName: "in-cluster service account",
    namespace,
    source: `in-cluster service account (${paths.token})`,
  };
}
