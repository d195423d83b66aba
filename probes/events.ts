/** Events every probe emits: the `--output json` contract (one object per line). */

import type { Role } from "../k8s/target.ts";

/** Fields every event carries where known. */
export interface EventBase {
  /** RFC 3339 wall-clock time the kernel saw the event. */
  ts: string;
  type: string;
  namespace?: string;
  pod?: string;
  container?: string;
  role?: Role;
  pid?: number;
  comm?: string;
}

export interface TcpEvent extends EventBase {
  type: "tcp_connect" | "tcp_accept";
  family: "ipv4" | "ipv6";
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
}

export type KupodEvent = TcpEvent;

/** Where events go: console, metrics, spans. */
export interface EventSink {
  event(e: KupodEvent): void;
  /** Writes out anything buffered. */
  flush(): void;
}
