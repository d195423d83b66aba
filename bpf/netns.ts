/**
 * Running a few calls inside another network namespace: netfilter links attach in the netns of
 * the calling thread, so the thread enters the pod's netns for the attach and comes back.
 */

import { BpfError } from "./errors.ts";
import { cstr, errno, libc } from "./ffi.ts";

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

function openNs(path: string): number {
  const fd = libc().open(cstr(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new BpfError(`open ${path}`, errno());
  return fd;
}

/**
 * Calls `fn` with this thread in the network namespace at `nsPath` (/proc/<pid>/ns/net,
 * /run/netns/<name>), then returns the thread to the namespace it was in, also when `fn` throws.
 * FFI calls without `nonblocking` run on this same thread, so `fn`'s syscalls happen there.
 */
export function inNetns<T>(nsPath: string, fn: () => T): T {
  const home = openNs("/proc/thread-self/ns/net");
  try {
    const target = openNs(nsPath);
    try {
      if (libc().setns(target, CLONE_NEWNET) !== 0) {
        throw new BpfError(`enter network namespace ${nsPath}`, errno());
      }
    } finally {
      libc().close(target);
    }
    let result: T;
    try {
      result = fn();
    } catch (e) {
      goHome(home);
      throw e;
    }
    goHome(home);
    return result;
  } finally {
    libc().close(home);
  }
}

function goHome(home: number): void {
  if (libc().setns(home, CLONE_NEWNET) !== 0) {
    // staying in the pod's netns would misplace everything kupod does next
    throw new BpfError("return to kupod's network namespace", errno());
  }
}

/** A path to the network namespace with inode `inode`: a process of `pids`, or an `ip netns` name. */
export function netnsPath(inode: number, pids: readonly number[]): string | undefined {
  const candidates = [
    ...pids.map((p) => `/proc/${p}/ns/net`),
    ...namedNetns("/run/netns"),
    ...namedNetns("/var/run/netns"),
  ];
  for (const path of candidates) {
    try {
      if (Deno.statSync(path).ino === inode) return path;
    } catch {
      // the process exited or the name went away
    }
  }
  return undefined;
}

function namedNetns(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => `${dir}/${e.name}`);
  } catch {
    return [];
  }
}
