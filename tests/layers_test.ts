/**
 * kupod's layers stand on each other from the bottom up and never reach back:
 * base/ ← bpf/ ← k8s/ ← probes/ ← exporters/ ← cli/. A module may import from its own layer and
 * the ones below it; this test reads every import (static, `export … from`, dynamic `import()`)
 * and names each one that points up.
 */

import { assert, assertEquals } from "./helpers/assert.ts";

const LAYERS = ["base", "bpf", "k8s", "probes", "exporters", "cli"] as const;
const ROOT = new URL("../", import.meta.url);

/** An import of `file` that points to a layer above the file's own. */
export interface Violation {
  file: string;
  line: number;
  imported: string;
}

/** The layer rank of a repo-relative path, or -1 outside the layered folders. */
function rank(path: string): number {
  return LAYERS.indexOf(path.split("/")[0] as typeof LAYERS[number]);
}

/** Import specifiers of a module's source with their line numbers. */
function importsOf(source: string): { spec: string; line: number }[] {
  const out: { spec: string; line: number }[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["']([^"']+)["']/gm;
  for (const m of source.matchAll(re)) {
    out.push({ spec: m[1], line: source.slice(0, m.index).split("\n").length });
  }
  return out;
}

/** Every upward import among `files` (repo-relative path → source). */
export function layerViolations(files: Map<string, string>): Violation[] {
  const found: Violation[] = [];
  for (const [file, source] of files) {
    const own = rank(file);
    if (own < 0) continue;
    for (const { spec, line } of importsOf(source)) {
      if (!spec.startsWith(".")) continue;
      const target = new URL(spec, new URL(file, "file:///r/")).pathname.slice("/r/".length);
      if (rank(target) > own) found.push({ file, line, imported: target });
    }
  }
  return found;
}

async function layeredSources(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(new URL(dir, ROOT))) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.name.endsWith(".ts")) {
        files.set(path, await Deno.readTextFile(new URL(path, ROOT)));
      }
    }
  }
  for (const layer of LAYERS) await walk(layer);
  return files;
}

Deno.test("no module imports from a layer above its own", async () => {
  const files = await layeredSources();
  assert(files.size > 50, `only ${files.size} modules found`);
  const bad = layerViolations(files).map((v) => `${v.file}:${v.line} imports ${v.imported}`);
  assertEquals(bad, [], "upward imports");
});

Deno.test("an upward import is named with its file and line", () => {
  const files = new Map([
    ["bpf/x.ts", 'import { A } from "./y.ts";\nimport { B } from "../k8s/target.ts";\n'],
    ["k8s/a.ts", 'import type { P } from "../probes/probe.ts";'],
    ["probes/b.ts", 'const m = await import("../exporters/metrics.ts");'],
    ["exporters/c.ts", 'export { O } from "../cli/options.ts";\nimport "../base/errors.ts";'],
    ["cli/d.ts", 'import { S } from "../probes/socket.ts";'],
    ["base/e.ts", 'import { F } from "../bpf/ffi.ts";'],
  ]);
  assertEquals(layerViolations(files), [
    { file: "bpf/x.ts", line: 2, imported: "k8s/target.ts" },
    { file: "k8s/a.ts", line: 1, imported: "probes/probe.ts" },
    { file: "probes/b.ts", line: 1, imported: "exporters/metrics.ts" },
    { file: "exporters/c.ts", line: 1, imported: "cli/options.ts" },
    { file: "base/e.ts", line: 1, imported: "bpf/ffi.ts" },
  ]);
});
