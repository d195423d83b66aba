/**
 * The network of a pod: its network namespace, its IPs and the host side of its veth, found
 * from one of its pids; and back, from a host veth or a netns name to the namespace and the
 * processes in it.
 *
 * A namespace's interfaces are read with `ip addr show` run inside it through `nsenter --net=`
 * (the host's `ip`, so the pod's image needs none). The host veth is the interface of kupod's
 * own namespace whose ifindex is the pod interface's peer ifindex ("eth0@if123") and whose
 * peer ifindex (/sys/class/net/<veth>/iflink) is the pod interface's: checked both ways, since
 * ifindexes are per namespace.
 */

import { KupodError } from "../base/errors.ts";
import { nsInode, pidsByNetns } from "./proc.ts";

export interface NetIface {
  index: number;
  name: string;
  /** ifindex of the peer ("eth0@if19" → 19), 0 when none or given by name. */
  peerIndex: number;
  /** Name of the peer when it is in the same namespace ("veth0@veth1" → "veth1"). */
  peerName: string;
  /** "link-netnsid N": the peer's namespace as this one numbers it, -1 when not shown. */
  linkNetnsId: number;
  /** "link-netns NAME": the peer's namespace when `ip` knows its name, else "". */
  linkNetns: string;
  flags: string[];
  /** Addresses with prefix ("10.1.2.3/24") and scope ("global", "link", "host"). */
  addrs: { cidr: string; scope: string }[];
}

/** Parses `ip addr show` or `ip link show` (also with -o), as iproute2 and busybox print them. */
export function parseIpAddrShow(text: string): NetIface[] {
  const out: NetIface[] = [];
  let cur: NetIface | undefined;
  for (const line of text.replace(/\\\s+/g, "\n    ").split("\n")) {
    const head = line.match(/^(\d+):\s+([^\s:@]+)(?:@([^\s:]+))?:\s+<([^>]*)>/);
    if (head) {
      const peer = head[3] ?? "";
      const ifm = peer.match(/^if(\d+)$/);
      cur = {
        index: Number(head[1]),
        name: head[2],
        peerIndex: ifm ? Number(ifm[1]) : 0,
        peerName: ifm || peer === "NONE" ? "" : peer,
        linkNetnsId: -1,
        linkNetns: "",
        flags: head[4] ? head[4].split(",") : [],
        addrs: [],
      };
      out.push(cur);
      continue;
    }
    if (!cur) continue;
    const id = line.match(/\slink-netnsid (\d+)/);
    if (id) cur.linkNetnsId = Number(id[1]);
    const named = line.match(/\slink-netns (\S+)/);
    if (named) cur.linkNetns = named[1];
    const addr = line.match(/^\s+inet6?\s+(\S+)(?:.*?\sscope\s+(\S+))?/);
    if (addr) cur.addrs.push({ cidr: addr[1], scope: addr[2] ?? "global" });
  }
  return out;
}

/** Runs `ip args` in the namespace at `nsPath` (null: kupod's own) and returns its stdout. */
export type IpRunner = (nsPath: string | null, args: string[]) => Promise<string>;

/** `ip` in kupod's namespace, `nsenter --net=<path> ip` in another. */
export const runIp: IpRunner = async (nsPath, args) => {
  const [cmd, argv] = nsPath ? ["nsenter", [`--net=${nsPath}`, "ip", ...args]] : ["ip", args];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args: argv, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      const pkg = cmd === "ip" ? "iproute2" : "util-linux";
      throw new KupodError(`${cmd} (${pkg}) is needed to read network interfaces: not found`);
    }
    throw e;
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n")[0];
    throw new KupodError(`${cmd} ${argv.join(" ")} failed: ${err || `exit ${out.code}`}`);
  }
  return new TextDecoder().decode(out.stdout);
};

export interface NetOptions {
  /** The proc filesystem ("/proc"). */
  proc?: string;
  /** Interfaces of kupod's own namespace ("/sys/class/net"). */
  sysClassNet?: string;
  /** Where `ip netns` names namespaces (["/run/netns", "/var/run/netns"]). */
  netnsDirs?: string[];
  ip?: IpRunner;
  /** Namespaces read at once when searching for a veth's peer (8). */
  concurrency?: number;
}

export interface NetnsNetwork {
  netnsInode: number;
  /** The namespace is kupod's own (a hostNetwork pod): no pod interface, IPs or veth. */
  hostNetwork: boolean;
  /** The pod's interface: eth0, else the default route's, else the first veth, else non-lo. */
  iface: string;
  ifindex: number;
  /** Global-scope addresses of that interface, without prefix length. */
  ips: string[];
  /** The host-side veth (in kupod's namespace), "" when none (not a veth, or peer elsewhere). */
  veth: string;
  vethIndex: number;
  interfaces: NetIface[];
}

export function readNum(path: string): number {
  try {
    return Number(Deno.readTextFileSync(path).trim());
  } catch {
    return 0;
  }
}

/** The interface of kupod's namespace with ifindex `index` whose peer has ifindex `peer`. */
export function hostInterfaceByIndex(
  index: number,
  peer: number,
  sysClassNet = "/sys/class/net",
): string {
  if (!index) return "";
  for (const e of Deno.readDirSync(sysClassNet)) {
    if (readNum(`${sysClassNet}/${e.name}/ifindex`) !== index) continue;
    return readNum(`${sysClassNet}/${e.name}/iflink`) === peer ? e.name : "";
  }
  return "";
}

/** Interfaces carrying the default routes in /proc/<pid>/net/route and ipv6_route. */
export function defaultRouteInterfaces(pid: number, proc = "/proc"): string[] {
  const out: string[] = [];
  const read = (f: string) => {
    try {
      return Deno.readTextFileSync(`${proc}/${pid}/net/${f}`).split("\n");
    } catch {
      return [];
    }
  };
  for (const line of read("route").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 7 && f[1] === "00000000" && f[7] === "00000000") out.push(f[0]);
  }
  for (const line of read("ipv6_route")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && /^0{32}$/.test(f[0]) && f[1] === "00" && f[9] !== "lo") out.push(f[9]);
  }
  return [...new Set(out)];
}

/** The pod's interface among `ifaces`. */
export function podInterface(
  ifaces: NetIface[],
  defaultRoutes: string[] = [],
): NetIface | undefined {
  const candidates = ifaces.filter((i) => i.name !== "lo" && !i.flags.includes("LOOPBACK"));
  return candidates.find((i) => i.name === "eth0") ??
    candidates.find((i) => defaultRoutes.includes(i.name)) ??
    candidates.find((i) => i.peerIndex > 0) ??
    candidates[0];
}

function globalIps(iface: NetIface | undefined): string[] {
  return (iface?.addrs ?? []).filter((a) => a.scope === "global").map((a) => a.cidr.split("/")[0]);
}

/**
 * The network of the namespace at `nsPath` (/proc/<pid>/ns/net or /run/netns/<name>); `pid`, a
 * process in it, lets the default route choose the interface when there is no eth0.
 */
export async function netnsNetwork(
  nsPath: string,
  opts: NetOptions & { pid?: number } = {},
): Promise<NetnsNetwork> {
  const proc = opts.proc ?? "/proc";
  const inode = nsInode(nsPath);
  if (!inode) throw new KupodError(`no network namespace at ${nsPath}`);
  const none = { iface: "", ifindex: 0, ips: [], veth: "", vethIndex: 0, interfaces: [] };
  if (inode === nsInode(`${proc}/self/ns/net`)) {
    return { netnsInode: inode, hostNetwork: true, ...none };
  }
  const interfaces = parseIpAddrShow(await (opts.ip ?? runIp)(nsPath, ["addr", "show"]));
  const routes = opts.pid ? defaultRouteInterfaces(opts.pid, proc) : [];
  const iface = podInterface(interfaces, routes);
  if (!iface) return { netnsInode: inode, hostNetwork: false, ...none, interfaces };
  const veth = hostInterfaceByIndex(iface.peerIndex, iface.index, opts.sysClassNet);
  return {
    netnsInode: inode,
    hostNetwork: false,
    iface: iface.name,
    ifindex: iface.index,
    ips: globalIps(iface),
    veth,
    vethIndex: veth ? iface.peerIndex : 0,
    interfaces,
  };
}

/** The network of the pod (or any process) `pid`: netns inode, interface, IPs, host veth. */
export function podNetwork(pid: number, opts: NetOptions = {}): Promise<NetnsNetwork> {
  const proc = opts.proc ?? "/proc";
  try {
    Deno.statSync(`${proc}/${pid}`);
  } catch {
    return Promise.reject(new KupodError(`process ${pid} does not exist`));
  }
  return netnsNetwork(`${proc}/${pid}/ns/net`, { ...opts, pid });
}

export interface NetnsRef {
  netnsInode: number;
  /** A path that opens the namespace: /run/netns/<name> or /proc/<pid>/ns/net. */
  nsPath: string;
  /** Every process in it, ascending. */
  pids: number[];
}

function namedNetns(dirs: string[]): { path: string; inode: number }[] {
  const out: { path: string; inode: number }[] = [];
  for (const dir of dirs) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      continue;
    }
    for (const e of entries) {
      const inode = nsInode(`${dir}/${e.name}`);
      if (inode && !out.some((n) => n.inode === inode)) {
        out.push({ path: `${dir}/${e.name}`, inode });
      }
    }
  }
  return out;
}

/** Where namespace `nameOrPath` may be: the path itself, or an `ip netns` name's files. */
export function netnsPaths(nameOrPath: string, opts: NetOptions = {}): string[] {
  const dirs = opts.netnsDirs ?? ["/run/netns", "/var/run/netns"];
  return nameOrPath.includes("/") ? [nameOrPath] : dirs.map((d) => `${d}/${nameOrPath}`);
}

/**
 * The namespace `nameOrPath` names: an `ip netns` name (/run/netns/<name>) or any path to a
 * namespace file, with the processes in it.
 */
export function netnsByName(nameOrPath: string, opts: NetOptions = {}): NetnsRef {
  const paths = netnsPaths(nameOrPath, opts);
  for (const path of paths) {
    const inode = nsInode(path);
    if (!inode) continue;
    return { netnsInode: inode, nsPath: path, pids: pidsByNetns(opts.proc).get(inode) ?? [] };
  }
  throw new KupodError(`no network namespace ${nameOrPath} (looked at ${paths.join(", ")})`);
}

export interface VethPeer extends NetnsRef {
  veth: string;
  vethIndex: number;
  /** The peer interface inside the namespace and its ifindex there. */
  peer: string;
  peerIndex: number;
  /** Global-scope addresses of the peer. */
  ips: string[];
}

/** Runs `fn` over `items`, at most `limit` at once, and stops at the first non-null result. */
async function firstOf<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R | null>,
): Promise<R | null> {
  for (let i = 0; i < items.length; i += limit) {
    const found = (await Promise.all(items.slice(i, i + limit).map(fn))).find((r) => r !== null);
    if (found) return found;
  }
  return null;
}

/** Whether the namespace of process `rep` may hold an interface with ifindex `index`. */
function mayHoldIndex(rep: number, index: number, proc: string): boolean {
  const dir = `${proc}/${rep}/net/dev_snmp6`;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return true; // no IPv6 here: cannot tell without entering it
  }
  for (const e of entries) {
    try {
      const m = Deno.readTextFileSync(`${dir}/${e.name}`).match(/^ifIndex\s+(\d+)/m);
      if (m && Number(m[1]) === index) return true;
    } catch {
      // interface went away
    }
  }
  return false;
}

/**
 * The namespace at the other end of host veth `veth`, with the processes in it.
 *
 * The veth's peer ifindex comes from /sys/class/net/<veth>/iflink; the namespace holding it is
 * found among the distinct namespaces of all processes (one pass over /proc/<pid>/ns/net) and
 * the `ip netns` names. Those whose /proc/<pid>/net/dev_snmp6 lists an interface with that
 * ifindex are read first (no spawn needed to tell; nearly always exactly one), then the others.
 * A candidate is confirmed by reading its interfaces: the peer must have ifindex == iflink and
 * point back at the veth's ifindex. This does not rely on netnsids, which are per namespace
 * and assigned lazily; when `ip` already names the namespace ("link-netns NAME"), that one is
 * tried first.
 */
export async function vethNetns(veth: string, opts: NetOptions = {}): Promise<VethPeer> {
  const proc = opts.proc ?? "/proc", sys = opts.sysClassNet ?? "/sys/class/net";
  const ip = opts.ip ?? runIp;
  if (veth.includes("/") || veth.startsWith(".")) {
    throw new KupodError(`bad interface name ${veth}`);
  }
  const vethIndex = readNum(`${sys}/${veth}/ifindex`);
  if (!vethIndex) throw new KupodError(`no network interface ${veth}`);
  const iflink = readNum(`${sys}/${veth}/iflink`);
  if (!iflink || iflink === vethIndex) {
    throw new KupodError(`${veth} has no peer interface: not a veth`);
  }
  const self = parseIpAddrShow(await ip(null, ["link", "show", "dev", veth]))[0];
  const byNetns = pidsByNetns(proc);
  const own = nsInode(`${proc}/self/ns/net`);
  const result = (
    ref: { inode: number; path: string },
    peer: NetIface,
  ): VethPeer => ({
    netnsInode: ref.inode,
    nsPath: ref.path,
    pids: byNetns.get(ref.inode) ?? [],
    veth,
    vethIndex,
    peer: peer.name,
    peerIndex: peer.index,
    ips: globalIps(peer),
  });
  if (self && self.peerName && self.linkNetnsId < 0) {
    // Both ends in kupod's own namespace.
    const peer = parseIpAddrShow(await ip(null, ["addr", "show", "dev", self.peerName]))[0];
    if (peer) return result({ inode: own, path: `${proc}/self/ns/net` }, peer);
  }
  const dirs = opts.netnsDirs ?? ["/run/netns", "/var/run/netns"];
  const named = namedNetns(dirs);
  const check = async (c: { inode: number; path: string }) => {
    let ifaces: NetIface[];
    try {
      ifaces = parseIpAddrShow(await ip(c.path, ["addr", "show"]));
    } catch {
      return null; // the namespace went away
    }
    const peer = ifaces.find((i) => i.index === iflink && i.peerIndex === vethIndex);
    return peer ? result(c, peer) : null;
  };
  // The namespace `ip` names, alone first: it is nearly always the one.
  const hinted = self?.linkNetns
    ? named.find((n) => n.path.endsWith(`/${self.linkNetns}`))
    : undefined;
  let found = hinted ? await check(hinted) : null;
  if (!found) {
    // Namespaces with processes, those whose ifindexes include the peer's first; then the
    // named ones without processes; then the rest (an interface without IPv6, as below an MTU
    // of 1280, has no dev_snmp6 entry: the narrowing only orders the search).
    const likely: { inode: number; path: string }[] = [], rest: typeof likely = [];
    for (const [inode, pids] of byNetns) {
      if (inode === own || inode === hinted?.inode) continue;
      const c = { inode, path: `${proc}/${pids[0]}/ns/net` };
      (mayHoldIndex(pids[0], iflink, proc) ? likely : rest).push(c);
    }
    for (const n of named) {
      if (n.inode !== own && n.inode !== hinted?.inode && !byNetns.has(n.inode)) likely.push(n);
    }
    const limit = opts.concurrency ?? 8;
    found = await firstOf(likely, limit, check) ?? await firstOf(rest, limit, check);
  }
  if (!found) {
    throw new KupodError(
      `the peer of ${veth} (ifindex ${iflink}) is in no network namespace reachable from here`,
    );
  }
  return found;
}
