/**
 * What a Grafana dashboard must hold to work when provisioned, checked on its JSON model: unique
 * panel ids, every query through the `datasource` variable, grid positions inside the 24 columns
 * and not overlapping, every variable used defined and every one defined used, every query
 * selecting the pod through the variables (no pod, namespace or container written in). Plus the
 * variable substitution Grafana makes before a query reaches Prometheus.
 */

export type Json = Record<string, unknown>;

/** Variables Grafana defines itself. */
const BUILT_IN = new Set([
  "__interval",
  "__interval_ms",
  "__rate_interval",
  "__rate_interval_ms",
  "__range",
  "__range_s",
  "__range_ms",
  "__from",
  "__to",
  "__dashboard",
  "__org",
  "__user",
]);

const PANEL_TYPES = new Set(["row", "timeseries", "stat", "heatmap", "bargauge", "table", "text"]);
const DATASOURCE_REF = "${datasource}";
/** Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]], [[name:format]]. */
const VAR_REF = /\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]/g;
/** A matcher on a pod label, e.g. `pod="web-0"`. */
const POD_MATCHER = /\b(namespace|pod|container)\s*(=~|!~|!=|=)\s*"([^"]*)"/g;

/** A panel and the panels nested in collapsed rows, in order. */
export function panelsOf(d: Json): Json[] {
  const out: Json[] = [];
  for (const p of (d.panels ?? []) as Json[]) {
    out.push(p);
    for (const nested of (p.panels ?? []) as Json[]) out.push(nested);
  }
  return out;
}

export function variablesOf(d: Json): Json[] {
  return ((d.templating as Json | undefined)?.list ?? []) as Json[];
}

/** The PromQL of a query variable. */
export function variableQuery(v: Json): string {
  const q = v.query;
  return typeof q === "string" ? q : String((q as Json | undefined)?.query ?? v.definition ?? "");
}

/** Names referenced in `text` through any of Grafana's variable syntaxes. */
export function referencedVariables(text: string): string[] {
  return [...text.matchAll(VAR_REF)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** Replaces every variable reference in `text` by its value in `values`; unknown names stay. */
export function substitute(text: string, values: Record<string, string>): string {
  return text.replace(VAR_REF, (all, a, b, c) => values[a ?? b ?? c] ?? all);
}

export interface PanelQuery {
  panel: string;
  type: string;
  refId: string;
  expr: string;
  instant: boolean;
  /** The variable the panel is repeated for, one copy per value. */
  repeat?: string;
}

/** Every query of every panel. */
export function panelQueries(d: Json): PanelQuery[] {
  return panelsOf(d).flatMap((p) =>
    ((p.targets ?? []) as Json[]).map((t) => ({
      panel: String(p.title),
      type: String(p.type),
      refId: String(t.refId),
      expr: String(t.expr ?? ""),
      instant: t.instant === true,
      ...(p.repeat ? { repeat: String(p.repeat) } : {}),
    }))
  );
}

function isDatasourceRef(ds: unknown): boolean {
  const d = ds as Json | undefined;
  return d?.uid === DATASOURCE_REF && d?.type === "prometheus";
}

interface Box {
  title: string;
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Everything wrong with dashboard `d`, one line each; empty when it is fine. */
export function dashboardProblems(d: Json): string[] {
  const problems: string[] = [];
  const say = (s: string) => problems.push(s);
  if (typeof d.uid !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(d.uid)) say(`bad uid ${d.uid}`);
  if (typeof d.title !== "string" || !d.title) say("no title");
  if (typeof d.schemaVersion !== "number" || d.schemaVersion < 36) {
    say(`schemaVersion ${d.schemaVersion}: the current schema is 36 or later`);
  }

  const vars = variablesOf(d);
  const defined = new Map<string, Json>();
  for (const v of vars) {
    const name = String(v.name);
    if (defined.has(name)) say(`variable ${name} defined twice`);
    defined.set(name, v);
    // a saved selection would open every provisioned copy on one pod
    const current = v.current as Json | undefined;
    if (current && Object.keys(current).length) say(`variable ${name} has a saved value`);
    if (v.type === "query" && !isDatasourceRef(v.datasource)) {
      say(`variable ${name}: datasource is not the datasource variable`);
    }
  }
  const ds = defined.get("datasource");
  if (!ds || ds.type !== "datasource" || ds.query !== "prometheus") {
    say("no datasource variable of type datasource for prometheus");
  }

  // every place Grafana substitutes variables in, with where it is for the messages
  const uses: [string, string][] = [];
  for (const v of vars) uses.push([`variable ${v.name}`, variableQuery(v)]);
  for (const l of (d.links ?? []) as Json[]) uses.push([`link ${l.title}`, String(l.url ?? "")]);

  const ids = new Set<unknown>();
  const boxes: Box[] = [];
  for (const p of panelsOf(d)) {
    const title = String(p.title ?? "");
    const where = `panel ${p.id} "${title}"`;
    if (typeof p.id !== "number") say(`${where}: no numeric id`);
    else if (ids.has(p.id)) say(`duplicate panel id ${p.id}`);
    ids.add(p.id);
    if (!PANEL_TYPES.has(String(p.type))) say(`${where}: unknown type ${p.type}`);
    if (!title) say(`${where}: no title`);
    uses.push([where, title]);
    if (p.repeat !== undefined) {
      const v = defined.get(String(p.repeat));
      uses.push([where, `$${p.repeat}`]);
      // Grafana repeats only for variables that can hold several values
      if (v && !v.multi && !v.includeAll) say(`${where}: repeats for single-valued $${p.repeat}`);
    }
    const g = p.gridPos as Record<string, number> | undefined;
    const ints = g && ["x", "y", "w", "h"].every((k) => Number.isInteger(g[k]));
    if (!g || !ints || g.x < 0 || g.y < 0 || g.w < 1 || g.h < 1 || g.x + g.w > 24) {
      say(`${where}: invalid gridPos ${JSON.stringify(g)}`);
    } else if (!(p.type === "row" && p.collapsed && (p.panels as Json[]).length === 0)) {
      boxes.push({ title: where, x: g.x, y: g.y, w: g.w, h: g.h });
    }
    if (p.type === "row" || p.type === "text") {
      if (p.type === "text") uses.push([where, String((p.options as Json)?.content ?? "")]);
      continue;
    }
    if (!isDatasourceRef(p.datasource)) say(`${where}: datasource is not the datasource variable`);
    const targets = (p.targets ?? []) as Json[];
    if (!targets.length) say(`${where}: no queries`);
    const refIds = new Set<unknown>();
    for (const t of targets) {
      const at = `${where} query ${t.refId}`;
      if (refIds.has(t.refId)) say(`${where}: duplicate refId ${t.refId}`);
      refIds.add(t.refId);
      if (!isDatasourceRef(t.datasource)) say(`${at}: datasource is not the datasource variable`);
      const expr = String(t.expr ?? "");
      if (!expr.trim()) say(`${at}: empty query`);
      uses.push([at, expr], [at, String(t.legendFormat ?? "")]);
      for (const m of expr.matchAll(POD_MATCHER)) {
        const [matcher, , op, value] = m;
        if ((op === "=" || op === "=~") && value !== "" && !value.includes("$")) {
          say(`${at}: hard-coded ${matcher}`);
        }
      }
      for (const v of ["namespace", "pod"]) {
        if (defined.has(v) && !referencedVariables(expr).includes(v)) {
          say(`${at}: does not select $${v}`);
        }
      }
      if (p.type === "heatmap" && (t.format !== "heatmap" || !/by \(le\)/.test(expr))) {
        say(`${at}: a heatmap needs format heatmap and buckets summed by (le)`);
      }
    }
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i], b = boxes[j];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
        say(`${a.title} and ${b.title} overlap`);
      }
    }
  }

  const used = new Set<string>();
  for (const [where, text] of uses) {
    for (const name of referencedVariables(text)) {
      used.add(name);
      if (!defined.has(name) && !BUILT_IN.has(name)) say(`${where}: undefined variable $${name}`);
    }
  }
  // the datasource variable is used by reference in every panel
  for (const name of defined.keys()) {
    if (name !== "datasource" && !used.has(name)) say(`variable ${name} is never used`);
  }
  return problems;
}
