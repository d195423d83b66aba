/**
 * Generates the Grafana dashboards in dashboards/ from the descriptions below, so that panel ids,
 * grid positions and the datasource and pod variables are made one way for every panel.
 *
 *   deno run --allow-read --allow-write --allow-run scripts/gen_dashboards.ts  # write dashboards/*.json
 *   deno run --allow-read scripts/gen_dashboards.ts --check   # exit 1 if they differ from the files
 *
 * Every query selects the pod through the `namespace` and `pod` variables (and `container` where
 * the metric has one); rates use `$__rate_interval`, quantiles come from the `_bucket` series.
 *
 * @module
 */

/** A dashboard or any part of one, as Grafana's JSON model has it. */
export type Json = Record<string, unknown>;

/** One query of a panel. */
interface Query {
  expr: string;
  /** Legend, with `{{label}}` placeholders. */
  legend?: string;
  /** An instant query (tables, bar gauges of totals over the time range). */
  instant?: boolean;
}

type PanelType = "timeseries" | "stat" | "heatmap" | "bargauge" | "table" | "text";

interface PanelSpec {
  title: string;
  type: PanelType;
  description: string;
  /** Width in grid columns (of 24) and height in grid rows. */
  w: number;
  h: number;
  queries?: Query[];
  unit?: string;
  /** Markdown of a text panel. */
  content?: string;
  /** Stacked series (parts of one whole). */
  stack?: boolean;
  /** A table's value columns, named: Grafana calls them "Value" or "Value #<refId>". */
  columns?: Record<string, string>;
  /** One copy of the panel per value of this variable, side by side. */
  repeat?: string;
}

interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

type PodVar = "namespace" | "pod" | "container";

interface DashboardSpec {
  file: string;
  uid: string;
  title: string;
  description: string;
  /** The series whose labels fill the namespace, pod and container lists. */
  anchor: string;
  vars: PodVar[];
  /** Adds the Jaeger link and its URL variable. */
  traces?: boolean;
  /** Adds the `hop` variable: the pod's hops ("<from> → <to>"), for a panel per hop. */
  hops?: boolean;
  rows: RowSpec[];
}

const DS = { type: "prometheus", uid: "${datasource}" };
const RI = "$__rate_interval";
/** The pod's series. */
const POD = 'namespace="$namespace", pod="$pod"';
/** The selected containers' series of the pod. */
const CTR = `${POD}, container=~"$container"`;
/** The same under cAdvisor's names: without its pod-level series (container=""), as kubelets have. */
const CAD = `${CTR}, container!=""`;
/** The pod's series of `metric` with a `hop` label "<from> → <to>". */
const HOP_JOIN = (metric: string, range = "") =>
  `label_join(${
    range ? `rate(${metric}{${POD}}[${range}])` : `${metric}{${POD}}`
  }, "hop", " → ", "from", "to")`;

const rate = (metric: string, sel: string, by = "") =>
  `sum${by ? ` by (${by})` : ""} (rate(${metric}{${sel}}[${RI}]))`;
const quantile = (q: number, metric: string, sel: string, by = "") =>
  `histogram_quantile(${q}, sum by (le${
    by ? `, ${by}` : ""
  }) (rate(${metric}_bucket{${sel}}[${RI}])))`;
/** Mean of a histogram over the rate window: sum of observations / their count. */
const mean = (metric: string, sel: string, by: string) =>
  `${rate(`${metric}_sum`, sel, by)} / ${rate(`${metric}_count`, sel, by)}`;
const heat = (metric: string, sel: string): Query => ({
  expr: `sum by (le) (rate(${metric}_bucket{${sel}}[${RI}]))`,
  legend: "{{le}}",
});
/** p50 and p99 of a histogram, one series each per `by` value. */
const p50p99 = (metric: string, sel: string, by: string, name: string): Query[] => [
  { expr: quantile(0.5, metric, sel, by), legend: `p50 ${name}` },
  { expr: quantile(0.99, metric, sel, by), legend: `p99 ${name}` },
];

const panel = (
  title: string,
  type: PanelType,
  w: number,
  h: number,
  description: string,
  queries: Query[],
  unit?: string,
  more: Partial<PanelSpec> = {},
): PanelSpec => ({ title, type, w, h, description, queries, unit, ...more });
const ts = (
  title: string,
  w: number,
  description: string,
  queries: Query[],
  unit: string,
  more: Partial<PanelSpec> = {},
) => panel(title, "timeseries", w, 8, description, queries, unit, more);
const stat = (title: string, description: string, expr: string, unit: string) =>
  panel(title, "stat", 4, 4, description, [{ expr }], unit);
const heatmap = (title: string, w: number, description: string, q: Query, unit: string) =>
  panel(title, "heatmap", w, 8, description, [q], unit);

const HTTP_S = "http_server_request_duration_seconds";
const HTTP_C = "http_client_request_duration_seconds";
const RPC_S = "rpc_server_duration_seconds";
const RPC_C = "rpc_client_duration_seconds";
const ROUTE = "http_request_method, http_route";
const STATUS = "http_response_status_code";
const RPC = "rpc_service, rpc_method";

const TRACES_TEXT = [
  "kupod sends one trace per connection of the pod and one span per HTTP request with",
  "`--otlp-endpoint http://<collector>:4318` (OTLP/HTTP), or `--jaeger-agent <jaeger host>:6831`,",
  "which sends OTLP/HTTP to port 4318 of that host, where Jaeger's OTLP receiver listens.",
  "",
  "Connection traces belong to the services `<pod>-in` and `<pod>-out`, request spans to the",
  "container's name; every span carries `k8s.namespace.name`, `k8s.pod.name` and",
  "`k8s.container.name`. The link **Traces in Jaeger** at the top opens Jaeger's search for this",
  "pod over the dashboard's time range; set the Jaeger UI's address in the `jaeger` field.",
].join("\n");

const SPECS: DashboardSpec[] = [
  {
    file: "kupod-pod-overview.json",
    uid: "kupod-pod-overview",
    title: "kupod / Pod overview",
    description: "One pod at a glance: requests, connections, sidecar time, drops, CPU and memory.",
    anchor:
      "kupod_tcp_connections_total|kupod_stack_packets_total|http_server_request_duration_seconds_count|rpc_server_duration_seconds_count|kupod_container_runqueue_latency_seconds_count",
    vars: ["namespace", "pod", "container"],
    traces: true,
    rows: [
      {
        title: "Now",
        panels: [
          stat(
            "HTTP requests/s",
            "Requests the selected containers served.",
            rate(`${HTTP_S}_count`, CTR),
            "reqps",
          ),
          stat(
            "HTTP 5xx share",
            "Share of served requests answered with a 5xx status.",
            `${rate(`${HTTP_S}_count`, `${CTR}, ${STATUS}=~"5.."`)} / ${
              rate(`${HTTP_S}_count`, CTR)
            }`,
            "percentunit",
          ),
          stat(
            "gRPC calls/s",
            "Calls the selected containers served.",
            rate(`${RPC_S}_count`, CTR),
            "reqps",
          ),
          stat(
            "gRPC error share",
            "Share of served calls that ended with a status other than OK (calls whose status the capture could not read are not counted).",
            `${rate(`${RPC_S}_count`, `${CTR}, rpc_grpc_status_code!~"0|"`)} / ${
              rate(`${RPC_S}_count`, CTR)
            }`,
            "percentunit",
          ),
          stat(
            "TCP connections/s",
            "Connections accepted and made by the selected containers.",
            rate("kupod_tcp_connections_total", CTR),
            "cps",
          ),
          stat(
            "Packet drops/s",
            "Packets of the pod the kernel dropped.",
            rate("kupod_stack_drops_total", POD),
            "pps",
          ),
        ],
      },
      {
        title: "Requests",
        panels: [
          ts(
            "HTTP requests/s by container and status",
            12,
            "Served requests (server side) per container and response status.",
            [{
              expr: rate(`${HTTP_S}_count`, CTR, `container, ${STATUS}`),
              legend: `{{container}} {{${STATUS}}}`,
            }],
            "reqps",
          ),
          ts(
            "HTTP latency by container",
            12,
            "First request byte to last response byte, served requests.",
            p50p99(HTTP_S, CTR, "container", "{{container}}"),
            "s",
          ),
          ts(
            "gRPC calls/s by method and status",
            12,
            "Served calls per method and gRPC status code.",
            [{
              expr: rate(`${RPC_S}_count`, CTR, `${RPC}, rpc_grpc_status_code`),
              legend: "{{rpc_service}}/{{rpc_method}} {{rpc_grpc_status_code}}",
            }],
            "reqps",
          ),
          ts(
            "gRPC latency by method",
            12,
            "Served calls, from the request's HEADERS to the trailers.",
            p50p99(RPC_S, CTR, RPC, "{{rpc_service}}/{{rpc_method}}"),
            "s",
          ),
        ],
      },
      {
        title: "Connections and packets",
        panels: [
          ts(
            "TCP connections/s by direction",
            8,
            "Inbound: accepted; outbound: connected.",
            [{
              expr: rate("kupod_tcp_connections_total", CTR, "container, direction"),
              legend: "{{container}} {{direction}}",
            }],
            "cps",
          ),
          ts(
            "Sidecar time",
            8,
            "In the sidecar: from reading a request to writing it upstream; to the service: from that write to the service reading it.",
            [
              ...p50p99(
                "kupod_sidecar_process_duration_seconds",
                CTR,
                "container",
                "in {{container}}",
              ),
              ...p50p99(
                "kupod_sidecar_to_service_duration_seconds",
                CTR,
                "container",
                "{{container}} to service",
              ),
            ],
            "s",
          ),
          ts(
            "Packet drops/s by reason",
            8,
            "The kernel's drop reason (enum skb_drop_reason).",
            [{ expr: rate("kupod_stack_drops_total", POD, "reason"), legend: "{{reason}}" }],
            "pps",
          ),
        ],
      },
      {
        title: "Resources",
        panels: [
          ts(
            "CPU by container",
            8,
            "CPU time used per second.",
            [{
              expr: rate("container_cpu_usage_seconds_total", CAD, "container"),
              legend: "{{container}}",
            }],
            "short",
            { stack: true },
          ),
          ts(
            "Memory working set by container",
            8,
            "Memory in use minus inactive file pages.",
            [{
              expr: `sum by (container) (container_memory_working_set_bytes{${CAD}})`,
              legend: "{{container}}",
            }],
            "bytes",
            { stack: true },
          ),
          ts(
            "Pod network",
            8,
            "Bytes per second through the pod's interfaces.",
            [
              {
                expr: rate("container_network_receive_bytes_total", POD, "interface"),
                legend: "rx {{interface}}",
              },
              {
                expr: rate("container_network_transmit_bytes_total", POD, "interface"),
                legend: "tx {{interface}}",
              },
            ],
            "Bps",
          ),
        ],
      },
      {
        title: "kupod and traces",
        panels: [
          ts(
            "Events/s by probe",
            8,
            "Events the kupod that watches this pod decoded and lost (ring buffer full).",
            [
              {
                expr:
                  `sum by (probe) (rate(kupod_events_total[${RI}]) and on (instance) ${podInstance()})`,
                legend: "{{probe}}",
              },
              {
                expr:
                  `sum by (probe) (rate(kupod_events_lost_total[${RI}]) and on (instance) ${podInstance()})`,
                legend: "lost {{probe}}",
              },
            ],
            "ops",
          ),
          panel("Traces", "text", 16, 8, "Where the spans of this pod go.", [], undefined, {
            content: TRACES_TEXT,
          }),
        ],
      },
    ],
  },
  {
    file: "kupod-sockets-sidecar.json",
    uid: "kupod-sockets-sidecar",
    title: "kupod / Sockets and sidecar",
    description:
      "TCP connections of the pod's containers, the sidecar's share of each request, socket redirection.",
    anchor: "kupod_tcp_connections_total|kupod_sockops_sockets",
    vars: ["namespace", "pod", "container"],
    traces: true,
    rows: [
      {
        title: "Connections",
        panels: [
          ts(
            "Connections opened/s",
            8,
            "Inbound: accepted; outbound: connected.",
            [{
              expr: rate("kupod_tcp_connections_total", CTR, "container, direction"),
              legend: "{{container}} {{direction}}",
            }],
            "cps",
          ),
          ts(
            "Bytes/s",
            8,
            "Bytes the applications sent and received, counted when connections close.",
            [
              {
                expr: rate("kupod_tcp_sent_bytes_total", CTR, "container"),
                legend: "sent {{container}}",
              },
              {
                expr: rate("kupod_tcp_received_bytes_total", CTR, "container"),
                legend: "received {{container}}",
              },
            ],
            "Bps",
          ),
          panel(
            "Connections in the time range",
            "table",
            8,
            8,
            "Connections opened per container and direction over the dashboard's time range.",
            [{
              expr:
                `sum by (container, direction) (increase(kupod_tcp_connections_total{${CTR}}[$__range]))`,
              instant: true,
            }],
            "short",
            { columns: { Value: "connections" } },
          ),
          ts(
            "Retransmits and resets/s",
            8,
            "Segments retransmitted, and connections that ended with a reset (sent or received).",
            [
              {
                expr: rate("kupod_tcp_retransmits_total", CTR, "container"),
                legend: "retransmits {{container}}",
              },
              {
                expr: rate("kupod_tcp_resets_total", CTR, "container"),
                legend: "resets {{container}}",
              },
            ],
            "ops",
          ),
          ts(
            "Long connections/s",
            8,
            "Closed connections that carried more than one request/response exchange (keep-alive).",
            [{
              expr: rate("kupod_long_connections_total", CTR, "container"),
              legend: "{{container}}",
            }],
            "cps",
          ),
          ts(
            "RTT at close by container",
            8,
            "Smoothed round-trip time of connections when they close.",
            p50p99("kupod_tcp_rtt_seconds", CTR, "container", "{{container}}"),
            "s",
          ),
          heatmap(
            "RTT at close",
            12,
            "Connections per second by smoothed RTT at close.",
            heat("kupod_tcp_rtt_seconds", CTR),
            "s",
          ),
          heatmap(
            "Connection lifetime",
            12,
            "Connections per second by time from connect or accept to close.",
            heat("kupod_tcp_connection_duration_seconds", CTR),
            "s",
          ),
          ts(
            "Connection lifetime by container",
            24,
            "Time from connect or accept to close.",
            p50p99("kupod_tcp_connection_duration_seconds", CTR, "container", "{{container}}"),
            "s",
          ),
        ],
      },
      {
        title: "Sidecar",
        panels: [
          stat(
            "Mean time in the sidecar",
            "From reading a request to writing it upstream, mean over the rate window.",
            mean("kupod_sidecar_process_duration_seconds", CTR, ""),
            "s",
          ),
          stat(
            "Mean sidecar to service",
            "From the sidecar's upstream write to the service's read, mean over the rate window.",
            mean("kupod_sidecar_to_service_duration_seconds", CTR, ""),
            "s",
          ),
          ts(
            "Sidecar requests/s",
            16,
            "Requests timed through the sidecar.",
            [{
              expr: rate("kupod_sidecar_process_duration_seconds_count", CTR, "container"),
              legend: "{{container}}",
            }],
            "reqps",
          ),
          heatmap(
            "Time in the sidecar",
            12,
            "Requests per second by time from the sidecar reading them to writing them upstream.",
            heat("kupod_sidecar_process_duration_seconds", CTR),
            "s",
          ),
          heatmap(
            "Sidecar to service",
            12,
            "Requests per second by time from the sidecar's upstream write to the service's read.",
            heat("kupod_sidecar_to_service_duration_seconds", CTR),
            "s",
          ),
          ts(
            "Sidecar time quantiles",
            24,
            "p50 and p99 of both legs, per sidecar container.",
            [
              ...p50p99(
                "kupod_sidecar_process_duration_seconds",
                CTR,
                "container",
                "in {{container}}",
              ),
              ...p50p99(
                "kupod_sidecar_to_service_duration_seconds",
                CTR,
                "container",
                "{{container}} to service",
              ),
            ],
            "s",
          ),
        ],
      },
      {
        title: "Socket redirection (--with-sockops)",
        panels: [
          ts(
            "Sockets in the redirection map",
            8,
            "Sockets of the pod's local connections that skip the lower network stack now.",
            [{ expr: `sum (kupod_sockops_sockets{${POD}})`, legend: "sockets" }],
            "short",
          ),
          ts(
            "Redirected bytes/s",
            8,
            "Bytes a container sent straight to the peer socket.",
            [{
              expr: rate("kupod_sockops_redirected_bytes_total", CTR, "container"),
              legend: "{{container}}",
            }],
            "Bps",
          ),
          ts(
            "Redirect errors/s",
            8,
            "Sends of a redirected socket whose peer was not in the map (they took the normal path).",
            [{
              expr: rate("kupod_sockops_redirect_errors_total", CTR, "container"),
              legend: "{{container}}",
            }],
            "ops",
          ),
        ],
      },
    ],
  },
  {
    file: "kupod-packet-path.json",
    uid: "kupod-packet-path",
    title: "kupod / Packet path",
    description:
      "The pod's packets through the network stack: packets per hook, time per hop, drops, the veth.",
    anchor: "kupod_stack_packets_total",
    vars: ["namespace", "pod"],
    hops: true,
    rows: [
      {
        title: "Hooks and hops",
        panels: [
          ts(
            "Packets/s per hook",
            16,
            "Packets of the pod seen at each hook of the network stack.",
            [{ expr: rate("kupod_stack_packets_total", POD, "hook"), legend: "{{hook}}" }],
            "pps",
          ),
          panel(
            "Packets per hook in the time range",
            "bargauge",
            8,
            8,
            "Packets seen at each hook over the dashboard's time range.",
            [{
              expr: `sum by (hook) (increase(kupod_stack_packets_total{${POD}}[$__range]))`,
              legend: "{{hook}}",
              instant: true,
            }],
            "short",
          ),
          heatmap(
            "Hop latency, all hops",
            12,
            "Timed packets per second by the time from one hook to the next.",
            heat("kupod_stack_hop_latency_seconds", POD),
            "s",
          ),
          panel(
            "Mean latency per hop",
            "bargauge",
            12,
            8,
            "Mean time from one hook to the next over the rate window.",
            [{
              expr: mean("kupod_stack_hop_latency_seconds", POD, "from, to"),
              legend: "{{from}} → {{to}}",
            }],
            "s",
          ),
          ts(
            "Hop latency p50 per hop",
            12,
            "Median time from one hook to the next, per hop.",
            [{
              expr: quantile(0.5, "kupod_stack_hop_latency_seconds", POD, "from, to"),
              legend: "{{from}} → {{to}}",
            }],
            "s",
          ),
          ts(
            "Hop latency p99 per hop",
            12,
            "99th percentile of the time from one hook to the next, per hop.",
            [{
              expr: quantile(0.99, "kupod_stack_hop_latency_seconds", POD, "from, to"),
              legend: "{{from}} → {{to}}",
            }],
            "s",
          ),
        ],
      },
      {
        title: "Per hop",
        panels: [
          panel(
            "Hop $hop",
            "heatmap",
            8,
            8,
            "Timed packets per second by the time this hop took (one panel per selected hop).",
            [{
              // the hop's buckets: those whose joined label equals the selected one
              expr: `sum by (le) (${HOP_JOIN("kupod_stack_hop_latency_seconds_bucket", RI)} ` +
                `and on (hop) label_replace(vector(1), "hop", "$hop", "", ""))`,
              legend: "{{le}}",
            }],
            "s",
            { repeat: "hop" },
          ),
        ],
      },
      {
        title: "Drops and the veth",
        panels: [
          ts(
            "Drops/s by reason",
            12,
            "Packets of the pod the kernel dropped, by drop reason (enum skb_drop_reason).",
            [{ expr: rate("kupod_stack_drops_total", POD, "reason"), legend: "{{reason}}" }],
            "pps",
          ),
          panel(
            "Drops in the time range",
            "table",
            12,
            8,
            "Drops per reason over the dashboard's time range.",
            [{
              expr: `sum by (reason) (increase(kupod_stack_drops_total{${POD}}[$__range]))`,
              instant: true,
            }],
            "short",
            { columns: { Value: "packets" } },
          ),
          ts(
            "veth bytes/s",
            8,
            "The pod's host-side veth: rx from the pod, tx to the pod.",
            [{
              expr: rate("kupod_nic_bytes_total", POD, "interface, direction"),
              legend: "{{interface}} {{direction}}",
            }],
            "Bps",
          ),
          ts(
            "veth packets/s",
            8,
            "The pod's host-side veth: rx from the pod, tx to the pod.",
            [{
              expr: rate("kupod_nic_packets_total", POD, "interface, direction"),
              legend: "{{interface}} {{direction}}",
            }],
            "pps",
          ),
          ts(
            "Vanished packets/s",
            8,
            "Followed packets freed without a tracepoint, aged out or displaced in the tracking table.",
            [{ expr: rate("kupod_stack_packets_vanished_total", POD), legend: "vanished" }],
            "pps",
          ),
        ],
      },
    ],
  },
  {
    file: "kupod-http-grpc.json",
    uid: "kupod-http-grpc",
    title: "kupod / HTTP and gRPC",
    description:
      "Rate, errors and duration of the HTTP requests and gRPC calls the pod's containers serve and make.",
    anchor:
      "http_server_request_duration_seconds_count|http_client_request_duration_seconds_count|rpc_server_duration_seconds_count|rpc_client_duration_seconds_count",
    vars: ["namespace", "pod", "container"],
    traces: true,
    rows: [
      {
        title: "HTTP served",
        panels: [
          ts(
            "Requests/s by route",
            12,
            "Served requests per method and route (ids in paths folded to *).",
            [{
              expr: rate(`${HTTP_S}_count`, CTR, ROUTE),
              legend: "{{http_request_method}} {{http_route}}",
            }],
            "reqps",
          ),
          ts(
            "Error responses/s by route and status",
            12,
            "Served requests answered with a 4xx or 5xx status.",
            [{
              expr: rate(`${HTTP_S}_count`, `${CTR}, ${STATUS}=~"[45].."`, `http_route, ${STATUS}`),
              legend: `{{http_route}} {{${STATUS}}}`,
            }],
            "reqps",
          ),
          ts(
            "Latency by route",
            12,
            "First request byte to last response byte.",
            p50p99(HTTP_S, CTR, "http_route", "{{http_route}}"),
            "s",
          ),
          heatmap("Latency", 12, "Served requests per second by duration.", heat(HTTP_S, CTR), "s"),
          ts(
            "Incomplete exchanges/s",
            8,
            "Requests whose response did not end normally: connection closed, no response, or bytes not captured.",
            [{
              expr: rate(`${HTTP_S}_count`, `${CTR}, error_type!=""`, "container, error_type"),
              legend: "{{container}} {{error_type}}",
            }],
            "reqps",
          ),
          ts(
            "Request body size by route",
            8,
            "Bytes of request bodies.",
            p50p99("http_server_request_body_size_bytes", CTR, "http_route", "{{http_route}}"),
            "bytes",
          ),
          ts(
            "Response body size by route",
            8,
            "Bytes of response bodies.",
            p50p99("http_server_response_body_size_bytes", CTR, "http_route", "{{http_route}}"),
            "bytes",
          ),
        ],
      },
      {
        title: "HTTP called (a sidecar's upstream, the service's calls out)",
        panels: [
          ts(
            "Outgoing requests/s by route and status",
            12,
            "Requests the containers made.",
            [{
              expr: rate(`${HTTP_C}_count`, CTR, `container, http_route, ${STATUS}`),
              legend: `{{container}} {{http_route}} {{${STATUS}}}`,
            }],
            "reqps",
          ),
          ts(
            "Outgoing latency by route",
            12,
            "Request's first byte to the response's last, as the caller saw it.",
            p50p99(HTTP_C, CTR, "container, http_route", "{{container}} {{http_route}}"),
            "s",
          ),
        ],
      },
      {
        title: "gRPC",
        panels: [
          ts(
            "Calls/s by method",
            12,
            "Served calls per service and method.",
            [{ expr: rate(`${RPC_S}_count`, CTR, RPC), legend: "{{rpc_service}}/{{rpc_method}}" }],
            "reqps",
          ),
          ts(
            "Failed calls/s by method and status",
            12,
            "Served calls that ended with a status other than OK (0); unread statuses left out.",
            [{
              expr: rate(
                `${RPC_S}_count`,
                `${CTR}, rpc_grpc_status_code!~"0|"`,
                `${RPC}, rpc_grpc_status_code`,
              ),
              legend: "{{rpc_service}}/{{rpc_method}} {{rpc_grpc_status_code}}",
            }],
            "reqps",
          ),
          ts(
            "Latency by method",
            12,
            "Served calls, from the request's HEADERS to the trailers.",
            p50p99(RPC_S, CTR, RPC, "{{rpc_service}}/{{rpc_method}}"),
            "s",
          ),
          heatmap("Latency", 12, "Served calls per second by duration.", heat(RPC_S, CTR), "s"),
          ts(
            "Client calls/s by method and status",
            12,
            "Calls the containers made.",
            [{
              expr: rate(`${RPC_C}_count`, CTR, `container, ${RPC}, rpc_grpc_status_code`),
              legend: "{{container}} {{rpc_service}}/{{rpc_method}} {{rpc_grpc_status_code}}",
            }],
            "reqps",
          ),
          ts(
            "Request message size by method",
            12,
            "Sizes of the request messages of served calls (as sent: compressed if they were).",
            p50p99("rpc_server_request_size_bytes", CTR, RPC, "{{rpc_service}}/{{rpc_method}}"),
            "bytes",
          ),
          ts(
            "Response message size by method",
            12,
            "Sizes of the response messages of served calls.",
            p50p99("rpc_server_response_size_bytes", CTR, RPC, "{{rpc_service}}/{{rpc_method}}"),
            "bytes",
          ),
          ts(
            "Calls with an unknown method, calls not framed/s",
            12,
            "gRPC calls whose method could not be known (headers compressed against a table never seen), and calls counted without being reported one by one (opened in writes longer than the capture copies, or in records lost to a full ring).",
            [{
              expr: rate("kupod_grpc_unknown_method_calls_total", POD),
              legend: "unknown method",
            }, {
              expr: rate("kupod_grpc_unseen_calls_total", POD),
              legend: "not framed",
            }],
            "reqps",
          ),
        ],
      },
    ],
  },
  {
    file: "kupod-resources.json",
    uid: "kupod-resources",
    title: "kupod / Container resources",
    description:
      "CPU, memory, network, block I/O, threads, run-queue latency and OOM kills of the pod's containers (cAdvisor names).",
    anchor: "container_cpu_usage_seconds_total",
    vars: ["namespace", "pod", "container"],
    rows: [
      {
        title: "CPU",
        panels: [
          ts(
            "CPU by container",
            8,
            "CPU time used per second.",
            [{
              expr: rate("container_cpu_usage_seconds_total", CAD, "container"),
              legend: "{{container}}",
            }],
            "short",
            { stack: true },
          ),
          ts(
            "User and system CPU",
            8,
            "CPU time per second in user and kernel mode.",
            [
              {
                expr: rate("container_cpu_user_seconds_total", CAD, "container"),
                legend: "user {{container}}",
              },
              {
                expr: rate("container_cpu_system_seconds_total", CAD, "container"),
                legend: "system {{container}}",
              },
            ],
            "short",
          ),
          ts(
            "CPU throttling",
            8,
            "Throttled time per second, and enforcement periods per second throttled (a CPU quota's cost).",
            [
              {
                expr: rate("container_cpu_cfs_throttled_seconds_total", CAD, "container"),
                legend: "throttled s/s {{container}}",
              },
              {
                expr: rate("container_cpu_cfs_throttled_periods_total", CAD, "container"),
                legend: "throttled periods/s {{container}}",
              },
            ],
            "short",
          ),
          heatmap(
            "Run-queue latency",
            12,
            "Waits per second on a run queue, from wake-up or preemption to running.",
            heat("kupod_container_runqueue_latency_seconds", CTR),
            "s",
          ),
          ts(
            "Run-queue latency by container",
            12,
            "Time the containers' threads waited on a run queue.",
            p50p99("kupod_container_runqueue_latency_seconds", CTR, "container", "{{container}}"),
            "s",
          ),
        ],
      },
      {
        title: "Memory",
        panels: [
          ts(
            "Working set",
            8,
            "Memory in use minus inactive file pages (what the kubelet evicts on).",
            [{
              expr: `sum by (container) (container_memory_working_set_bytes{${CAD}})`,
              legend: "{{container}}",
            }],
            "bytes",
            { stack: true },
          ),
          ts(
            "RSS and page cache",
            8,
            "Anonymous memory and page cache.",
            [
              {
                expr: `sum by (container) (container_memory_rss{${CAD}})`,
                legend: "rss {{container}}",
              },
              {
                expr: `sum by (container) (container_memory_cache{${CAD}})`,
                legend: "cache {{container}}",
              },
            ],
            "bytes",
          ),
          panel(
            "Memory now",
            "table",
            8,
            8,
            "Usage (page cache included) and limit per container; a limit of 0 is none.",
            [
              { expr: `sum by (container) (container_memory_usage_bytes{${CAD}})`, instant: true },
              {
                expr: `max by (container) (container_spec_memory_limit_bytes{${CAD}})`,
                instant: true,
              },
            ],
            "bytes",
            { columns: { "Value #A": "usage", "Value #B": "limit" } },
          ),
          ts(
            "OOM kills",
            12,
            "Processes killed by the OOM killer: the cgroup's count, and the victims kupod saw.",
            [
              {
                expr: `sum by (container) (increase(container_oom_events_total{${CAD}}[${RI}]))`,
                legend: "cgroup {{container}}",
              },
              {
                expr:
                  `sum by (container) (increase(kupod_container_oom_kills_total{${CTR}}[${RI}]))`,
                legend: "seen {{container}}",
              },
            ],
            "short",
          ),
          ts(
            "Threads",
            12,
            "Threads per container.",
            [{ expr: `sum by (container) (container_threads{${CAD}})`, legend: "{{container}}" }],
            "short",
          ),
        ],
      },
      {
        title: "Network and block I/O",
        panels: [
          ts(
            "Network bytes/s by interface",
            8,
            "The pod's interfaces (shared by its containers).",
            [
              {
                expr: rate("container_network_receive_bytes_total", POD, "interface"),
                legend: "rx {{interface}}",
              },
              {
                expr: rate("container_network_transmit_bytes_total", POD, "interface"),
                legend: "tx {{interface}}",
              },
            ],
            "Bps",
          ),
          ts(
            "Network packets/s by interface",
            8,
            "The pod's interfaces (shared by its containers).",
            [
              {
                expr: rate("container_network_receive_packets_total", POD, "interface"),
                legend: "rx {{interface}}",
              },
              {
                expr: rate("container_network_transmit_packets_total", POD, "interface"),
                legend: "tx {{interface}}",
              },
            ],
            "pps",
          ),
          ts(
            "Network errors and drops/s",
            8,
            "Errors and dropped packets on the pod's interfaces.",
            [
              {
                expr: `${rate("container_network_receive_errors_total", POD, "interface")} + ${
                  rate("container_network_receive_packets_dropped_total", POD, "interface")
                }`,
                legend: "rx {{interface}}",
              },
              {
                expr: `${rate("container_network_transmit_errors_total", POD, "interface")} + ${
                  rate("container_network_transmit_packets_dropped_total", POD, "interface")
                }`,
                legend: "tx {{interface}}",
              },
            ],
            "pps",
          ),
          ts(
            "Disk bytes/s",
            12,
            "Bytes read from and written to block devices.",
            [
              {
                expr: rate("container_fs_reads_bytes_total", CAD, "container, device"),
                legend: "read {{container}} {{device}}",
              },
              {
                expr: rate("container_fs_writes_bytes_total", CAD, "container, device"),
                legend: "write {{container}} {{device}}",
              },
            ],
            "Bps",
          ),
          ts(
            "Disk operations/s",
            12,
            "Reads and writes completed on block devices.",
            [
              {
                expr: rate("container_fs_reads_total", CAD, "container, device"),
                legend: "read {{container}} {{device}}",
              },
              {
                expr: rate("container_fs_writes_total", CAD, "container, device"),
                legend: "write {{container}} {{device}}",
              },
            ],
            "iops",
          ),
        ],
      },
    ],
  },
];

/** The instances (kupod processes) exporting the selected pod's series. */
function podInstance(): string {
  return `group by (instance) ({__name__=~"kupod_.+", ${POD}})`;
}

function variables(spec: DashboardSpec): Json[] {
  const list: Json[] = [{
    name: "datasource",
    label: "Data source",
    type: "datasource",
    query: "prometheus",
    hide: 0,
    includeAll: false,
    multi: false,
    options: [],
    refresh: 1,
    regex: "",
  }];
  const anchor = (matchers: string) =>
    `{__name__=~"${spec.anchor}"${matchers ? `, ${matchers}` : ""}}`;
  const query = (name: PodVar, label: string, def: string, multi: boolean): Json => ({
    name,
    label,
    type: "query",
    datasource: DS,
    query: { query: def, refId: "PrometheusVariableQueryEditor-VariableQuery" },
    hide: 0,
    includeAll: multi,
    multi,
    ...(multi ? { allValue: ".*" } : {}),
    options: [],
    refresh: 2,
    regex: "",
    sort: 1,
  });
  for (const v of spec.vars) {
    if (v === "namespace") {
      list.push(query(v, "Namespace", `label_values(${anchor("")}, namespace)`, false));
    } else if (v === "pod") {
      list.push(query(v, "Pod", `label_values(${anchor('namespace="$namespace"')}, pod)`, false));
    } else {
      list.push(
        query(v, "Container", `label_values(${anchor(`${POD}, container!=""`)}, container)`, true),
      );
    }
  }
  if (spec.hops) {
    // a hop is two labels: joined into one, listed from the query's result text by the regex
    const def = `query_result(count by (hop) (${
      HOP_JOIN("kupod_stack_hop_latency_seconds_count")
    }))`;
    list.push({
      name: "hop",
      label: "Hop",
      type: "query",
      datasource: DS,
      query: { query: def, refId: "PrometheusVariableQueryEditor-VariableQuery" },
      hide: 0,
      includeAll: true,
      multi: true,
      options: [],
      refresh: 2,
      regex: '/hop="([^"]+)"/',
      sort: 1,
    });
  }
  if (spec.traces) {
    list.push({
      name: "jaeger",
      label: "Jaeger UI",
      type: "textbox",
      query: "http://localhost:16686",
      hide: 0,
      options: [],
    });
  }
  return list;
}

const JAEGER_SEARCH = "${jaeger}/search?service=${pod}-in&lookback=custom" +
  "&start=${__from}000&end=${__to}000&limit=50" +
  "&tags=%7B%22k8s.namespace.name%22%3A%22${namespace}%22%2C%22k8s.pod.name%22%3A%22${pod}%22%7D";

function links(spec: DashboardSpec): Json[] {
  const out: Json[] = [{
    title: "kupod",
    type: "dashboards",
    tags: ["kupod"],
    asDropdown: true,
    includeVars: true,
    keepTime: true,
    targetBlank: false,
    icon: "external link",
    tooltip: "",
    url: "",
  }];
  if (spec.traces) {
    out.push({
      title: "Traces in Jaeger",
      type: "link",
      url: JAEGER_SEARCH,
      tooltip: "Jaeger's search for this pod's traces in the time range",
      icon: "external link",
      targetBlank: true,
      includeVars: false,
      keepTime: false,
      asDropdown: false,
      tags: [],
    });
  }
  return out;
}

function target(q: Query, i: number, type: PanelType): Json {
  const heat = type === "heatmap";
  return {
    datasource: DS,
    refId: String.fromCharCode(65 + i),
    expr: q.expr,
    legendFormat: q.legend ?? "__auto",
    range: !q.instant,
    instant: !!q.instant,
    format: heat ? "heatmap" : q.instant && type === "table" ? "table" : "time_series",
    editorMode: "code",
  };
}

function panelOptions(p: PanelSpec): Json {
  switch (p.type) {
    case "timeseries":
      return {
        legend: { displayMode: "list", placement: "bottom", showLegend: true, calcs: [] },
        tooltip: { mode: "multi", sort: "desc" },
      };
    case "stat":
      return {
        reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
        colorMode: "value",
        graphMode: "area",
        justifyMode: "auto",
        orientation: "auto",
        textMode: "auto",
        wideLayout: true,
        showPercentChange: false,
        percentChangeColorMode: "standard",
      };
    case "bargauge":
      return {
        reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false },
        displayMode: "gradient",
        orientation: "horizontal",
        showUnfilled: true,
        valueMode: "color",
        namePlacement: "auto",
        sizing: "auto",
        minVizHeight: 16,
        minVizWidth: 8,
        maxVizHeight: 300,
        legend: { showLegend: false, displayMode: "list", placement: "bottom", calcs: [] },
      };
    case "heatmap":
      return {
        calculate: false,
        cellGap: 1,
        color: {
          mode: "scheme",
          scheme: "Oranges",
          steps: 64,
          exponent: 0.5,
          fill: "dark-orange",
          reverse: false,
        },
        exemplars: { color: "rgba(255,0,255,0.7)" },
        filterValues: { le: 1e-9 },
        legend: { show: true },
        rowsFrame: { layout: "auto" },
        showValue: "never",
        tooltip: { mode: "single", yHistogram: true, showColorScale: false },
        yAxis: { axisPlacement: "left", reverse: false, unit: p.unit },
      };
    case "table":
      return { showHeader: true, cellHeight: "sm", frameIndex: 0 };
    case "text":
      return { mode: "markdown", content: p.content ?? "" };
  }
}

function fieldConfig(p: PanelSpec): Json {
  const defaults: Json = { unit: p.unit ?? "short" };
  if (p.type === "timeseries") {
    defaults.custom = {
      drawStyle: "line",
      lineWidth: 1,
      fillOpacity: p.stack ? 30 : 10,
      showPoints: "never",
      spanNulls: false,
      stacking: { mode: p.stack ? "normal" : "none", group: "A" },
    };
  }
  if (p.type === "heatmap") {
    defaults.custom = {
      scaleDistribution: { type: "linear" },
      hideFrom: { legend: false, tooltip: false, viz: false },
    };
  }
  if (p.type === "table" || p.type === "bargauge" || p.type === "stat") {
    defaults.color = { mode: p.type === "table" ? "thresholds" : "palette-classic" };
    defaults.thresholds = { mode: "absolute", steps: [{ color: "green", value: null }] };
  }
  if (p.title === "Memory now") {
    defaults.mappings = [{ type: "value", options: { "0": { text: "none" } } }];
  }
  return { defaults, overrides: [] };
}

function transformations(p: PanelSpec): Json[] {
  // instant queries of a table: one row per series, the values side by side
  if (p.type !== "table") return [];
  return [
    { id: "merge", options: {} },
    {
      id: "organize",
      options: { excludeByName: { Time: true }, indexByName: {}, renameByName: p.columns ?? {} },
    },
  ];
}

/** Panels laid out row by row, left to right, wrapping at 24 columns. */
function layout(rows: RowSpec[]): Json[] {
  const out: Json[] = [];
  let id = 1, y = 0;
  for (const row of rows) {
    out.push({
      id: id++,
      type: "row",
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    let x = 0, lineHeight = 0;
    for (const p of row.panels) {
      if (x + p.w > 24) {
        y += lineHeight;
        x = 0;
        lineHeight = 0;
      }
      const json: Json = {
        id: id++,
        type: p.type,
        title: p.title,
        description: p.description,
        gridPos: { h: p.h, w: p.w, x, y },
      };
      if (p.type !== "text") {
        json.datasource = DS;
        json.targets = (p.queries ?? []).map((q, i) => target(q, i, p.type));
        json.fieldConfig = fieldConfig(p);
        if (p.type === "timeseries" || p.type === "heatmap") json.interval = "";
        const t = transformations(p);
        if (t.length) json.transformations = t;
      }
      if (p.repeat) Object.assign(json, { repeat: p.repeat, repeatDirection: "h", maxPerRow: 3 });
      json.options = panelOptions(p);
      out.push(json);
      x += p.w;
      lineHeight = Math.max(lineHeight, p.h);
    }
    y += lineHeight;
  }
  return out;
}

function dashboard(spec: DashboardSpec): Json {
  return {
    id: null,
    uid: spec.uid,
    title: spec.title,
    description: spec.description,
    tags: ["kupod"],
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    liveNow: false,
    refresh: "30s",
    schemaVersion: 39,
    version: 1,
    time: { from: "now-1h", to: "now" },
    timepicker: {},
    timezone: "browser",
    weekStart: "",
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: "grafana", uid: "-- Grafana --" },
        enable: true,
        hide: true,
        iconColor: "rgba(0, 211, 255, 1)",
        name: "Annotations & Alerts",
        type: "dashboard",
      }],
    },
    links: links(spec),
    templating: { list: variables(spec) },
    panels: layout(spec.rows),
  };
}

/** Every dashboard, by file name in dashboards/. */
export function dashboards(): Map<string, Json> {
  return new Map(SPECS.map((s) => [s.file, dashboard(s)]));
}

export const DASHBOARD_DIR = new URL("../dashboards/", import.meta.url).pathname;

if (import.meta.main) {
  const check = Deno.args.includes("--check");
  let stale = 0;
  for (const [file, d] of dashboards()) {
    const path = `${DASHBOARD_DIR}${file}`;
    const text = JSON.stringify(d, null, 2) + "\n";
    if (!check) {
      await Deno.writeTextFile(path, text);
      continue;
    }
    let old: unknown;
    try {
      old = JSON.parse(await Deno.readTextFile(path));
    } catch {
      old = undefined;
    }
    if (JSON.stringify(old) !== JSON.stringify(d)) {
      console.error(`${path} differs from a fresh generation`);
      stale++;
    }
  }
  if (stale) Deno.exit(1);
  if (!check) {
    // written as `deno fmt` would, so the format gate passes on fresh files
    const files = [...dashboards().keys()].map((f) => `${DASHBOARD_DIR}${f}`);
    const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", ...files] })
      .output();
    if (!fmt.success) Deno.exit(1);
  }
}
