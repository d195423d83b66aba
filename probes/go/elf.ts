/**
 * What kupod reads from an executable's ELF file: its sections (DWARF ones decompressed), a few
 * symbols by name, and bytes at a symbol's address. Only the parts read are loaded, so a large
 * binary costs its section headers, its symbol table and the sections asked for.
 */

import { inflateZlib } from "./inflate.ts";

const SHF_COMPRESSED = 0x800;
const SHT_SYMTAB = 2;
const SHT_NOBITS = 8;
const ELFCOMPRESS_ZLIB = 1;

export interface ElfSection {
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
}

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: bigint;
}

export class ElfError extends Error {
  override name = "ElfError";
}

export class ElfFile implements Disposable {
  readonly path: string;
  readonly sections: ElfSection[];
  /** ET_EXEC (2) or ET_DYN (3, position-independent). */
  readonly type: number;
  readonly machine: number;
  #file: Deno.FsFile | undefined;

  private constructor(path: string, file: Deno.FsFile, type: number, machine: number) {
    this.path = path;
    this.#file = file;
    this.type = type;
    this.machine = machine;
    this.sections = [];
  }

  /** Opens a 64-bit little-endian ELF file; throws ElfError for anything else. */
  static open(path: string): ElfFile {
    const file = Deno.openSync(path, { read: true });
    try {
      const h = readAt(file, 0, 64);
      const v = new DataView(h.buffer);
      if (v.getUint32(0) !== 0x7f454c46) throw new ElfError(`${path}: not an ELF file`);
      if (h[4] !== 2 || h[5] !== 1) throw new ElfError(`${path}: not a 64-bit little-endian ELF`);
      const elf = new ElfFile(path, file, v.getUint16(16, true), v.getUint16(18, true));
      const shoff = Number(v.getBigUint64(40, true));
      const shentsize = v.getUint16(58, true);
      const shnum = v.getUint16(60, true);
      const shstrndx = v.getUint16(62, true);
      const table = new DataView(readAt(file, shoff, shentsize * shnum).buffer);
      const raw = [];
      for (let i = 0; i < shnum; i++) {
        const o = i * shentsize;
        raw.push({
          nameOff: table.getUint32(o, true),
          type: table.getUint32(o + 4, true),
          flags: table.getBigUint64(o + 8, true),
          addr: table.getBigUint64(o + 16, true),
          offset: Number(table.getBigUint64(o + 24, true)),
          size: Number(table.getBigUint64(o + 32, true)),
          link: table.getUint32(o + 40, true),
        });
      }
      const strtab = raw[shstrndx];
      const names = strtab ? readAt(file, strtab.offset, strtab.size) : new Uint8Array();
      for (const s of raw) elf.sections.push({ ...s, name: cString(names, s.nameOff) });
      return elf;
    } catch (e) {
      file.close();
      throw e;
    }
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  #readRaw(s: ElfSection): Uint8Array<ArrayBuffer> {
    if (!this.#file) throw new ElfError(`${this.path}: closed`);
    if (s.type === SHT_NOBITS) return new Uint8Array(s.size);
    return readAt(this.#file, s.offset, s.size);
  }

  /**
   * A section's bytes, decompressed when compressed (SHF_COMPRESSED with zlib, or a Go-style
   * `.zdebug_*` section with a "ZLIB" header); undefined when the binary has no such section.
   */
  sectionData(name: string): Uint8Array<ArrayBuffer> | undefined {
    const plain = this.section(name);
    if (plain) {
      const raw = this.#readRaw(plain);
      if (!(plain.flags & BigInt(SHF_COMPRESSED))) return raw;
      const v = new DataView(raw.buffer);
      if (v.getUint32(0, true) !== ELFCOMPRESS_ZLIB) {
        throw new ElfError(`${this.path}: ${name} uses an unknown compression`);
      }
      return inflate(raw.subarray(24), Number(v.getBigUint64(8, true)));
    }
    const z = name.startsWith(".debug_") ? this.section(".z" + name.slice(1)) : undefined;
    if (!z) return undefined;
    const raw = this.#readRaw(z);
    if (cString(raw.subarray(0, 4), 0) !== "ZLIB") return raw;
    const size = Number(new DataView(raw.buffer).getBigUint64(4, false));
    return inflate(raw.subarray(12), size);
  }

  hasSymbolTable(): boolean {
    return this.sections.some((s) => s.type === SHT_SYMTAB);
  }

  /** The symbols of .symtab whose names are in `names` (the first of each name). */
  symbols(names: Iterable<string>): Map<string, ElfSymbol> {
    const wanted = new Set(names);
    const found = new Map<string, ElfSymbol>();
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (!symtab || !wanted.size) return found;
    const strs = this.#readRaw(this.sections[symtab.link]);
    const syms = this.#readRaw(symtab);
    const v = new DataView(syms.buffer);
    // names are compared as bytes: decoding every symbol name would cost more than the search
    const byFirst = new Map<number, { name: string; bytes: Uint8Array }[]>();
    for (const name of wanted) {
      const bytes = new TextEncoder().encode(name);
      const list = byFirst.get(bytes[0]) ?? [];
      list.push({ name, bytes });
      byFirst.set(bytes[0], list);
    }
    for (let o = 0; o + 24 <= syms.length; o += 24) {
      const at = v.getUint32(o, true);
      const list = byFirst.get(strs[at]);
      if (!list) continue;
      for (const w of list) {
        if (found.has(w.name) || strs[at + w.bytes.length] !== 0) continue;
        if (!w.bytes.every((b, i) => strs[at + i] === b)) continue;
        found.set(w.name, {
          name: w.name,
          value: v.getBigUint64(o + 8, true),
          size: v.getBigUint64(o + 16, true),
        });
      }
    }
    return found;
  }

  /** `size` bytes at virtual address `addr`, from the section that holds them in the file. */
  readAddress(addr: bigint, size: number): Uint8Array<ArrayBuffer> {
    const s = this.sections.find((s) =>
      s.addr && s.type !== SHT_NOBITS && addr >= s.addr &&
      addr + BigInt(size) <= s.addr + BigInt(s.size)
    );
    if (!s || !this.#file) {
      throw new ElfError(`${this.path}: address 0x${addr.toString(16)} not in the file`);
    }
    return readAt(this.#file, s.offset + Number(addr - s.addr), size);
  }

  [Symbol.dispose](): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

function readAt(file: Deno.FsFile, offset: number, size: number): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(size);
  file.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < size) {
    const n = file.readSync(buf.subarray(got));
    if (n === null) throw new ElfError(`short read at ${offset + got}`);
    got += n;
  }
  return buf;
}

export function cString(bytes: Uint8Array, at: number): string {
  let end = bytes.indexOf(0, at);
  if (end < 0) end = bytes.length;
  return new TextDecoder().decode(bytes.subarray(at, end));
}

/** Inflates a zlib stream of known decompressed size (probes/go/inflate.ts). */
function inflate(data: Uint8Array<ArrayBuffer>, size: number): Uint8Array<ArrayBuffer> {
  try {
    return inflateZlib(data, size);
  } catch (e) {
    throw new ElfError(`compressed section: ${(e as Error).message}`);
  }
}
