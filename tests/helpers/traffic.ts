/** Events of the socket probe as tests read them, and the exact traffic a test pod produces. */

import { assert, assertEquals } from "./assert.ts";
import type { TestPod } from "./pod.ts";
import type { Child } from "./process.ts";

export interface Event {
  namespace?: string;
  pod?: string;
  type: string;
  pid: number;
  comm: string;
  container?: string;
  role?: string;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
}

export const N = 12;

export async function eventsAfter(kupod: Child): Promise<Event[]> {
  await new Promise((r) => setTimeout(r, 300));
  kupod.kill("SIGTERM");
  const status = await kupod.wait();
  assertEquals(status.code, 0, `exit; stderr: ${kupod.stderr.join(" | ")}`);
  return kupod.stdout.map((l) => JSON.parse(l) as Event);
}

/** Runs `check` on a finished run's events; a failure carries what kupod said and sent. */
export function explained(kupod: Child, evs: Event[], check: () => void): void {
  try {
    check();
  } catch (e) {
    const sent = evs.map((v) => `${v.type} ${v.container}/${v.role} ${v.comm}[${v.pid}]`);
    throw new Error(
      `${(e as Error).message}\nkupod stderr: ${kupod.stderr.join(" | ")}\nevents: ${
        sent.join(", ")
      }`,
    );
  }
}

export function count(evs: Event[], type: string, container: string): number {
  return evs.filter((e) => e.type === type && e.container === container).length;
}

/** What N fresh requests through the sidecar must produce, upstream keep-alive off. */
export function assertSidecarTraffic(pod: TestPod, evs: Event[], n = N): void {
  const proxy = pod.container("proxy"), app = pod.container("app");
  const sidecar = evs.filter((e) => e.role === "sidecar");
  const service = evs.filter((e) => e.role === "service");
  assertEquals(sidecar.length + service.length, evs.length, "every event has a role");
  // nginx: N accepts from the host, N connects to the service
  const accepts = sidecar.filter((e) => e.type === "tcp_accept");
  assertEquals(accepts.length, n, "sidecar accepts");
  for (const e of accepts) {
    assertEquals([e.saddr, e.sport, e.daddr], [pod.podIP, proxy.port, pod.hostIP]);
  }
  const connects = sidecar.filter((e) => e.type === "tcp_connect");
  assertEquals(connects.length, n, "sidecar connects");
  for (const e of connects) assertEquals([e.daddr, e.dport], ["127.0.0.1", app.port]);
  // the service: N accepts from the sidecar, nothing else
  assertEquals(service.length, n, "service events");
  for (const e of service) {
    assertEquals([e.type, e.sport], ["tcp_accept", app.port]);
    assert(app.pids().includes(e.pid), `service pid ${e.pid}`);
  }
  assertEquals(new Set(sidecar.map((e) => e.container)).size, 1, "one sidecar container");
}
