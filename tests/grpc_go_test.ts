/**
 * The grpc-go uprobes with real grpc-go code: a server and a client built here from
 * tests/fixtures/grpc_go with Debian's golang-go and golang-google-grpc-dev (GOPATH mode,
 * offline), run as processes of a test pod's containers. The client opens one channel and uses
 * it before the probe starts, so the probe never sees that connection's HPACK state; the calls
 * after it starts must come with their exact methods from both processes, on the kernel socket
 * the socket probe knows the connection by. The layout read from DWARF is checked against
 * readelf's own reading of the same binary.
 */

import { readBtf } from "../scripts/gen_decoders.ts";
import { resolveVeth } from "../k8s/local.ts";
import { connId } from "../probes/conn_id.ts";
import type { GrpcEvent, GrpcStatsEvent, KupodEvent, TcpEvent } from "../probes/events.ts";
import { HttpProbe } from "../probes/http.ts";
import { ElfFile } from "../probes/go/elf.ts";
import { GoLayoutError, readGrpcGoLayout, runsGo } from "../probes/go/grpc_layout.ts";
import { CONF_FIELDS, type GrpcGoConf } from "../probes/go/grpc_layout.ts";
import {
  exactGrpcMethod,
  type GoStream,
  GRPC_GO_PROGRAMS,
  GrpcGoProbe,
} from "../probes/grpc_go.ts";
import { SocketProbe } from "../probes/socket.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { bpftoolJson, kupodPrograms } from "./helpers/bpf_state.ts";
import { createTestPod } from "./helpers/pod.ts";
import { inContainer, inContainerArgs } from "./helpers/pod_exec.ts";
import { Child, ROOT, watchGrpc } from "./helpers/process.ts";

const FIXTURES = `${ROOT}tests/fixtures/grpc_go`;
/** Calls before the probe starts, and after. */
const K = 4;
const N = 7;

interface Built extends AsyncDisposable {
  server: string;
  client: string;
}

/** Builds the fixtures into a temp dir (removed on dispose), with extra `go build` flags. */
async function buildFixtures(flags: string[] = []): Promise<Built> {
  const dir = await Deno.makeTempDir({ prefix: "kupod-grpc-go-" });
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.symlink(FIXTURES, `${dir}/src/kupodtest`);
    for (const name of ["server", "client"]) {
      const out = await new Deno.Command("go", {
        args: ["build", ...flags, "-o", `${dir}/${name}`, `kupodtest/${name}`],
        cwd: `${dir}/src/kupodtest`,
        env: { GOPATH: `${dir}:/usr/share/gocode`, GO111MODULE: "off", GOFLAGS: "" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) {
        throw new Error(`go build ${name}: ${new TextDecoder().decode(out.stderr)}`);
      }
    }
  } catch (e) {
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  return {
    server: `${dir}/server`,
    client: `${dir}/client`,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

interface Call {
  method: string;
  code: number;
  replies: number;
}

/** The socket's inode behind fd `fd` of process `pid`. */
function socketInode(pid: number, fd: number): number {
  const link = Deno.readLinkSync(`/proc/${pid}/fd/${fd}`);
  const m = /^socket:\[(\d+)\]$/.exec(link);
  assert(m, `fd ${fd} of ${pid} is ${link}, not a socket`);
  return Number(m[1]);
}

/** Local and remote ports of the IPv4 TCP socket with inode `ino`, as `pid`'s netns lists it. */
function tcpPorts(pid: number, ino: number): [number, number] {
  for (const line of Deno.readTextFileSync(`/proc/${pid}/net/tcp`).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[9]) === ino) {
      return [parseInt(f[1].split(":")[1], 16), parseInt(f[2].split(":")[1], 16)];
    }
  }
  throw new Error(`no TCP socket with inode ${ino} in ${pid}'s netns`);
}

/**
 * A channel used K times before the probe starts, then N times: the N calls, and only those,
 * with their exact methods from both processes, on the connection's socket.
 */
async function channelBeforeStart(tls: boolean, buildFlags: string[] = []): Promise<void> {
  await using bins = await buildFixtures(buildFlags);
  if (buildFlags.includes("-buildmode=pie")) {
    using elf = ElfFile.open(bins.server);
    assertEquals(elf.type, 3, "ET_DYN");
  }
  const mode = tls ? ["tls"] : [];
  {
    await using pod = await createTestPod();
    const target0 = await resolveVeth(pod.hostVeth);
    const sockEvents: KupodEvent[] = [];
    // the socket probe sees the connection open: the join key is checked against its sock_id
    await using _sockets = SocketProbe.start(target0, {
      event: (e) => sockEvents.push(e),
      flush: () => {},
    });
    await using server = inContainer(pod, pod.container("app"), [
      bins.server,
      "127.0.0.1:0",
      ...mode,
    ]);
    const port = Number((await server.waitForLine(/^listening \d+/)).split(" ")[1]);
    const [cmd, ...args] = inContainerArgs(pod, pod.container("proxy"), [
      bins.client,
      `127.0.0.1:${port}`,
      String(K),
      String(N),
      ...mode,
    ]);
    await using client = new Child(cmd, args, { stdin: true });
    const connected = JSON.parse(await client.waitForLine(/"event":"connected"/));
    const before = JSON.parse(await client.waitForLine(/"event":"before"/)) as { calls: Call[] };
    assertEquals(before.calls.length, K);
    const accepted = JSON.parse(await server.waitForLine(/"event":"accepted"/));

    const streams: GoStream[] = [];
    // processes are found through the target, as kupod would: the pod's netns now holds them
    const target = await resolveVeth(pod.hostVeth);
    await using probe = await GrpcGoProbe.start(target, { onStream: (s) => streams.push(s) });
    {
      const probed = probe.binaries().filter((b) => b.symbols.length);
      assertEquals(
        probed.map((b) => [[...b.pids], b.layout?.server, b.layout?.client]).sort(),
        [[[client.pid], false, true], [[server.pid], true, true]].sort(),
        JSON.stringify(probe.binaries().map((b) => [b.path, b.skipped])),
      );
      await client.writeLine("go");
      const after = JSON.parse(await client.waitForLine(/"event":"after"/)) as {
        calls: Call[];
        dials: number;
      };
      assertEquals(after.dials, 1, "one channel, one connection");
      assertEquals(
        after.calls.map((c) => c.code),
        after.calls.map((c) => c.method.endsWith("/Fail") ? 5 : 0),
      );
      // records are committed before the calls end; pathFor reads what the ring holds
      probe.readPending();
      const methods = after.calls.map((c) => c.method);
      // grpc-go opens client streams with odd ids from 1: the first call after the probe is 2K+1
      const ids = methods.map((_, i) => 2 * (K + i) + 1);
      for (
        const [side, pid, fd] of [
          ["server", server.pid, accepted.fd],
          ["client", client.pid, connected.fd],
        ] as const
      ) {
        const mine = unique(streams).filter((s) => s.side === side);
        assertEquals(mine.map((s) => s.path), methods, `${side} paths`);
        assertEquals(mine.map((s) => s.streamId), ids, `${side} stream ids`);
        assert(mine.every((s) => s.pid === pid && s.fd === fd), `${side}: pid ${pid}, fd ${fd}`);
        assert(mine.every((s) => s.sockId === mine[0].sockId && s.sockId !== 0n), `${side} sock`);
        // the fd is this connection's socket: the pod's loopback between the two ports
        const [local, remote] = tcpPorts(pid, socketInode(pid, fd));
        const clientPort = Number(connected.local.split(":").pop());
        assertEquals(side === "server" ? [local, remote] : [remote, local], [port, clientPort]);
        // the join key is the kernel socket the socket probe reported the connection under
        const openedNow = () =>
          sockEvents.filter((e): e is TcpEvent =>
            e.type === (side === "server" ? "tcp_accept" : "tcp_connect") &&
            (e as TcpEvent).sport === local && (e as TcpEvent).dport === remote
          );
        // a lone event may wait in the ring until the probe's next read (at most a second)
        for (let i = 0; !openedNow().length && i < 40; i++) await sleep(50);
        const opened = openedNow();
        assertEquals(opened.map((e) => e.conn_id), [connId(mine[0].sockId)], `${side} conn_id`);
        // the lookup the HTTP probe makes: exact for every stream after the start, never guessed
        for (const [i, id] of ids.entries()) {
          assertEquals(probe.pathFor(mine[0].sockId, id, side), methods[i]);
          const [service, method] = methods[i].slice(1).split("/");
          assertEquals(probe.methodFor(mine[0].sockId, id, side), { service, method });
          assertEquals(
            exactGrpcMethod(probe, mine[0].sockId, { pathUnknown: true, streamId: id, side }),
            { service, method },
          );
          assertEquals(
            exactGrpcMethod(probe, mine[0].sockId, { pathUnknown: false, streamId: id, side }),
            undefined,
            "a decoded path stays the capture's",
          );
        }
        for (let id = 1; id < 2 * K; id += 2) {
          assertEquals(probe.pathFor(mine[0].sockId, id, side), undefined, "before the start");
        }
      }
      assertEquals(unique(streams).length, 2 * N, "one stream per call and side");
      assertEquals(probe.stats().lost, 0n);
      await client.writeLine("done");
      assertEquals((await client.wait()).code, 0, client.stderr.join("\n"));
      assert(
        (await kupodPrograms()).filter((p) => (GRPC_GO_PROGRAMS as readonly string[]).includes(p))
          .length >= 2,
        "programs loaded while running",
      );
    }
  }
  // every uprobe link and program of this probe is gone (other tests may load their own)
  const left = await kupodPrograms();
  assertEquals(left.filter((p) => (GRPC_GO_PROGRAMS as readonly string[]).includes(p)), []);
}

Deno.test("grpc_go: a channel used before the probe started: exact methods of the next N calls from server and client, on the connection's socket", () =>
  channelBeforeStart(false));

Deno.test("grpc_go: the same over TLS, where the captured bytes are encrypted", () =>
  channelBeforeStart(true));

Deno.test("grpc_go: the same with position-independent binaries", () =>
  channelBeforeStart(false, ["-buildmode=pie"]));

/** Ids of the BPF links of this probe's uprobe programs (bpftool's view, not the probe's). */
async function goLinks(): Promise<number[]> {
  const progs = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
  const ids = new Set(
    progs.filter((p) => (GRPC_GO_PROGRAMS as readonly string[]).includes(p.name ?? "")).map((p) =>
      p.id
    ),
  );
  const links = await bpftoolJson(["link", "show"]) as { id: number; prog_id: number }[];
  return links.filter((l) => ids.has(l.prog_id)).map((l) => l.id);
}

Deno.test("grpc_go: probing only the processes asked for, and letting a binary go with its last process", async () => {
  await using bins = await buildFixtures();
  await using pod = await createTestPod();
  const server = inContainer(pod, pod.container("app"), [bins.server, "127.0.0.1:0"]);
  try {
    const port = Number((await server.waitForLine(/^listening \d+/)).split(" ")[1]);
    const streams: GoStream[] = [];
    await using probe = await GrpcGoProbe.start(await resolveVeth(pod.hostVeth), {
      scan: "asked",
      onStream: (s) => streams.push(s),
    });
    assertEquals(probe.binaries().length, 0, "nothing probed before asked");
    assertEquals((await goLinks()).length, 0);
    const b = await probe.probePid(server.pid);
    assertEquals([b?.layout?.server, b?.symbols.length], [true, 2], b?.skipped);
    assertEquals((await goLinks()).length, 2);
    {
      const [cmd, ...args] = inContainerArgs(pod, pod.container("proxy"), [
        bins.client,
        `127.0.0.1:${port}`,
        "0",
        "3",
      ]);
      await using client = new Child(cmd, args, { stdin: true });
      await client.writeLine("go");
      await client.waitForLine(/"event":"after"/);
      probe.readPending();
      // the client was not asked for: only the server's side of its calls
      assertEquals(streams.map((s) => [s.side, s.pid, s.path.split("/")[2]]), [
        ["server", server.pid, "Unary"],
        ["server", server.pid, "ServerStream"],
        ["server", server.pid, "Fail"],
      ]);
    }
    server.kill("SIGKILL");
    await server.wait();
    await probe.rescan();
    assertEquals(probe.binaries().length, 0, "its last process is gone");
    assertEquals((await goLinks()).length, 0, "its uprobes with it");
  } finally {
    await server[Symbol.asyncDispose]();
  }
});

// ---------------------------------------------------------------------------------------------
// The layout against readelf's reading of the same DWARF

interface TextDie {
  offset: number;
  depth: number;
  tag: string;
  attrs: Record<string, string>;
}

async function readelf(path: string, what: string): Promise<string> {
  const out = await new Deno.Command("readelf", {
    args: [`--debug-dump=${what}`, "-W", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** The DIEs of `readelf --debug-dump=info`, in order. */
function parseDies(text: string): TextDie[] {
  const dies: TextDie[] = [];
  for (const line of text.split("\n")) {
    const head = /^\s*<(\d+)><([0-9a-f]+)>: Abbrev Number: \d+ \((DW_TAG_\w+)\)/.exec(line);
    if (head) {
      dies.push({ depth: Number(head[1]), offset: parseInt(head[2], 16), tag: head[3], attrs: {} });
      continue;
    }
    const attr = /^\s*<[0-9a-f]+>\s+(DW_AT_\w+)\s*:\s*(.*)$/.exec(line);
    // newer readelf names the form first: "(string) net.TCPConn"
    if (attr && dies.length) {
      dies[dies.length - 1].attrs[attr[1]] = attr[2].trim().replace(/^\(\w+\) /, "");
    }
  }
  return dies;
}

class TextDwarf {
  readonly #dies: TextDie[];
  readonly #index = new Map<number, number>();
  constructor(dies: TextDie[]) {
    this.#dies = dies;
    dies.forEach((d, i) => this.#index.set(d.offset, i));
  }
  #children(i: number): TextDie[] {
    const out = [];
    const depth = this.#dies[i].depth;
    for (let j = i + 1; j < this.#dies.length && this.#dies[j].depth > depth; j++) {
      if (this.#dies[j].depth === depth + 1) out.push(this.#dies[j]);
    }
    return out;
  }
  #find(tag: string, name: string): number {
    const i = this.#dies.findIndex((d) =>
      d.tag === tag && d.attrs.DW_AT_name === name &&
      (tag !== "DW_TAG_subprogram" || d.attrs.DW_AT_low_pc)
    );
    assert(i >= 0, `readelf: no ${tag} ${name}`);
    return i;
  }
  size(struct: string): number {
    return Number(this.#dies[this.#find("DW_TAG_structure_type", struct)].attrs.DW_AT_byte_size);
  }
  offsetOf(struct: string, path: string): number {
    let i = this.#find("DW_TAG_structure_type", struct);
    let off = 0;
    for (const step of path.split(".")) {
      const m = this.#children(i).find((c) =>
        c.tag === "DW_TAG_member" && c.attrs.DW_AT_name === step
      );
      assert(m, `readelf: ${struct} has no ${step}`);
      off += Number(m.attrs.DW_AT_data_member_location);
      let t = this.#index.get(parseInt(/<0x([0-9a-f]+)>/.exec(m.attrs.DW_AT_type)![1], 16))!;
      while (this.#dies[t].tag === "DW_TAG_typedef") {
        t = this.#index.get(
          parseInt(/<0x([0-9a-f]+)>/.exec(this.#dies[t].attrs.DW_AT_type)![1], 16),
        )!;
      }
      i = t;
    }
    return off;
  }
  /** Registers (DWARF numbers) of a parameter at the function's entry, from the loc dump. */
  registers(fn: string, param: string, loc: string): number[] {
    const i = this.#find("DW_TAG_subprogram", fn);
    const low = BigInt(this.#dies[i].attrs.DW_AT_low_pc);
    const p = this.#children(i).find((c) =>
      c.tag === "DW_TAG_formal_parameter" && c.attrs.DW_AT_name === param
    );
    assert(p, `readelf: ${fn} has no ${param}`);
    const list = /^0x([0-9a-f]+)/.exec(p.attrs.DW_AT_location)![1].padStart(8, "0");
    const lines = loc.split("\n");
    let at = lines.findIndex((l) => l.trim().startsWith(`${list} `));
    assert(at >= 0, `readelf: no location list ${list}`);
    for (; at < lines.length; at++) {
      const m = /^\s*[0-9a-f]+ ([0-9a-f]{16}) ([0-9a-f]{16}) \((.*)\)$/.exec(lines[at]);
      if (!m || m[3] === "base address") continue;
      if (BigInt(`0x${m[1]}`) === low) {
        return [...m[3].matchAll(/DW_OP_reg(\d+)/g)].map((r) => Number(r[1]));
      }
    }
    throw new Error(`readelf: ${fn} ${param}: no entry location`);
  }
}

Deno.test("grpc_go: the layout read from DWARF is readelf's, for server and client", async () => {
  await using bins = await buildFixtures();
  const T = "google.golang.org/grpc/internal/transport";
  const SRV = `${T}.(*http2Server).operateHeaders`, CLI = `${T}.(*loopyWriter).originateStream`;
  for (const bin of [bins.server, bins.client]) {
    const layout = readGrpcGoLayout(bin);
    assertEquals(layout.goVersion.startsWith("go1."), true, layout.goVersion);
    const d = new TextDwarf(parseDies(await readelf(bin, "info")));
    const loc = await readelf(bin, "loc");
    const HF = "golang.org/x/net/http2/hpack.HeaderField";
    const want: Partial<GrpcGoConf> = {
      slice_ptr_off: d.offsetOf(`[]${HF}`, "array"),
      slice_len_off: d.offsetOf(`[]${HF}`, "len"),
      field_size: d.size(HF),
      field_name_off: d.offsetOf(HF, "Name"),
      field_value_off: d.offsetOf(HF, "Value"),
      str_ptr_off: d.offsetOf("string", "str"),
      str_len_off: d.offsetOf("string", "len"),
      iface_tab_off: d.offsetOf("runtime.iface", "tab"),
      iface_data_off: d.offsetOf("runtime.iface", "data"),
      itab_type_off: d.offsetOf("runtime.itab", "_type"),
      type_hash_off: d.offsetOf("runtime._type", "hash"),
      tcp_fd_off: d.offsetOf("net.TCPConn", "conn.fd"),
      netfd_sysfd_off: d.offsetOf("net.netFD", "pfd.Sysfd"),
      cli_l_reg: d.registers(CLI, "l", loc)[0],
      cli_str_reg: d.registers(CLI, "str", loc)[0],
      cli_hdr_reg: 0xffffffff, // grpc-go 1.33: the header frame is queued on the stream
      outstream_id_off: d.offsetOf(`${T}.outStream`, "id"),
      outstream_itl_off: d.offsetOf(`${T}.outStream`, "itl"),
      itemlist_head_off: d.offsetOf(`${T}.itemList`, "head"),
      itemnode_it_off: d.offsetOf(`${T}.itemNode`, "it"),
      eface_data_off: d.offsetOf("runtime.eface", "data"),
      hdr_hf_off: d.offsetOf(`${T}.headerFrame`, "hf"),
      loopy_framer_off: d.offsetOf(`${T}.loopyWriter`, "framer"),
      framer_writer_off: d.offsetOf(`${T}.framer`, "writer"),
      bufw_conn_off: d.offsetOf(`${T}.bufWriter`, "conn"),
    };
    if (layout.server) {
      Object.assign(want, {
        srv_t_reg: d.registers(SRV, "t", loc)[0],
        srv_frame_reg: d.registers(SRV, "frame", loc)[0],
        srv_conn_off: d.offsetOf(`${T}.http2Server`, "conn"),
        mhf_headers_off: d.offsetOf("golang.org/x/net/http2.MetaHeadersFrame", "HeadersFrame"),
        mhf_fields_off: d.offsetOf("golang.org/x/net/http2.MetaHeadersFrame", "Fields"),
        hf_stream_id_off: d.offsetOf("golang.org/x/net/http2.HeadersFrame", "FrameHeader.StreamID"),
      });
    }
    const got = Object.fromEntries(
      Object.keys(want).map((k) => [k, layout.conf[k as keyof GrpcGoConf]]),
    );
    assertEquals(got, want as Record<string, number>, bin);
    assert(layout.conf.tcp_hash !== 0, "the *net.TCPConn itab's hash");
    // the fixtures speak TLS too: crypto/tls's connection and grpc's wrapper around it
    assertEquals([layout.conf.wrap1_off, layout.conf.wrap2_off], [
      d.offsetOf("crypto/tls.Conn", "conn"),
      d.offsetOf("google.golang.org/grpc/internal/credentials.syscallConn", "sysConn"),
    ]);
    assert(layout.conf.wrap1_hash && layout.conf.wrap2_hash, "wrapper hashes");
  }
  assertEquals((readGrpcGoLayout(bins.server)).server, true);
  assertEquals((readGrpcGoLayout(bins.client)).server, false);
});

Deno.test("grpc_go: only processes running a Go program are asked for their headers", async () => {
  await using bins = await buildFixtures();
  await using server = new Child(bins.server, ["127.0.0.1:0"]);
  await server.waitForLine(/^listening \d+/);
  assertEquals(runsGo(server.pid), true, "the grpc-go server");
  await using sleeper = new Child("sleep", ["30"]);
  assertEquals(runsGo(sleeper.pid), false, "a C program");
  assertEquals(runsGo(Deno.pid), false, "deno");
  assertEquals(runsGo(0x7fffffff), false, "no such process");
});

Deno.test("grpc_go: binaries without what the probes need are refused with the reason", async () => {
  const refused = (path: string, reason: RegExp) => {
    try {
      readGrpcGoLayout(path);
    } catch (e) {
      assert(e instanceof GoLayoutError, String(e));
      assert(reason.test(e.message), e.message);
      return;
    }
    throw new Error(`${path} was not refused`);
  };
  refused("/bin/true", /is not a Go program/);
  refused("/nonexistent/kupod", /No such file|not found/i);
  {
    await using noDwarf = await buildFixtures(["-ldflags=-w"]);
    refused(noDwarf.server, /no DWARF debug info/);
  }
  {
    await using stripped = await buildFixtures(["-ldflags=-s -w"]);
    refused(stripped.server, /no symbol table \(stripped\)/);
  }
});

Deno.test("grpc_go: struct grpc_go_conf is the u32 fields the layout writes, in order", async () => {
  const btf = await readBtf(`${ROOT}bpf/.output/grpc_go.bpf.o`);
  const conf = btf.types.find((t) => t.kind === "STRUCT" && t.name === "grpc_go_conf");
  assert(conf?.members, "struct grpc_go_conf in the object's BTF");
  assertEquals(conf.size, CONF_FIELDS.length * 4);
  assertEquals(
    conf.members.map((m) => [m.name, m.bits_offset, btf.get(m.type_id).name]),
    CONF_FIELDS.map((f, i) => [f, i * 32, "__u32"]),
  );
});

Deno.test("grpc-go: monitor user grpc on a channel older than kupod: exact methods once asked", async () => {
  await using bins = await buildFixtures();
  {
    await using pod = await createTestPod();
    await using server = inContainer(pod, pod.container("app"), [bins.server, "127.0.0.1:0"]);
    const port = Number((await server.waitForLine(/^listening \d+/)).split(" ")[1]);
    const [cmd, ...args] = inContainerArgs(pod, pod.container("proxy"), [
      bins.client,
      `127.0.0.1:${port}`,
      String(K),
      "1", // one call a batch, then N more
    ]);
    await using client = new Child(cmd, args, { stdin: true });
    await client.waitForLine(/"event":"before"/);
    await using kupod = await watchGrpc(pod.hostVeth);
    const calls = () =>
      kupod.stdout.filter((l) => l.includes('"type":"grpc"')).map((l) => JSON.parse(l));
    // the first call after the start: its :path is an HPACK entry kupod never saw
    await client.writeLine("go");
    for (let i = 0; i < 100 && calls().length < 2; i++) await sleep(50);
    const first = calls();
    assertEquals(first.map((e) => [e.side, e.service, e.method]).sort(), [
      ["client", "unknown", "unknown"],
      ["server", "unknown", "unknown"],
    ]);
    // kupod asked both grpc-go processes for their headers: their uprobes are attached
    for (let i = 0;; i++) {
      const links = await bpftoolJson(["link", "show"]) as { prog_id: number }[];
      const progs = await bpftoolJson(["prog", "show"]) as { id: number; name?: string }[];
      const go = new Set(
        progs.filter((p) => GRPC_GO_PROGRAMS.includes(p.name as never)).map((p) => p.id),
      );
      // server side: operateHeaders in the server; client side: originateStream in both
      if (links.filter((l) => go.has(l.prog_id)).length >= 3) break;
      assert(i < 100, "the grpc-go uprobes were not attached");
      await sleep(100);
    }
    const batches = 5;
    const answered = () => client.stdout.filter((l) => l.includes('"event":"after"')).length;
    for (let b = 0; b < batches; b++) {
      await client.writeLine("go");
      for (let i = 0; answered() < b + 2; i++) {
        assert(i < 200, `batch ${b} was not answered`);
        await sleep(50);
      }
    }
    for (let i = 0; i < 100 && calls().length < 2 + 2 * batches; i++) await sleep(50);
    await sleep(300);
    const later = calls().slice(2);
    assertEquals(later.length, 2 * batches, "every call, both sides");
    for (const e of later) {
      assertEquals(e.service, "kupod.test.Echo", JSON.stringify(e));
      assert(["Unary", "ServerStream", "Fail"].includes(e.method), e.method);
      // the status may be an HPACK entry from before the start too: then unknown, never wrong
      assert([e.method === "Fail" ? 5 : 0, -1].includes(e.grpc_status), JSON.stringify(e));
    }
    await client.writeLine("done");
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The records less exact repeats (same socket, stream, side and path): a stream recorded twice
 * has been seen on these machines, rarely, and changes no lookup; any other record stays.
 */
function unique(streams: GoStream[]): GoStream[] {
  const seen = new Set<string>();
  return streams.filter((s) => {
    const key = `${s.sockId}/${s.streamId}/${s.side}/${s.path}`;
    return !seen.has(key) && seen.add(key) !== undefined;
  });
}

Deno.test("grpc-go through an nginx sidecar from outside the pod, its ping acknowledgements left out in the kernel: every call exact on each leg, the service within the sidecar's call", async () => {
  await using bins = await buildFixtures();
  const N = 30;
  {
    await using pod = await createTestPod({
      containers: [
        { name: "proxy", kind: "nginx-grpc-proxy", port: 8080 },
        { name: "app", kind: "grpc-go", port: 9090, binary: bins.server },
      ],
      upstreamKeepAlive: true,
    });
    const events: GrpcEvent[] = [];
    let unseen = 0;
    const probe = HttpProbe.start(await resolveVeth(pod.hostVeth), {
      event: (e: KupodEvent) => {
        if (e.type === "grpc") events.push(e as GrpcEvent);
        if (e.type === "grpc_stats") unseen = (e as GrpcStatsEvent).unseen_calls;
      },
      flush: () => {},
    }, { http: false, grpc: true });
    let after: { calls: Call[] };
    try {
      // the client on the host: nginx's end of this leg is followed alone, its writes copied
      await using client = new Child(bins.client, [`${pod.podIP}:8080`, "0", String(N)], {
        stdin: true,
      });
      await client.waitForLine(/"event":"before"/);
      await client.writeLine("go");
      after = JSON.parse(await client.waitForLine(/"event":"after"/));
      await client.writeLine("done");
      assertEquals((await client.wait()).code, 0, client.stderr.join("\n"));
    } finally {
      await probe.stop();
    }
    assertEquals([probe.stats().lost, probe.holes, unseen], [0n, 0, 0], "nothing lost or unseen");
    // nginx acknowledges each of the service's pings in a write of its own: left out, no hole
    assert(probe.controlSkipped > 0, "control frames left out in the kernel");
    const expected = after.calls.map((c) => [c.method.split("/")[2], c.code]).sort();
    for (
      const [role, side] of [["sidecar", "server"], ["sidecar", "client"], ["service", "server"]]
    ) {
      const leg = events.filter((e) => e.role === role && e.side === side);
      assertEquals(leg.map((e) => [e.method, e.grpc_status]).sort(), expected, `${role} ${side}`);
      assert(leg.every((e) => e.outcome === "complete"), `${role} ${side}: complete`);
    }
    // the service's span lies within the sidecar's call to it
    const secs = (e: GrpcEvent) =>
      Date.parse(`${e.ts.slice(0, 19)}Z`) / 1000 + Number(e.ts.slice(20, 26)) / 1e6;
    const spans = (role: string, side: string) =>
      events.filter((e) => e.role === role && e.side === side)
        .map((e) => [secs(e), secs(e) + e.duration_seconds]).sort((a, b) => a[0] - b[0]);
    const upstream = spans("sidecar", "client"), service = spans("service", "server");
    for (const [i, [start, end]] of service.entries()) {
      const [uStart, uEnd] = upstream[i];
      assert(uStart <= start && end <= uEnd + 2e-6, `call ${i}: ${[uStart, uEnd, start, end]}`);
    }
  }
  assertEquals((await kupodPrograms()).filter((p) => p.startsWith("kupod_http")), []);
});
