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

/** The endpoints of a TCP connection, from the owning process's side. */
export interface TcpEndpoints {
  family: "ipv4" | "ipv6";
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
  /** Identifies the connection across its events (kernel socket identity, hex). */
  conn_id: string;
}

export interface TcpEvent extends EventBase, TcpEndpoints {
  type: "tcp_connect" | "tcp_accept";
}

/** A connection's end, with what it carried. Times are wall-clock RFC 3339. */
export interface TcpCloseEvent extends EventBase, TcpEndpoints {
  type: "tcp_close";
  direction: "inbound" | "outbound";
  /** connect() called / accept() returned */
  start_ts: string;
  /** handshake done (equals start_ts for accepts, whose handshake the kernel did before) */
  established_ts: string;
  /** first FIN sent or received */
  closing_ts: string;
  duration_seconds: number;
  bytes_sent: number;
  bytes_received: number;
  /** smoothed RTT at close */
  rtt_seconds: number;
  retransmits: number;
  /** request/response exchanges seen on the connection (a send after a receive, or vice versa) */
  exchanges: number;
}

export interface TcpRetransmitEvent extends EventBase, TcpEndpoints {
  type: "tcp_retransmit";
  /** TCP state name at the retransmit, e.g. "ESTABLISHED" */
  state: string;
}

/** The first reset of a connection: sent (an abort: close() with unread data, SO_LINGER 0) or received. */
export interface TcpResetEvent extends EventBase, TcpEndpoints {
  type: "tcp_reset";
  reset: "sent" | "received";
  /** TCP state name when the reset was sent or received, e.g. "ESTABLISHED" */
  state: string;
}

/**
 * One request through the sidecar: from the sidecar reading it on the inbound
 * connection to writing it upstream (process), and from there to the service
 * reading it (to service).
 */
export interface SidecarTimingEvent extends EventBase {
  type: "sidecar_timing";
  sidecar_container: string;
  service_container: string;
  process_seconds: number;
  to_service_seconds: number;
}

/**
 * One hop of a sampled packet through the pod's network path (stack probe, `--verbose` or
 * rodata sample_every): the hook it reached and the time since the hook before.
 */
export interface PacketEvent extends EventBase {
  type: "packet";
  /** Identifies the packet across its hops (kernel skb identity, masked, hex). */
  packet_id: string;
  /** Hook name, e.g. "netif_receive_skb", "nf_local_in", "drop". */
  hook: string;
  /** The hook before, absent at the first hook seen. */
  from?: string;
  latency_seconds?: number;
  /** Interface index at the hook (in `netns`), absent when none. */
  ifindex?: number;
  netns?: number;
  len: number;
  /** hook "drop": the kernel's drop reason, e.g. "no_socket". */
  drop_reason?: string;
}

/** Packets and bytes at one place. */
export interface PacketCount {
  packets: number;
  bytes: number;
}

/** Latency of one hop of the path, as a log2 histogram of nanoseconds. */
export interface HopLatency {
  from: string;
  to: string;
  count: number;
  sum_seconds: number;
  /** slots[i]: hops that took [2^i, 2^(i+1)) ns. */
  slots: number[];
}

/**
 * What the stack probe counted in the kernel since it started (cumulative), read every interval
 * and at stop. Metrics come from these; the console prints one summary line in --verbose.
 */
export interface StackStatsEvent extends EventBase {
  type: "stack_stats";
  /** The host-side veth, "" when none. */
  interface: string;
  /** rx: from the pod (host veth ingress); tx: to the pod (host veth egress). */
  nic: { rx: PacketCount; tx: PacketCount };
  hooks: Record<string, PacketCount>;
  hops: HopLatency[];
  drops: Record<string, number>;
  /** Packets followed, ended (consumed or dropped), vanished (freed unseen or displaced). */
  tracked: number;
  ended: number;
  vanished: number;
  sampled: number;
  /** Share of the time the path (hooks after TC, hop latencies) is traced; 1: always. */
  path_duty_cycle: number;
  /** Seconds the path was traced since start: path counts per traced second are its rates. */
  path_traced_seconds: number;
}

/**
 * A log2 histogram counted in the kernel: slots[i] holds values in [2^i, 2^(i+1)) units of
 * `unit_seconds` (1e-9: nanoseconds, 1e-6: microseconds).
 */
export interface Log2Counts {
  count: number;
  sum_seconds: number;
  unit_seconds: number;
  slots: number[];
}

/** What the connections of one container and direction carried, counted in the kernel. */
export interface TcpCounts {
  container: string;
  direction: "inbound" | "outbound";
  /** accepted or connected (handshake done) */
  opened: number;
  closed: number;
  /** bytes the application wrote and read on connections that closed */
  bytes_sent: number;
  bytes_received: number;
  retransmits: number;
  /** closed connections that carried more than one request/response exchange */
  long_connections: number;
  /** closed connections that ended with a reset, sent or received */
  resets: number;
  /** smoothed RTT at close */
  rtt: Log2Counts;
  /** connect or accept to close */
  duration: Log2Counts;
}

/**
 * The TCP connections counted in the kernel since the probe started (cumulative), per container
 * and direction; read every second and at stop. Metrics come from these.
 */
export interface TcpStatsEvent extends EventBase {
  type: "tcp_stats";
  connections: TcpCounts[];
}

/**
 * Sidecar timings counted in the kernel since the probe started (cumulative), per sidecar
 * container; read every second and at stop. Metrics come from these.
 */
export interface SidecarStatsEvent extends EventBase {
  type: "sidecar_stats";
  sidecars: { container: string; process: Log2Counts; to_service: Log2Counts }[];
}

/**
 * One HTTP/1.x request and its response, as a container served it (`server`) or made it
 * (`client`). `ts` is when the request started, `duration_seconds` runs to the response's end.
 */
export interface HttpEvent extends EventBase, TcpEndpoints {
  type: "http";
  side: "server" | "client";
  method: string;
  /** The path without query, ids folded to `*`; "other" past the per-container bound. */
  route: string;
  /** 0 when no response came. */
  status: number;
  duration_seconds: number;
  /** Body bytes (chunked framing removed). */
  request_bytes: number;
  response_bytes: number;
  /** The response's media type without parameters. */
  content_type?: string;
  /**
   * complete; closed: the connection closed before the response ended; no_response: it closed
   * before any; truncated: bytes that were not captured hid the framing (sizes are lower bounds).
   */
  outcome: "complete" | "closed" | "no_response" | "truncated";
  /** From the request's W3C traceparent header. */
  trace_id?: string;
  parent_span_id?: string;
  /** The response body's first bytes (opt-in, never for messages carrying credentials). */
  response_preview?: string;
}

/** One gRPC call (an HTTP/2 stream with content-type application/grpc), either side. */
export interface GrpcEvent extends EventBase, TcpEndpoints {
  type: "grpc";
  side: "server" | "client";
  /** "pkg.Service"; "unknown" when the call's :path could not be known */
  service: string;
  /** "Method", or "unknown" */
  method: string;
  /** grpc-status of the trailers; -1 when none came (reset, closed) */
  grpc_status: number;
  kind: "unary" | "client_stream" | "server_stream" | "bidi";
  duration_seconds: number;
  request_messages: number;
  response_messages: number;
  /** DATA bytes (gRPC message prefixes included) */
  request_bytes: number;
  response_bytes: number;
  outcome: "complete" | "reset" | "closed";
  /** The request's :authority, user-agent and grpc-timeout (seconds), where sent and known. */
  authority?: string;
  user_agent?: string;
  timeout_seconds?: number;
  /** From the request's W3C traceparent or grpc-trace-bin. */
  trace_id?: string;
  parent_span_id?: string;
}

/** gRPC calls of one container, side, service, method and status. */
export interface GrpcCounts {
  container: string;
  side: "server" | "client";
  service: string;
  method: string;
  grpc_status: number;
  duration: BucketCounts;
  /** Sizes of the messages (their length prefixes: as sent, compressed if they were). */
  request_message_bytes: BucketCounts;
  response_message_bytes: BucketCounts;
}

/** What the probe counted of gRPC since it started (cumulative); metrics come from these. */
export interface GrpcStatsEvent extends EventBase {
  type: "grpc_stats";
  series: GrpcCounts[];
  /** Calls whose method could not be known (HPACK state of a connection seen from its middle). */
  unknown_method_calls: number;
  /**
   * Calls and HTTP/2 requests opened in bytes the capture could not frame (writes longer than
   * it copies, records a full ring dropped): not reported one by one, counted here.
   */
  unseen_calls: number;
}

/** Requests of one container, side, method, route and status: a RED series. */
export interface HttpCounts {
  container: string;
  side: "server" | "client";
  method: string;
  route: string;
  status: number;
  /** "" for complete exchanges, else the outcome (closed, no_response, truncated). */
  error: string;
  /** seconds */
  duration: BucketCounts;
  request_bytes: BucketCounts;
  response_bytes: BucketCounts;
}

/** A histogram: `counts[i]` observations ≤ `bounds[i]` (not cumulative), the last slot +Inf. */
export interface BucketCounts {
  bounds: readonly number[];
  counts: number[];
  sum: number;
  count: number;
}

/** What the HTTP probe counted since it started (cumulative), per series; metrics come from these. */
export interface HttpStatsEvent extends EventBase {
  type: "http_stats";
  series: HttpCounts[];
}

/**
 * One container's resources over the last interval (rates) and now (gauges). The network is the
 * pod's: its containers share one network namespace.
 */
export interface ResourcesEvent extends EventBase {
  type: "resources";
  interval_seconds: number;
  cpu_cores: number;
  memory_working_set_bytes: number;
  net_rx_bytes_per_second: number;
  net_tx_bytes_per_second: number;
  io_read_bytes_per_second: number;
  io_write_bytes_per_second: number;
  /** Time from runnable to running, 99th percentile over the interval (inside its log2 slot). */
  runqueue_p99_seconds: number;
  threads: number;
}

/** A process of the target chosen by the kernel's OOM killer. */
export interface OomKillEvent extends EventBase {
  type: "oom_kill";
  victim_pid: number;
  victim_comm: string;
}

/** What the kernel accounts for one container, cumulative or current, as cAdvisor shows it. */
export interface ContainerResources {
  container: string;
  cpu_seconds: number;
  cpu_user_seconds: number;
  cpu_system_seconds: number;
  cfs_periods: number;
  cfs_throttled_periods: number;
  cfs_throttled_seconds: number;
  memory_usage_bytes: number;
  memory_working_set_bytes: number;
  memory_rss_bytes: number;
  memory_cache_bytes: number;
  memory_limit_bytes: number;
  oom_events: number;
  threads: number;
  io: { device: string; read_bytes: number; write_bytes: number; reads: number; writes: number }[];
  /** Counted in BPF: time from runnable to running, and OOM kills the probe saw. */
  runqueue: Log2Counts;
  oom_kills: number;
}

/** One interface of the pod's network namespace, cumulative. */
export interface InterfaceCounts {
  interface: string;
  rx_bytes: number;
  rx_packets: number;
  rx_errors: number;
  rx_dropped: number;
  tx_bytes: number;
  tx_packets: number;
  tx_errors: number;
  tx_dropped: number;
}

/** The resources probe's current readings, per container and per pod interface; metrics come from these. */
export interface ResourcesStatsEvent extends EventBase {
  type: "resources_stats";
  containers: ContainerResources[];
  interfaces: InterfaceCounts[];
}

/** The sockops redirection's counts since it started, per container of the sender. */
export interface SockopsStatsEvent extends EventBase {
  type: "sockops_stats";
  /** Sockets in the redirection map now (the pod's local connections, both ends). */
  sockets: number;
  containers: {
    /** "" for counts the kernel could not tie to a container (the passive side's inserts). */
    container: string;
    redirected_bytes: number;
    redirected_messages: number;
    /** Sends of a redirected socket whose peer was not in the map: they took the normal path. */
    redirect_errors: number;
    sockets_added: number;
  }[];
}

/** p50 and p99 of a latency over a window, in seconds; absent when nothing was measured. */
export interface Percentiles {
  count: number;
  p50_seconds: number;
  p99_seconds: number;
}

/**
 * What the pod did over a window, made from the probes' cumulative counts: printed every
 * `--interval` seconds and once at exit (then over the whole run), and shown by the live view.
 * Rates are per second over the window; `*_total` fields are the counts since the probe started,
 * the values /metrics shows.
 */
export interface SummaryEvent extends EventBase {
  type: "summary";
  /** "interval": since the previous summary; "run": since the start (the one printed at exit). */
  window: "interval" | "run";
  window_seconds: number;
  socket?: {
    containers: {
      container: string;
      accepted_per_second: number;
      connected_per_second: number;
      accepted_total: number;
      connected_total: number;
      closed_total: number;
      sent_bytes_per_second: number;
      received_bytes_per_second: number;
      retransmits: number;
      resets: number;
      rtt: Percentiles;
    }[];
    sidecars: {
      container: string;
      requests_per_second: number;
      requests_total: number;
      process: Percentiles;
      to_service: Percentiles;
    }[];
  };
  stack?: {
    interface: string;
    nic: {
      rx_packets_per_second: number;
      tx_packets_per_second: number;
      rx_bytes_per_second: number;
      tx_bytes_per_second: number;
      rx_packets_total: number;
      tx_packets_total: number;
    };
    /** Hooks along the path (into the pod, out of it, then the ends), those that saw packets. */
    hooks: { hook: string; packets: number; packets_total: number }[];
    hops: ({ from: string; to: string } & Percentiles)[];
    drops: { reason: string; packets: number; packets_total: number }[];
    /** Seconds of this summary the path (hooks after TC, hops) was traced, and the flag's share. */
    path_traced_seconds: number;
    path_duty_cycle: number;
  };
  http?: {
    /** Ordered by the time requests spent in each over the window. */
    routes: {
      container: string;
      side: "server" | "client";
      method: string;
      route: string;
      requests_per_second: number;
      requests_total: number;
      /** 5xx responses and exchanges that did not complete */
      errors: number;
      latency: Percentiles;
    }[];
  };
  grpc?: {
    /** Ordered by the time calls spent in each over the window. */
    methods: {
      container: string;
      side: "server" | "client";
      service: string;
      method: string;
      calls_per_second: number;
      calls_total: number;
      /** calls whose grpc-status was not 0 (OK) */
      errors: number;
      latency: Percentiles;
    }[];
    unknown_method_calls: number;
    unseen_calls: number;
  };
  resources?: {
    containers: {
      container: string;
      cpu_cores: number;
      cpu_throttled_periods: number;
      memory_working_set_bytes: number;
      memory_limit_bytes: number;
      io_read_bytes_per_second: number;
      io_write_bytes_per_second: number;
      threads: number;
      runqueue: Percentiles;
      oom_kills: number;
    }[];
    interfaces: {
      interface: string;
      rx_bytes_per_second: number;
      tx_bytes_per_second: number;
      rx_dropped: number;
      tx_dropped: number;
    }[];
  };
  sockops?: {
    sockets: number;
    redirected_bytes_per_second: number;
    redirected_bytes_total: number;
    redirect_errors: number;
  };
}

export type KupodEvent =
  | SummaryEvent
  | GrpcEvent
  | GrpcStatsEvent
  | SockopsStatsEvent
  | ResourcesEvent
  | OomKillEvent
  | ResourcesStatsEvent
  | HttpEvent
  | HttpStatsEvent
  | TcpEvent
  | TcpCloseEvent
  | TcpRetransmitEvent
  | TcpResetEvent
  | SidecarTimingEvent
  | SidecarStatsEvent
  | TcpStatsEvent
  | PacketEvent
  | StackStatsEvent;

/** Where events go: console, metrics, spans. */
export interface EventSink {
  event(e: KupodEvent): void;
  /** Writes out anything buffered. */
  flush(): void;
}
