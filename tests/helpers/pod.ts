/**
 * Kubernetes-like pods built from real kernel parts, for tests (DESIGN.md, "Pods without
 * Kubernetes"):
 *
 * - a network namespace `kupodt-<8 hex>` with `lo` up and `eth0`, the pod end of a veth pair
 *   whose host end is named like a CNI's (`veth<8 hex>`); the pair gets a /30 from
 *   10.213.0.0/16 (host end .1, pod end .2) and the connected route of that /30 is the only
 *   route on either side: no default route, no forwarding, no NAT; IPv6 is off on both ends,
 *   or with `ipv6` a /64 of fd6b:7570:6f64::/48 (host end ::1, pod end ::2), without duplicate
 *   address detection and with permanent neighbour entries, so only the test's packets flow;
 * - the kubelet's cgroup dirs (systemd driver) for the pod and each container
 *   (`kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
 *   cri-containerd-<id>.scope`) in cgroup v2 and in the v1 memory, pids and name=systemd
 *   hierarchies that are mounted;
 * - real processes per container, which join their cgroups before they exec (so they and every
 *   child are in them from the first instruction) and then enter the namespace through
 *   `ip netns exec`: an HTTP server (tests/fixtures/pod/http_server.ts) or an nginx reverse
 *   proxy in front of it (tests/fixtures/pod/nginx.conf.tmpl).
 *
 * Everything is removed on dispose, also after a creation that failed half-way; processes are
 * only ever signalled by pid, and only those in the pod's own cgroups.
 */

import type { ContainerSpec, ContainerStatus, Pod } from "../../k8s/types.ts";
import { netnsInode } from "../../k8s/proc.ts";
import { run } from "./netns.ts";
import { Child, DENO, ROOT } from "./process.ts";
import {
  type ContainerDirs,
  podCgroupPaths,
  PodCgroups,
  podHierarchies,
  procsOf,
  type QosClass,
} from "./pod_cgroup.ts";

export { podBody } from "../fixtures/pod/body.ts";
export type { QosClass } from "./pod_cgroup.ts";

export type ContainerRole = "sidecar" | "service";
/**
 * "http": the fixture HTTP server; "nginx-proxy" and "haproxy-proxy": nginx or haproxy proxying
 * to the pod's HTTP server; "grpc-go": the grpc-go fixture server (tests/fixtures/grpc_go/server,
 * built by the caller, see `binary`); "nginx-grpc-proxy" and "haproxy-grpc-proxy": nginx
 * (grpc_pass) or haproxy (proto h2) passing gRPC to it, HTTP/2 on both legs.
 */
export type ContainerKind =
  | "http"
  | "nginx-proxy"
  | "haproxy-proxy"
  | "grpc-go"
  | "nginx-grpc-proxy"
  | "haproxy-grpc-proxy";

const isProxy = (kind: ContainerKind) => kind.endsWith("-proxy");
const isNginx = (kind: ContainerKind) => kind.startsWith("nginx-");
const isHaproxy = (kind: ContainerKind) => kind.startsWith("haproxy-");
/** The kind of service a proxy kind passes to by default. */
const upstreamKind = (kind: ContainerKind) => kind.endsWith("-grpc-proxy") ? "grpc-go" : "http";

export interface TestContainerOptions {
  name: string;
  kind: ContainerKind;
  /** The port it listens on (all addresses of the pod). */
  port: number;
  /** Default: "docker.io/library/nginx:1.22" for nginx, "registry.example/kupod/http-service:1.0". */
  image?: string;
  /** Default: "sidecar" for nginx-proxy, "service" for http. */
  role?: ContainerRole;
  /** http: bytes of every reply (default 1024). */
  bodySize?: number;
  /**
   * Proxies: the port of the service at 127.0.0.1 (default: the first http container's, for
   * the gRPC proxies the first grpc-go container's).
   */
  upstreamPort?: number;
  /** grpc-go: the server binary built from tests/fixtures/grpc_go/server (required). */
  binary?: string;
}

export interface TestPodOptions {
  /** Default "test-pod-<8 hex>". */
  name?: string;
  /** Default "default". */
  namespace?: string;
  /** Default { app: <name> }. */
  labels?: Record<string, string>;
  /** spec.nodeName; default the hostname. */
  nodeName?: string;
  /** Default: nginx sidecar "proxy" on 8080 in front of HTTP service "app" on 9090. */
  containers?: TestContainerOptions[];
  /** The network namespace's name (default "kupodt-<8 hex>"); a re-created pod may reuse one. */
  netnsName?: string;
  /** IPv6 addresses on the veth pair besides IPv4 (default false: IPv6 off). */
  ipv6?: boolean;
  /** nginx keeps connections to its upstream open (default true). */
  upstreamKeepAlive?: boolean;
  /** Decides the cgroup path as the kubelet does (default "Burstable"). */
  qosClass?: QosClass;
  /** A --cgroup-root-like prefix below each hierarchy root (default none). */
  cgroupRoot?: string;
  /** For each container to listen (default 15 s). */
  readyTimeoutMs?: number;
  /**
   * Told of everything the pod makes, as it is made (to check it is gone after dispose, also
   * after a failed creation): temp dir, netns, veth, pod and container cgroup dirs, pids.
   */
  onMade?: (kind: MadeKind, name: string) => void;
}

export type MadeKind = "tmp" | "netns" | "veth" | "cgroup" | "pid";

export const DEFAULT_CONTAINERS: readonly TestContainerOptions[] = [
  { name: "proxy", kind: "nginx-proxy", port: 8080 },
  { name: "app", kind: "http", port: 9090 },
];

export interface TestContainer {
  readonly name: string;
  readonly image: string;
  readonly role: ContainerRole;
  readonly kind: ContainerKind;
  readonly port: number;
  /** The current container id: 64 hex digits, new on every restart. */
  readonly id: string;
  /** "containerd://<id>", as in containerStatuses[].containerID. */
  readonly runtimeId: string;
  /** Relative to the v2 mount, as /proc/<pid>/cgroup shows it ("/kubepods.slice/..."). */
  readonly cgroupV2Path: string;
  /** Absolute directory in the v2 hierarchy ("" without cgroup v2). */
  readonly cgroupV2Dir: string;
  /** Inode of the v2 directory, i.e. the cgroup id BPF sees (0 without cgroup v2). */
  readonly cgroupV2Id: number;
  /** Absolute directory per v1 hierarchy ("memory", "pids", "systemd"), those mounted. */
  readonly cgroupV1Paths: Readonly<Record<string, string>>;
  /** The process started for it (nginx's master); 0 while not running. */
  readonly mainPid: number;
  readonly restartCount: number;
  /** RFC 3339, seconds precision, as the API server writes it. */
  readonly startedAt: string;
  readonly running: boolean;
  /** Every process in its cgroup now, sorted (read from cgroup.procs). */
  pids(): number[];
  /** What its processes wrote to stdout and stderr, this run. */
  output(): string;
}

export interface TestPod extends AsyncDisposable {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly nodeName: string;
  readonly qosClass: QosClass;
  readonly creationTimestamp: string;
  /** Bumped on every change of the pod object (restarts). */
  readonly resourceVersion: string;
  /** Network namespace name (/run/netns/<netns>) and its inode. */
  readonly netns: string;
  readonly netnsInode: number;
  readonly hostVeth: string;
  readonly podIP: string;
  readonly hostIP: string;
  /** IPv6 addresses of the pod and host ends ("" without the `ipv6` option). */
  readonly podIP6: string;
  readonly hostIP6: string;
  /** The pod's slice, relative to each hierarchy root. */
  readonly cgroupPodPath: string;
  readonly containers: readonly TestContainer[];
  container(name: string): TestContainer;
  /** "http://<podIP>:<port><path>", for requests from the host. */
  url(port: number, path?: string): string;
  /** The pod as the API server returns it (core/v1). */
  podJson(nodeName?: string): Pod;
  /**
   * Kills the container's processes, gives it a new id and cgroup dirs, starts it again and
   * waits until it listens; restartCount and resourceVersion go up.
   */
  restartContainer(name: string): Promise<TestContainer>;
  /** Idempotent; the same as `await using`. */
  dispose(): Promise<void>;
}

const SUBNET_BASE = (10 << 24) | (213 << 16); // 10.213.0.0/16, 16384 /30s
const subnetsInUse = new Set<number>();
let resourceVersions = 1000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function ipv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

function apiTime(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A /30 of 10.213.0.0/16 no route or address of the host is in, nor another pod of ours. */
async function allocateSubnet(): Promise<number> {
  const taken = new Set<number>();
  const routes = JSON.parse(await run("ip", ["-j", "-4", "route", "show", "table", "all"])) as {
    dst?: string;
  }[];
  for (const r of routes) {
    const m = r.dst?.match(/^10\.213\.(\d+)\.(\d+)/);
    if (m) taken.add((Number(m[1]) << 6) | (Number(m[2]) >> 2));
  }
  for (let i = 0; i < 200; i++) {
    const n = crypto.getRandomValues(new Uint16Array(1))[0] & 16383;
    if (taken.has(n) || subnetsInUse.has(n)) continue;
    subnetsInUse.add(n);
    return n;
  }
  throw new Error("no free /30 in 10.213.0.0/16");
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether the process `pid` itself holds a socket listening on TCP `port` (in its netns). */
async function listensOn(pid: number, port: number): Promise<boolean> {
  const want = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/net/${table}`);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === "0A" && f[1]?.endsWith(`:${want}`)) inodes.add(f[9]);
    }
  }
  if (!inodes.size) return false;
  for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
    try {
      const m = (await Deno.readLink(`/proc/${pid}/fd/${fd.name}`)).match(/^socket:\[(\d+)\]$/);
      if (m && inodes.has(m[1])) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/**
 * Joins the cgroups whose cgroup.procs files come before "--", then execs the rest: the
 * process keeps its pid throughout, so it and all its children live in the cgroups from the
 * first instruction of the command. (The cgroups are joined before `ip netns exec`, which
 * remounts /sys and so hides /sys/fs/cgroup.)
 */
const JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; shift; ' +
  'exec "$@"';

const CHILD_ENV = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };

class Container implements TestContainer {
  readonly name: string;
  readonly image: string;
  readonly role: ContainerRole;
  readonly kind: ContainerKind;
  readonly port: number;
  readonly bodySize: number;
  readonly binary: string;
  upstreamPort = 0;
  imageID = "";
  id = "";
  dirs: ContainerDirs = {};
  cgroupV2Path = "";
  cgroupV2Id = 0;
  restartCount = 0;
  startedAt = "";
  child: Child | undefined;
  exited = false;

  constructor(o: TestContainerOptions) {
    this.name = o.name;
    this.kind = o.kind;
    this.port = o.port;
    this.role = o.role ?? (isProxy(o.kind) ? "sidecar" : "service");
    this.image = o.image ??
      (isNginx(o.kind)
        ? "docker.io/library/nginx:1.22"
        : isHaproxy(o.kind)
        ? "docker.io/library/haproxy:2.6"
        : o.kind === "grpc-go"
        ? "registry.example/kupod/grpc-service:1.0"
        : "registry.example/kupod/http-service:1.0");
    this.bodySize = o.bodySize ?? 1024;
    this.binary = o.binary ?? "";
    if (o.kind === "grpc-go" && !this.binary) throw new Error(`${o.name}: grpc-go needs binary`);
  }

  get runtimeId(): string {
    return `containerd://${this.id}`;
  }

  get cgroupV2Dir(): string {
    return this.dirs.v2 ?? "";
  }

  get cgroupV1Paths(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(this.dirs)) if (k !== "v2") out[k] = v;
    return out;
  }

  get mainPid(): number {
    return this.child && !this.exited ? this.child.pid : 0;
  }

  get running(): boolean {
    return this.mainPid !== 0;
  }

  pids(): number[] {
    const all = new Set<number>();
    for (const dir of Object.values(this.dirs)) for (const p of procsOf(dir)) all.add(p);
    return [...all].sort((a, b) => a - b);
  }

  output(): string {
    return this.child ? [...this.child.stdout, ...this.child.stderr].join("\n") : "";
  }
}

class PodImpl implements TestPod {
  readonly name: string;
  readonly namespace: string;
  readonly uid = crypto.randomUUID();
  readonly labels: Record<string, string>;
  readonly nodeName: string;
  readonly qosClass: QosClass;
  readonly creationTimestamp = apiTime();
  resourceVersion = String(++resourceVersions);
  netns = "";
  netnsInode = 0;
  hostVeth = "";
  podIP = "";
  hostIP = "";
  podIP6 = "";
  hostIP6 = "";
  readonly cgroupPodPath: string;
  readonly containers: Container[];
  readonly #upstreamKeepAlive: boolean;
  readonly #ipv6: boolean;
  readonly #netnsName: string | undefined;
  readonly #readyMs: number;
  readonly #cgroups: PodCgroups;
  readonly #onMade: (kind: MadeKind, name: string) => void;
  #subnet = -1;
  #tmp = "";
  #disposing: Promise<void> | undefined;

  constructor(opts: TestPodOptions) {
    this.name = opts.name ?? `test-pod-${hex(4)}`;
    this.namespace = opts.namespace ?? "default";
    this.labels = { ...(opts.labels ?? { app: this.name }) };
    this.nodeName = opts.nodeName ?? Deno.hostname();
    this.qosClass = opts.qosClass ?? "Burstable";
    this.#upstreamKeepAlive = opts.upstreamKeepAlive ?? true;
    this.#ipv6 = opts.ipv6 ?? false;
    this.#netnsName = opts.netnsName;
    this.#readyMs = opts.readyTimeoutMs ?? 15_000;
    this.#onMade = opts.onMade ?? (() => {});
    this.containers = (opts.containers ?? DEFAULT_CONTAINERS).map((o) => new Container(o));
    const names = new Set(this.containers.map((c) => c.name));
    if (names.size !== this.containers.length) throw new Error("container names must be unique");
    (opts.containers ?? DEFAULT_CONTAINERS).forEach((o, i) => {
      if (!isProxy(o.kind)) return;
      const kind = upstreamKind(o.kind);
      const up = o.upstreamPort ?? this.containers.find((c) => c.kind === kind)?.port;
      if (!up) throw new Error(`${o.name}: ${o.kind} needs upstreamPort or a ${kind} container`);
      this.containers[i].upstreamPort = up;
    });
    const paths = podCgroupPaths(this.uid, this.qosClass, opts.cgroupRoot);
    this.cgroupPodPath = paths.pod;
    this.#cgroups = new PodCgroups(podHierarchies(), paths.parents, paths.pod);
  }

  async create(): Promise<void> {
    this.#tmp = await Deno.makeTempDir({ prefix: "kupodt-" });
    this.#onMade("tmp", this.#tmp);
    await Deno.chmod(this.#tmp, 0o755); // nginx workers run as www-data
    await this.#createNetwork();
    this.#cgroups.create();
    for (const h of this.#cgroups.hierarchies) this.#onMade("cgroup", h.mount + this.cgroupPodPath);
    for (const c of this.containers) {
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(c.image));
      c.imageID = `${c.image.replace(/:[^:/]*$/, "")}@sha256:${
        [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("")
      }`;
    }
    // Settled, not all: a failed container must not leave another one starting after dispose.
    const started = await Promise.allSettled(this.containers.map((c) => this.#start(c)));
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async #createNetwork(): Promise<void> {
    for (let i = 0; !this.netns; i++) {
      const name = this.#netnsName ?? `kupodt-${hex(4)}`;
      try {
        await run("ip", ["netns", "add", name]);
        this.netns = name;
        this.#onMade("netns", name);
      } catch (e) {
        if (this.#netnsName || i >= 3 || !(await fileExists(`/run/netns/${name}`))) throw e;
      }
    }
    this.netnsInode = (await Deno.stat(`/run/netns/${this.netns}`)).ino ?? 0;
    for (let i = 0; !this.hostVeth; i++) {
      const name = `veth${hex(4)}`;
      try {
        const peer = `type veth peer name eth0 netns ${this.netns}`.split(" ");
        await run("ip", ["link", "add", name, ...peer]);
        this.hostVeth = name;
        this.#onMade("veth", name);
      } catch (e) {
        if (i >= 3 || !(await fileExists(`/sys/class/net/${name}`))) throw e;
      }
    }
    this.#subnet = await allocateSubnet();
    const base = SUBNET_BASE + (this.#subnet << 2);
    this.hostIP = ipv4(base + 1);
    this.podIP = ipv4(base + 2);
    const v6 = `/proc/sys/net/ipv6/conf/${this.hostVeth}/disable_ipv6`;
    if (await fileExists(v6)) await Deno.writeTextFile(v6, this.#ipv6 ? "0" : "1");
    await run("ip", ["addr", "add", `${this.hostIP}/30`, "dev", this.hostVeth]);
    const podV6 = "/proc/sys/net/ipv6/conf/eth0/disable_ipv6";
    await run("ip", [
      "netns",
      "exec",
      this.netns,
      "sh",
      "-ec",
      `if [ -e ${podV6} ]; then echo ${this.#ipv6 ? 0 : 1} > ${podV6}; fi; ip link set lo up; ` +
      `ip addr add ${this.podIP}/30 dev eth0`,
    ]);
    if (this.#ipv6) await this.#addIPv6();
    await run("ip", ["link", "set", this.hostVeth, "up"]);
    await run("ip", ["-n", this.netns, "link", "set", "eth0", "up"]);
  }

  /** ULA addresses and permanent neighbours: no DAD, no neighbour discovery between the ends. */
  async #addIPv6(): Promise<void> {
    const prefix = `fd6b:7570:6f64:${this.#subnet.toString(16)}`;
    this.hostIP6 = `${prefix}::1`;
    this.podIP6 = `${prefix}::2`;
    const pod = ["-n", this.netns];
    const hostMac = (await Deno.readTextFile(`/sys/class/net/${this.hostVeth}/address`)).trim();
    const podMac = JSON.parse(await run("ip", [...pod, "-j", "link", "show", "eth0"]))[0]
      .address as string;
    await run("ip", ["addr", "add", `${this.hostIP6}/64`, "dev", this.hostVeth, "nodad"]);
    await run("ip", [...pod, "addr", "add", `${this.podIP6}/64`, "dev", "eth0", "nodad"]);
    const neigh = (ns: string[], ip: string, mac: string, dev: string) =>
      run("ip", [...ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"]);
    await neigh([], this.podIP6, podMac, this.hostVeth);
    await neigh(pod, this.hostIP6, hostMac, "eth0");
  }

  async #command(c: Container): Promise<string[]> {
    if (c.kind === "http") {
      return [
        DENO,
        "run",
        "--allow-net",
        "--no-prompt",
        `${ROOT}tests/fixtures/pod/http_server.ts`,
        String(c.port),
        String(c.bodySize),
        c.name,
      ];
    }
    if (c.kind === "grpc-go") return [c.binary, `0.0.0.0:${c.port}`];
    const dir = `${this.#tmp}/${c.name}`;
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    const ka = this.#upstreamKeepAlive;
    if (isHaproxy(c.kind)) {
      const grpc = c.kind === "haproxy-grpc-proxy";
      await Deno.writeTextFile(
        `${dir}/haproxy.cfg`,
        await fillTemplate(grpc ? "haproxy_grpc.cfg.tmpl" : "haproxy.cfg.tmpl", {
          PORT: String(c.port),
          BIND_IPV6: this.#ipv6
            ? `bind [::]:${c.port} v6only${grpc ? " proto h2" : ""}`
            : "# IPv4 only",
          UPSTREAM_PORT: String(c.upstreamPort),
          // idle upstream connections shared by every client, or one per request
          UPSTREAM_MODE: ka ? "http-reuse always" : "option http-server-close",
        }),
      );
      return ["haproxy", "-db", "-f", `${dir}/haproxy.cfg`];
    }
    const values: Record<string, string> = {
      DIR: dir,
      PORT: String(c.port),
      LISTEN_IPV6: this.#ipv6 ? `listen [::]:${c.port};` : "# IPv4 only",
      LISTEN_IPV6_HTTP2: this.#ipv6 ? `listen [::]:${c.port} http2;` : "# IPv4 only",
      UPSTREAM_PORT: String(c.upstreamPort),
      // idle upstream connections kept per worker: more than the bench's 32 concurrent clients,
      // so that keep-alive load reuses upstream connections instead of closing the surplus
      UPSTREAM_KEEPALIVE: ka ? "keepalive 64;" : "# no keepalive",
      UPSTREAM_HTTP_VERSION: ka ? "1.1" : "1.0",
      UPSTREAM_CONNECTION: ka ? "" : "close",
    };
    const template = c.kind === "nginx-grpc-proxy" ? "nginx_grpc.conf.tmpl" : "nginx.conf.tmpl";
    await Deno.writeTextFile(`${dir}/nginx.conf`, await fillTemplate(template, values));
    return ["nginx", "-p", `${dir}/`, "-c", `${dir}/nginx.conf`, "-e", "stderr"];
  }

  /** New id and cgroup dirs, the process started in them, waited for until it listens. */
  async #start(c: Container): Promise<void> {
    const cmd = await this.#command(c);
    c.id = hex(32);
    c.dirs = this.#cgroups.addContainer(`cri-containerd-${c.id}.scope`);
    for (const d of Object.values(c.dirs)) this.#onMade("cgroup", d);
    c.cgroupV2Path = c.dirs.v2 ? `${this.cgroupPodPath}/cri-containerd-${c.id}.scope` : "";
    c.cgroupV2Id = c.dirs.v2 ? (await Deno.stat(c.dirs.v2)).ino ?? 0 : 0;
    const procs = Object.values(c.dirs).map((d) => `${d}/cgroup.procs`);
    c.exited = false;
    const child = new Child(
      "sh",
      ["-c", JOIN_CGROUPS, "kupod-join", ...procs, "--", "ip", "netns", "exec", this.netns, ...cmd],
      { env: CHILD_ENV },
    );
    c.child = child;
    this.#onMade("pid", String(child.pid));
    c.startedAt = apiTime();
    child.process.status.then(() => {
      if (c.child === child) c.exited = true;
    });
    await this.#waitReady(c, child);
  }

  async #waitReady(c: Container, child: Child): Promise<void> {
    const deadline = Date.now() + this.#readyMs;
    // nginx: master and its one worker
    const workers = isNginx(c.kind) ? 2 : 1;
    for (;;) {
      if (c.exited) {
        const status = await child.process.status;
        throw new Error(
          `container ${c.name} exited (code ${status.code}) before listening on ${c.port}: ` +
            c.output().slice(-2000),
        );
      }
      try {
        if (
          netnsInode(child.pid) === this.netnsInode && (await listensOn(child.pid, c.port)) &&
          c.pids().length >= workers
        ) break;
      } catch {
        // between exec steps
      }
      if (Date.now() > deadline) {
        throw new Error(`container ${c.name} not listening on ${c.port} in time: ${c.output()}`);
      }
      await sleep(10);
    }
    for (const pid of c.pids()) if (pid !== child.pid) this.#onMade("pid", String(pid));
    if (!c.pids().includes(child.pid)) {
      throw new Error(`container ${c.name}: pid ${child.pid} is not in ${c.cgroupV2Dir}`);
    }
  }

  /** Every process in the container's cgroups: TERM, then KILL; waits until none is left. */
  async #stop(c: Container): Promise<void> {
    const child = c.child;
    const signal = (sig: Deno.Signal) => {
      const pids = new Set(c.pids());
      if (child && !c.exited) pids.add(child.pid);
      for (const pid of pids) {
        try {
          Deno.kill(pid, sig);
        } catch {
          // exited meanwhile
        }
      }
    };
    const gone = async (ms: number) => {
      for (const end = Date.now() + ms; Date.now() < end; await sleep(10)) {
        if ((!child || c.exited) && c.pids().length === 0) return true;
      }
      return false;
    };
    signal("SIGTERM");
    if (!(await gone(3000))) {
      signal("SIGKILL");
      if (!(await gone(5000))) {
        throw new Error(`container ${c.name}: processes ${c.pids()} left after SIGKILL`);
      }
    }
    await child?.wait();
    c.exited = true;
  }

  container(name: string): Container {
    const c = this.containers.find((c) => c.name === name);
    if (!c) throw new Error(`pod ${this.name} has no container ${name}`);
    return c;
  }

  url(port: number, path = "/"): string {
    return `http://${this.podIP}:${port}${path}`;
  }

  podJson(nodeName = this.nodeName): Pod {
    const spec: ContainerSpec[] = this.containers.map((c) => ({
      name: c.name,
      image: c.image,
      ports: [{ containerPort: c.port, protocol: "TCP" }],
    }));
    const statuses: ContainerStatus[] = this.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.imageID,
      containerID: c.runtimeId,
      ready: c.running,
      restartCount: c.restartCount,
      started: c.running,
      state: c.running
        ? { running: { startedAt: c.startedAt } }
        : { waiting: { reason: "ContainerCreating" } },
    }));
    statuses.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0); // as the kubelet
    return {
      apiVersion: "v1",
      kind: "Pod",
      metadata: {
        name: this.name,
        namespace: this.namespace,
        uid: this.uid,
        labels: { ...this.labels },
        resourceVersion: this.resourceVersion,
        creationTimestamp: this.creationTimestamp,
      },
      spec: { nodeName, containers: spec },
      status: {
        phase: "Running",
        podIP: this.podIP,
        podIPs: [{ ip: this.podIP }, ...(this.podIP6 ? [{ ip: this.podIP6 }] : [])],
        hostIP: this.hostIP,
        qosClass: this.qosClass,
        containerStatuses: statuses,
      },
    };
  }

  async restartContainer(name: string): Promise<Container> {
    const c = this.container(name);
    if (this.#disposing) throw new Error(`pod ${this.name} is disposed`);
    await this.#stop(c);
    await this.#cgroups.removeContainer(`cri-containerd-${c.id}.scope`);
    c.restartCount++;
    await this.#start(c);
    this.resourceVersion = String(++resourceVersions);
    return c;
  }

  dispose(): Promise<void> {
    return this.#disposing ??= this.#teardown();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  async #teardown(): Promise<void> {
    const errors: string[] = [];
    const step = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(`${what}: ${(e as Error).message}`);
      }
    };
    await Promise.all(this.containers.map((c) => step(`stop ${c.name}`, () => this.#stop(c))));
    await step("cgroups", () => this.#cgroups.destroy());
    if (this.hostVeth) {
      await step("veth", async () => {
        if (await fileExists(`/sys/class/net/${this.hostVeth}`)) {
          await run("ip", ["link", "del", this.hostVeth]);
        }
      });
    }
    if (this.netns) {
      await step("netns", async () => {
        if (await fileExists(`/run/netns/${this.netns}`)) {
          await run("ip", ["netns", "del", this.netns]);
        }
      });
    }
    subnetsInUse.delete(this.#subnet);
    if (this.#tmp) await step("temp dir", () => Deno.remove(this.#tmp, { recursive: true }));
    if (errors.length) throw new Error(`disposing pod ${this.name}: ${errors.join("; ")}`);
  }
}

/** Makes a pod and waits until every container listens; on failure removes what was made. */
export async function createTestPod(opts: TestPodOptions = {}): Promise<TestPod> {
  const pod = new PodImpl(opts);
  try {
    await pod.create();
  } catch (e) {
    try {
      await pod.dispose();
    } catch (cleanup) {
      throw new AggregateError(
        [e, cleanup],
        `${(e as Error).message}; ${(cleanup as Error).message}`,
      );
    }
    throw e;
  }
  return pod;
}

/** tests/fixtures/pod/`name` with its {{KEY}} placeholders filled in from `values`. */
async function fillTemplate(name: string, values: Record<string, string>): Promise<string> {
  const template = await Deno.readTextFile(`${ROOT}tests/fixtures/pod/${name}`);
  return template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in values)) throw new Error(`${name}: unknown {{${k}}}`);
    return values[k];
  });
}
