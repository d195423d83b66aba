/**
 * kupod's Prometheus registry: metric families whose samples are read when collected (every value
 * kupod exports was counted elsewhere, by the kernel or a probe), rendered in the text exposition
 * format 0.0.4. Small on purpose: a general client library would cost the agent ~10 MB of
 * resident memory for features it does not use.
 */

/** One line of the exposition: `name{labels} value`. */
export interface Sample {
  /** The family's name when absent; histograms name their `_bucket`, `_sum` and `_count`. */
  name?: string;
  labels: Readonly<Record<string, string | number>>;
  value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge" | "histogram";
  /** The samples now. */
  samples(): Iterable<Sample>;
}

export class Registry {
  readonly contentType = "text/plain; version=0.0.4; charset=utf-8";
  readonly #families = new Map<string, MetricFamily>();

  /** Adds a family; a name can be registered once. */
  register(family: MetricFamily): void {
    if (this.#families.has(family.name)) {
      throw new Error(`metric ${family.name} is registered already`);
    }
    this.#families.set(family.name, family);
  }

  /** Every family in the order registered, in the text exposition format. */
  metrics(): Promise<string> {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.samples()) {
        out.push(`${s.name ?? f.name}${labelText(s.labels)} ${num(s.value)}`);
      }
    }
    out.push("");
    return Promise.resolve(out.join("\n"));
  }
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelText(labels: Readonly<Record<string, string | number>>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) {
    const text = typeof v === "number" ? num(v) : v;
    parts.push(`${k}="${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  }
  return parts.length ? `{${parts.join(",")}}` : "";
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}
