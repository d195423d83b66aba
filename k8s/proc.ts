/** Facts about processes read from /proc (root injectable so tests can use fixture trees). */

export interface ProcCgroups {
  /** cgroup v2 path ("0::/path"), "" when the process is in no v2 hierarchy. */
  v2: string;
  /** cgroup v1 paths by controller. */
  v1: Record<string, string>;
}

/** Parses /proc/<pid>/cgroup. */
export function parseProcCgroup(text: string): ProcCgroups {
  const out: ProcCgroups = { v2: "", v1: {} };
  for (const line of text.split("\n")) {
    const m = line.match(/^(\d+):([^:]*):(.*)$/);
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") out.v2 = m[3];
    else for (const ctrl of m[2].split(",")) if (ctrl) out.v1[ctrl.replace(/^name=/, "")] = m[3];
  }
  return out;
}

export function processExists(pid: number, proc = "/proc"): boolean {
  try {
    Deno.statSync(`${proc}/${pid}`);
    return true;
  } catch {
    return false;
  }
}

export function comm(pid: number, proc = "/proc"): string {
  return Deno.readTextFileSync(`${proc}/${pid}/comm`).trim();
}

/** Inode of the process's network namespace. */
export function netnsInode(pid: number, proc = "/proc"): number {
  return Deno.statSync(`${proc}/${pid}/ns/net`).ino ?? 0;
}

/** Parent pid from /proc/<pid>/stat (the field after the parenthesised comm). */
export function parentPid(statText: string): number {
  const close = statText.lastIndexOf(")");
  return Number(statText.slice(close + 2).split(" ")[1]);
}

/** `root` and every live descendant of it, from one pass over /proc. */
export function descendants(root: number, proc = "/proc"): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync(proc)) {
    if (!/^\d+$/.test(entry.name)) continue;
    let ppid: number;
    try {
      ppid = parentPid(Deno.readTextFileSync(`${proc}/${entry.name}/stat`));
    } catch {
      continue; // exited while listing
    }
    const list = children.get(ppid) ?? [];
    list.push(Number(entry.name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** Inode of the namespace file at `path` (/proc/<pid>/ns/net, /run/netns/<name>), 0 when none. */
export function nsInode(path: string): number {
  try {
    return Deno.statSync(path).ino ?? 0;
  } catch {
    return 0;
  }
}

/** Every process by the inode of its network namespace, pids ascending, from one pass over /proc. */
export function pidsByNetns(proc = "/proc"): Map<number, number[]> {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync(proc)) {
    if (/^\d+$/.test(entry.name)) pids.push(Number(entry.name));
  }
  pids.sort((a, b) => a - b);
  const out = new Map<number, number[]>();
  for (const pid of pids) {
    const ino = nsInode(`${proc}/${pid}/ns/net`);
    if (!ino) continue; // exited while listing
    const list = out.get(ino);
    if (list) list.push(pid);
    else out.set(ino, [pid]);
  }
  return out;
}
