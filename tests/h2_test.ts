/** HTTP/2 and gRPC calls from captured syscall payloads: Huffman, HPACK, frames, calls. */

import { parserFor } from "../probes/http.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import type { Chunk } from "../probes/http1.ts";
import { type H2Call, H2Conn } from "../probes/h2/conn.ts";
import {
  type HeaderField,
  HpackDecoder,
  NAMES,
  REPORTED_NAMES,
  STATIC_TABLE,
} from "../probes/h2/hpack.ts";
import {
  EOS,
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  huffmanDecode,
  huffmanLength,
} from "../probes/h2/huffman.ts";
import { PREFACE } from "../probes/h2/frames.ts";
import { SIZE_BOUNDS } from "../probes/buckets.ts";
import examples from "./fixtures/h2/rfc7541_examples.json" with { type: "json" };

type Dir = "in" | "out";
type Field = [string, string];

const TAIL = 16;
const bytes = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));
const latin1 = (b: Uint8Array, s = 0, e = b.length) => String.fromCharCode(...b.subarray(s, e));
const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g) ?? [], (x) => parseInt(x, 16));

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// An HPACK encoder for building test input (RFC 7541 sections 5 and 6)

function huffman(s: string): Uint8Array {
  const out: number[] = [];
  let acc = 0, bits = 0;
  for (const ch of bytes(s)) {
    acc = acc * 2 ** HUFFMAN_LENGTHS[ch] + HUFFMAN_CODES[ch];
    bits += HUFFMAN_LENGTHS[ch];
    while (bits >= 8) {
      bits -= 8;
      const d = 2 ** bits;
      out.push(Math.floor(acc / d) & 0xff);
      acc %= d;
    }
  }
  // padding: the most significant bits of EOS, all ones
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Uint8Array.from(out);
}

function hpackInt(v: number, n: number, first: number): number[] {
  const max = (1 << n) - 1;
  if (v < max) return [first | v];
  const out = [first | max];
  for (v -= max; v >= 128; v = Math.floor(v / 128)) out.push((v & 0x7f) | 0x80);
  out.push(v);
  return out;
}

function hpackStr(s: string, huff: boolean): number[] {
  const b = huff ? huffman(s) : bytes(s);
  return [...hpackInt(b.length, 7, huff ? 0x80 : 0), ...b];
}

/** "index": literal with incremental indexing; "plain": without indexing; "never": never indexed. */
type Mode = "index" | "plain" | "never";

interface BlockOpts {
  mode?: Mode;
  huff?: boolean;
  /** use indexed representations for fields in a table (default true) */
  reuse?: boolean;
}

class Encoder {
  /** newest first */
  table: Field[] = [];
  private size = 0;
  private updates: number[] = [];

  constructor(private max = 4096) {}

  /** Changes the table's maximum size, signalled at the start of the next block. */
  resize(n: number): void {
    this.max = n;
    this.updates.push(n);
    this.evict(0);
  }

  /** Index of the field in the static or dynamic table, 0 if absent. */
  index(n: string, v: string): number {
    const s = STATIC_TABLE.findIndex(([a, b]) => a === n && b === v);
    if (s >= 0) return s + 1;
    const d = this.table.findIndex(([a, b]) => a === n && b === v);
    return d >= 0 ? STATIC_TABLE.length + 1 + d : 0;
  }

  private nameIndex(n: string): number {
    const s = STATIC_TABLE.findIndex(([a]) => a === n);
    if (s >= 0) return s + 1;
    const d = this.table.findIndex(([a]) => a === n);
    return d >= 0 ? STATIC_TABLE.length + 1 + d : 0;
  }

  block(fields: Field[], o: BlockOpts = {}): Uint8Array {
    const out: number[] = [];
    for (const u of this.updates) out.push(...hpackInt(u, 5, 0x20));
    this.updates = [];
    const huff = o.huff ?? true, mode = o.mode ?? "index";
    for (const [n, v] of fields) {
      const full = this.index(n, v);
      if (full > 0 && o.reuse !== false) {
        out.push(...hpackInt(full, 7, 0x80));
        continue;
      }
      const ni = this.nameIndex(n);
      if (mode === "index") out.push(...hpackInt(ni, 6, 0x40));
      else out.push(...hpackInt(ni, 4, mode === "never" ? 0x10 : 0));
      if (ni === 0) out.push(...hpackStr(n, huff));
      out.push(...hpackStr(v, huff));
      if (mode === "index") this.insert(n, v);
    }
    return Uint8Array.from(out);
  }

  private insert(n: string, v: string): void {
    const s = n.length + v.length + 32;
    this.evict(Math.max(this.max - s, 0));
    if (s <= this.max) {
      this.table.unshift([n, v]);
      this.size += s;
    } else {
      this.evict(0);
    }
  }

  private evict(max: number): void {
    while (this.size > max && this.table.length > 0) {
      const [n, v] = this.table.pop()!;
      this.size -= n.length + v.length + 32;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Frames (RFC 9113 section 6)

const F_DATA = 0, F_HEADERS = 1, F_RST = 3, F_SETTINGS = 4, F_PING = 6, F_GOAWAY = 7;
const F_WINDOW_UPDATE = 8, F_CONTINUATION = 9;
const END_STREAM = 1, END_HEADERS = 4, PADDED = 8, PRIORITY = 0x20;

function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const f = new Uint8Array(9 + payload.length);
  const v = new DataView(f.buffer);
  v.setUint32(0, payload.length << 8);
  f[3] = type;
  f[4] = flags;
  v.setUint32(5, stream);
  f.set(payload, 9);
  return f;
}

function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

function settings(...entries: [number, number][]): Uint8Array {
  const payload = new Uint8Array(6 * entries.length);
  const v = new DataView(payload.buffer);
  entries.forEach(([id, value], i) => {
    v.setUint16(6 * i, id);
    v.setUint32(6 * i + 2, value);
  });
  return frame(F_SETTINGS, 0, 0, payload);
}

const settingsAck = () => frame(F_SETTINGS, 1, 0);
const ping = () => frame(F_PING, 0, 0, new Uint8Array(8));
const windowUpdate = (stream: number) => frame(F_WINDOW_UPDATE, 0, stream, u32(65535));
const rst = (stream: number, code: number) => frame(F_RST, 0, stream, u32(code));
const goaway = (last: number, code: number) => frame(F_GOAWAY, 0, 0, cat(u32(last), u32(code)));

function padded(content: Uint8Array, pad: number, lead = new Uint8Array(0)): Uint8Array {
  return cat(Uint8Array.of(pad), lead, content, new Uint8Array(pad));
}

interface HeadersOpts {
  end?: boolean;
  pad?: number;
  priority?: boolean;
  /** fragment sizes: the block goes in a HEADERS and CONTINUATION frames of these sizes */
  split?: number[];
}

function headers(stream: number, block: Uint8Array, o: HeadersOpts = {}): Uint8Array {
  const frags: Uint8Array[] = [];
  let p = 0;
  for (const n of o.split ?? []) {
    if (p + n >= block.length) break;
    frags.push(block.subarray(p, p + n));
    p += n;
  }
  frags.push(block.subarray(p));
  const out: Uint8Array[] = [];
  frags.forEach((frag, i) => {
    const last = i === frags.length - 1;
    if (i === 0) {
      let flags = (o.end ? END_STREAM : 0) | (last ? END_HEADERS : 0);
      const prio = o.priority ? hex("80000003 0f") : new Uint8Array(0);
      if (o.priority) flags |= PRIORITY;
      let payload = cat(prio, frag);
      if (o.pad !== undefined) {
        flags |= PADDED;
        payload = padded(frag, o.pad, prio);
      }
      out.push(frame(F_HEADERS, flags, stream, payload));
    } else {
      out.push(frame(F_CONTINUATION, last ? END_HEADERS : 0, stream, frag));
    }
  });
  return cat(...out);
}

function data(stream: number, content: Uint8Array, o: { end?: boolean; pad?: number } = {}) {
  const flags = (o.end ? END_STREAM : 0) | (o.pad !== undefined ? PADDED : 0);
  return frame(F_DATA, flags, stream, o.pad !== undefined ? padded(content, o.pad) : content);
}

/** A gRPC length-prefixed message with n payload bytes. */
function msg(n: number, fill = 0x61): Uint8Array {
  const m = new Uint8Array(5 + n).fill(fill);
  m[0] = 0;
  new DataView(m.buffer).setUint32(1, n);
  return m;
}

const grpcRequest = (path: string, extra: Field[] = []): Field[] => [
  [":method", "POST"],
  [":scheme", "http"],
  [":path", path],
  [":authority", "localhost:50051"],
  ["content-type", "application/grpc"],
  ["te", "trailers"],
  ["user-agent", "grpc-go/1.62.0"],
  ...extra,
];
const grpcResponse: Field[] = [[":status", "200"], ["content-type", "application/grpc"]];
const trailers = (code: number, message = ""): Field[] =>
  message === ""
    ? [["grpc-status", String(code)]]
    : [["grpc-status", String(code)], ["grpc-message", message]];

// ---------------------------------------------------------------------------------------------
// Chunks

/** A chunk whose bytes were all captured. */
function full(dir: Dir, ts: number, ...parts: Uint8Array[]): Chunk {
  const b = cat(...parts);
  return { dir, ts: BigInt(ts), len: b.length, head: b, tail: new Uint8Array(0) };
}

/** A chunk of which only the first `cap` bytes and the last 16 were captured. */
function cut(dir: Dir, ts: number, b: Uint8Array, cap: number): Chunk {
  const head = b.subarray(0, Math.min(cap, b.length));
  const tail = b.length > cap ? b.subarray(Math.max(cap, b.length - TAIL)) : new Uint8Array(0);
  return { dir, ts: BigInt(ts), len: b.length, head, tail };
}

/** b as chunks of the given sizes (cycled), ts counting up from ts0; captured up to cap. */
function split(dir: Dir, b: Uint8Array, sizes: number[], ts0: number, cap = Infinity): Chunk[] {
  const out: Chunk[] = [];
  for (let p = 0, i = 0; p < b.length; i++) {
    const n = Math.min(sizes[i % sizes.length], b.length - p);
    out.push(cut(dir, ts0 + i, b.subarray(p, p + n), cap));
    p += n;
  }
  return out;
}

function feed(conn: H2Conn, chunks: Chunk[]): H2Call[] {
  return chunks.flatMap((c) => conn.push(c));
}

/** The fields most tests check, on one line. */
function line(x: H2Call): string {
  return `${x.streamId} ${x.method} ${x.path} ${x.status}/${x.grpcStatus} ` +
    `${x.requestMessages}/${x.responseMessages} ${x.requestBytes}/${x.responseBytes} ` +
    `${x.kind} ${x.outcome}${x.pathUnknown ? " pathUnknown" : ""}`;
}

const lines = (xs: H2Call[]) => xs.map(line);

function sortedKeys(x: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(x).sort(([a], [b]) => a < b ? -1 : 1));
}

// ---------------------------------------------------------------------------------------------
// Huffman

Deno.test("huffman: Appendix B as typed is a canonical code ending in EOS", () => {
  const order = [...HUFFMAN_CODES.keys()].sort((a, b) =>
    HUFFMAN_LENGTHS[a] - HUFFMAN_LENGTHS[b] || a - b
  );
  let code = 0, kraft = 0;
  order.forEach((sym, i) => {
    if (i > 0) code = (code + 1) * 2 ** (HUFFMAN_LENGTHS[sym] - HUFFMAN_LENGTHS[order[i - 1]]);
    assertEquals(HUFFMAN_CODES[sym], code, `code of ${sym}`);
    kraft += 2 ** -HUFFMAN_LENGTHS[sym];
  });
  assertEquals(kraft, 1);
  assertEquals(order[order.length - 1], EOS);
  assertEquals([HUFFMAN_CODES[EOS], HUFFMAN_LENGTHS[EOS]], [0x3fffffff, 30]);
});

Deno.test("huffman: decodes every byte, rejects EOS and bad padding", () => {
  const all = latin1(Uint8Array.from({ length: 256 }, (_, i) => i));
  const enc = huffman(all);
  const out = new Uint8Array(512);
  assertEquals(latin1(out, 0, huffmanDecode(enc, 0, enc.length, out, 0)), all);
  const decode = (b: Uint8Array) => {
    const n = huffmanDecode(b, 0, b.length, out, 0);
    return n < 0 ? null : latin1(out, 0, n);
  };
  assertEquals(decode(new Uint8Array(0)), "");
  assertEquals(decode(hex("1f")), "a"); // 00011 + padding 111
  assertEquals(decode(hex("1e")), null); // padding with a zero bit
  assertEquals(decode(hex("1fff")), null); // padding of 11 bits
  assertEquals(decode(hex("ffffffff")), null); // EOS (30 ones) + 2 bits
  assertEquals(decode(hex("00 3f")), "00"); // 00000 00000 + 6 ones of padding
});

// ---------------------------------------------------------------------------------------------
// HPACK

function decodeAll(d: HpackDecoder, b: Uint8Array): { ok: boolean; fields: (Field | null)[] } {
  const fields: (Field | null)[] = [];
  const ok = d.decode(b, 0, b.length, (f: HeaderField) => {
    fields.push(
      f.name && f.value ? [latin1(f.name, f.ns, f.ne), latin1(f.value, f.vs, f.ve)] : null,
    );
  });
  return { ok, fields };
}

Deno.test("hpack: RFC 7541 Appendix C.3 to C.6 examples", () => {
  for (const g of examples.groups) {
    const d = new HpackDecoder(g.tableMax);
    g.blocks.forEach((blk, i) => {
      const r = decodeAll(d, hex(blk.hex));
      const what = `${g.name} #${i + 1}`;
      assert(r.ok, what);
      assertEquals(r.fields, blk.headers as Field[], what);
      assertEquals(d.tableSize, blk.tableSize, what);
      assertEquals(d.tableEntries, blk.entries, what);
      assert(d.synced, what);
    });
  }
});

Deno.test("hpack: malformed blocks are errors that desync", () => {
  const bad = [
    "80", // index 0
    "ff ff ff ff ff 7f", // integer beyond 2^28
    "40 0a 6375", // name shorter than its length
    "40 7f 81 80 04 " + "61".repeat(8), // string length above 64 KiB
    "40 83 ff ff ff 01 61", // Huffman string holding EOS
    "82 20", // size update after a field
    "3f 81 20", // size update to 4128, above the SETTINGS limit
  ];
  for (const h of bad) {
    const d = new HpackDecoder();
    assertEquals(d.decode(hex(h), 0, hex(h).length, () => {}), false, h);
    assert(!d.synced, h);
  }
  // C.1.2: 1337 on a 5-bit prefix, as a size update within the announced limit
  const d = new HpackDecoder();
  d.setLimit(2000);
  assertEquals(decodeAll(d, hex("3f 9a 0a")).ok, true);
  assert(d.synced);
  const big = new Encoder(4096).block([["x", "v".repeat(1400)]], { huff: false });
  decodeAll(d, big);
  assertEquals(d.tableEntries, 0); // larger than 1337: the table is emptied, nothing added
});

Deno.test("hpack: a desynced table resolves only what was inserted since", () => {
  const e = new Encoder();
  const d = new HpackDecoder();
  decodeAll(d, e.block([[":path", "/a.S/Old"], ["x-one", "1"]]));
  assert(d.synced);
  e.block([["x-lost", "inserted where the decoder did not see it"]]); // a lost block
  d.desync();
  const r = decodeAll(d, e.block([[":path", "/a.S/Old"], [":path", "/a.S/New"], ["x-one", "1"]]));
  // the old entries are unknown, the static name of the literal is known
  assertEquals(r.fields, [null, [":path", "/a.S/New"], null]);
  assertEquals(decodeAll(d, e.block([[":path", "/a.S/New"], [":method", "GET"]])).fields, [
    [":path", "/a.S/New"],
    [":method", "GET"],
  ]);
  assert(!d.synced);
  // a literal whose name refers to an unknown entry still inserts an entry (name unknown)
  assertEquals(decodeAll(d, e.block([["x-one", "2"], ["x-one", "2"]])).fields, [null, null]);
  assertEquals(decodeAll(d, e.block([[":path", "/a.S/New"]])).fields, [[":path", "/a.S/New"]]);
  // the encoder empties its table: in sync again
  e.resize(0);
  e.resize(4096);
  assertEquals(decodeAll(d, e.block([["x-one", "3"], ["x-one", "3"]])).fields, [
    ["x-one", "3"],
    ["x-one", "3"],
  ]);
  assert(d.synced);
});

Deno.test("huffman: the length walk counts what decoding outputs, and fails where it fails", () => {
  const r = mulberry32(3);
  const out = new Uint8Array(4096);
  const strings = [
    "",
    "www.example.com",
    "no-cache",
    "custom-value",
    "Mon, 21 Oct 2013 20:13:21 GMT",
    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    latin1(Uint8Array.from({ length: 256 }, (_, i) => i)),
    ...Array.from(
      { length: 300 },
      () => latin1(Uint8Array.from({ length: between(r, 0, 200) }, () => between(r, 0, 255))),
    ),
  ];
  for (const s of strings) {
    const enc = huffman(s);
    assertEquals(huffmanLength(enc, 0, enc.length), s.length, JSON.stringify(s.slice(0, 20)));
    assertEquals(huffmanDecode(enc, 0, enc.length, out, 0), s.length);
  }
  // random bytes: both agree on every input, valid or not
  for (let i = 0; i < 2000; i++) {
    const b = Uint8Array.from({ length: between(r, 0, 40) }, () => between(r, 0, 255));
    assertEquals(huffmanLength(b, 0, b.length), huffmanDecode(b, 0, b.length, out, 0));
  }
  for (const h of ["1e", "1fff", "ffffffff"]) {
    assertEquals(huffmanLength(hex(h), 0, hex(h).length), -1, h);
  }
});

/** Fields of names the calls' parser reads, null for unknown ones, as a full decoder sees them. */
const reported = (fields: (Field | null)[]) =>
  fields.filter((f) => f === null || (NAMES.indexOf(f[0]) + 1 || Infinity) <= REPORTED_NAMES);

Deno.test("hpack: a decoder of the reported names keeps the table exact with lengths only", () => {
  const r = mulberry32(5);
  const names = [
    ":path",
    ":authority",
    ":status",
    "content-type",
    "grpc-status",
    "grpc-message",
    "user-agent",
    "date",
    "server",
    "te",
    "x-custom",
    "x-request-id",
    "grpc-timeout",
    "traceparent",
  ];
  for (let it = 0; it < 60; it++) {
    const max = pick(r, [64, 200, 512, 4096, 65536]);
    const e = new Encoder(max);
    const full = new HpackDecoder(max), lean = new HpackDecoder(max, true);
    for (let blk = 0; blk < 40; blk++) {
      if (r() < 0.05) e.resize(pick(r, [0, Math.min(100, max), max]));
      const fields: Field[] = Array.from(
        { length: between(r, 1, 6) },
        () => [pick(r, names), randText(r, between(r, 0, pick(r, [4, 30, 150, 2000])))],
      );
      const b = e.block(fields, {
        mode: pick(r, ["index", "index", "plain", "never"] as const),
        huff: r() < 0.7,
        reuse: r() < 0.8,
      });
      if (r() < 0.05) {
        // a peer's larger SETTINGS_HEADER_TABLE_SIZE: a desynced table may grow to it
        const limit = pick(r, [8192, 100000]);
        full.setLimit(limit);
        lean.setLimit(limit);
      }
      if (r() < 0.05) {
        // lost: both desync, and stay in step
        full.desync();
        lean.desync();
      }
      const f = decodeAll(full, b), l = decodeAll(lean, b);
      const what = `iteration ${it} block ${blk}`;
      assert(f.ok && l.ok, what);
      if (full.synced) assertEquals(f.fields, fields, what);
      assertEquals(l.fields, reported(f.fields), what);
      assertEquals(
        [lean.tableSize, lean.tableEntries, lean.synced],
        [full.tableSize, full.tableEntries, full.synced],
        what,
      );
      assert(lean.heldBytes <= full.heldBytes, what);
    }
  }
});

Deno.test("hpack: a block is pure when it needs the static table only and changes nothing", () => {
  const e = new Encoder();
  const d = new HpackDecoder(4096, true);
  const pure = (b: Uint8Array) => {
    assert(decodeAll(d, b).ok);
    return d.lastBlockPure;
  };
  const plain = { mode: "plain" as const };
  assert(pure(e.block([[":status", "200"], ["content-type", "application/grpc"]], plain)));
  assert(pure(e.block([["grpc-status", "0"], ["grpc-message", ""]], { mode: "never" })));
  assert(!pure(e.block([["x-id", "1"]]))); // inserts
  assert(!pure(e.block([["x-id", "1"]]))); // refers to the dynamic table
  e.resize(100);
  assert(!pure(e.block([[":status", "200"]]))); // a size update
  assert(!decodeAll(d, hex("40 83 ff ff ff 01 61")).ok);
  assert(!d.lastBlockPure); // malformed
});

Deno.test("hpack: a block's insertions replayed leave the table as decoding it again", () => {
  const r = mulberry32(17);
  for (const reportedOnly of [true, false]) {
    for (let it = 0; it < 40; it++) {
      // two decoders with one history; each block is decoded by one and replayed by the other
      const max = pick(r, [160, 400, 4096]);
      const e = new Encoder(max);
      const a = new HpackDecoder(max, reportedOnly), b = new HpackDecoder(max, reportedOnly);
      if (r() < 0.3) {
        a.desync();
        b.desync();
      }
      for (let blk = 0; blk < 30; blk++) {
        const fields: Field[] = [
          [":path", `/svc.S/M${between(r, 0, 3)}`],
          [":authority", pick(r, ["service", "a-much-longer-authority.example:443"])],
          ["content-type", "application/grpc"],
          [pick(r, ["x-id", "grpc-timeout", "user-agent"]), "v".repeat(between(r, 0, 200))],
        ];
        const block = e.block(fields, { reuse: r() < 0.3, huff: r() < 0.5 });
        const x = decodeAll(a, block);
        assert(x.ok);
        const log = a.lastBlockInserts();
        if (log === undefined) {
          assert(decodeAll(b, block).ok); // referred to the table: decoded by both
        } else {
          b.replay(log);
          assertEquals(decodeAll(new HpackDecoder(max, reportedOnly), block).fields, x.fields);
        }
        const what = `${reportedOnly} iteration ${it} block ${blk}`;
        assertEquals(
          [b.tableSize, b.tableEntries, b.synced, b.heldBytes],
          [a.tableSize, a.tableEntries, a.synced, a.heldBytes],
          what,
        );
        // what the table holds now resolves the same in both
        const again = e.block(fields.slice(0, 3));
        assertEquals(decodeAll(b, again).fields, decodeAll(a, again).fields, what);
      }
    }
  }
  // blocks that refer to the table or resize it have no log
  const e = new Encoder(), d = new HpackDecoder(4096, true);
  assert(decodeAll(d, e.block([["x-id", "1"]])).ok);
  assertEquals(d.lastBlockInserts()?.meta.length, 4);
  assert(decodeAll(d, e.block([["x-id", "1"]])).ok);
  assertEquals(d.lastBlockInserts(), undefined);
  assert(decodeAll(d, e.block([[":status", "200"]], { mode: "plain" })).ok);
  assertEquals(d.lastBlockInserts(), null);
  e.resize(100);
  assert(decodeAll(d, e.block([[":status", "200"]])).ok);
  assertEquals(d.lastBlockInserts(), undefined);
});

Deno.test("hpack: entries without kept bytes are evicted like any, the byte ring wraps", () => {
  // a 160-byte table: each entry below is 38..60 bytes, so evictions follow every few inserts
  const e = new Encoder(160);
  const d = new HpackDecoder(160, true);
  for (let i = 0; i < 200; i++) {
    const path = `/p${i}`.padEnd(3 + (i % 17), "x");
    const b = e.block([["date", `d${i % 7}`], [":path", path], ["x-id", `${i}`]], {
      huff: i % 3 === 0,
    });
    const r = decodeAll(d, b);
    assert(r.ok);
    assertEquals(r.fields, [[":path", path]], `block ${i}`);
    assertEquals(d.tableSize, e.table.reduce((n, [a, v]) => n + a.length + v.length + 32, 0));
    assertEquals(d.tableEntries, e.table.length);
    // the block again, all indexed now: the newest entries resolve from the ring
    const again = e.block([[":path", path], ["date", `d${i % 7}`]]);
    assertEquals(decodeAll(d, again).fields, [[":path", path]], `block ${i} again`);
    assertEquals(
      d.heldBytes,
      e.table.filter(([n]) => n === ":path").reduce((n, [, v]) => n + v.length, 0),
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Calls

/** The start of a connection as the server's side sees it: preface in, SETTINGS out. */
function opening(): Chunk[] {
  return [
    full("out", 1, settings([3, 100], [4, 65535])),
    full("in", 1, PREFACE, settings([1, 4096], [2, 0], [4, 4194304])),
    full("in", 1, settingsAck()),
    full("out", 1, settingsAck()),
  ];
}

Deno.test("h2: a unary gRPC call, server side", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  const calls = feed(conn, [
    ...opening(),
    full(
      "in",
      2,
      headers(1, ce.block(grpcRequest("/helloworld.Greeter/SayHello"))),
      data(1, msg(7), { end: true }),
    ),
    full("out", 3, headers(1, se.block(grpcResponse)), data(1, msg(12))),
    full("out", 4, headers(1, se.block(trailers(0)), { end: true })),
  ]);
  assertEquals(calls.map(sortedKeys), [sortedKeys({
    side: "server",
    streamId: 1,
    grpc: true,
    method: "POST",
    path: "/helloworld.Greeter/SayHello",
    service: "helloworld.Greeter",
    rpcMethod: "SayHello",
    status: 200,
    grpcStatus: 0,
    startNs: 2n,
    endNs: 4n,
    requestMessages: 1,
    responseMessages: 1,
    requestBytes: 12,
    responseBytes: 17,
    kind: "unary",
    outcome: "complete",
    pathUnknown: false,
    grpcMessage: "",
    scheme: "http",
    authority: "localhost:50051",
    contentType: "application/grpc",
    userAgent: "grpc-go/1.62.0",
    timeoutSeconds: -1,
    traceparent: "",
    errorCode: -1,
    truncated: false,
    reqSeq: -1,
    respEndSeq: -1,
    requestSizes: { bounds: SIZE_BOUNDS, counts: [1, ...new Array(11).fill(0)], sum: 7, count: 1 },
    responseSizes: {
      bounds: SIZE_BOUNDS,
      counts: [1, ...new Array(11).fill(0)],
      sum: 12,
      count: 1,
    },
  })]);
  assert(!conn.notH2);
  assertEquals(conn.close(5n), []);
});

/** Three concurrent calls, their frames interleaved in both directions. */
function interleaved(ce: Encoder, se: Encoder): { req: Uint8Array; resp: Uint8Array } {
  const req = cat(
    PREFACE,
    settings([1, 4096]),
    headers(1, ce.block(grpcRequest("/pkg.v1.Store/Get"))),
    headers(3, ce.block(grpcRequest("/pkg.v1.Store/Put")), { split: [3, 5] }),
    data(1, msg(40).subarray(0, 3)),
    headers(5, ce.block(grpcRequest("/pkg.v1.Store/Get")), { pad: 7, priority: true }),
    data(3, msg(100), { pad: 10 }),
    data(1, msg(40).subarray(3)),
    data(5, msg(1), { end: true }),
    ping(),
    data(3, new Uint8Array(0), { end: true }),
    windowUpdate(0),
    data(1, new Uint8Array(0), { end: true }),
  );
  const resp = cat(
    settings([3, 100]),
    settingsAck(),
    headers(5, se.block(grpcResponse)),
    headers(1, se.block(grpcResponse)),
    data(5, cat(msg(2), msg(3))),
    data(1, msg(9)),
    headers(3, se.block([...grpcResponse, ...trailers(5, "not found")]), { end: true }),
    headers(5, se.block(trailers(0)), { end: true }),
    headers(1, se.block(trailers(0)), { end: true }),
  );
  return { req, resp };
}

Deno.test("h2: interleaved concurrent streams split at odd byte boundaries", () => {
  const expected = [
    "3 POST /pkg.v1.Store/Put 200/5 1/0 105/0 unary complete",
    "5 POST /pkg.v1.Store/Get 200/0 1/2 6/15 server_stream complete",
    "1 POST /pkg.v1.Store/Get 200/0 1/1 45/14 unary complete",
  ];
  for (const sizes of [[1], [7, 13, 1, 29], [3, 2], [11], [64, 5, 17]]) {
    const { req, resp } = interleaved(new Encoder(), new Encoder());
    const conn = new H2Conn();
    const calls = feed(conn, [...split("in", req, sizes, 100), ...split("out", resp, sizes, 1000)]);
    assertEquals(lines(calls), expected, `sizes ${sizes}`);
    assertEquals(calls.map((c) => c.side), ["server", "server", "server"]);
    assertEquals(calls[1].grpcMessage, "");
    assertEquals(calls[0].grpcMessage, "not found");
    assert(calls.every((c) => c.startNs >= 100n && c.endNs >= 1000n && !c.truncated));
    assertEquals(conn.bufferedBytes > 0, true); // the dynamic tables
  }
});

Deno.test("h2: streaming kinds from message counts", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  const req = (id: number, path: string, ...frames: Uint8Array[]) =>
    full("in", id, headers(id, ce.block(grpcRequest(path))), ...frames);
  const resp = (id: number, ...frames: Uint8Array[]) =>
    full("out", id + 100, headers(id, se.block(grpcResponse)), ...frames);
  const end = (id: number) =>
    full("out", id + 200, headers(id, se.block(trailers(0)), { end: true }));
  const calls = feed(conn, [
    // client streaming: 3 messages, one prefix split across DATA frames
    req(
      1,
      "/r.Route/Record",
      data(1, cat(msg(4), msg(5).subarray(0, 2))),
      data(1, cat(msg(5).subarray(2), msg(0)), { end: true }),
    ),
    resp(1, data(1, msg(20))),
    end(1),
    // server streaming: 4 messages over 2 frames
    req(3, "/r.Route/List", data(3, msg(8), { end: true })),
    resp(
      3,
      data(3, cat(msg(1), msg(2), msg(3).subarray(0, 6))),
      data(3, cat(msg(3).subarray(6), msg(300))),
    ),
    end(3),
    // bidi: 2 and 2, both directions open at once
    req(5, "/r.Route/Chat", data(5, msg(10))),
    resp(5, data(5, msg(11))),
    full("in", 6, data(5, msg(12), { end: true })),
    full("out", 7, data(5, msg(13))),
    end(5),
  ]);
  assertEquals(lines(calls), [
    "1 POST /r.Route/Record 200/0 3/1 24/25 client_stream complete",
    "3 POST /r.Route/List 200/0 1/4 13/326 server_stream complete",
    "5 POST /r.Route/Chat 200/0 2/2 32/34 bidi complete",
  ]);
});

Deno.test("h2: RST_STREAM resets a call with gRPC's status for its code, close reports open ones as closed", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  const calls = feed(conn, [
    full("in", 2, headers(1, ce.block(grpcRequest("/a.B/Slow"))), data(1, msg(3), { end: true })),
    full("in", 3, headers(3, ce.block(grpcRequest("/a.B/Open"))), data(3, msg(3))),
    full("out", 4, headers(1, se.block(grpcResponse))),
    full("in", 5, rst(1, 8)), // CANCEL
  ]);
  // CANCEL is CANCELLED (1) to a gRPC client
  assertEquals(lines(calls), ["1 POST /a.B/Slow 200/1 1/0 8/0 unary reset"]);
  assertEquals([calls[0].errorCode, calls[0].endNs], [8, 5n]);
  const closed = conn.close(9n);
  assertEquals(lines(closed), ["3 POST /a.B/Open 0/-1 1/0 8/0 unary closed"]);
  assertEquals(closed[0].endNs, 9n);
  assertEquals(conn.push(full("in", 10, data(3, msg(1)))), []);

  // a server ending the stream early with NO_ERROR completes it; GOAWAY refuses later streams
  const c2 = new H2Conn({ side: "server" });
  const ce2 = new Encoder(), se2 = new Encoder();
  feed(c2, opening());
  const done = feed(c2, [
    full("in", 2, headers(1, ce2.block(grpcRequest("/a.B/Up"))), data(1, msg(3))),
    full("in", 2, headers(3, ce2.block(grpcRequest("/a.B/Up"))), data(3, msg(3))),
    full("out", 3, headers(1, se2.block([...grpcResponse, ...trailers(0)]), { end: true })),
    full("out", 3, rst(1, 0), goaway(1, 0)),
  ]);
  assertEquals(lines(done), [
    "1 POST /a.B/Up 200/0 1/0 8/0 unary complete",
    "3 POST /a.B/Up 0/14 1/0 8/0 unary reset", // refused by GOAWAY: UNAVAILABLE
  ]);
});

Deno.test("h2: lost header blocks make paths unknown, never wrong", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  const call = (id: number, ts: number, reqHead: Uint8Array, cap = Infinity): H2Call[] =>
    feed(conn, [
      cut("in", ts, reqHead, cap),
      full("in", ts, data(id, msg(2), { end: true })),
      full("out", ts + 1, headers(id, se.block(grpcResponse)), data(id, msg(3))),
      full("out", ts + 2, headers(id, se.block(trailers(0)), { end: true })),
    ]);
  // 1: :path inserted into the dynamic table
  const c1 = call(1, 10, headers(1, ce.block(grpcRequest("/pkg.Svc/A"))));
  // 2: a large HEADERS frame of which only the first 1024 and last 16 bytes were captured
  const big = grpcRequest("/pkg.Svc/B", [["x-payload", "z".repeat(1500)]]);
  const c2 = call(3, 20, headers(3, ce.block(big, { huff: false })), 1024);
  // 3: :path refers to the table entry from call 1
  const b3 = ce.block(grpcRequest("/pkg.Svc/A"));
  assert(b3.includes(0x80 | ce.index(":path", "/pkg.Svc/A")), "an indexed :path");
  const c3 = call(5, 30, headers(5, b3));
  // 4: a literal :path is exact, and 5: a reference to an entry inserted since then as well
  const c4 = call(7, 40, headers(7, ce.block(grpcRequest("/pkg.Svc/C"))));
  const c5 = call(9, 50, headers(9, ce.block(grpcRequest("/pkg.Svc/C"))));
  assertEquals(lines([...c1, ...c2, ...c3, ...c4, ...c5]), [
    "1 POST /pkg.Svc/A 200/0 1/1 7/8 unary complete",
    "3   200/0 1/1 7/8 unary complete pathUnknown",
    "5 POST  200/0 1/1 7/8 unary complete pathUnknown",
    "7 POST /pkg.Svc/C 200/0 1/1 7/8 unary complete",
    "9 POST /pkg.Svc/C 200/0 1/1 7/8 unary complete",
  ]);
  assertEquals([c2[0].rpcMethod, c2[0].service, c2[0].grpc, c2[0].truncated], [
    "unknown",
    "",
    true,
    true,
  ]);
  assertEquals([c3[0].rpcMethod, c3[0].grpc, c3[0].truncated], ["unknown", true, false]);
  assertEquals([c4[0].service, c4[0].rpcMethod], ["pkg.Svc", "C"]);
});

/** A unary call's request and response frames, from one encoder per direction. */
function unaryFrames() {
  const ce = new Encoder(), se = new Encoder();
  return {
    request: (id: number, path: string) =>
      cat(headers(id, ce.block(grpcRequest(path))), data(id, msg(2), { end: true })),
    response: (id: number) =>
      cat(
        headers(id, se.block(grpcResponse)),
        data(id, msg(3)),
        headers(id, se.block(trailers(0)), { end: true }),
      ),
  };
}

Deno.test("h2: a record lost whole is a hole of its length: later references are unknown, not shifted; its call is counted unseen", () => {
  const { request, response } = unaryFrames();
  const r1 = request(1, "/pkg.Svc/A"), s1 = response(1);
  // the record lost: its block inserted /pkg.Svc/B in front of /pkg.Svc/A
  const r3 = request(3, "/pkg.Svc/B"), s3 = response(3);
  // B and A by their indices now: 62 and 63
  const r5 = request(5, "/pkg.Svc/B"), s5 = response(5);
  const r7 = request(7, "/pkg.Svc/A"), s7 = response(7);
  const run = (told: boolean) => {
    const conn = new H2Conn({ side: "server" });
    feed(conn, opening());
    const hole: Chunk = { dir: "in", ts: 30n, len: r3.length, head: bytes(""), tail: bytes("") };
    const calls = lines(feed(conn, [
      full("in", 10, r1),
      full("out", 11, s1),
      ...(told ? [hole] : []),
      full("out", 31, s3),
      full("in", 50, r5),
      full("out", 51, s5),
      full("in", 70, r7),
      full("out", 71, s7),
    ]));
    return { calls, unseen: conn.takeUnseen() };
  };
  // call 3, its request lost, is not reported: its response alone names no call; it is
  // counted, from the stream id that call 5 skipped
  const told = run(true);
  assertEquals(told.unseen, 1);
  assertEquals(told.calls, [
    "1 POST /pkg.Svc/A 200/0 1/1 7/8 unary complete",
    "5 POST  200/0 1/1 7/8 unary complete pathUnknown",
    "7 POST  200/0 1/1 7/8 unary complete pathUnknown",
  ]);
  // what joining the bytes around the hole would report: B's calls as A's
  assert(
    run(false).calls.some((l) => l.startsWith("5 POST /pkg.Svc/A")),
    "a shifted index misreads",
  );
});

Deno.test("h2: DATA through uncaptured bytes is counted, trailers in the tail are read", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  // a first call indexes the response fields: later trailers take a byte
  const warm = feed(conn, [
    full(
      "in",
      2,
      headers(1, ce.block(grpcRequest("/big.Blob/Get"))),
      data(1, msg(3), { end: true }),
    ),
    full("out", 2, headers(1, se.block(grpcResponse)), data(1, msg(1))),
    full("out", 2, headers(1, se.block(trailers(0)), { end: true })),
  ]);
  assertEquals(lines(warm), ["1 POST /big.Blob/Get 200/0 1/1 8/6 unary complete"]);
  const trailerFrame = headers(3, se.block(trailers(0)), { end: true });
  assert(trailerFrame.length <= TAIL, "the trailers fit in the captured tail");
  const resp = cat(headers(3, se.block(grpcResponse)), data(3, msg(5000)), trailerFrame);
  const calls = feed(conn, [
    full(
      "in",
      3,
      headers(3, ce.block(grpcRequest("/big.Blob/Get"))),
      data(3, msg(3), { end: true }),
    ),
    cut("out", 4, resp, 1024),
  ]);
  assertEquals(lines(calls), ["3 POST /big.Blob/Get 200/0 1/1 8/5005 unary complete"]);
  assertEquals([calls[0].truncated, calls[0].endNs], [false, 4n]);

  // a frame header in the uncaptured middle: framing is lost until a chunk starts with frames
  const lost = cat(data(5, msg(3000)), data(5, msg(2000)));
  const more = feed(conn, [
    full("in", 5, headers(5, ce.block(grpcRequest("/big.Blob/Put")))),
    cut("in", 6, lost, 1024),
    full("in", 7, data(5, msg(1), { end: true })),
    full("out", 8, headers(5, se.block([...grpcResponse, ...trailers(0)]), { end: true })),
  ]);
  // the second frame's 2005 bytes and its message went by unseen
  assertEquals(lines(more), ["5 POST /big.Blob/Put 200/0 1/0 3011/0 unary complete"]);
  assertEquals(more[0].truncated, true);
  // the request direction's HPACK table is desynced now: a path from the table is unknown
  const after = feed(conn, [
    full(
      "in",
      9,
      headers(7, ce.block(grpcRequest("/big.Blob/Get"))),
      data(7, msg(0), { end: true }),
    ),
    full("out", 10, headers(7, se.block([...grpcResponse, ...trailers(0)]), { end: true })),
  ]);
  assertEquals(lines(after), ["7 POST  200/0 1/0 5/0 unary complete pathUnknown"]);
});

Deno.test("h2: client side, the watched process sends the preface", () => {
  const ce = new Encoder(), se = new Encoder();
  for (const opts of [{ side: "client" as const }, {}]) {
    const conn = new H2Conn(opts);
    const calls = feed(conn, [
      full("out", 1, PREFACE, settings(), headers(1, ce.block(grpcRequest("/c.D/E")))),
      full("out", 1, data(1, msg(1), { end: true })),
      full("in", 2, settings(), settingsAck(), headers(1, se.block(grpcResponse))),
      full(
        "in",
        3,
        data(1, msg(2)),
        headers(1, se.block(trailers(14, "unavailable")), { end: true }),
      ),
    ]);
    assertEquals(lines(calls), ["1 POST /c.D/E 200/14 1/1 6/7 unary complete"]);
    assertEquals([calls[0].side, calls[0].grpcMessage], ["client", "unavailable"]);
    ce.table = [];
    se.table = [];
  }
});

Deno.test("h2: where each call lies in the byte stream, across the wrap of sequence numbers", () => {
  const ce = new Encoder(), se = new Encoder();
  // the request direction's byte 0 is sequence number out0, the response's in0 (u32, wrapping)
  const out0 = 0xffffffe0, in0 = 77;
  const at = (dir: Dir, ts: number, start: number, ...parts: Uint8Array[]): Chunk => {
    const c = full(dir, ts, ...parts);
    return { ...c, seq: ((dir === "out" ? out0 : in0) + start + c.len) >>> 0 };
  };
  const opening = cat(PREFACE, settings()), req = headers(1, ce.block(grpcRequest("/c.D/E")));
  const body = data(1, msg(1), { end: true });
  const head = cat(settings(), settingsAck(), headers(1, se.block(grpcResponse)));
  const end = cat(data(1, msg(2)), headers(1, se.block(trailers(0)), { end: true }));
  const conn = new H2Conn();
  const calls = feed(conn, [
    at("out", 1, 0, opening, req),
    at("out", 1, opening.length + req.length, body),
    at("in", 2, 0, head),
    at("in", 3, head.length, end),
  ]);
  assertEquals(lines(calls), ["1 POST /c.D/E 200/0 1/1 6/7 unary complete"]);
  assertEquals(
    [calls[0].reqSeq, calls[0].respEndSeq],
    [(out0 + opening.length) >>> 0, (in0 + head.length + end.length) >>> 0],
  );
  // without sequence numbers (a hole's chunk), not known
  const plain = new H2Conn();
  const unplaced = feed(plain, [
    full("out", 1, opening, headers(1, ce.block(grpcRequest("/c.D/E"))), body),
    full("in", 2, head, end),
  ]);
  assertEquals([unplaced[0].reqSeq, unplaced[0].respEndSeq], [-1, -1]);
});

Deno.test("h2: a server end handing over keeps when its open calls began and reports nothing more", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  const done = feed(conn, [
    full("in", 1, PREFACE, settings(), headers(1, ce.block(grpcRequest("/c.D/E")))),
    full("in", 2, data(1, msg(1), { end: true }), headers(3, ce.block(grpcRequest("/c.D/F")))),
    full(
      "out",
      3,
      settings(),
      headers(1, se.block(grpcResponse)),
      data(1, msg(1)),
      headers(1, se.block(trailers(0)), { end: true }),
    ),
  ]);
  assertEquals(lines(done), ["1 POST /c.D/E 200/0 1/1 6/6 unary complete"]);
  const { open, maxStream } = conn.handOver();
  assertEquals([[...open], maxStream], [[[3, 2n]], 3]);
  assertEquals(conn.push(full("in", 4, data(3, msg(1), { end: true }))), []);
  assertEquals(conn.close(5n), []);
});

Deno.test("h2: the streams a client skipped, above a server end's own, by range", () => {
  const ce = new Encoder();
  const conn = new H2Conn({ side: "client" });
  const req = (id: number) => headers(id, ce.block(grpcRequest("/c.D/E")), { end: true });
  feed(conn, [full("out", 1, PREFACE, settings(), req(1), req(7), req(9), req(15))]);
  assertEquals(conn.takeUnseen(), 4); // 3, 5, 11, 13; nothing between 7 and 9
  assertEquals([conn.skippedAbove(0, 4), conn.skipRanges], [3, 2]); // 5, 11, 13
  assertEquals(conn.skippedAbove(0, 13), 0);
  feed(conn, [full("out", 2, req(19))]);
  assertEquals([conn.skippedAbove(2, 0), conn.skipRanges], [1, 3]); // 17: only the new range
});

Deno.test("h2: plain HTTP/2 requests", () => {
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn();
  const calls = feed(conn, [
    full("in", 1, PREFACE, settings()),
    full(
      "in",
      2,
      headers(
        1,
        ce.block([[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [
          ":authority",
          "example.com",
        ]]),
        { end: true },
      ),
    ),
    full("out", 3, headers(1, se.block([[":status", "103"], ["link", "</s.css>"]]))),
    full(
      "out",
      4,
      headers(1, se.block([[":status", "404"], ["content-type", "Text/HTML; charset=utf-8"]])),
      data(1, bytes("nope"), { end: true }),
    ),
  ]);
  assertEquals(lines(calls), ["1 GET /index.html 404/-1 0/0 0/4 unary complete"]);
  assertEquals([calls[0].grpc, calls[0].service, calls[0].rpcMethod, calls[0].scheme], [
    false,
    "",
    "",
    "https",
  ]);
});

Deno.test("h2: a proxy's repeated literal blocks, remembered, keep the table exact", () => {
  // like nginx upstream: every request the same literals with incremental indexing (a memo hit
  // from the third on), now and then a block that refers to the entries they inserted
  const ce = new Encoder(), se = new Encoder();
  const conn = new H2Conn({ side: "server" });
  const chunks = [...opening()];
  const want: string[] = [];
  for (let i = 0; i < 60; i++) {
    const id = 2 * i + 1, path = `/pkg.Svc/M${i % 3}`;
    const reuse = i % 7 === 6;
    const extra: Field[] = i % 5 === 4 ? [["grpc-timeout", `${i}m`]] : [];
    chunks.push(
      full(
        "in",
        10 + 3 * i,
        headers(id, ce.block(grpcRequest(path, extra), { reuse })),
        data(id, msg(3), { end: true }),
      ),
      full("out", 11 + 3 * i, headers(id, se.block(grpcResponse)), data(id, msg(4))),
      full("out", 12 + 3 * i, headers(id, se.block(trailers(i % 4)), { end: true })),
    );
    want.push(`${id} POST ${path} 200/${i % 4} 1/1 8/9 unary complete`);
  }
  const calls = feed(conn, chunks);
  assertEquals(lines(calls), want);
  assertEquals(
    calls.map((c) => [c.authority, c.userAgent, c.timeoutSeconds]),
    Array.from({ length: 60 }, (_, i) => [
      "localhost:50051",
      "grpc-go/1.62.0",
      i % 5 === 4 ? i / 1000 : -1,
    ]),
  );
});

Deno.test("h2: joined midway, calls sync at frame boundaries", () => {
  const ce = new Encoder(), se = new Encoder();
  ce.block(grpcRequest("/m.Mid/Seen")); // earlier traffic fills the tables
  se.block(grpcResponse);
  const conn = new H2Conn({ side: "server" });
  const calls = feed(conn, [
    full("in", 1, data(7, msg(100)).subarray(20)), // the middle of a frame: not a start
    full("in", 2, headers(9, ce.block(grpcRequest("/m.Mid/Seen"))), data(9, msg(1), { end: true })),
    full(
      "in",
      3,
      headers(11, ce.block(grpcRequest("/m.Mid/New"))),
      data(11, msg(1), { end: true }),
    ),
    full("out", 4, headers(9, se.block(grpcResponse)), data(9, msg(1))),
    full("out", 5, headers(9, se.block(trailers(0)), { end: true })),
    full("out", 6, headers(11, se.block([...grpcResponse, ...trailers(3)]), { end: true })),
  ]);
  assertEquals(lines(calls), [
    "9 POST  200/0 1/1 6/6 unary complete pathUnknown",
    "11 POST /m.Mid/New 200/3 1/0 6/0 unary complete",
  ]);
  assert(calls.every((c) => c.grpc));
  assert(!conn.notH2);
});

Deno.test("h2: joined midway in a long call read in pieces: given up unless the kernel took it for HTTP/2", () => {
  const ce = new Encoder(), se = new Encoder();
  ce.block(grpcRequest("/m.Long/Call")); // earlier traffic fills the tables
  se.block(grpcResponse);
  // a 64 KiB message read in 1000-byte pieces that split its frames, then a call read whole
  const long = cat(...Array.from({ length: 4 }, () => data(7, msg(16000))));
  const chunks = [
    ...split("in", long.subarray(30), [1000], 1),
    full(
      "in",
      2,
      headers(9, ce.block(grpcRequest("/m.Long/Call"))),
      data(9, msg(1), { end: true }),
    ),
    full("out", 3, headers(9, se.block(grpcResponse)), data(9, msg(1))),
    full("out", 4, headers(9, se.block(trailers(0)), { end: true })),
  ];
  const guessing = new H2Conn({ side: "server" });
  assertEquals(feed(guessing, chunks), []);
  assert(guessing.notH2, "many chunks without a frame: not taken for HTTP/2");
  const known = new H2Conn({ side: "server", known: true });
  assertEquals(lines(feed(known, chunks)), ["9 POST  200/0 1/1 6/6 unary complete pathUnknown"]);
  assert(!known.notH2);
});

Deno.test("h2: bytes that are not HTTP/2", () => {
  const http1 = new H2Conn();
  assertEquals(http1.push(full("in", 1, bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))), []);
  assert(http1.notH2);
  const tls = new H2Conn();
  tls.push(full("out", 1, hex("16 03 01 02 00 01 00 01 fc 03 03")));
  assert(tls.notH2);
  const badPreface = new H2Conn();
  badPreface.push(full("in", 1, bytes("PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")));
  assert(badPreface.notH2);
  const noise = new H2Conn();
  let n = 0;
  for (let i = 0; i < 40 && !noise.notH2; i++, n++) {
    const b = Uint8Array.from({ length: 200 }, (_, j) => (i * 131 + j * 17 + 0x80) & 0xff);
    assertEquals(noise.push(full(i % 2 ? "in" : "out", i, b)), []);
  }
  assert(noise.notH2 && n <= 17, `gave up after ${n} chunks`);
  assertEquals(noise.bufferedBytes, 0);
  assertEquals(noise.close(99n), []);
});

Deno.test("h2: open streams are bounded", () => {
  const ce = new Encoder();
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  const evicted: H2Call[] = [];
  for (let id = 1; id <= 2 * 1030; id += 2) {
    evicted.push(...conn.push(full("in", id, headers(id, ce.block(grpcRequest("/s.S/M"))))));
  }
  assertEquals(evicted.map((c) => c.streamId), [1, 3, 5, 7, 9, 11]);
  assert(evicted.every((c) => c.outcome === "closed" && c.truncated));
  assertEquals(conn.close(1n << 40n).length, 1024);
});

// ---------------------------------------------------------------------------------------------
// Randomized conversations

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const between = (r: Rand, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const randText = (r: Rand, n: number) =>
  Array.from({ length: n }, () => String.fromCharCode(between(r, 0x21, 0x7e))).join("");

/** The chunks of these conversations carry no sequence numbers: calls are not placed. */
type Expected = Omit<H2Call, "startNs" | "endNs" | "reqSeq" | "respEndSeq">;

interface Conversation {
  req: Uint8Array;
  resp: Uint8Array;
  calls: Expected[];
}

const PATHS = [
  "/helloworld.Greeter/SayHello",
  "/pkg.v1.Store/Get",
  "/pkg.v1.Store/Put",
  "/grpc.health.v1.Health/Check",
  "/a.B/C",
];

/** A random but valid conversation: what a client and server would write, and its calls. */
function conversation(r: Rand, side: "server" | "client"): Conversation {
  const ce = new Encoder(), se = new Encoder();
  const tableA = pick(r, [4096, 8192, 1024, 256]); // the client's decoder, for the server
  const tableB = pick(r, [4096, 2048, 512]); // the server's decoder, for the client
  const req: Uint8Array[] = [PREFACE, settings([1, tableA], [4, 65535])];
  const resp: Uint8Array[] = [settings([1, tableB], [3, 100]), settingsAck()];
  if (tableA !== 4096) se.resize(tableA);
  if (tableB !== 4096) ce.resize(tableB);
  const blockOpts = (): BlockOpts => ({
    mode: pick(r, ["index", "index", "index", "plain", "never"] as const),
    huff: r() < 0.6,
    reuse: r() < 0.9,
  });
  const headerFrames = (enc: Encoder, id: number, fields: Field[], end: boolean) => () => {
    const block = enc.block(fields, blockOpts());
    const splits = r() < 0.3 ? [between(r, 1, 8), between(r, 1, 20)] : [];
    return headers(id, block, {
      end,
      split: splits,
      pad: r() < 0.2 ? between(r, 0, 12) : undefined,
      priority: r() < 0.2,
    });
  };
  /** body as DATA frames of random sizes, the last one ending the stream */
  const dataFrames = (id: number, body: Uint8Array, end: boolean) => {
    const out: (() => Uint8Array)[] = [];
    let p = 0;
    do {
      const n = Math.min(body.length - p, between(r, 1, 400));
      const last = p + n === body.length;
      const piece = body.subarray(p, p + n);
      const pad = r() < 0.15 ? between(r, 0, 9) : undefined;
      out.push(() => data(id, piece, { end: end && last, pad }));
      p += n;
    } while (p < body.length);
    return out;
  };
  const n = between(r, 1, 10);
  const reqFrames: (() => Uint8Array)[][] = [], respFrames: (() => Uint8Array)[][] = [];
  const calls: Expected[] = [];
  for (let i = 0; i < n; i++) {
    const id = 1 + 2 * i;
    const grpc = r() < 0.8;
    const reset = r() < 0.1;
    const rq: (() => Uint8Array)[] = [], rs: (() => Uint8Array)[] = [];
    let e: Expected;
    if (grpc) {
      const path = r() < 0.8 ? pick(r, PATHS) : `/x${i}.Svc/M${between(r, 0, 3)}`;
      const kind = pick(r, ["unary", "client_stream", "server_stream", "bidi"] as const);
      const nReq = kind === "client_stream" || kind === "bidi" ? between(r, 2, 4) : 1;
      let nResp = kind === "server_stream" || kind === "bidi" ? between(r, 2, 4) : 1;
      if (kind === "unary" && r() < 0.15) nResp = 0; // trailers-only
      const reqBody = cat(...Array.from({ length: nReq }, () => msg(between(r, 0, 300), 0x5a)));
      const respBody = cat(...Array.from({ length: nResp }, () => msg(between(r, 0, 600), 0x3c)));
      const authority = pick(r, ["svc:50051", "10.0.0.7:8080"]);
      const ct = pick(r, ["application/grpc", "application/grpc+proto"]);
      const extra: Field[] = r() < 0.5 ? [["x-request-id", randText(r, between(r, 8, 40))]] : [];
      const code = pick(r, [0, 0, 0, 5, 14]);
      const message = code && r() < 0.7 ? randText(r, between(r, 1, 30)) : "";
      rq.push(headerFrames(ce, id, [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", path],
        [":authority", authority],
        ["content-type", ct],
        ["te", "trailers"],
        ...extra,
      ], false));
      rq.push(...dataFrames(id, reqBody, !reset));
      if (reset) {
        rq.push(() => rst(id, 8));
      } else if (nResp === 0) {
        rs.push(headerFrames(se, id, [...grpcResponse, ...trailers(code, message)], true));
      } else {
        rs.push(headerFrames(se, id, grpcResponse, false));
        rs.push(...dataFrames(id, respBody, false));
        rs.push(headerFrames(se, id, trailers(code, message), true));
      }
      const k = nReq > 1
        ? (nResp > 1 ? "bidi" : "client_stream")
        : (nResp > 1 ? "server_stream" : "unary");
      const slash = path.lastIndexOf("/");
      e = {
        side,
        streamId: id,
        grpc: true,
        method: "POST",
        path,
        service: path.slice(1, slash),
        rpcMethod: path.slice(slash + 1),
        status: reset ? 0 : 200,
        grpcStatus: reset ? 1 : code, // reset with CANCEL
        requestMessages: nReq,
        responseMessages: reset ? 0 : nResp,
        requestBytes: reqBody.length,
        responseBytes: reset ? 0 : respBody.length,
        kind: reset ? (nReq > 1 ? "client_stream" : "unary") : k,
        outcome: reset ? "reset" : "complete",
        pathUnknown: false,
        grpcMessage: reset ? "" : message,
        scheme: "http",
        authority,
        contentType: ct,
        userAgent: "",
        timeoutSeconds: -1,
        traceparent: "",
        errorCode: reset ? 8 : -1,
        truncated: false,
      };
    } else {
      const method = pick(r, ["GET", "POST", "DELETE"]);
      const path = `/api/v1/items?id=${between(r, 0, 5)}`;
      const status = pick(r, [200, 204, 404, 503]);
      const reqBody = method === "POST" ? new Uint8Array(between(r, 1, 700)).fill(0x7b) : null;
      const respBody = new Uint8Array(between(r, 0, 900)).fill(0x22);
      rq.push(headerFrames(ce, id, [
        [":method", method],
        [":scheme", "https"],
        [":path", path],
        [":authority", "api.example"],
        ...(reqBody ? [["content-type", "application/json"] as Field] : []),
      ], !reqBody));
      if (reqBody) rq.push(...dataFrames(id, reqBody, !reset));
      if (reset) rq.push(() => rst(id, 8));
      else {
        rs.push(
          headerFrames(
            se,
            id,
            [[":status", String(status)], ["content-type", "application/json"]],
            respBody.length === 0,
          ),
        );
        if (respBody.length > 0) rs.push(...dataFrames(id, respBody, true));
      }
      e = {
        side,
        streamId: id,
        grpc: false,
        method,
        path,
        service: "",
        rpcMethod: "",
        status: reset ? 0 : status,
        grpcStatus: -1,
        requestMessages: 0,
        responseMessages: 0,
        requestBytes: reqBody?.length ?? 0,
        responseBytes: reset ? 0 : respBody.length,
        kind: "unary",
        outcome: reset ? "reset" : "complete",
        pathUnknown: false,
        grpcMessage: "",
        scheme: "https",
        authority: "api.example",
        contentType: reqBody ? "application/json" : "",
        userAgent: "",
        timeoutSeconds: -1,
        traceparent: "",
        errorCode: reset ? 8 : -1,
        truncated: false,
      };
    }
    reqFrames.push(rq);
    respFrames.push(rs);
    calls.push(e);
  }
  // requests open in stream order, their later frames interleave; responses interleave freely
  let opened = 0;
  for (;;) {
    const open = reqFrames.slice(0, opened).map((q, i) => q.length ? i : -1).filter((i) => i >= 0);
    const i = opened < n && (open.length === 0 || r() < 0.4) ? opened++ : pick(r, open);
    if (i === undefined) break;
    req.push(reqFrames[i].shift()!());
    if (r() < 0.05) req.push(ping());
  }
  for (;;) {
    const open = respFrames.map((q, i) => q.length ? i : -1).filter((i) => i >= 0);
    if (open.length === 0) break;
    resp.push(respFrames[pick(r, open)].shift()!());
    if (r() < 0.05) resp.push(windowUpdate(0));
  }
  return { req: cat(...req), resp: cat(...resp), calls };
}

function randomSizes(r: Rand, max: number): number[] {
  return Array.from({ length: 16 }, () => between(r, 1, max));
}

function run(r: Rand, conv: Conversation, side: "server" | "client", max: number, cap: number) {
  const [reqDir, respDir]: Dir[] = side === "server" ? ["in", "out"] : ["out", "in"];
  const conn = new H2Conn(r() < 0.5 ? { side } : {});
  const chunks = [
    ...split(reqDir, conv.req, randomSizes(r, max), 1, cap),
    ...split(respDir, conv.resp, randomSizes(r, max), 100000, cap),
  ];
  let maxBuffered = 0;
  const calls: H2Call[] = [];
  for (const c of chunks) {
    calls.push(...conn.push(c));
    maxBuffered = Math.max(maxBuffered, conn.bufferedBytes);
  }
  calls.push(...conn.close(1n << 50n));
  return { conn, calls, maxBuffered };
}

/** Header blocks of at most 64 KiB per direction, HPACK tables of at most 64 KiB each. */
const BUFFER_BOUND = 4 * 65536;

Deno.test("h2: random conversations, fully captured, in random pieces", () => {
  const r = mulberry32(7);
  for (let it = 0; it < 400; it++) {
    const side = r() < 0.7 ? "server" : "client";
    const conv = conversation(r, side);
    const { conn, calls } = run(r, conv, side, pick(r, [3, 40, 700, 5000]), Infinity);
    assert(!conn.notH2, `iteration ${it}`);
    assertEquals(
      calls.map((
        {
          startNs: _s,
          endNs: _e,
          requestSizes: _q,
          responseSizes: _p,
          reqSeq: _r,
          respEndSeq: _x,
          ...rest
        },
      ) => sortedKeys(rest)).sort((a, b) => (a.streamId as number) - (b.streamId as number)),
      conv.calls.map(sortedKeys),
      `iteration ${it}`,
    );
    assert(calls.every((c) => c.startNs <= c.endNs), `iteration ${it}`);
    // message sizes: one per message, together the DATA bytes less a 5-byte prefix each
    for (const c of calls.filter((c) => c.grpc)) {
      for (
        const [sizes, n, bytes] of [
          [c.requestSizes, c.requestMessages, c.requestBytes],
          [c.responseSizes, c.responseMessages, c.responseBytes],
        ] as const
      ) {
        assertEquals([sizes?.count ?? 0, sizes?.sum ?? 0], [n, bytes - 5 * n], `iteration ${it}`);
      }
    }
  }
});

Deno.test("h2: random conversations with uncaptured bytes never report wrong values", () => {
  const r = mulberry32(11);
  let exact = 0, unknown = 0;
  for (let it = 0; it < 400; it++) {
    const side = r() < 0.5 ? "server" : "client";
    const conv = conversation(r, side);
    const cap = pick(r, [1024, 1024, 64, 300]);
    const { calls, maxBuffered } = run(r, conv, side, pick(r, [200, 1500, 4000]), cap);
    assert(maxBuffered <= BUFFER_BOUND);
    const byId = new Map(conv.calls.map((c) => [c.streamId, c]));
    for (const c of calls) {
      const e = byId.get(c.streamId);
      const what = `iteration ${it}: ${line(c)}`;
      assert(e !== undefined, what);
      if (c.pathUnknown) unknown++;
      else if (!c.grpc) assertEquals(c.path, e.path, what);
      else assertEquals([c.path, c.service, c.rpcMethod], [e.path, e.service, e.rpcMethod], what);
      if (c.method !== "") assertEquals(c.method, e.method, what);
      if (c.status !== 0) assertEquals(c.status, e.status, what);
      if (c.grpcStatus >= 0) assertEquals(c.grpcStatus, e.grpcStatus, what);
      if (c.grpc) assert(e.grpc, what);
      if (c.authority !== "") assertEquals(c.authority, e.authority, what);
      if (c.contentType !== "") assertEquals(c.contentType, e.contentType, what);
      // uncaptured pad lengths leave padding in the counts of truncated calls
      const slack = c.truncated ? 255 * 64 : 0;
      assert(c.requestBytes <= e.requestBytes + slack, what);
      assert(c.responseBytes <= e.responseBytes + slack, what);
      assert(c.requestMessages <= e.requestMessages, what);
      assert(c.responseMessages <= e.responseMessages, what);
      if (!c.truncated && c.outcome === "complete" && !c.pathUnknown) {
        exact++;
        assertEquals(
          [c.requestBytes, c.responseBytes, c.requestMessages, c.responseMessages, c.kind],
          [e.requestBytes, e.responseBytes, e.requestMessages, e.responseMessages, e.kind],
          what,
        );
      }
    }
  }
  assert(exact > 100 && unknown > 10, `exact ${exact}, unknown ${unknown}`);
});

Deno.test("h2: mutated, truncated and random streams are survived", () => {
  const r = mulberry32(23);
  for (let it = 0; it < 400; it++) {
    const side = r() < 0.5 ? "server" : "client";
    const conv = conversation(r, side);
    const mutate = (b: Uint8Array): Uint8Array => {
      const m = b.slice(0, r() < 0.3 ? between(r, 0, b.length) : b.length);
      const flips = between(r, 0, 6);
      for (let i = 0; i < flips && m.length > 0; i++) {
        m[between(r, 0, m.length - 1)] = between(r, 0, 255);
      }
      if (r() < 0.2) {
        const at = between(r, 0, m.length);
        return cat(
          m.subarray(0, at),
          Uint8Array.from({ length: between(r, 1, 50) }, () => between(r, 0, 255)),
          m.subarray(at),
        );
      }
      return m;
    };
    const garbage = r() < 0.1;
    const mutated: Conversation = {
      req: garbage ? Uint8Array.from({ length: 3000 }, () => between(r, 0, 255)) : mutate(conv.req),
      resp: mutate(conv.resp),
      calls: conv.calls,
    };
    const cap = pick(r, [Infinity, 1024, 100]);
    const { conn, calls, maxBuffered } = run(r, mutated, side, pick(r, [7, 300, 3000]), cap);
    assert(maxBuffered <= BUFFER_BOUND, `iteration ${it}`);
    assert(calls.every((c) => c.requestBytes >= 0 && c.responseBytes >= 0), `iteration ${it}`);
    assertEquals(conn.bufferedBytes, 0); // closed
  }
});

Deno.test("h2: a connection first seen in a later piece of a long call, or in a read the kernel took for HTTP/2, goes to the HTTP/2 parser, not HTTP/1's", () => {
  // mid-frame bytes: no frame chain starts here
  const head = new Uint8Array([0x12, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x99, 0x42]);
  const c = { dir: "out" as const, ts: 1n, len: head.length, head, tail: new Uint8Array(0) };
  assert(parserFor({ ...c, cont: true }, 0).h2 !== undefined, "a piece: HTTP/2");
  assert(parserFor(c, 0).h1 !== undefined, "the same bytes as a call's start: not HTTP/2");
  // a read that ends inside a frame, on a connection the kernel took for HTTP/2
  const read = cat(
    windowUpdate(0),
    ping(),
    frame(F_DATA, 0, 1, new Uint8Array(100)).subarray(0, 40),
  );
  const r = { dir: "in" as const, ts: 1n, len: read.length, head: read, tail: new Uint8Array(0) };
  assert(parserFor(r, 0).h1 !== undefined, "by its bytes alone: not HTTP/2");
  assert(parserFor(r, 0, true).h2 !== undefined, "by the kernel's verdict: HTTP/2");
});

Deno.test("h2: control frames the kernel left out are skipped between frames, a gap inside one", () => {
  const { request, response } = unaryFrames();
  const pong = cat(ping(), windowUpdate(0));
  // between frames: the calls decode as if the control frames had been read
  const conn = new H2Conn({ side: "server" });
  feed(conn, opening());
  const calls = [
    ...feed(conn, [full("in", 10, request(1, "/pkg.Svc/A")), full("out", 11, response(1))]),
    ...conn.skipped("in", pong.length, 20n),
    ...conn.skipped("out", ping().length, 20n),
    ...feed(conn, [full("in", 30, request(3, "/pkg.Svc/B")), full("out", 31, response(3))]),
  ];
  assertEquals(lines(calls), [
    "1 POST /pkg.Svc/A 200/0 1/1 7/8 unary complete",
    "3 POST /pkg.Svc/B 200/0 1/1 7/8 unary complete",
  ]);
  assertEquals(conn.takeUnseen(), 0);
  // inside a frame (its header read, its payload not): the skipped bytes are a gap, framing is
  // lost there and nothing after it is decoded from a wrong offset
  const cut = new H2Conn({ side: "server" });
  feed(cut, opening());
  const r5 = request(5, "/pkg.Svc/C");
  const part = feed(cut, [full("in", 40, r5.subarray(0, 12))]);
  assertEquals(part, []);
  assertEquals(cut.skipped("in", 17, 41n), []);
  const after = lines(feed(cut, [
    full("out", 42, response(5)),
    full("in", 50, request(7, "/pkg.Svc/D")),
    full("out", 51, response(7)),
  ]));
  // read on as the rest of call 5's HEADERS, call 7's bytes would be lost in it
  assertEquals(after.length, 1);
  assert(after[0].startsWith("7 POST /pkg.Svc/D 200/"), after[0]);
});
