/**
 * The live view's page: one self-contained document (styles and script inline, nothing fetched
 * but kupod's own /api/events), drawn from the summaries the exporter streams. Values that come
 * from traffic (routes, methods, container names) are only ever set as text, never as markup.
 * Elements showing a running total carry `data-total="<what>"` with the exact number, the values
 * /metrics shows.
 */

import { PATH_END, PATH_IN, PATH_OUT } from "./summary.ts";

const STYLE = `
:root { color-scheme: light dark; --bg:#0f1419; --card:#172028; --line:#2a3742; --fg:#d8e1e8;
  --dim:#8496a6; --acc:#4fb3ff; --ok:#49c27b; --bad:#ff6b6b; --warn:#f0b93a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
header { display:flex; gap:16px; align-items:baseline; padding:12px 20px; border-bottom:1px solid var(--line); }
header h1 { font-size:18px; margin:0; }
#state { margin-left:auto; color:var(--dim); }
#state.live::before { content:"● "; color:var(--ok); }
#state.down::before { content:"● "; color:var(--bad); }
main { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:14px; padding:14px 20px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
section.wide { grid-column:1 / -1; }
section[hidden] { display:none; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.06em; color:var(--dim); margin:0 0 10px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:3px 8px; text-align:right; white-space:nowrap; border-bottom:1px solid var(--line); }
th:first-child, td:first-child, td.l, th.l { text-align:left; }
th { color:var(--dim); font-weight:500; font-size:12px; }
.path { display:flex; flex-wrap:wrap; align-items:center; gap:4px; margin:6px 0 10px; }
.leg { color:var(--dim); font-size:12px; width:100%; margin-top:6px; }
.hook { border:1px solid var(--line); border-radius:6px; padding:4px 8px; min-width:96px; background:#1c2833; }
.hook b { display:block; font-size:12px; color:var(--acc); font-weight:600; }
.hook span { display:block; font-variant-numeric:tabular-nums; }
.hook small { color:var(--dim); }
.hop { color:var(--dim); font-size:11px; text-align:center; min-width:70px; }
.hop::after { content:"→"; display:block; font-size:16px; color:var(--fg); }
.big { font-size:22px; font-variant-numeric:tabular-nums; }
.kv { display:flex; gap:22px; flex-wrap:wrap; }
.kv div small { display:block; color:var(--dim); font-size:12px; }
.bad { color:var(--bad); }
svg.spark { width:100%; height:46px; display:block; margin-top:8px; }
svg.spark polyline { fill:none; stroke:var(--acc); stroke-width:1.5; vector-effect:non-scaling-stroke; }
.empty { color:var(--dim); }
`;

const SCRIPT = `
"use strict";
const $ = (id) => document.getElementById(id);
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const kid of kids) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}
function dur(s) {
  if (!(s > 0)) return "-";
  if (s < 1e-6) return (s * 1e9).toFixed(0) + "ns";
  if (s < 1e-3) return (s * 1e6).toFixed(1) + "µs";
  if (s < 1) return (s * 1e3).toFixed(2) + "ms";
  return s.toFixed(2) + "s";
}
function num(n) {
  const a = Math.abs(n);
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
function bytes(n, suffix) {
  suffix = suffix || "";
  if (n >= 1073741824) return (n / 1073741824).toFixed(1) + "GiB" + suffix;
  if (n >= 1048576) return (n / 1048576).toFixed(1) + "MiB" + suffix;
  if (n >= 1024) return (n / 1024).toFixed(1) + "KiB" + suffix;
  return n.toFixed(0) + "B" + suffix;
}
function total(key, n) {
  return h("span", { "data-total": key }, Number(n).toLocaleString("en-US"));
}
function pct(p) { return p && p.count ? dur(p.p50_seconds) + " / " + dur(p.p99_seconds) : "-"; }
function table(head, rows) {
  return h("table", {}, h("tr", {}, ...head.map((c) => h("th", {}, c))),
    ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c)))));
}
function fill(id, ...kids) {
  const el = $(id);
  el.replaceChildren(...kids);
  el.closest("section").hidden = false;
}

const history = new Map();
function spark(key, value) {
  const points = history.get(key) || [];
  points.push(value);
  if (points.length > 120) points.shift();
  history.set(key, points);
  const max = Math.max(1, ...points);
  const step = 120 / (Math.max(points.length, 60) - 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 46");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points.map((v, i) => (i * step).toFixed(1) + "," + (44 - 42 * v / max).toFixed(1)).join(" "));
  svg.append(line);
  return svg;
}

const PATH_IN = ${JSON.stringify(PATH_IN)};
const PATH_OUT = ${JSON.stringify(PATH_OUT)};
const PATH_END = ${JSON.stringify(PATH_END)};

function leg(s, order, title, arrows) {
  const seen = new Map(s.hooks.map((x) => [x.hook, x]));
  const hops = new Map(s.hops.map((x) => [x.from + ">" + x.to, x]));
  const shown = order.filter((k) => seen.has(k));
  if (!shown.length) return [];
  const row = h("div", { class: "path" });
  shown.forEach((k, i) => {
    if (i > 0 && arrows) {
      const hop = hops.get(shown[i - 1] + ">" + k);
      row.append(h("div", { class: "hop", "data-hop": shown[i - 1] + ">" + k }, hop ? pct(hop) : ""));
    }
    const x = seen.get(k);
    row.append(h("div", { class: "hook", "data-hook": k }, h("b", {}, k),
      h("span", {}, num(x.packets / span) + "/s"), h("small", {}, "total "), total("hook:" + k, x.packets_total)));
  });
  return [h("div", { class: "leg" }, title), row];
}

let span = 1;
function render(e) {
  span = e.window_seconds || 1;
  $("who").textContent = e.pod ? (e.namespace ? e.namespace + "/" : "") + e.pod
    : e.stack && e.stack.interface ? "pod behind " + e.stack.interface : "target";
  $("at").textContent = e.ts.slice(11, 19) + ", rates over the last " + Math.round(span) + " s";
  if (e.stack) {
    const s = e.stack, n = s.nic;
    fill("path",
      h("div", { class: "kv" },
        h("div", {}, h("small", {}, "interface"), s.interface || "-"),
        h("div", {}, h("small", {}, "from pod"), num(n.rx_packets_per_second) + " pkt/s " + bytes(n.rx_bytes_per_second, "/s"), " · ", total("nic:rx", n.rx_packets_total)),
        h("div", {}, h("small", {}, "to pod"), num(n.tx_packets_per_second) + " pkt/s " + bytes(n.tx_bytes_per_second, "/s"), " · ", total("nic:tx", n.tx_packets_total))),
      ...leg(s, PATH_IN, "into the pod (p50 / p99 per hop; device hooks count both ways)", true),
      ...leg(s, PATH_OUT, "out of the pod", true),
      ...leg(s, PATH_END, "where packets ended", false),
      spark("nic", n.rx_packets_per_second + n.tx_packets_per_second));
    fill("drops", s.drops.length
      ? table(["reason", "last window", "total"], s.drops.map((d) => [d.reason, num(d.packets), total("drop:" + d.reason, d.packets_total)]))
      : h("div", { class: "empty" }, "no drops"));
    fill("hops", s.hops.length
      ? table(["from", "to", "timed", "p50", "p99"], s.hops.map((x) => [x.from, x.to, num(x.count), dur(x.p50_seconds), dur(x.p99_seconds)]))
      : h("div", { class: "empty" }, "no packets timed yet"));
  }
  if (e.socket) {
    const s = e.socket;
    fill("conns", table(
      ["container", "accept/s", "connect/s", "accepted", "connected", "sent", "received", "retrans", "resets", "rtt p50 / p99"],
      s.containers.map((c) => [c.container || "-", num(c.accepted_per_second), num(c.connected_per_second),
        total("accepted:" + c.container, c.accepted_total), total("connected:" + c.container, c.connected_total),
        bytes(c.sent_bytes_per_second, "/s"), bytes(c.received_bytes_per_second, "/s"), c.retransmits, c.resets, pct(c.rtt)])));
    if (s.sidecars.length) {
      fill("sidecar", ...s.sidecars.map((c) => h("div", {},
        h("div", { class: "kv" },
          h("div", {}, h("small", {}, "sidecar"), c.container),
          h("div", {}, h("small", {}, "requests/s"), h("span", { class: "big" }, num(c.requests_per_second))),
          h("div", {}, h("small", {}, "requests"), total("sidecar:" + c.container, c.requests_total)),
          h("div", {}, h("small", {}, "in sidecar p50 / p99"), pct(c.process)),
          h("div", {}, h("small", {}, "to service p50 / p99"), pct(c.to_service))),
        spark("sidecar:" + c.container, c.requests_per_second))));
    }
  }
  if (e.http && e.http.routes.length) {
    fill("http", table(["container", "side", "request", "req/s", "requests", "errors", "p50", "p99"],
      e.http.routes.slice(0, 30).map((r) => [r.container || "-", r.side, r.method + " " + r.route, num(r.requests_per_second),
        total("http:" + [r.container, r.side, r.method, r.route].join(" "), r.requests_total),
        h("span", { class: r.errors ? "bad" : "" }, r.errors), dur(r.latency.p50_seconds), dur(r.latency.p99_seconds)])));
  }
  if (e.grpc && e.grpc.methods.length) {
    fill("grpc", table(["container", "side", "method", "calls/s", "calls", "errors", "p50", "p99"],
      e.grpc.methods.slice(0, 30).map((m) => [m.container || "-", m.side, m.service + "/" + m.method, num(m.calls_per_second),
        total("grpc:" + [m.container, m.side, m.service, m.method].join(" "), m.calls_total),
        h("span", { class: m.errors ? "bad" : "" }, m.errors), dur(m.latency.p50_seconds), dur(m.latency.p99_seconds)])));
  }
  if (e.resources) {
    const r = e.resources;
    fill("resources", table(["container", "cpu (cores)", "memory", "io read", "io write", "threads", "runq p99", "throttled", "oom"],
      r.containers.map((c) => [c.container, c.cpu_cores.toFixed(3), bytes(c.memory_working_set_bytes),
        bytes(c.io_read_bytes_per_second, "/s"), bytes(c.io_write_bytes_per_second, "/s"), c.threads,
        dur(c.runqueue.p99_seconds), c.cpu_throttled_periods, c.oom_kills])),
      ...r.interfaces.map((i) => h("div", { class: "leg" }, i.interface + ": rx " + bytes(i.rx_bytes_per_second, "/s") + ", tx " + bytes(i.tx_bytes_per_second, "/s"))));
  }
  if (e.sockops) {
    const s = e.sockops;
    fill("sockops", h("div", { class: "kv" },
      h("div", {}, h("small", {}, "sockets"), s.sockets),
      h("div", {}, h("small", {}, "redirected"), bytes(s.redirected_bytes_per_second, "/s")),
      h("div", {}, h("small", {}, "in all"), total("sockops:bytes", s.redirected_bytes_total)),
      h("div", {}, h("small", {}, "not redirected"), s.redirect_errors)));
  }
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

const events = new EventSource("/api/events");
events.onopen = () => { $("state").className = "live"; $("state").textContent = "live"; };
events.onerror = () => { $("state").className = "down"; $("state").textContent = "disconnected, retrying"; };
events.onmessage = (m) => render(JSON.parse(m.data));
`;

const BODY = `
<header><h1>kupod</h1><span id="who">…</span><span id="at"></span><span id="state">connecting</span></header>
<main>
<section class="wide" hidden><h2>Packet path</h2><div id="path"></div></section>
<section hidden><h2>Sidecar</h2><div id="sidecar"></div></section>
<section hidden><h2>Drops</h2><div id="drops"></div></section>
<section class="wide" hidden><h2>Connections</h2><div id="conns"></div></section>
<section class="wide" hidden><h2>HTTP</h2><div id="http"></div></section>
<section class="wide" hidden><h2>gRPC</h2><div id="grpc"></div></section>
<section class="wide" hidden><h2>Resources</h2><div id="resources"></div></section>
<section hidden><h2>Hop latency</h2><div id="hops"></div></section>
<section hidden><h2>Socket redirection</h2><div id="sockops"></div></section>
</main>
`;

export const LIVE_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>kupod live</title><style>${STYLE}</style></head>
<body>${BODY}<script>${SCRIPT}</script></body></html>
`;
