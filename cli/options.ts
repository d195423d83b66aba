/** The parsed command line: what a monitor run is asked to do. */

import type { OutputFormat, Verbosity } from "../exporters/console.ts";
import type { SidecarMode } from "../k8s/sidecar.ts";
import type { ProbeName } from "../probes/probe.ts";

export type { OutputFormat, ProbeName, SidecarMode, Verbosity };

export type Layer = "kernel" | "user" | "all";

/** Every flag of a monitor command, after validation. Empty strings mean "discover" or "off". */
export interface MonitorOptions {
  layer: Layer;
  /** Probes to run, in start order, e.g. ["socket", "stack"] for `monitor kernel all`. */
  probes: ProbeName[];
  exporterPort: number;
  exporterAddress: string;
  forceMinikube: boolean;
  grpcImageName: string;
  grpcPod: string;
  imageName: string;
  jaegerAgent: string;
  kubeconfig: string;
  namespace: string;
  nodeName: string;
  pod: string;
  podLabel: string;
  /** Pushgateway host:port, "" = off. */
  prometheus: string;
  sidecarMode: SidecarMode;
  veth: string;
  withSockops: boolean;
  /** Local targets. pid 0 = none. */
  pid: number;
  cgroup: string;
  netns: string;
  /** Stack probe packet selection: "" / 0 = any. */
  stackProtocol: "" | "tcp" | "udp" | "icmp";
  stackPort: number;
  /** Comma-separated addresses. */
  stackAddress: string;
  /** Stack probe: also count at TCP's own points (tcp_probe, tcp_sendmsg_locked). */
  stackTcp: boolean;
  stackLoopback: boolean;
  /** Stack probe: share of the time its path hooks are attached (0..1). */
  stackDutyCycle: number;
  /** HTTP probe: bytes of each response body shown, 0 = none. */
  httpPreview: number;
  otlpEndpoint: string;
  output: OutputFormat;
  /** Seconds; 0 = until Ctrl-C / SIGTERM. */
  duration: number;
  /** Seconds between printed summaries (and one at exit); 0 = none. */
  interval: number;
  verbosity: Verbosity;
}

/** What the command line asks for. */
export type Command =
  | { kind: "help"; text: string }
  | { kind: "version" }
  | { kind: "completion"; shell: "bash" | "zsh" | "fish" }
  | { kind: "monitor"; options: MonitorOptions };
