/**
 * Generates TypeScript decoders for BPF event structs, and the layout of the `.rodata` tunables,
 * from the BTF of the compiled objects. No offset in bpf/gen/ is written by hand.
 *
 *   deno task gen                      # every bpf/.output/*.bpf.o -> bpf/gen/<name>.ts
 *   deno task gen bpf/.output/x.bpf.o  # only the given objects
 *   deno task gen --check              # exit 1 if bpf/gen/ differs from a fresh generation
 *
 * Options: --out-dir DIR (default bpf/gen), --bpftool PATH (default `bpftool` from PATH).
 *
 * An event struct is a `struct *_event` (or a counter struct or its map key, `struct *_stats`,
 * `struct *_key`) that is the type
 * of a global variable of the object (the `struct sock_event _sock_event = {};` anchor that makes
 * clang emit its BTF). Structs of the kernel that merely end in `_event` (perf_event, ...) are not
 * anchored and are skipped.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// BTF, as printed by `bpftool -j btf dump file <obj>`

interface BtfMember {
  name: string;
  type_id: number;
  bits_offset: number;
  bitfield_size?: number;
}

interface BtfDatasecVar {
  type_id: number;
  offset: number;
  size: number;
}

interface BtfType {
  id: number;
  kind: string;
  name: string;
  type_id?: number;
  size?: number;
  bits_offset?: number;
  nr_bits?: number;
  encoding?: string;
  nr_elems?: number;
  members?: BtfMember[];
  vars?: BtfDatasecVar[];
}

const ANON = "(anon)";

/** Reads the BTF of an object with bpftool. */
export async function readBtf(objPath: string, bpftool = "bpftool"): Promise<Btf> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(bpftool, {
      args: ["-j", "btf", "dump", "file", objPath],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new GenError(`cannot run ${bpftool}: ${(e as Error).message}`);
  }
  if (!out.success) {
    const msg = new TextDecoder().decode(out.stderr).trim() ||
      new TextDecoder().decode(out.stdout).trim();
    throw new GenError(`${bpftool} btf dump file ${objPath} failed: ${msg}`);
  }
  const json = JSON.parse(new TextDecoder().decode(out.stdout)) as { types?: BtfType[] };
  if (!Array.isArray(json.types)) {
    throw new GenError(`unexpected output of ${bpftool} -j btf dump: no "types" array`);
  }
  return new Btf(json.types);
}

export class GenError extends Error {
  override name = "GenError";
}

const MODIFIERS = new Set(["TYPEDEF", "CONST", "VOLATILE", "RESTRICT", "TYPE_TAG"]);

export class Btf {
  readonly types: BtfType[];
  readonly #byId = new Map<number, BtfType>();

  constructor(types: BtfType[]) {
    this.types = types;
    for (const t of types) this.#byId.set(t.id, t);
  }

  get(id: number): BtfType {
    if (id === 0) return { id: 0, kind: "VOID", name: "void" };
    const t = this.#byId.get(id);
    if (!t) throw new GenError(`BTF type id ${id} not found`);
    return t;
  }

  /** Follows typedef/const/volatile/restrict/type_tag chains to the underlying type. */
  resolve(id: number): BtfType {
    let t = this.get(id);
    for (let guard = 0; MODIFIERS.has(t.kind); guard++) {
      if (guard > 64) throw new GenError(`BTF modifier chain too long at type id ${id}`);
      t = this.get(t.type_id!);
    }
    return t;
  }

  /** The name a C programmer would write for a type: first named link of the chain. */
  cName(id: number): string {
    let t = this.get(id);
    const quals: string[] = [];
    while (t.kind === "CONST" || t.kind === "VOLATILE" || t.kind === "RESTRICT") {
      quals.push(t.kind.toLowerCase());
      t = this.get(t.type_id!);
    }
    let base: string;
    switch (t.kind) {
      case "TYPEDEF":
      case "INT":
      case "FLOAT":
        base = t.name;
        break;
      case "STRUCT":
      case "UNION":
      case "ENUM":
      case "ENUM64":
        base = `${t.kind === "ENUM64" ? "enum" : t.kind.toLowerCase()} ${
          t.name === ANON ? "{...}" : t.name
        }`;
        break;
      case "PTR":
        base = `${this.cName(t.type_id!)} *`;
        break;
      case "ARRAY":
        base = `${this.cName(t.type_id!)}[${t.nr_elems}]`;
        break;
      default:
        base = t.kind.toLowerCase();
    }
    return [...quals, base].join(" ");
  }

  sizeOf(id: number): number {
    const t = this.resolve(id);
    switch (t.kind) {
      case "INT":
      case "FLOAT":
      case "ENUM":
      case "ENUM64":
      case "STRUCT":
      case "UNION":
      case "DATASEC":
        return t.size!;
      case "PTR":
        return 8; // BPF is a 64-bit target
      case "ARRAY":
        return t.nr_elems! * this.sizeOf(t.type_id!);
      default:
        throw new GenError(`size of BTF ${t.kind} '${t.name}' (id ${t.id}) is unknown`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Shapes: what a C type decodes to.

type Shape =
  | { k: "int"; size: 1 | 2 | 4; signed: boolean }
  | { k: "bool" }
  | { k: "big"; signed: boolean }
  | { k: "float"; size: 4 | 8 }
  | { k: "cstr"; len: number }
  | { k: "bytes"; len: number }
  | { k: "array"; n: number; stride: number; elem: Shape }
  | { k: "struct"; decl: StructDecl };

interface Field {
  name: string;
  /** Byte offset from the start of the struct that declares it (after flattening). */
  offset: number;
  size: number;
  cType: string;
  shape: Shape;
}

interface StructDecl {
  /** C spelling, for messages. */
  cName: string;
  /** TypeScript type name: sock_event -> SockEvent. */
  tsName: string;
  size: number;
  fields: Field[];
  btfId: number;
}

export function pascalCase(cName: string): string {
  return cName.split(/_+/).filter((p) => p !== "").map((p) => p[0].toUpperCase() + p.slice(1))
    .join("");
}

export function upperSnake(cName: string): string {
  return cName.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}

const SMALL_ARRAY = 16;

class ShapeBuilder {
  /** Nested struct declarations, in dependency order (inner first). */
  readonly nested: StructDecl[] = [];
  readonly #byBtfId = new Map<number, StructDecl>();
  readonly #tsNames = new Set<string>();

  constructor(readonly btf: Btf) {}

  /** Builds a top-level (event) struct declaration. */
  topLevel(t: BtfType): StructDecl {
    const decl = this.#struct(t, pascalCase(t.name), t.name);
    this.#tsNames.add(decl.tsName);
    return decl;
  }

  #struct(t: BtfType, tsName: string, where: string): StructDecl {
    const fields: Field[] = [];
    this.#collect(t, 0, where, tsName, fields);
    const seen = new Set<string>();
    for (const f of fields) {
      if (seen.has(f.name)) throw new GenError(`${where}: duplicate field name '${f.name}'`);
      seen.add(f.name);
    }
    return { cName: where, tsName, size: t.size!, fields, btfId: t.id };
  }

  /** Appends the members of a struct/union, flattening anonymous struct/union members. */
  #collect(t: BtfType, base: number, where: string, tsName: string, out: Field[]): void {
    for (const m of t.members ?? []) {
      const mWhere = `${where}.${m.name === ANON ? "<anon>" : m.name}`;
      if ((m.bitfield_size ?? 0) !== 0 || m.bits_offset % 8 !== 0) {
        throw new GenError(
          `${mWhere}: bitfields are not supported (bit offset ${m.bits_offset}` +
            `${m.bitfield_size ? `, ${m.bitfield_size} bits` : ""}); use whole-byte fields`,
        );
      }
      const offset = base + m.bits_offset / 8;
      const mt = this.btf.resolve(m.type_id);
      if (m.name === ANON || m.name === "") {
        if (mt.kind === "STRUCT" || mt.kind === "UNION") {
          this.#collect(mt, offset, mWhere, tsName, out);
          continue;
        }
        throw new GenError(`${mWhere}: anonymous member of kind ${mt.kind}`);
      }
      out.push({
        name: m.name,
        offset,
        size: this.btf.sizeOf(m.type_id),
        cType: this.btf.cName(m.type_id),
        shape: this.shape(m.type_id, mWhere, tsName + pascalCase(m.name)),
      });
    }
  }

  /** `anonTsName` names an anonymous struct type if the member's type is one. */
  shape(id: number, where: string, anonTsName: string): Shape {
    const t = this.btf.resolve(id);
    switch (t.kind) {
      case "INT": {
        const size = t.size!;
        if ((t.bits_offset ?? 0) !== 0 || t.nr_bits !== size * 8) {
          throw new GenError(
            `${where}: bitfields are not supported (${t.nr_bits}-bit '${t.name}' int)`,
          );
        }
        if (t.encoding === "BOOL") return { k: "bool" };
        const signed = t.encoding === "SIGNED";
        if (size === 8) return { k: "big", signed };
        if (size === 1 || size === 2 || size === 4) return { k: "int", size, signed };
        throw new GenError(`${where}: ${size * 8}-bit integers are not supported`);
      }
      case "ENUM": {
        const size = t.size!;
        const signed = t.encoding === "SIGNED";
        if (size === 8) return { k: "big", signed };
        if (size === 1 || size === 2 || size === 4) return { k: "int", size, signed };
        throw new GenError(`${where}: ${size}-byte enum is not supported`);
      }
      case "ENUM64":
        return { k: "big", signed: t.encoding === "SIGNED" };
      case "FLOAT":
        if (t.size === 4 || t.size === 8) return { k: "float", size: t.size };
        throw new GenError(`${where}: ${t.size}-byte float is not supported`);
      case "PTR":
        return { k: "big", signed: false };
      case "ARRAY": {
        const n = t.nr_elems!;
        if (n === 0) {
          throw new GenError(`${where}: flexible/zero-length arrays are not supported`);
        }
        const et = this.btf.resolve(t.type_id!);
        if (et.kind === "INT" && et.size === 1 && et.nr_bits === 8 && et.bits_offset === 0) {
          if (et.name === "char" || et.encoding === "CHAR") return { k: "cstr", len: n };
          if (et.encoding !== "SIGNED" && et.encoding !== "BOOL") return { k: "bytes", len: n };
        }
        const elem = this.shape(t.type_id!, `${where}[]`, anonTsName);
        if (n > SMALL_ARRAY && !(elem.k === "int" || elem.k === "big" || elem.k === "float")) {
          throw new GenError(
            `${where}: arrays of more than ${SMALL_ARRAY} ${elem.k} elements are not supported`,
          );
        }
        return { k: "array", n, stride: this.btf.sizeOf(t.type_id!), elem };
      }
      case "STRUCT":
      case "UNION": {
        let decl = this.#byBtfId.get(t.id);
        if (!decl) {
          const tsName = t.name === ANON ? anonTsName : pascalCase(t.name);
          if (this.#tsNames.has(tsName)) {
            throw new GenError(`${where}: generated type name ${tsName} is used twice`);
          }
          this.#tsNames.add(tsName);
          const cName = t.name === ANON ? where : `${t.kind.toLowerCase()} ${t.name}`;
          decl = this.#struct(t, tsName, cName);
          this.#byBtfId.set(t.id, decl);
          this.nested.push(decl);
        }
        return { k: "struct", decl };
      }
      case "FWD":
        throw new GenError(`${where}: incomplete type '${t.name}'`);
      default:
        throw new GenError(`${where}: BTF ${t.kind} members are not supported`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Code generation

function tsType(s: Shape): string {
  switch (s.k) {
    case "int":
    case "float":
      return "number";
    case "bool":
      return "boolean";
    case "big":
      return "bigint";
    case "cstr":
      return "string";
    case "bytes":
      return "Uint8Array";
    case "array": {
      const e = tsType(s.elem);
      return /^\w+$/.test(e) ? `${e}[]` : `Array<${e}>`;
    }
    case "struct":
      return s.decl.tsName;
  }
}

function at(base: string, n: number): string {
  return n === 0 ? base : `${base} + ${n}`;
}

/** The DataView getter for a scalar shape, or undefined if the shape is not a scalar. */
function getter(s: Shape): { fn: string; le: boolean; size: number } | undefined {
  switch (s.k) {
    case "int":
      return { fn: `get${s.signed ? "Int" : "Uint"}${s.size * 8}`, le: s.size > 1, size: s.size };
    case "big":
      return { fn: `getBig${s.signed ? "Int" : "Uint"}64`, le: true, size: 8 };
    case "float":
      return { fn: `getFloat${s.size * 8}`, le: true, size: s.size };
    default:
      return undefined;
  }
}

interface Helpers {
  cstr: boolean;
  /** The generic byte-array copy, for arrays longer than UNROLL_BYTES. */
  bytes: boolean;
  /** Lengths of the byte arrays copied by an unrolled helper (`bytes<len>`). */
  unrolled: Set<number>;
  /** Array readers for long scalar arrays, keyed by helper name. */
  arrays: Map<string, string>;
}

/** A straight-line expression decoding `s` at byte offset `off` (an expression) of `view`. */
function expr(s: Shape, off: string, base: number, h: Helpers): string {
  const g = getter(s);
  if (g) return `view.${g.fn}(${at(off, base)}${g.le ? ", true" : ""})`;
  switch (s.k) {
    case "bool":
      return `view.getUint8(${at(off, base)}) !== 0`;
    case "cstr":
      h.cstr = true;
      return `cstr(view, ${at(off, base)}, ${s.len})`;
    case "bytes":
      if (s.len <= UNROLL_BYTES) {
        h.unrolled.add(s.len);
        return `bytes${s.len}(view, ${at(off, base)})`;
      }
      h.bytes = true;
      return `bytes(view, ${at(off, base)}, ${s.len})`;
    case "struct":
      return `read${s.decl.tsName}(view, ${at(off, base)})`;
    case "array": {
      if (s.n <= SMALL_ARRAY) {
        const items: string[] = [];
        for (let i = 0; i < s.n; i++) items.push(expr(s.elem, off, base + i * s.stride, h));
        return `[${items.join(", ")}]`;
      }
      const eg = getter(s.elem)!;
      const name = `array${eg.fn.slice(3)}`;
      h.arrays.set(
        name,
        `function ${name}(view: DataView, offset: number, n: number): ${tsType(s.elem)}[] {\n` +
          `  const a: ${tsType(s.elem)}[] = new Array(n);\n` +
          `  for (let i = 0; i < n; i++) a[i] = view.${eg.fn}(offset + i * ${eg.size}` +
          `${eg.le ? ", true" : ""});\n` +
          `  return a;\n` +
          `}\n`,
      );
      return `${name}(view, ${at(off, base)}, ${s.n})`;
    }
    default:
      throw new GenError(`internal: no expression for ${s.k}`);
  }
}

function emitInterface(d: StructDecl, doc: string): string {
  let out = `/** ${doc} */\nexport interface ${d.tsName} {\n`;
  for (const f of d.fields) out += `  ${f.name}: ${tsType(f.shape)}; // ${f.cType}\n`;
  return out + "}\n";
}

function emitObjectLiteral(d: StructDecl, h: Helpers): string {
  let out = "{\n";
  for (const f of d.fields) out += `    ${f.name}: ${expr(f.shape, "offset", f.offset, h)},\n`;
  return out + "  }";
}

const HELPER_CSTR = `const utf8 = new TextDecoder();

/** A NUL-terminated C string of at most \`len\` bytes; ASCII fast path, UTF-8 otherwise. */
function cstr(view: DataView, offset: number, len: number): string {
  let s = "";
  for (let i = 0; i < len; i++) {
    const c = view.getUint8(offset + i);
    if (c === 0) break;
    if (c >= 0x80) return cstrUtf8(view, offset, len);
    s += String.fromCharCode(c);
  }
  return s;
}

function cstrUtf8(view: DataView, offset: number, len: number): string {
  const all = new Uint8Array(view.buffer, view.byteOffset + offset, len);
  const end = all.indexOf(0);
  return utf8.decode(all.slice(0, end < 0 ? len : end));
}
`;

// Byte arrays are copied out of the (ring) buffer, so that an event outlives the record it was
// read from. In Deno every new ArrayBuffer, even the one of a `new Uint8Array(32)`, costs some
// 300 ns, which would dominate decoding: copies are carved out of shared slabs, and a field costs
// a Uint8Array view of its slab (~20 ns) plus the copy. The copy moves 4 bytes at a time (integer
// get/set: exact), in straight-line code for arrays of up to UNROLL_BYTES bytes: ~10 ns for 32
// bytes, against ~30 ns byte by byte in a loop.
const UNROLL_BYTES = 64;

const HELPER_SLAB =
  `// Copies of byte arrays are carved out of slabs, as allocating an ArrayBuffer per field would
// dominate decoding. A slab is never reused, so a copy stays valid; while referenced, a copy keeps
// its slab (SLAB bytes) alive.
const SLAB = 8192;
let slabBuffer = new ArrayBuffer(SLAB);
let slab = new DataView(slabBuffer);
let slabUsed = 0;

/** Reserves \`len\` (<= SLAB) bytes of the current slab, or of a new one; returns their offset. */
function slabAlloc(len: number): number {
  if (slabUsed + len > SLAB) {
    slabBuffer = new ArrayBuffer(SLAB);
    slab = new DataView(slabBuffer);
    slabUsed = 0;
  }
  const start = slabUsed;
  slabUsed = start + len;
  return start;
}
`;

const HELPER_BYTES =
  `/** A copy of \`len\` bytes at \`offset\` of \`view\`: in a slab, or in its own buffer if long. */
function bytes(view: DataView, offset: number, len: number): Uint8Array {
  if (len > SLAB / 16) {
    const start = view.byteOffset + offset;
    return new Uint8Array(view.buffer.slice(start, start + len));
  }
  const at = slabAlloc(len);
  const s = slab;
  let i = 0;
  for (; i + 4 <= len; i += 4) s.setUint32(at + i, view.getUint32(offset + i, true), true);
  for (; i < len; i++) s.setUint8(at + i, view.getUint8(offset + i));
  return new Uint8Array(slabBuffer, at, len);
}
`;

/** `bytes<len>`: a straight-line copy of a `len`-byte array (len <= UNROLL_BYTES) into a slab. */
function unrolledBytes(len: number): string {
  let out = `/** A copy of the ${len} bytes at \`offset\` of \`view\`, in a slab. */\n` +
    `function bytes${len}(view: DataView, offset: number): Uint8Array {\n` +
    `  const at = slabAlloc(${len});\n` +
    `  const s = slab;\n`;
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    out += `  s.setUint32(${at("at", i)}, view.getUint32(${at("offset", i)}, true), true);\n`;
  }
  for (; i < len; i++) out += `  s.setUint8(${at("at", i)}, view.getUint8(${at("offset", i)}));\n`;
  return out + `  return new Uint8Array(slabBuffer, at, ${len});\n}\n`;
}

export interface GeneratedModule {
  name: string;
  /** Formatted source of bpf/gen/<name>.ts. */
  code: string;
}

/** Finds the structs to decode: `*_event`, `*_stats`, `*_key` that are the type of a global. */
function eventStructs(btf: Btf): BtfType[] {
  const anchored = new Set<number>();
  for (const t of btf.types) {
    if (t.kind === "VAR") anchored.add(btf.resolve(t.type_id!).id);
  }
  return btf.types
    .filter((t) => t.kind === "STRUCT" && /_(event|stats|key)$/.test(t.name) && anchored.has(t.id))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Generates the (unformatted) module source for one object's BTF. */
export function generateSource(name: string, btf: Btf): string {
  const builder = new ShapeBuilder(btf);
  const events = eventStructs(btf).map((t) => builder.topLevel(t));
  const h: Helpers = { cstr: false, bytes: false, unrolled: new Set(), arrays: new Map() };

  const parts: string[] = [];
  parts.push(`export const OBJECT_NAME = ${JSON.stringify(name)};\n`);

  for (const d of builder.nested) {
    parts.push(emitInterface(d, `\`${d.cName}\` (${d.size} bytes), nested in an event.`));
    parts.push(
      `function read${d.tsName}(view: DataView, offset: number): ${d.tsName} {\n` +
        `  return ${emitObjectLiteral(d, h)};\n}\n`,
    );
  }

  for (const d of events) {
    const C = upperSnake(d.cName);
    parts.push(emitInterface(d, `\`struct ${d.cName}\` (${d.size} bytes).`));
    parts.push(`export const ${C}_SIZE = ${d.size};\n`);
    let layout = `/** Byte offset and size of every field of \`struct ${d.cName}\`. */\n` +
      `export const ${C}_LAYOUT = {\n`;
    for (const f of d.fields) layout += `  ${f.name}: { offset: ${f.offset}, size: ${f.size} },\n`;
    parts.push(layout + "} as const;\n");
    parts.push(
      `/** Decodes a \`struct ${d.cName}\` at \`offset\` of \`view\` (little-endian). */\n` +
        `export function decode${d.tsName}(view: DataView, offset: number): ${d.tsName} {\n` +
        `  if (offset < 0 || offset + ${d.size} > view.byteLength) {\n` +
        `    throw new RangeError(\`${d.cName} at \${offset} is outside a ` +
        `\${view.byteLength}-byte view\`);\n` +
        `  }\n` +
        `  return ${emitObjectLiteral(d, h)};\n}\n`,
    );
  }

  const rodata = btf.types.find((t) => t.kind === "DATASEC" && t.name === ".rodata");
  let ro = "/** Offset and size of every `const volatile` tunable in the `.rodata` map. */\n" +
    "export const RODATA = {";
  const vars = [...(rodata?.vars ?? [])].sort((a, b) => a.offset - b.offset);
  if (vars.length > 0) ro += "\n";
  for (const v of vars) {
    const vt = btf.get(v.type_id);
    if (vt.kind !== "VAR") throw new GenError(`.rodata entry ${v.type_id} is a ${vt.kind}`);
    ro += `  ${vt.name}: { offset: ${v.offset}, size: ${v.size} },\n`;
  }
  ro += "} as const;\n";
  ro += `export const RODATA_SIZE = ${rodata?.size ?? 0};\n`;
  parts.push(ro);

  const helpers: string[] = [];
  if (h.cstr) helpers.push(HELPER_CSTR);
  if (h.bytes || h.unrolled.size > 0) helpers.push(HELPER_SLAB);
  if (h.bytes) helpers.push(HELPER_BYTES);
  for (const len of [...h.unrolled].sort((a, b) => a - b)) helpers.push(unrolledBytes(len));
  helpers.push(...h.arrays.values());

  return `// Generated by scripts/gen_decoders.ts from bpf/${name}.bpf.c's BTF. Do not edit.\n\n` +
    [...parts, ...helpers].join("\n");
}

/** Formats TypeScript source with `deno fmt` and the repository's deno.json. */
export async function format(source: string, configPath = defaultConfig()): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--config", configPath, "--ext", "ts", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(source));
  await writer.close();
  const out = await child.output();
  if (!out.success) {
    throw new GenError(`deno fmt failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

export function objectName(objPath: string): string {
  const base = objPath.split("/").pop()!;
  return base.replace(/\.bpf\.o$/, "").replace(/\.o$/, "");
}

/** Generates and formats bpf/gen/<name>.ts for one object. */
export async function generateModule(objPath: string, bpftool = "bpftool"): Promise<
  GeneratedModule
> {
  const name = objectName(objPath);
  try {
    const btf = await readBtf(objPath, bpftool);
    return { name, code: await format(generateSource(name, btf)) };
  } catch (e) {
    if (e instanceof GenError) throw new GenError(`${objPath}: ${e.message}`);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// CLI

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function defaultConfig(): string {
  return `${ROOT}/deno.json`;
}

function rel(path: string): string {
  return path.startsWith(ROOT + "/") ? path.slice(ROOT.length + 1) : path;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

async function listDir(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(suffix)) out.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

const USAGE = "usage: gen_decoders.ts [--check] [--out-dir DIR] [--bpftool PATH] [OBJ.bpf.o ...]";

export async function main(args: string[]): Promise<number> {
  let check = false;
  let outDir = `${ROOT}/bpf/gen`;
  let bpftool = "bpftool";
  const objects: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--check") check = true;
    else if (a === "--out-dir" && i + 1 < args.length) outDir = args[++i].replace(/\/$/, "");
    else if (a === "--bpftool" && i + 1 < args.length) bpftool = args[++i];
    else if (a === "-h" || a === "--help") {
      console.log(USAGE);
      return 0;
    } else if (a.startsWith("-")) {
      console.error(`gen_decoders: unknown option ${a}\n${USAGE}`);
      return 2;
    } else objects.push(a);
  }
  const explicit = objects.length > 0;
  if (!explicit) objects.push(...await listDir(`${ROOT}/bpf/.output`, ".bpf.o"));
  if (objects.length === 0) {
    console.error("gen_decoders: no bpf/.output/*.bpf.o; run ./scripts/build-bpf first");
    return 2;
  }

  let modules: GeneratedModule[];
  try {
    modules = await Promise.all(objects.map((o) => generateModule(o, bpftool)));
  } catch (e) {
    if (e instanceof GenError) {
      console.error(`gen_decoders: ${e.message}`);
      return 2;
    }
    throw e;
  }
  const names = new Set<string>();
  for (const m of modules) {
    if (names.has(m.name)) {
      console.error(`gen_decoders: two objects generate ${rel(outDir)}/${m.name}.ts`);
      return 2;
    }
    names.add(m.name);
  }

  if (check) {
    const problems: string[] = [];
    for (const [i, m] of modules.entries()) {
      const path = `${outDir}/${m.name}.ts`;
      const current = await readText(path);
      if (current === undefined) {
        problems.push(`${rel(path)}: missing; run \`deno task gen\``);
      } else if (current !== m.code) {
        problems.push(
          `${rel(path)}: differs from the BTF of ${rel(objects[i])}; run \`deno task gen\``,
        );
      }
    }
    if (!explicit) {
      for (const path of await listDir(outDir, ".ts")) {
        const name = path.split("/").pop()!.replace(/\.ts$/, "");
        if (!names.has(name)) {
          problems.push(`${rel(path)}: no bpf/.output/${name}.bpf.o generates it`);
        }
      }
    }
    for (const p of problems) console.error(p);
    if (problems.length > 0) return 1;
    console.log(`${rel(outDir)}: ${modules.length} decoder module(s) up to date`);
    return 0;
  }

  await Deno.mkdir(outDir, { recursive: true });
  for (const m of modules) {
    const path = `${outDir}/${m.name}.ts`;
    if ((await readText(path)) === m.code) {
      console.log(`${rel(path)}: unchanged`);
    } else {
      await Deno.writeTextFile(path, m.code);
      console.log(`${rel(path)}: written`);
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
