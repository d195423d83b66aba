/**
 * What the grpc-go uprobes (bpf/grpc_go.bpf.c) need to know about one binary, read from its
 * ELF symbols and DWARF: which functions to probe, the registers their arguments arrive in,
 * and the offsets of every struct field the programs follow. Nothing is assumed about a
 * grpc-go or Go version: a binary whose DWARF lacks something is refused with the reason.
 */

import { Dwarf, DwarfError } from "./dwarf.ts";
import { ElfError, ElfFile } from "./elf.ts";

const TRANSPORT = "google.golang.org/grpc/internal/transport";
const HTTP2 = "golang.org/x/net/http2";
const HPACK = "golang.org/x/net/http2/hpack";

/** Decoded request headers of a stream a server received. */
export const SERVER_SYMBOL = `${TRANSPORT}.(*http2Server).operateHeaders`;
/** A client opens a stream: its id and its header fields. */
export const CLIENT_SYMBOL = `${TRANSPORT}.(*loopyWriter).originateStream`;
/** CONF's cli_hdr_reg when the function has no hdr argument (GRPC_GO_NO_REG). */
const NO_REG = 0xffffffff;

/**
 * Connections that wrap another, with the member holding the wrapped one: crypto/tls's, and
 * grpc's TLS connection (credentials.syscallConn, whose sysConn is the raw *net.TCPConn; its
 * package moved in grpc-go 1.26).
 */
const WRAPPERS = [
  { type: "crypto/tls.Conn", member: "conn" },
  { type: "google.golang.org/grpc/internal/credentials.syscallConn", member: "sysConn" },
  { type: "google.golang.org/grpc/credentials/internal.syscallConn", member: "sysConn" },
];

/** The types and functions read from the DWARF (only these are looked for). */
const DWARF_NAMES = [
  SERVER_SYMBOL,
  CLIENT_SYMBOL,
  `${HPACK}.HeaderField`,
  `[]${HPACK}.HeaderField`,
  "string",
  "runtime.iface",
  "runtime.eface",
  "runtime.itab",
  "runtime._type",
  "internal/abi.ITab",
  "internal/abi.Type",
  "net.TCPConn",
  "net.netFD",
  `${TRANSPORT}.http2Server`,
  `${HTTP2}.MetaHeadersFrame`,
  `${HTTP2}.HeadersFrame`,
  ...["outStream", "itemList", "itemNode", "headerFrame", "loopyWriter", "framer", "bufWriter"]
    .map((t) => `${TRANSPORT}.${t}`),
  ...WRAPPERS.map((w) => w.type),
];

/** The net.Conn itab of *type: its hash is the type's, the same in every process. */
function itabNames(type: string): string[] {
  return [`go:itab.*${type},net.Conn`, `go.itab.*${type},net.Conn`];
}

/**
 * The fields of `struct grpc_go_conf` (bpf/grpc_go.h) in order, each a __u32 (the order is
 * checked against the object's BTF in tests/grpc_go_test.ts).
 */
export const CONF_FIELDS = [
  "srv_t_reg",
  "srv_frame_reg",
  "srv_conn_off",
  "mhf_headers_off",
  "mhf_fields_off",
  "hf_stream_id_off",
  "cli_l_reg",
  "cli_str_reg",
  "cli_hdr_reg",
  "outstream_id_off",
  "outstream_itl_off",
  "itemlist_head_off",
  "itemnode_it_off",
  "eface_data_off",
  "hdr_hf_off",
  "loopy_framer_off",
  "framer_writer_off",
  "bufw_conn_off",
  "slice_ptr_off",
  "slice_len_off",
  "field_size",
  "field_name_off",
  "field_value_off",
  "str_ptr_off",
  "str_len_off",
  "iface_tab_off",
  "iface_data_off",
  "itab_type_off",
  "type_hash_off",
  "tcp_hash",
  "tcp_fd_off",
  "netfd_sysfd_off",
  "wrap1_hash",
  "wrap1_off",
  "wrap2_hash",
  "wrap2_off",
] as const;

export type ConfField = typeof CONF_FIELDS[number];
export type GrpcGoConf = Record<ConfField, number>;

export interface GrpcGoLayout {
  path: string;
  /** The Go toolchain of the binary ("go1.19.8"), from its DWARF. */
  goVersion: string;
  /** Whether the binary serves gRPC (SERVER_SYMBOL) and makes calls (CLIENT_SYMBOL). */
  server: boolean;
  client: boolean;
  conf: GrpcGoConf;
}

export class GoLayoutError extends Error {
  override name = "GoLayoutError";
}

/** Whether the ELF file is a Go program (its build info section or version symbol). */
export function isGoBinary(elf: ElfFile): boolean {
  return !!elf.section(".go.buildinfo") || elf.symbols(["runtime.buildVersion"]).size > 0;
}

/**
 * Whether process `pid` runs a Go program: read from its executable's section headers (and its
 * symbol table when it has no build info section). False when the process is gone or its
 * executable is not readable as ELF.
 */
export function runsGo(pid: number): boolean {
  try {
    using elf = ElfFile.open(`/proc/${pid}/exe`);
    return isGoBinary(elf);
  } catch {
    return false;
  }
}

/**
 * The layout of a grpc-go binary. Throws GoLayoutError with the reason when it is not one, or
 * when its DWARF does not say all the programs need (stripped, Go before 1.17, an unknown
 * grpc-go).
 */
export function readGrpcGoLayout(path: string): GrpcGoLayout {
  let elf: ElfFile;
  try {
    elf = ElfFile.open(path);
  } catch (e) {
    throw new GoLayoutError(`${path}: ${(e as Error).message}`);
  }
  using _ = elf;
  if (!isGoBinary(elf)) throw new GoLayoutError(`${path} is not a Go program`);
  if (!elf.hasSymbolTable()) {
    throw new GoLayoutError(
      `${path} has no symbol table (stripped): its functions cannot be found`,
    );
  }
  // one pass over the symbol table for every name needed
  const syms = elf.symbols([
    SERVER_SYMBOL,
    CLIENT_SYMBOL,
    ...["net.TCPConn", ...WRAPPERS.map((w) => w.type)].flatMap(itabNames),
  ]);
  const has = { server: syms.has(SERVER_SYMBOL), client: syms.has(CLIENT_SYMBOL) };
  if (!has.server && !has.client) throw new GoLayoutError(`${path} does not use grpc-go`);
  try {
    const d = Dwarf.read(elf, DWARF_NAMES);
    const conf = Object.fromEntries(CONF_FIELDS.map((f) => [f, 0])) as GrpcGoConf;
    const reg = (fn: string, param: string, pieces = 1) => {
      const p = d.argRegisters(d.function(fn), param);
      if (p.length !== pieces) {
        throw new DwarfError(`${fn}: ${param} is in ${p.length} registers, not ${pieces}`);
      }
      return p;
    };
    const field = `${HPACK}.HeaderField`;
    const slice = `[]${field}`;
    Object.assign(conf, {
      slice_ptr_off: d.offsetOf(slice, "array"),
      slice_len_off: d.offsetOf(slice, "len"),
      field_size: d.size(d.struct(field)),
      field_name_off: d.offsetOf(field, "Name"),
      field_value_off: d.offsetOf(field, "Value"),
      str_ptr_off: d.offsetOf("string", "str"),
      str_len_off: d.offsetOf("string", "len"),
      iface_tab_off: d.offsetOf("runtime.iface", "tab"),
      iface_data_off: d.offsetOf("runtime.iface", "data"),
      tcp_fd_off: d.offsetOf("net.TCPConn", "conn.fd"),
      netfd_sysfd_off: d.offsetOf("net.netFD", "pfd.Sysfd"),
    });
    // runtime.itab and runtime._type became internal/abi.ITab (Go 1.22) and .Type (Go 1.21)
    const oldItab = d.hasStruct("runtime.itab");
    const itab = oldItab
      ? d.offsetOf("runtime.itab", "hash")
      : d.offsetOf("internal/abi.ITab", "Hash");
    conf.itab_type_off = oldItab
      ? d.offsetOf("runtime.itab", "_type")
      : d.offsetOf("internal/abi.ITab", "Type");
    conf.type_hash_off = d.hasStruct("runtime._type")
      ? d.offsetOf("runtime._type", "hash")
      : d.offsetOf("internal/abi.Type", "Hash");
    // a static itab (the compiler's) carries its type's hash: the value to compare with
    const itabHash = (names: string[]) => {
      const sym = names.map((n) => syms.get(n)).find((s) => s);
      if (!sym) return 0;
      return new DataView(elf.readAddress(sym.value + BigInt(itab), 4).buffer).getUint32(0, true);
    };
    conf.tcp_hash = itabHash(itabNames("net.TCPConn"));
    if (!conf.tcp_hash) throw new GoLayoutError(`${path} has no net.Conn itab of *net.TCPConn`);
    const wrappers = WRAPPERS.map((w) => ({ ...w, hash: itabHash(itabNames(w.type)) }))
      .filter((w) => w.hash);
    if (wrappers.length > 2) throw new GoLayoutError(`${path}: more than two connection wrappers`);
    wrappers.forEach((w, i) => {
      conf[i ? "wrap2_hash" : "wrap1_hash"] = w.hash;
      conf[i ? "wrap2_off" : "wrap1_off"] = d.offsetOf(w.type, w.member);
    });
    if (has.server) {
      conf.srv_t_reg = reg(SERVER_SYMBOL, "t")[0].reg;
      conf.srv_frame_reg = reg(SERVER_SYMBOL, "frame")[0].reg;
      conf.srv_conn_off = d.offsetOf(`${TRANSPORT}.http2Server`, "conn");
      conf.mhf_headers_off = d.offsetOf(`${HTTP2}.MetaHeadersFrame`, "HeadersFrame");
      conf.mhf_fields_off = d.offsetOf(`${HTTP2}.MetaHeadersFrame`, "Fields");
      conf.hf_stream_id_off = d.offsetOf(`${HTTP2}.HeadersFrame`, "FrameHeader.StreamID");
    }
    if (has.client) {
      const fn = d.function(CLIENT_SYMBOL);
      conf.cli_l_reg = reg(CLIENT_SYMBOL, "l")[0].reg;
      conf.cli_str_reg = reg(CLIENT_SYMBOL, "str")[0].reg;
      conf.cli_hdr_reg = d.parameters(fn).includes("hdr")
        ? reg(CLIENT_SYMBOL, "hdr")[0].reg
        : NO_REG;
      conf.outstream_id_off = d.offsetOf(`${TRANSPORT}.outStream`, "id");
      if (conf.cli_hdr_reg === NO_REG) {
        // the programs follow these as pointers: a layout where one is not is refused
        for (const [s, m] of [["outStream", "itl"], ["itemList", "head"]]) {
          if (!d.isPointer(`${TRANSPORT}.${s}`, m)) {
            throw new DwarfError(`${TRANSPORT}.${s}.${m} is not a pointer`);
          }
        }
        conf.outstream_itl_off = d.offsetOf(`${TRANSPORT}.outStream`, "itl");
        conf.itemlist_head_off = d.offsetOf(`${TRANSPORT}.itemList`, "head");
        conf.itemnode_it_off = d.offsetOf(`${TRANSPORT}.itemNode`, "it");
        conf.eface_data_off = d.offsetOf("runtime.eface", "data");
      }
      conf.hdr_hf_off = d.offsetOf(`${TRANSPORT}.headerFrame`, "hf");
      conf.loopy_framer_off = d.offsetOf(`${TRANSPORT}.loopyWriter`, "framer");
      conf.framer_writer_off = d.offsetOf(`${TRANSPORT}.framer`, "writer");
      conf.bufw_conn_off = d.offsetOf(`${TRANSPORT}.bufWriter`, "conn");
    }
    const version = /go\d+(\.\d+)*/.exec(d.producer)?.[0] ?? "";
    return { path, goVersion: version, ...has, conf };
  } catch (e) {
    if (e instanceof DwarfError || e instanceof ElfError) {
      throw new GoLayoutError(`${path}: ${e.message}`);
    }
    throw e;
  }
}

/** The conf as the bytes of a `struct grpc_go_conf` map value. */
export function confBytes(conf: GrpcGoConf): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(CONF_FIELDS.length * 4);
  const v = new DataView(out.buffer);
  CONF_FIELDS.forEach((f, i) => v.setUint32(i * 4, conf[f], true));
  return out;
}
