// The generated decoders in bpf/gen/ must match the BTF of the built objects, and the layouts
// they encode must agree with sources that do not go through BTF: gcc's view of the same C
// headers, and the ELF symbol table for .rodata. Needs `./scripts/build-bpf` to have run.

import { Btf, generateSource, GenError } from "../scripts/gen_decoders.ts";
import * as http from "../bpf/gen/http.ts";
import * as sched from "../bpf/gen/sched.ts";
import * as socket from "../bpf/gen/socket.ts";
import * as loadgen from "../bpf/gen/loadgen.ts";

// A tiny local assert (node:assert needs @types/node, which this repository does not install).
function fail(msg: string): never {
  throw new Error(msg);
}

function show(x: unknown): string {
  return Deno.inspect(x, { depth: 6, iterableLimit: 64 });
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (ArrayBuffer.isView(a)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(
      (b as ArrayBufferView).buffer,
      (b as ArrayBufferView).byteOffset,
      (b as ArrayBufferView).byteLength,
    );
    return x.length === y.length && x.every((v, i) => v === y[i]);
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k, i) =>
    k === kb[i] && deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

type ErrorClass = new (...a: never[]) => Error;

interface Assert {
  ok(cond: unknown, msg?: string): asserts cond;
  equal(actual: unknown, expected: unknown, msg?: string): void;
  deepEqual(actual: unknown, expected: unknown, msg?: string): void;
  match(s: string, re: RegExp, msg?: string): void;
  doesNotMatch(s: string, re: RegExp): void;
  throws(f: () => unknown, check: ErrorClass | ((e: unknown) => boolean)): void;
  doesNotThrow(f: () => unknown): void;
  fail(msg: string): never;
}

const assert: Assert = {
  ok(cond: unknown, msg = "assertion failed"): asserts cond {
    if (!cond) fail(msg);
  },
  equal(actual: unknown, expected: unknown, msg?: string): void {
    if (!Object.is(actual, expected)) {
      fail(`${msg ? msg + ": " : ""}expected ${show(expected)}, got ${show(actual)}`);
    }
  },
  deepEqual(actual: unknown, expected: unknown, msg?: string): void {
    if (!deepEqual(actual, expected)) {
      fail(`${msg ? msg + ": " : ""}expected\n${show(expected)}\ngot\n${show(actual)}`);
    }
  },
  match(s: string, re: RegExp, msg?: string): void {
    if (!re.test(s)) fail(`${msg ? msg + ": " : ""}${show(s)} does not match ${re}`);
  },
  doesNotMatch(s: string, re: RegExp): void {
    if (re.test(s)) fail(`${show(s)} matches ${re}`);
  },
  throws(f: () => unknown, check: ErrorClass | ((e: unknown) => boolean)): void {
    try {
      f();
    } catch (e) {
      const ok = check.prototype instanceof Error || check === Error
        ? e instanceof (check as ErrorClass)
        : (check as (e: unknown) => boolean)(e);
      if (!ok) fail(`unexpected error: ${show(e)}`);
      return;
    }
    fail("expected an exception");
  },
  doesNotThrow(f: () => unknown): void {
    f();
  },
  fail,
};

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const GEN = `${ROOT}/scripts/gen_decoders.ts`;
const OBJECTS = [
  `${ROOT}/bpf/.output/socket.bpf.o`,
  `${ROOT}/bpf/.output/loadgen.bpf.o`,
  `${ROOT}/bpf/.output/http.bpf.o`,
  `${ROOT}/bpf/.output/sched.bpf.o`,
];
const MODULES: Record<string, Record<string, unknown>> = { socket, loadgen, http, sched };

async function run(cmd: string, args: string[], cwd = ROOT) {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function requireObjects(): Promise<void> {
  for (const o of OBJECTS) {
    try {
      await Deno.stat(o);
    } catch {
      throw new Error(`${o} is missing: run ./scripts/build-bpf before the tests`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// (a) committed decoders == fresh generation

Deno.test("bpf/gen/*.ts equal a fresh generation from bpf/.output/*.bpf.o", async () => {
  await requireObjects();
  const r = await run(Deno.execPath(), ["run", "--allow-all", GEN, "--check"]);
  assert.equal(r.code, 0, `gen_decoders --check failed:\n${r.stderr}${r.stdout}`);
});

Deno.test("gen_decoders --check reports each differing or missing file on one line", async () => {
  await requireObjects();
  const dir = await Deno.makeTempDir({ prefix: "kupod-gen-" });
  try {
    const gen = (...args: string[]) =>
      run(Deno.execPath(), ["run", "--allow-all", GEN, "--out-dir", dir, ...args, ...OBJECTS]);
    assert.equal((await gen()).code, 0);
    for (const name of ["socket", "loadgen"]) {
      assert.equal(
        await Deno.readTextFile(`${dir}/${name}.ts`),
        await Deno.readTextFile(`${ROOT}/bpf/gen/${name}.ts`),
      );
    }
    assert.equal((await gen("--check")).code, 0);

    const path = `${dir}/socket.ts`;
    await Deno.writeTextFile(path, (await Deno.readTextFile(path)).replace("104", "105"));
    await Deno.remove(`${dir}/loadgen.ts`);
    const r = await gen("--check");
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 2, r.stderr);
    assert.match(lines[0], /socket\.ts: differs from the BTF of .*socket\.bpf\.o/);
    assert.match(lines[1], /loadgen\.ts: missing/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generated modules pass deno fmt --check", async () => {
  const r = await run(Deno.execPath(), ["fmt", "--check", "bpf/gen/"]);
  assert.equal(r.code, 0, r.stderr);
});

// ---------------------------------------------------------------------------------------------
// (b) layouts agree with gcc and with the ELF symbol table

interface Layout {
  [field: string]: { offset: number; size: number };
}

interface EventLayout {
  module: string;
  struct: string;
  size: number;
  layout: Layout;
}

/** Every `<STRUCT>_LAYOUT` export of the generated modules, with its `<STRUCT>_SIZE`. */
function eventLayouts(): EventLayout[] {
  const out: EventLayout[] = [];
  for (const [module, mod] of Object.entries(MODULES)) {
    for (const [key, value] of Object.entries(mod)) {
      const m = /^(\w+_(?:EVENT|STATS|KEY))_LAYOUT$/.exec(key);
      if (!m) continue;
      out.push({
        module,
        struct: m[1].toLowerCase(),
        size: mod[`${m[1]}_SIZE`] as number,
        layout: value as Layout,
      });
    }
  }
  return out;
}

/** Member names of `struct name` in a C header, in declaration order (plain members only). */
function headerFields(header: string, name: string): string[] {
  const src = header.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const body = new RegExp(`struct\\s+${name}\\s*\\{([^}]*)\\}`).exec(src);
  assert.ok(body, `struct ${name} not found in header`);
  const fields: string[] = [];
  for (const decl of body[1].split(";").map((d) => d.trim()).filter((d) => d !== "")) {
    const [first, ...rest] = decl.split(",");
    for (const d of [first, ...rest]) {
      const m = /(\w+)\s*(\[[^\]]*\]\s*)*$/.exec(d.trim());
      assert.ok(m, `cannot parse member declaration '${d}' of struct ${name}`);
      fields.push(m[1]);
    }
  }
  return fields;
}

Deno.test("event layouts match gcc's sizeof/offsetof of the same headers", async () => {
  const events = eventLayouts();
  assert.deepEqual(events.map((e) => e.struct).sort(), [
    "conn_stats",
    "http1_event",
    "http1_handoff_event",
    "http2_join_event",
    "http_event",
    "http_stamp_event",
    "load_event",
    "oom_event",
    "sched_stats",
    "sidecar_stats",
    "sock_event",
    "stats_key",
  ]);

  const dir = await Deno.makeTempDir({ prefix: "kupod-layout-" });
  try {
    let c = "#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n";
    for (const mod of new Set(events.map((e) => e.module))) {
      c += `#include "${ROOT}/bpf/${mod}.h"\n`;
    }
    c += '#define F(s, f) printf(#s " " #f " %zu %zu\\n", offsetof(struct s, f), ' +
      "sizeof(((struct s *)0)->f));\n";
    c += "int main(void) {\n";
    for (const e of events) {
      const header = await Deno.readTextFile(`${ROOT}/bpf/${e.module}.h`);
      const fields = headerFields(header, e.struct);
      assert.deepEqual(Object.keys(e.layout), fields, `fields of ${e.struct} in ${e.module}.h`);
      c += `  printf("${e.struct} - 0 %zu\\n", sizeof(struct ${e.struct}));\n`;
      for (const f of fields) c += `  F(${e.struct}, ${f})\n`;
    }
    c += "  return 0;\n}\n";
    await Deno.writeTextFile(`${dir}/layout.c`, c);

    const cc = await run("gcc", [
      "-Wall",
      "-Werror",
      `-I${ROOT}/bpf/include`,
      "-o",
      `${dir}/layout`,
      `${dir}/layout.c`,
    ]);
    assert.equal(cc.code, 0, `gcc failed:\n${cc.stderr}`);
    const r = await run(`${dir}/layout`, []);
    assert.equal(r.code, 0, r.stderr);

    const gcc = new Map<string, { offset: number; size: number }>();
    for (const line of r.stdout.trim().split("\n")) {
      const [struct, field, offset, size] = line.split(" ");
      gcc.set(`${struct}.${field}`, { offset: Number(offset), size: Number(size) });
    }
    for (const e of events) {
      assert.equal(e.size, gcc.get(`${e.struct}.-`)!.size, `sizeof(struct ${e.struct})`);
      for (const [field, l] of Object.entries(e.layout)) {
        assert.deepEqual({ ...l }, gcc.get(`${e.struct}.${field}`), `${e.struct}.${field}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RODATA matches the .rodata symbols of the ELF symbol table", async () => {
  await requireObjects();
  for (const [name, mod] of Object.entries(MODULES)) {
    const obj = `${ROOT}/bpf/.output/${name}.bpf.o`;
    const sections = (await run("readelf", ["-SW", obj])).stdout;
    const sec = /\[\s*(\d+)\]\s+\.rodata\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)/.exec(
      sections,
    );
    assert.ok(sec, `${obj} has no .rodata section`);
    assert.equal(mod.RODATA_SIZE, parseInt(sec[2], 16), `${name} RODATA_SIZE`);

    const symbols: [string, { offset: number; size: number }][] = [];
    for (const line of (await run("readelf", ["-sW", obj])).stdout.split("\n")) {
      const f = line.trim().split(/\s+/);
      // Num: Value Size Type Bind Vis Ndx Name
      if (f.length === 8 && f[3] === "OBJECT" && f[6] === sec[1]) {
        symbols.push([f[7], { offset: parseInt(f[1], 16), size: Number(f[2]) }]);
      }
    }
    const expected = Object.fromEntries(symbols.sort((a, b) => a[1].offset - b[1].offset));
    assert.ok(Object.keys(expected).length > 0, `no .rodata symbols in ${obj}`);
    assert.deepEqual({ ...(mod.RODATA as Layout) }, expected, `${name} RODATA`);
  }
  assert.equal(socket.OBJECT_NAME, "socket");
  assert.equal(loadgen.OBJECT_NAME, "loadgen");
});

// ---------------------------------------------------------------------------------------------
// (c) decoding hand-built buffers (offsets written out from the headers, not from LAYOUT)

/** A buffer filled with 0xa5 garbage, viewed from a non-zero byteOffset. */
function garbageView(len: number, viewOffset: number): DataView {
  const buf = new ArrayBuffer(len + viewOffset);
  new Uint8Array(buf).fill(0xa5);
  return new DataView(buf, viewOffset, len);
}

Deno.test("decodeSockEvent decodes every field of a hand-built sock_event", () => {
  const base = 24; // event starts 24 bytes into a view that starts 8 bytes into its buffer
  const v = garbageView(base + 176 + 16, 8);
  const le = true;
  v.setBigUint64(base + 0, 0x0123456789abcdefn, le); // ts_ns
  v.setBigUint64(base + 8, 0xfedcba9876543210n, le); // cgroup_id (top bit set)
  v.setBigUint64(base + 16, 0xffff8881_2345_6780n, le); // sock_id: kernel address
  v.setBigUint64(base + 24, 1_000_000_001n, le); // start_ns
  v.setBigUint64(base + 32, 1_000_000_002n, le); // established_ns
  v.setBigUint64(base + 40, 1_000_000_003n, le); // closing_ns
  v.setBigUint64(base + 48, 0x1_0000_0001n, le); // bytes_sent (over 4 GiB)
  v.setBigUint64(base + 56, 4096n, le); // bytes_received
  v.setBigUint64(base + 64, 150_000n, le); // process_ns
  v.setBigUint64(base + 72, 20_000n, le); // to_service_ns
  v.setUint32(base + 80, 3, le); // kind = SOCK_EVENT_CLOSE
  v.setUint32(base + 84, 4242, le); // pid
  v.setUint32(base + 88, 4243, le); // tid
  v.setUint32(base + 92, 4026531840, le); // netns
  v.setUint32(base + 96, 0xffffffff, le); // container = (u32)-1
  v.setUint32(base + 100, 7, le); // peer_container
  v.setUint32(base + 104, 312, le); // srtt_us
  v.setUint32(base + 108, 2, le); // retransmits
  v.setUint32(base + 112, 5, le); // exchanges
  v.setUint16(base + 116, 10, le); // family = AF_INET6
  v.setUint16(base + 118, 54321, le); // sport
  v.setUint16(base + 120, 443, le); // dport
  v.setUint8(base + 122, 1); // direction = inbound
  v.setUint8(base + 123, 7); // state
  const saddr = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  const daddr = [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
  saddr.forEach((b, i) => v.setUint8(base + 124 + i, b));
  daddr.forEach((b, i) => v.setUint8(base + 140 + i, b));
  const comm = [..."curl"].map((ch) => ch.charCodeAt(0));
  for (let i = 0; i < 16; i++) v.setUint8(base + 156 + i, i < comm.length ? comm[i] : 0);
  v.setUint8(base + 156 + 10, 0x41); // garbage after the NUL must be ignored
  v.setUint8(base + 172, 2); // reset = received

  const e = socket.decodeSockEvent(v, base);
  assert.deepEqual(e, {
    ts_ns: 0x0123456789abcdefn,
    cgroup_id: 0xfedcba9876543210n,
    sock_id: 0xffff888123456780n,
    start_ns: 1_000_000_001n,
    established_ns: 1_000_000_002n,
    closing_ns: 1_000_000_003n,
    bytes_sent: 0x1_0000_0001n,
    bytes_received: 4096n,
    process_ns: 150_000n,
    to_service_ns: 20_000n,
    kind: 3,
    pid: 4242,
    tid: 4243,
    netns: 4026531840,
    container: 0xffffffff,
    peer_container: 7,
    srtt_us: 312,
    retransmits: 2,
    exchanges: 5,
    family: 10,
    sport: 54321,
    dport: 443,
    direction: 1,
    state: 7,
    saddr: new Uint8Array(saddr),
    daddr: new Uint8Array(daddr),
    comm: "curl",
    reset: 2,
  });
  assert.equal(typeof e.ts_ns, "bigint");

  // Byte arrays are copies: reusing the ring buffer slot does not change a decoded event.
  v.setUint8(base + 124, 0xff);
  assert.equal(e.saddr[0], 0x20);
  assert.equal(e.saddr.byteLength, 16);
  assert.ok(e.saddr.buffer !== v.buffer, "saddr must not alias the event buffer");

  // comm filling all 16 bytes (no NUL), and UTF-8.
  for (let i = 0; i < 16; i++) v.setUint8(base + 156 + i, 0x61 + i);
  assert.equal(socket.decodeSockEvent(v, base).comm, "abcdefghijklmnop");
  const utf8 = new TextEncoder().encode("zażółć");
  for (let i = 0; i < 16; i++) v.setUint8(base + 156 + i, i < utf8.length ? utf8[i] : 0);
  assert.equal(socket.decodeSockEvent(v, base).comm, "zażółć");
});

Deno.test("decodeLoadEvent decodes every field of a hand-built load_event", () => {
  const v = garbageView(56 * 2, 3);
  const le = true;
  const payload = Array.from({ length: 32 }, (_, i) => (i * 7 + 1) & 0xff);
  for (const [slot, seq] of [[0, 0n], [1, 0xffffffffffffffffn]] as const) {
    const b = slot * 56;
    v.setBigUint64(b + 0, seq, le); // seq
    v.setBigUint64(b + 8, 123456789012345678n, le); // ts_ns
    v.setUint32(b + 16, 7 + slot, le); // cpu
    v.setUint32(b + 20, 99, le); // pid
    payload.forEach((x, i) => v.setUint8(b + 24 + i, x ^ slot)); // payload
  }
  assert.deepEqual(loadgen.decodeLoadEvent(v, 0), {
    seq: 0n,
    ts_ns: 123456789012345678n,
    cpu: 7,
    pid: 99,
    payload: new Uint8Array(payload),
  });
  assert.deepEqual(loadgen.decodeLoadEvent(v, 56), {
    seq: 0xffffffffffffffffn,
    ts_ns: 123456789012345678n,
    cpu: 8,
    pid: 99,
    payload: new Uint8Array(payload.map((x) => x ^ 1)),
  });
});

Deno.test("decoded byte arrays stay intact across many events", () => {
  // Enough events to fill several of the slabs that byte-array copies are carved from.
  const count = 2000;
  const v = new DataView(new ArrayBuffer(56));
  const events: loadgen.LoadEvent[] = [];
  for (let n = 0; n < count; n++) {
    for (let i = 0; i < 32; i++) v.setUint8(24 + i, (n + i) & 0xff);
    v.setBigUint64(0, BigInt(n), true);
    events.push(loadgen.decodeLoadEvent(v, 0));
  }
  for (const [n, e] of events.entries()) {
    assert.equal(e.seq, BigInt(n));
    assert.equal(e.payload.length, 32);
    for (let i = 0; i < 32; i++) {
      if (e.payload[i] !== ((n + i) & 0xff)) assert.fail(`event ${n} payload[${i}] changed`);
    }
  }
});

Deno.test("decoders reject events that do not fit in the view", () => {
  const v = new DataView(new ArrayBuffer(176 + 10));
  assert.doesNotThrow(() => socket.decodeSockEvent(v, 10));
  assert.throws(() => socket.decodeSockEvent(v, 11), RangeError);
  assert.throws(() => loadgen.decodeLoadEvent(new DataView(new ArrayBuffer(55)), 0), RangeError);
});

// ---------------------------------------------------------------------------------------------
// Generator behaviour on BTF the current objects do not contain

const U32 = { id: 1, kind: "INT", name: "unsigned int", size: 4, bits_offset: 0, nr_bits: 32 };

Deno.test("gen_decoders refuses bitfields with a clear error", () => {
  const btf = new Btf([
    { ...U32, encoding: "(none)" },
    {
      id: 2,
      kind: "STRUCT",
      name: "bf_event",
      size: 4,
      members: [
        { name: "a", type_id: 1, bits_offset: 0, bitfield_size: 3 },
        { name: "b", type_id: 1, bits_offset: 3, bitfield_size: 29 },
      ],
    },
    { id: 3, kind: "VAR", name: "_bf_event", type_id: 2 },
  ]);
  assert.throws(
    () => generateSource("bf", btf),
    (e: unknown) =>
      e instanceof GenError && /bf_event\.a: bitfields are not supported/.test(e.message),
  );
});

Deno.test("gen_decoders only decodes *_event (*_stats, *_key) structs anchored by a global", () => {
  const btf = new Btf([
    { ...U32, encoding: "(none)" },
    {
      id: 2,
      kind: "STRUCT",
      name: "perf_event", // a kernel struct, only reachable through pointers
      size: 4,
      members: [{ name: "x", type_id: 1, bits_offset: 0 }],
    },
    {
      id: 3,
      kind: "STRUCT",
      name: "x_event",
      size: 4,
      members: [{ name: "x", type_id: 1, bits_offset: 0 }],
    },
    { id: 4, kind: "CONST", name: "(anon)", type_id: 3 },
    { id: 5, kind: "VAR", name: "_x_event", type_id: 4 },
  ]);
  const src = generateSource("x", btf);
  assert.match(src, /export function decodeXEvent\(/);
  assert.doesNotMatch(src, /PerfEvent/);
  assert.match(src, /export const RODATA = \{\} as const;/);
  assert.match(src, /export const RODATA_SIZE = 0;/);
});

Deno.test("byte arrays of every length class are copied exactly by the generated helpers", async () => {
  // Lengths that take each path of the generated copies: unrolled with single bytes only, with
  // 4-byte words and a tail, with words only (the longest unrolled); the slab loop with a tail;
  // an array too long for a slab, which gets its own buffer.
  const lens = { tiny: 3, odd: 7, unrolled: 64, looped: 103, own: 601 };
  const U8 = { id: 1, kind: "INT", name: "unsigned char", size: 1, bits_offset: 0, nr_bits: 8 };
  const types = [{ ...U8, encoding: "(none)" }];
  const members = [];
  let offset = 0;
  for (const [i, [name, n]] of Object.entries(lens).entries()) {
    types.push({ id: 2 + i, kind: "ARRAY", name: "(anon)", type_id: 1, nr_elems: n } as never);
    members.push({ name, type_id: 2 + i, bits_offset: offset * 8 });
    offset += n;
  }
  const size = offset;
  types.push({ id: 10, kind: "STRUCT", name: "blob_event", size, members } as never);
  types.push({ id: 11, kind: "VAR", name: "_blob_event", type_id: 10 } as never);
  const src = generateSource("blob", new Btf(types));

  for (const n of [3, 7, 64]) {
    const helper = new RegExp(`function bytes${n}\\(view: DataView, offset: number\\)[^]*?\\n}\\n`)
      .exec(src);
    assert.ok(helper, `no unrolled helper for ${n} bytes`);
    assert.doesNotMatch(helper[0], /\b(for|while)\b/);
  }
  assert.doesNotMatch(src, /function bytes(103|601)\(/);
  assert.match(src, /bytes\(view, offset \+ 74, 103\)/);
  assert.match(src, /bytes\(view, offset \+ 177, 601\)/);

  const url = "data:application/typescript;base64," +
    btoa(String.fromCharCode(...new TextEncoder().encode(src)));
  const mod = await import(url);
  const decode = mod.decodeBlobEvent as (v: DataView, o: number) => Record<string, Uint8Array>;
  assert.equal(mod.BLOB_EVENT_SIZE, size);

  // Events at odd offsets of a view at an odd offset of its buffer, bytes from a simple LCG.
  let seed = 12345;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  const count = 200; // several slabs' worth of copies
  const v = garbageView(3 + count * size, 5);
  const expected: Record<string, number[]>[] = [];
  for (let e = 0; e < count; e++) {
    const fields: Record<string, number[]> = {};
    let at = 3 + e * size;
    for (const [name, n] of Object.entries(lens)) {
      fields[name] = Array.from({ length: n }, next);
      fields[name].forEach((b, i) => v.setUint8(at + i, b));
      at += n;
    }
    expected.push(fields);
  }
  const decoded = expected.map((_, e) => decode(v, 3 + e * size));
  // Overwrite the source: decoded arrays are copies, and no copy overlaps another.
  new Uint8Array(v.buffer).fill(0x5a);
  for (const [e, fields] of expected.entries()) {
    for (const [name, bytes] of Object.entries(fields)) {
      const got = decoded[e][name];
      assert.ok(got instanceof Uint8Array, `event ${e} ${name} is not a Uint8Array`);
      assert.ok(got.buffer !== v.buffer, `event ${e} ${name} aliases the source buffer`);
      assert.deepEqual(got, new Uint8Array(bytes), `event ${e} ${name}`);
    }
  }
  assert.throws(() => decode(v, 3 + count * size - size + 1), RangeError);
});
