/**
 * A test pod's cgroup directories, made the kubelet's way (systemd driver) in the cgroup v2
 * hierarchy and in the v1 `memory`, `pids` and `name=systemd` hierarchies when those are
 * mounted. Mount points come from /proc/self/mountinfo (k8s/cgroupfs.ts).
 *
 * The QoS parents ("kubepods.slice", "kubepods.slice/kubepods-burstable.slice") are shared by
 * every pod, also across processes: one a test pod made is removed by whichever pod is the last
 * below it; one that existed before is never removed.
 */

import { cgroupMounts } from "../../k8s/cgroupfs.ts";
import type { Pod } from "../../k8s/types.ts";

export type QosClass = NonNullable<Pod["status"]["qosClass"]>;

/** The v1 hierarchies a pod's dirs are made in, by the key k8s/cgroupfs.ts gives them. */
export const V1_HIERARCHIES = ["memory", "pids", "systemd"] as const;

/** A hierarchy: "v2" or a v1 key, and its mount point. */
export interface Hierarchy {
  key: string;
  mount: string;
}

/** The cgroup v2 hierarchy first, then each mounted one of V1_HIERARCHIES. */
export function podHierarchies(): Hierarchy[] {
  const m = cgroupMounts();
  const out: Hierarchy[] = [];
  if (m.v2) out.push({ key: "v2", mount: m.v2 });
  for (const key of V1_HIERARCHIES) if (m.v1[key]) out.push({ key, mount: m.v1[key] });
  if (!out.length) throw new Error("no cgroup hierarchy mounted (see /proc/self/mountinfo)");
  return out;
}

/**
 * The kubelet's (systemd driver) cgroup paths of a pod, relative to a hierarchy root with a
 * leading "/": its QoS parents, outermost first, and its own slice.
 */
export function podCgroupPaths(
  uid: string,
  qos: QosClass,
  root = "",
): { parents: string[]; pod: string } {
  const u = uid.replaceAll("-", "_");
  const base = root ? `/${root.replace(/^\/+|\/+$/g, "")}` : "";
  const kubepods = `${base}/kubepods.slice`;
  if (qos === "Guaranteed") {
    return { parents: [kubepods], pod: `${kubepods}/kubepods-pod${u}.slice` };
  }
  const q = qos.toLowerCase();
  const slice = `${kubepods}/kubepods-${q}.slice`;
  return { parents: [kubepods, slice], pod: `${slice}/kubepods-${q}-pod${u}.slice` };
}

/**
 * Parents made by a test pod get a marker file here (tmpfs: gone after a reboot, as they are);
 * the last pod below a marked parent removes it, whichever process it is in. Unmarked ones (the
 * kubelet's on a real node) are never removed. Making parents and a pod's slice, and removing
 * parents, happen under one lock shared by all processes, so no parent is removed between.
 */
export const PARENT_MARKERS = "/run/kupodt/cgroup-parents";

function marker(dir: string): string {
  return `${PARENT_MARKERS}/${encodeURIComponent(dir)}`;
}

function locked<T>(f: () => T): T {
  Deno.mkdirSync(PARENT_MARKERS, { recursive: true });
  using file = Deno.openSync(`${PARENT_MARKERS}.lock`, { create: true, write: true });
  file.lockSync(true);
  return f(); // the lock goes with the file
}

function acquireParent(dir: string): void {
  try {
    Deno.mkdirSync(dir);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return;
    throw e;
  }
  Deno.writeTextFileSync(marker(dir), "");
}

function releaseParent(dir: string): void {
  try {
    Deno.statSync(marker(dir));
  } catch {
    return; // not made by a test pod
  }
  try {
    Deno.removeSync(dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) return; // another pod is below it: its turn later
  }
  Deno.removeSync(marker(dir));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** rmdir, retried while the kernel still counts exiting tasks; gone already is fine. */
export async function rmdirCgroup(dir: string, tries = 100): Promise<void> {
  for (let i = 0;; i++) {
    try {
      await Deno.remove(dir);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      if (i >= tries) throw new Error(`rmdir ${dir}: ${(e as Error).message}`);
      await sleep(10);
    }
  }
}

/** The pids in cgroup directory `dir` (not below it), sorted; none when it is gone. */
export function procsOf(dir: string): number[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/cgroup.procs`);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l).map(Number).sort((a, b) => a - b);
}

/** One container's dirs: absolute path per hierarchy key. */
export type ContainerDirs = Record<string, string>;

/** The directories of one pod, in every hierarchy of `hierarchies`. */
export class PodCgroups {
  #podMade: string[] = [];
  #containers = new Map<string, ContainerDirs>();

  constructor(
    readonly hierarchies: Hierarchy[],
    /** QoS parents relative to a hierarchy root ("/kubepods.slice", ...), outermost first. */
    readonly parents: string[],
    /** The pod's slice relative to a hierarchy root. */
    readonly pod: string,
  ) {}

  /** Makes the parents (when missing) and the pod's slice in every hierarchy. */
  create(): void {
    locked(() => {
      for (const h of this.hierarchies) {
        for (const p of this.parents) acquireParent(h.mount + p);
        Deno.mkdirSync(h.mount + this.pod);
        this.#podMade.push(h.mount + this.pod);
      }
    });
  }

  /** Makes the dir `name` below the pod's slice in every hierarchy. */
  addContainer(name: string): ContainerDirs {
    const dirs: ContainerDirs = {};
    this.#containers.set(name, dirs);
    for (const h of this.hierarchies) {
      const dir = `${h.mount}${this.pod}/${name}`;
      Deno.mkdirSync(dir);
      dirs[h.key] = dir;
    }
    return dirs;
  }

  /** Removes container `name`'s dirs (its processes must be gone). */
  async removeContainer(name: string): Promise<void> {
    const dirs = this.#containers.get(name);
    if (!dirs) return;
    for (const dir of Object.values(dirs)) await rmdirCgroup(dir);
    this.#containers.delete(name);
  }

  /** Removes every container's dirs, the pod's slices and the parents no longer used. */
  async destroy(): Promise<void> {
    for (const name of [...this.#containers.keys()]) await this.removeContainer(name);
    for (const dir of this.#podMade) await rmdirCgroup(dir);
    this.#podMade = [];
    locked(() => {
      for (const h of this.hierarchies) {
        for (const p of [...this.parents].reverse()) releaseParent(h.mount + p);
      }
    });
  }
}
