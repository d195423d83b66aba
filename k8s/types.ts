/** The parts of Kubernetes API objects kupod reads (core/v1), as the API server returns them. */

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  labels?: Record<string, string>;
  resourceVersion?: string;
  creationTimestamp?: string;
}

export interface ContainerSpec {
  name: string;
  image: string;
  ports?: { containerPort: number; name?: string; protocol?: string }[];
}

export interface ContainerStatus {
  name: string;
  image: string;
  imageID?: string;
  /** "containerd://<id>", "docker://<id>", "cri-o://<id>"; absent until the container exists. */
  containerID?: string;
  ready: boolean;
  restartCount: number;
  started?: boolean;
  state?: {
    running?: { startedAt?: string };
    waiting?: { reason?: string };
    terminated?: { reason?: string; exitCode?: number };
  };
}

export interface Pod {
  apiVersion?: "v1";
  kind?: "Pod";
  metadata: ObjectMeta;
  spec: {
    nodeName?: string;
    containers: ContainerSpec[];
    initContainers?: ContainerSpec[];
    hostNetwork?: boolean;
  };
  status: {
    phase?: "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";
    podIP?: string;
    podIPs?: { ip: string }[];
    hostIP?: string;
    qosClass?: "Guaranteed" | "Burstable" | "BestEffort";
    containerStatuses?: ContainerStatus[];
  };
}

export interface PodList {
  apiVersion: "v1";
  kind: "PodList";
  metadata: { resourceVersion?: string };
  items: Pod[];
}

export interface Node {
  apiVersion?: "v1";
  kind?: "Node";
  metadata: ObjectMeta;
  status?: {
    addresses?: { type: string; address: string }[];
    nodeInfo?: { containerRuntimeVersion?: string; kubeletVersion?: string };
  };
}

/** One line of a watch stream (?watch=1). */
export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

export interface NodeList {
  apiVersion: "v1";
  kind: "NodeList";
  metadata: { resourceVersion?: string };
  items: Node[];
}

/** The API's error body (and the object of an ERROR watch event): meta/v1 Status. */
export interface Status {
  apiVersion?: "v1";
  kind: "Status";
  metadata?: { resourceVersion?: string };
  status?: "Success" | "Failure";
  /** Human-readable, e.g. `pods "web-0" not found`. */
  message?: string;
  /** Machine-readable: "NotFound", "Forbidden", "Unauthorized", "Expired", "Gone", ... */
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string };
  code?: number;
}

/** GET /version: the API server's build. */
export interface VersionInfo {
  major: string;
  minor: string;
  gitVersion: string;
  gitCommit?: string;
  gitTreeState?: string;
  buildDate?: string;
  goVersion?: string;
  compiler?: string;
  platform: string;
}
