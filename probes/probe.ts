/** What every probe offers the monitor that runs it. */

import type { Target } from "../k8s/target.ts";

/** Every probe kupod has; the command line selects among them. */
export type ProbeName = "socket" | "stack" | "resources" | "http" | "grpc" | "sockops";

export interface ProbeStats {
  /** Events decoded and handed to the sinks. */
  events: number;
  /** Events the kernel dropped because the ring was full. */
  lost: bigint;
}

export interface Probe extends AsyncDisposable {
  readonly name: ProbeName;
  /** The line printed once the probe is attached (operators and tests wait for "started"). */
  readonly readyLine: string;
  /** Follows a changed target without reloading programs. */
  retarget(target: Target): void;
  stats(): ProbeStats;
  /** What else the run counted that an operator should read at its end (a line, or none). */
  summary?(): { line: string; warn: boolean } | undefined;
  /** Sends a fresh snapshot of what the kernel counted (histograms, counters) to the sink. */
  reportCounters?(): void;
  /** Settles when reading stops; rejects if reading failed. */
  readonly reading: Promise<void>;
  /** Detaches, drains what is left in the ring, and releases everything. */
  stop(): Promise<void>;
}
