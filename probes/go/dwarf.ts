/**
 * A DWARF 4 reader for what the Go uprobes need from a binary's debug info: struct layouts
 * (member offsets, sizes) by type name, and where a function's arguments are at its first
 * instruction (the registers of Go's register ABI, from the parameters' location lists).
 *
 * Memory stays near the size of the sections: one pass finds the top-level DIEs of the names
 * asked for (decoding nothing else), and DIEs are parsed when asked for, by offset. A Go
 * binary's DWARF holds some hundred thousand DIEs; keeping them all as objects cost ~120 MB
 * for a 10 MB binary.
 */

import { ElfFile } from "./elf.ts";

const TAG = {
  compileUnit: 0x11,
  subprogram: 0x2e,
  formalParameter: 0x05,
  structureType: 0x13,
  member: 0x0d,
  typedef: 0x16,
  pointerType: 0x0f,
  baseType: 0x24,
} as const;

const AT = {
  name: 0x03,
  producer: 0x25,
  byteSize: 0x0b,
  memberLocation: 0x38,
  type: 0x49,
  location: 0x02,
  lowPc: 0x11,
  variableParameter: 0x4b,
} as const;

const DW_OP_REG0 = 0x50;
const DW_OP_REGX = 0x90;
const DW_OP_PIECE = 0x93;
const DW_OP_PLUS_UCONST = 0x23;

export class DwarfError extends Error {
  override name = "DwarfError";
}

type Value = number | bigint | string | Uint8Array | boolean;

export interface Die {
  offset: number;
  tag: number;
  attrs: Map<number, Value>;
  children: Die[];
}

/** One register-held part of an argument at function entry (DWARF register numbers). */
export interface ArgPiece {
  reg: number;
  size: number;
}

interface Abbrev {
  tag: number;
  children: boolean;
  specs: [attr: number, form: number, implicit?: bigint][];
}

class Reader {
  pos: number;
  readonly v: DataView;
  constructor(readonly b: Uint8Array, pos = 0) {
    this.pos = pos;
    this.v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  }
  u8(): number {
    return this.b[this.pos++];
  }
  u16(): number {
    const x = this.v.getUint16(this.pos, true);
    this.pos += 2;
    return x;
  }
  u32(): number {
    const x = this.v.getUint32(this.pos, true);
    this.pos += 4;
    return x;
  }
  u64(): bigint {
    const x = this.v.getBigUint64(this.pos, true);
    this.pos += 8;
    return x;
  }
  uleb(): bigint {
    let x = 0n, shift = 0n, b;
    do {
      b = this.b[this.pos++];
      x |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    return x;
  }
  sleb(): bigint {
    let x = 0n, shift = 0n, b;
    do {
      b = this.b[this.pos++];
      x |= BigInt(b & 0x7f) << shift;
      shift += 7n;
    } while (b & 0x80);
    return b & 0x40 ? x - (1n << shift) : x;
  }
  ulebN(): number {
    return Number(this.uleb());
  }
  cstr(): string {
    const end = this.b.indexOf(0, this.pos);
    const s = new TextDecoder().decode(this.b.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  /** Moves `n` bytes on (a length read just before). */
  skip(n: number): void {
    this.pos += n;
  }
  bytes(n: number): Uint8Array {
    const s = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
}

/** A unit's header: what reading a DIE inside it needs. */
interface Unit {
  start: number;
  end: number;
  /** Offset of its first DIE. */
  dies: number;
  abbrevs: Map<number, Abbrev>;
  ctx: FormCtx;
}

export class Dwarf {
  readonly #info: Uint8Array;
  readonly #loc: Uint8Array | undefined;
  readonly #units: Unit[] = [];
  /** Top-level DIEs of the names asked for, by name. */
  readonly #named = new Map<string, number>();
  readonly #dies = new Map<number, Die>();
  /** The producer of the first unit ("Go cmd/compile go1.19.8; regabi"), "" if none. */
  readonly producer: string = "";

  private constructor(
    info: Uint8Array,
    abbrev: Uint8Array,
    str: Uint8Array | undefined,
    loc: Uint8Array | undefined,
    names: ReadonlySet<string>,
  ) {
    this.#info = info;
    this.#loc = loc;
    const r = new Reader(info);
    const abbrevCache = new Map<number, Map<number, Abbrev>>();
    /** A function's abstract copy (inlined elsewhere) has no code: its concrete one wins. */
    const abstract = new Set<string>();
    while (r.pos < info.length) {
      const start = r.pos;
      let length = r.u32();
      let offsetSize = 4;
      if (length === 0xffffffff) {
        length = Number(r.u64());
        offsetSize = 8;
      }
      const end = r.pos + length;
      const version = r.u16();
      let addrSize: number, abbrevOff: number;
      if (version >= 5) {
        r.u8(); // unit type
        addrSize = r.u8();
        abbrevOff = offsetSize === 8 ? Number(r.u64()) : r.u32();
      } else {
        abbrevOff = offsetSize === 8 ? Number(r.u64()) : r.u32();
        addrSize = r.u8();
      }
      if (version < 2 || version > 5) {
        throw new DwarfError(`DWARF version ${version} is not supported`);
      }
      let abbrevs = abbrevCache.get(abbrevOff);
      if (!abbrevs) abbrevCache.set(abbrevOff, abbrevs = parseAbbrevs(abbrev, abbrevOff));
      const unit: Unit = {
        start,
        end,
        dies: r.pos,
        abbrevs,
        ctx: { unitStart: start, offsetSize, addrSize, version, str },
      };
      this.#units.push(unit);
      let depth = 0;
      while (r.pos < end) {
        const at = r.pos;
        const code = r.ulebN();
        if (code === 0) {
          depth--;
          continue;
        }
        const a = abbrevs.get(code);
        if (!a) throw new DwarfError(`unknown abbreviation ${code} at 0x${at.toString(16)}`);
        const wanted = (depth === 1 && (a.tag === TAG.structureType || a.tag === TAG.subprogram)) ||
          (depth === 0 && a.tag === TAG.compileUnit && !this.producer);
        if (!wanted) {
          for (const [, form] of a.specs) skipForm(r, form, unit.ctx);
        } else {
          let name: Value | undefined, producer: Value | undefined, code_ = false;
          for (const [attr, form, implicit] of a.specs) {
            if (attr === AT.name || attr === AT.producer) {
              const v = readForm(r, form, { ...unit.ctx, implicit });
              if (attr === AT.name) name = v;
              else producer = v;
            } else {
              if (attr === AT.lowPc) code_ = true;
              skipForm(r, form, unit.ctx);
            }
          }
          if (a.tag === TAG.compileUnit) {
            if (typeof producer === "string") this.producer = producer;
          } else if (typeof name === "string" && names.has(name)) {
            const seen = this.#named.has(name);
            if (!seen || (a.tag === TAG.subprogram && code_ && abstract.has(name))) {
              this.#named.set(name, at);
              if (a.tag === TAG.subprogram && !code_) abstract.add(name);
              else abstract.delete(name);
            }
          }
        }
        if (a.children) depth++;
      }
      r.pos = end;
    }
  }

  /**
   * Reads the DWARF of an ELF file, finding the types and functions named `names` (the only
   * ones struct() and function() can then give); throws DwarfError when it has none (a
   * stripped binary).
   */
  static read(elf: ElfFile, names: Iterable<string>): Dwarf {
    const info = elf.sectionData(".debug_info");
    const abbrev = elf.sectionData(".debug_abbrev");
    if (!info || !abbrev) {
      throw new DwarfError(
        `${elf.path} has no DWARF debug info (built with -ldflags=-w or stripped)`,
      );
    }
    return new Dwarf(
      info,
      abbrev,
      elf.sectionData(".debug_str"),
      elf.sectionData(".debug_loc"),
      new Set(names),
    );
  }

  /** The DIE at `offset` with its children (one level), parsed once. */
  #die(offset: number): Die {
    let d = this.#dies.get(offset);
    if (d) return d;
    const unit = this.#units.find((u) => offset >= u.dies && offset < u.end);
    if (!unit) throw new DwarfError(`no DIE at 0x${offset.toString(16)}`);
    const r = new Reader(this.#info, offset);
    const one = this.#parseOne(r, unit);
    if (!one) throw new DwarfError(`no DIE at 0x${offset.toString(16)}`);
    d = one;
    if (one.hasChildren) {
      // its children, each parsed; grandchildren skipped
      let depth = 0;
      for (;;) {
        const at = r.pos;
        const c = this.#parseOne(r, unit);
        if (!c) {
          if (depth-- === 0) break;
          continue;
        }
        if (depth === 0) d.children.push({ ...c, offset: at });
        if (c.hasChildren) depth++;
      }
    }
    this.#dies.set(offset, d);
    return d;
  }

  /** One DIE's tag and attributes at the reader's position; undefined for a null entry. */
  #parseOne(r: Reader, unit: Unit): (Die & { hasChildren: boolean }) | undefined {
    const at = r.pos;
    const code = r.ulebN();
    if (code === 0) return undefined;
    const a = unit.abbrevs.get(code);
    if (!a) throw new DwarfError(`unknown abbreviation ${code} at 0x${at.toString(16)}`);
    const attrs = new Map<number, Value>();
    for (const [attr, form, implicit] of a.specs) {
      attrs.set(attr, readForm(r, form, { ...unit.ctx, implicit }));
    }
    return { offset: at, tag: a.tag, attrs, children: [], hasChildren: a.children };
  }

  #lookup(name: string, tag: number, what: string): Die {
    const at = this.#named.get(name);
    const d = at === undefined ? undefined : this.#die(at);
    if (!d || d.tag !== tag) throw new DwarfError(`no ${what} ${name} in the DWARF`);
    return d;
  }

  /** The struct type named `name`; throws when the binary has none. */
  struct(name: string): Die {
    return this.#lookup(name, TAG.structureType, "struct type");
  }

  hasStruct(name: string): boolean {
    const at = this.#named.get(name);
    return at !== undefined && this.#die(at).tag === TAG.structureType;
  }

  /** Byte size of a struct. */
  size(struct: Die): number {
    const s = struct.attrs.get(AT.byteSize);
    if (typeof s !== "bigint" && typeof s !== "number") {
      throw new DwarfError(`${nameOf(struct)} has no size`);
    }
    return Number(s);
  }

  /** The member `name` of a struct: its offset and its type's DIE. */
  member(struct: Die, name: string): { offset: number; type: Die } {
    const m = struct.children.find((c) => c.tag === TAG.member && c.attrs.get(AT.name) === name);
    if (!m) throw new DwarfError(`struct ${nameOf(struct)} has no member ${name}`);
    return { offset: memberOffset(m), type: this.#typeOf(m) };
  }

  /** Offset of a path of members (`a.b.c`) inside struct `name`, each step inside the previous. */
  offsetOf(name: string, path: string): number {
    let struct = this.struct(name);
    let offset = 0;
    const steps = path.split(".");
    steps.forEach((step, i) => {
      const m = this.member(struct, step);
      offset += m.offset;
      if (i < steps.length - 1) struct = this.#resolveStruct(m.type);
    });
    return offset;
  }

  /** Whether member `name` of struct `struct` is a pointer. */
  isPointer(struct: string, name: string): boolean {
    let t = this.member(this.struct(struct), name).type;
    for (let i = 0; i < 8 && t.tag === TAG.typedef; i++) t = this.#typeOf(t);
    return t.tag === TAG.pointerType;
  }

  #typeOf(d: Die): Die {
    const ref = d.attrs.get(AT.type);
    if (typeof ref !== "number") throw new DwarfError(`${nameOf(d)}: its type is not in the DWARF`);
    return this.#die(ref);
  }

  #resolveStruct(t: Die): Die {
    for (let i = 0; i < 8 && t.tag === TAG.typedef; i++) t = this.#typeOf(t);
    if (t.tag !== TAG.structureType) throw new DwarfError(`${nameOf(t)} is not a struct`);
    return t;
  }

  /** The function named `name` (a Go symbol name: "pkg.(*T).m"); throws when absent. */
  function(name: string): Die {
    return this.#lookup(name, TAG.subprogram, "function");
  }

  /** Names of a function's input parameters, in order (the receiver first). */
  parameters(fn: Die): string[] {
    return fn.children
      .filter((c) => c.tag === TAG.formalParameter && !c.attrs.get(AT.variableParameter))
      .map((c) => String(c.attrs.get(AT.name)));
  }

  /**
   * The registers that hold argument `param` of `fn` at its first instruction, one per piece
   * (a slice is three), from the argument's location list. Throws when the argument is not in
   * registers there (Go before 1.17 passes arguments on the stack).
   */
  argRegisters(fn: Die, param: string): ArgPiece[] {
    const p = fn.children.find((c) =>
      c.tag === TAG.formalParameter && c.attrs.get(AT.name) === param &&
      !c.attrs.get(AT.variableParameter)
    );
    const fname = nameOf(fn);
    if (!p) throw new DwarfError(`${fname} has no parameter ${param}`);
    const low = fn.attrs.get(AT.lowPc);
    const loc = p.attrs.get(AT.location);
    if (typeof low !== "bigint") throw new DwarfError(`${fname} has no entry address`);
    let expr: Uint8Array | undefined;
    if (loc instanceof Uint8Array) expr = loc;
    else if (typeof loc === "number" || typeof loc === "bigint") {
      expr = this.#locAt(Number(loc), low);
    }
    if (!expr) throw new DwarfError(`${fname}: no location of ${param} at its entry`);
    const pieces = registerPieces(expr);
    if (!pieces) {
      throw new DwarfError(
        `${fname}: ${param} is not in registers at entry (Go's register ABI needs Go 1.17+)`,
      );
    }
    return pieces;
  }

  /** The expression of location list `offset` (.debug_loc) that covers address `pc`. */
  #locAt(offset: number, pc: bigint): Uint8Array | undefined {
    if (!this.#loc) throw new DwarfError("location lists (.debug_loc) are missing");
    const r = new Reader(this.#loc, offset);
    let base = 0n;
    for (;;) {
      const begin = r.u64(), end = r.u64();
      if (begin === 0n && end === 0n) return undefined;
      if (begin === 0xffffffffffffffffn) {
        base = end;
        continue;
      }
      const expr = r.bytes(r.u16());
      if (pc >= base + begin && pc < base + end) return expr;
    }
  }
}

function nameOf(d: Die): string {
  const n = d.attrs.get(AT.name);
  return typeof n === "string" ? n : `DIE 0x${d.offset.toString(16)}`;
}

function memberOffset(m: Die): number {
  const loc = m.attrs.get(AT.memberLocation);
  if (typeof loc === "bigint" || typeof loc === "number") return Number(loc);
  if (loc instanceof Uint8Array && loc[0] === DW_OP_PLUS_UCONST) return new Reader(loc, 1).ulebN();
  throw new DwarfError(`member ${nameOf(m)} has no offset`);
}

/** Register pieces of a location expression (DW_OP_reg*, DW_OP_piece); undefined if other. */
function registerPieces(expr: Uint8Array): ArgPiece[] | undefined {
  const r = new Reader(expr);
  const out: ArgPiece[] = [];
  while (r.pos < expr.length) {
    const op = r.u8();
    let reg: number;
    if (op >= DW_OP_REG0 && op < DW_OP_REG0 + 32) reg = op - DW_OP_REG0;
    else if (op === DW_OP_REGX) reg = r.ulebN();
    else return undefined;
    let size = 0;
    if (r.pos < expr.length) {
      if (r.u8() !== DW_OP_PIECE) return undefined;
      size = r.ulebN();
    }
    out.push({ reg, size });
  }
  return out.length ? out : undefined;
}

function parseAbbrevs(b: Uint8Array, offset: number): Map<number, Abbrev> {
  const r = new Reader(b, offset);
  const out = new Map<number, Abbrev>();
  for (;;) {
    const code = r.ulebN();
    if (code === 0) return out;
    const tag = r.ulebN();
    const children = r.u8() === 1;
    const specs: Abbrev["specs"] = [];
    for (;;) {
      const attr = r.ulebN(), form = r.ulebN();
      if (attr === 0 && form === 0) break;
      specs.push(form === 0x21 ? [attr, form, r.sleb()] : [attr, form]);
    }
    out.set(code, { tag, children, specs });
  }
}

interface FormCtx {
  unitStart: number;
  offsetSize: number;
  addrSize: number;
  version: number;
  str: Uint8Array | undefined;
  implicit?: bigint;
}

/** One attribute value; references become .debug_info offsets (numbers), addresses bigints. */
function readForm(r: Reader, form: number, c: FormCtx): Value {
  const off = () => (c.offsetSize === 8 ? Number(r.u64()) : r.u32());
  switch (form) {
    case 0x01: // addr
      return c.addrSize === 8 ? r.u64() : BigInt(r.u32());
    case 0x03: // block2
      return r.bytes(r.u16());
    case 0x04: // block4
      return r.bytes(r.u32());
    case 0x05: // data2
      return BigInt(r.u16());
    case 0x06: // data4
      return BigInt(r.u32());
    case 0x07: // data8
      return r.u64();
    case 0x08: // string
      return r.cstr();
    case 0x09: // block
    case 0x18: // exprloc
      return r.bytes(r.ulebN());
    case 0x0a: // block1
      return r.bytes(r.u8());
    case 0x0b: // data1
      return BigInt(r.u8());
    case 0x0c: // flag
      return r.u8() !== 0;
    case 0x0d: // sdata
      return r.sleb();
    case 0x0e: { // strp
      const at = off();
      if (!c.str) throw new DwarfError("DW_FORM_strp without .debug_str");
      return new Reader(c.str, at).cstr();
    }
    case 0x0f: // udata
      return r.uleb();
    case 0x10: // ref_addr
      return c.version === 2 ? (c.addrSize === 8 ? Number(r.u64()) : r.u32()) : off();
    case 0x11: // ref1
      return c.unitStart + r.u8();
    case 0x12: // ref2
      return c.unitStart + r.u16();
    case 0x13: // ref4
      return c.unitStart + r.u32();
    case 0x14: // ref8
      return c.unitStart + Number(r.u64());
    case 0x15: // ref_udata
      return c.unitStart + r.ulebN();
    case 0x16: // indirect
      return readForm(r, r.ulebN(), c);
    case 0x17: // sec_offset: a location list offset (a number, as references)
      return off();
    case 0x19: // flag_present
      return true;
    case 0x20: // ref_sig8
      return r.u64();
    case 0x21: // implicit_const
      return c.implicit ?? 0n;
    default:
      throw new DwarfError(`DWARF form 0x${form.toString(16)} is not supported`);
  }
}

/** Moves past one attribute value without decoding it. */
function skipForm(r: Reader, form: number, c: FormCtx): void {
  switch (form) {
    case 0x01: // addr
      r.pos += c.addrSize;
      return;
    case 0x03: // block2
      r.skip(r.u16());
      return;
    case 0x04: // block4
      r.skip(r.u32());
      return;
    case 0x05: // data2
    case 0x12: // ref2
      r.pos += 2;
      return;
    case 0x06: // data4
    case 0x13: // ref4
      r.pos += 4;
      return;
    case 0x07: // data8
    case 0x14: // ref8
    case 0x20: // ref_sig8
      r.pos += 8;
      return;
    case 0x08: // string
      r.pos = r.b.indexOf(0, r.pos) + 1;
      return;
    case 0x09: // block
    case 0x18: // exprloc
      r.skip(r.ulebN());
      return;
    case 0x0a: // block1
      r.skip(r.u8());
      return;
    case 0x0b: // data1
    case 0x0c: // flag
    case 0x11: // ref1
      r.pos += 1;
      return;
    case 0x0d: // sdata
    case 0x0f: // udata
    case 0x15: // ref_udata
      while (r.b[r.pos++] & 0x80);
      return;
    case 0x0e: // strp
    case 0x17: // sec_offset
      r.pos += c.offsetSize;
      return;
    case 0x10: // ref_addr
      r.pos += c.version === 2 ? c.addrSize : c.offsetSize;
      return;
    case 0x19: // flag_present
    case 0x21: // implicit_const
      return;
    default:
      readForm(r, form, c);
  }
}
