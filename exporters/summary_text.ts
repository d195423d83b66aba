/** The terminal's form of a summary: a short block of aligned tables, one section per probe. */

import type { Percentiles, SummaryEvent } from "../probes/events.ts";
import { PATH_END, PATH_IN, PATH_OUT } from "./summary.ts";

/** Rows of a section shown at most: the busiest ones. */
const MAX_ROWS = 10;

/** A duration the way people read it: 850ns, 12.5µs, 3.20ms, 1.25s. */
export function duration(seconds: number): string {
  if (seconds <= 0) return "-";
  if (seconds < 1e-6) return `${(seconds * 1e9).toFixed(0)}ns`;
  if (seconds < 1e-3) return `${(seconds * 1e6).toFixed(1)}µs`;
  if (seconds < 1) return `${(seconds * 1e3).toFixed(2)}ms`;
  return `${seconds.toFixed(2)}s`;
}

/** A count or rate: 950, 12.5k, 3.2M. */
export function count(n: number): string {
  const a = Math.abs(n);
  if (a >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** Bytes (or bytes per second with `/s`) in binary units. */
export function bytes(n: number, suffix = ""): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)}GiB${suffix}`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)}MiB${suffix}`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)}KiB${suffix}`;
  return `${n.toFixed(0)}B${suffix}`;
}

const p50p99 = (p: Percentiles) =>
  p.count ? `${duration(p.p50_seconds)} / ${duration(p.p99_seconds)}` : "-";

/** Columns padded to their widest cell; the first column left-aligned, the others right. */
function table(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? "")].length)));
  const pad = (s: string, w: number, left: boolean) => {
    const fill = " ".repeat(Math.max(0, w - [...s].length));
    return left ? s + fill : fill + s;
  };
  return all.map((r) => r.map((c, i) => pad(c, widths[i], i === 0)).join("  ").trimEnd());
}

/** Section title, then its lines indented under it. */
function section(title: string, lines: string[]): string[] {
  return lines.map((l, i) => `${(i === 0 ? title : "").padEnd(11)} ${l}`);
}

function more(total: number): string[] {
  return total > MAX_ROWS ? [`(${total - MAX_ROWS} more)`] : [];
}

/** The lines of a summary block, without trailing newlines. */
export function summaryLines(e: SummaryEvent): string[] {
  const who = e.namespace && e.pod
    ? `${e.namespace}/${e.pod}`
    : e.pod || (e.stack?.interface ? `pod behind ${e.stack.interface}` : "target");
  const span = e.window === "run"
    ? `whole run, ${e.window_seconds.toFixed(1)} s`
    : `last ${e.window_seconds.toFixed(1)} s`;
  const lines = [`── ${who}: ${span} (${e.ts.slice(11, 19)}) ──`];
  if (e.socket) lines.push(...socketLines(e.socket));
  if (e.stack) lines.push(...stackLines(e.stack));
  if (e.http?.routes.length) lines.push(...httpLines(e.http));
  if (e.grpc?.methods.length) lines.push(...grpcLines(e.grpc));
  if (e.resources) lines.push(...resourcesLines(e.resources));
  if (e.sockops) {
    const s = e.sockops;
    lines.push(...section("sockops", [
      `${s.sockets} sockets redirected, ${bytes(s.redirected_bytes_per_second, "/s")} ` +
      `(${bytes(s.redirected_bytes_total)} in all), ${s.redirect_errors} sends not redirected`,
    ]));
  }
  return lines;
}

function socketLines(s: NonNullable<SummaryEvent["socket"]>): string[] {
  const lines: string[] = [];
  if (s.containers.length) {
    const rows = s.containers.map((c) => [
      c.container || "-",
      count(c.accepted_per_second),
      count(c.connected_per_second),
      bytes(c.sent_bytes_per_second, "/s"),
      bytes(c.received_bytes_per_second, "/s"),
      String(c.retransmits),
      String(c.resets),
      p50p99(c.rtt),
    ]);
    lines.push(...section(
      "tcp",
      table([
        "container",
        "accept/s",
        "connect/s",
        "sent",
        "received",
        "retrans",
        "resets",
        "rtt p50 / p99",
      ], rows),
    ));
  }
  for (const c of s.sidecars) {
    lines.push(...section("sidecar", [
      `${c.container}: ${count(c.requests_per_second)} req/s, in sidecar ${p50p99(c.process)}, ` +
      `to service ${p50p99(c.to_service)} (p50 / p99)`,
    ]));
  }
  return lines;
}

function stackLines(s: NonNullable<SummaryEvent["stack"]>): string[] {
  const n = s.nic;
  const lines = section("nic", [
    `${s.interface || "-"}: from pod ${count(n.rx_packets_per_second)} pkt/s ${
      bytes(n.rx_bytes_per_second, "/s")
    }, to pod ${count(n.tx_packets_per_second)} pkt/s ${bytes(n.tx_bytes_per_second, "/s")}`,
  ]);
  const seen = new Map(s.hooks.map((h) => [h.hook, h.packets]));
  const leg = (hooks: readonly string[], join: string) =>
    hooks.filter((h) => seen.has(h)).map((h) => `${h} ${count(seen.get(h)!)}`).join(join);
  const into = leg(PATH_IN, " › "), out = leg(PATH_OUT, " › "), end = leg(PATH_END, ", ");
  if (s.path_duty_cycle < 1) {
    lines.push(...section("path", [
      `traced ${
        s.path_traced_seconds.toFixed(1)
      } s of this summary (--stack-duty-cycle ${s.path_duty_cycle}); the hooks after ${
        s.interface || "the veth"
      } count only then`,
    ]));
  }
  if (into) lines.push(...section("into pod", [into]));
  if (out) lines.push(...section("out of pod", [out]));
  if (end) lines.push(...section("ended", [end]));
  const hops = [...s.hops].sort((a, b) => b.count - a.count).slice(0, MAX_ROWS)
    .sort((a, b) => s.hops.indexOf(a) - s.hops.indexOf(b));
  if (hops.length) {
    lines.push(...section(
      "hops",
      table(
        ["from › to", "timed", "p50", "p99"],
        hops.map((h) => [
          `${h.from} › ${h.to}`,
          count(h.count),
          duration(h.p50_seconds),
          duration(h.p99_seconds),
        ]),
      ).concat(more(s.hops.length)),
    ));
  }
  const drops = s.drops.filter((d) => d.packets > 0);
  lines.push(...section("drops", [
    drops.length ? drops.map((d) => `${d.reason} ${count(d.packets)}`).join(", ") : "none",
  ]));
  return lines;
}

function httpLines(h: NonNullable<SummaryEvent["http"]>): string[] {
  const active = h.routes.filter((r) => r.requests_per_second > 0);
  if (!active.length) return section("http", ["no requests"]);
  return section(
    "http",
    table(
      ["container", "side", "request", "req/s", "errors", "p50", "p99"],
      active.slice(0, MAX_ROWS).map((r) => [
        r.container || "-",
        r.side,
        `${r.method} ${r.route}`,
        count(r.requests_per_second),
        String(r.errors),
        duration(r.latency.p50_seconds),
        duration(r.latency.p99_seconds),
      ]),
    ).concat(more(active.length)),
  );
}

function grpcLines(g: NonNullable<SummaryEvent["grpc"]>): string[] {
  const active = g.methods.filter((m) => m.calls_per_second > 0);
  if (!active.length) return section("grpc", ["no calls"]);
  const unknown = g.unknown_method_calls
    ? [`${g.unknown_method_calls} calls on connections older than kupod: method unknown`]
    : [];
  if (g.unseen_calls) {
    unknown.push(`${g.unseen_calls} calls the capture could not frame: counted, not shown`);
  }
  return section(
    "grpc",
    table(
      ["container", "side", "method", "calls/s", "errors", "p50", "p99"],
      active.slice(0, MAX_ROWS).map((m) => [
        m.container || "-",
        m.side,
        `${m.service}/${m.method}`,
        count(m.calls_per_second),
        String(m.errors),
        duration(m.latency.p50_seconds),
        duration(m.latency.p99_seconds),
      ]),
    ).concat(more(active.length), unknown),
  );
}

function resourcesLines(r: NonNullable<SummaryEvent["resources"]>): string[] {
  const lines = section(
    "resources",
    table(
      [
        "container",
        "cpu",
        "memory",
        "io read",
        "io write",
        "threads",
        "runq p99",
        "throttled",
        "oom",
      ],
      r.containers.map((c) => [
        c.container,
        `${c.cpu_cores.toFixed(3)} cores`,
        bytes(c.memory_working_set_bytes),
        bytes(c.io_read_bytes_per_second, "/s"),
        bytes(c.io_write_bytes_per_second, "/s"),
        String(c.threads),
        duration(c.runqueue.p99_seconds),
        String(c.cpu_throttled_periods),
        String(c.oom_kills),
      ]),
    ),
  );
  const nets = r.interfaces.map((i) =>
    `${i.interface} rx ${bytes(i.rx_bytes_per_second, "/s")} tx ${
      bytes(i.tx_bytes_per_second, "/s")
    }${i.rx_dropped + i.tx_dropped ? ` dropped ${i.rx_dropped + i.tx_dropped}` : ""}`
  );
  if (nets.length) lines.push(...section("pod net", [nets.join("; ")]));
  return lines;
}
