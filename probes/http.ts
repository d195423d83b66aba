/**
 * The HTTP probe: every HTTP/1.x request the target's containers serve or make, from the bytes of
 * their TCP sockets (bpf/http.bpf.c), framed and paired per connection in user space
 * (probes/http1.ts): method, route, status, duration, body sizes, traceparent. Each request is
 * an `http` event and counts into `http_stats`, reported every second like the kernel counters.
 */

import type { BpfObject } from "../bpf/object.ts";
import { hasFeature } from "../bpf/preflight.ts";
import { KupodError } from "../base/errors.ts";
import {
  HTTP2_JOIN_EVENT_LAYOUT as J,
  HTTP_EVENT_LAYOUT as L,
  HTTP_EVENT_SIZE,
  HTTP_STAMP_EVENT_LAYOUT as S,
  RODATA,
} from "../bpf/gen/http.ts";
import { type Attribution, attribution, type Target } from "../k8s/target.ts";
import { formatAddr } from "./addr.ts";
import { bootNsToRfc3339, CLOCK_BOOTTIME, CLOCK_MONOTONIC, nowNs } from "./clock.ts";
import { connId, sockKey, sockKeyOf } from "./conn_id.ts";
import type { EventSink, GrpcEvent, HttpEvent, TcpEndpoints } from "./events.ts";
import { type Chunk, Http1Conn, type HttpExchange, type MirrorPeer } from "./http1.ts";
import { MirrorStamps } from "./mirror_stamps.ts";
import { type CountExchange, KERNEL_RECORD, KernelHttp1 } from "./http1_records.ts";
import { type H2Call, H2Conn } from "./h2/conn.ts";
import { exactGrpcMethod, GrpcGoProbe } from "./grpc_go.ts";
import { runsGo } from "./go/grpc_layout.ts";
import { DEFAULT_MAX_FRAME, plausibleStart } from "./h2/frames.ts";
import { GrpcStats } from "./grpc_stats.ts";
import { foldRoute, RouteTable } from "./http_route.ts";
import { HttpStats } from "./http_stats.ts";
import { StreamSeq } from "./stream_seq.ts";
import { ProbeObject } from "./probe_object.ts";
import type { Probe, ProbeStats } from "./probe.ts";

/** enum http_record_kind of bpf/http.h (the kernel's HTTP/1 records: KERNEL_RECORD) */
const RECORD = { DATA: 1, CLOSE: 2, OPEN: 3, STAMP: 8, JOIN: 9 } as const;
const DIR_SENT = 0, DIR_RECEIVED = 1;

const PROGRAMS = [
  "kupod_http_recv",
  "kupod_http_send",
  "kupod_http_state",
  "kupod_fork",
  "kupod_exit",
];
/** Where a TCP write begins (Linux 6.16+): sent messages are timed there, else where it returned. */
const SEND_START = "kupod_http_send_start";

/** Connections followed at once; the least recently opened go first beyond it. */
const MAX_CONNS = 16384;
/** Distinct routes kept per container; later ones are counted as "other". */
const MAX_ROUTES = 200;
const READ_INTERVAL_MS = 1000;
const EMPTY = new Uint8Array(0);
const ONE = new Uint8Array([1]);
const decoder = new TextDecoder();

export interface HttpProbeOptions {
  /** Report HTTP requests, HTTP/1.x and plain HTTP/2 (default true). */
  http?: boolean;
  /** Report gRPC calls (default false). */
  grpc?: boolean;
  /**
   * One `http` event per request (console lines, spans; default true). Without them the probe
   * only counts requests into `http_stats`, which is all the metrics need.
   */
  requestEvents?: boolean;
  /** Bytes of a response body shown in each event (0: none; never with credentials). */
  previewBytes?: number;
  /** Distinct routes per container before new ones become "other". */
  maxRoutes?: number;
  ringBytes?: number;
  /** Records of 4 KiB an HTTP/2 call is copied in at most (default and most: 16). */
  h2Pieces?: number;
}

/** The connection's parser: HTTP/1.x, or HTTP/2 (its preface, or frames joined midway). */
type Parser = { h1: Http1Conn; h2?: undefined } | { h1?: undefined; h2: H2Conn };

interface Conn {
  /** The kernel socket (the records' sock_id). */
  sockId: bigint;
  parser: Parser | undefined;
  /** HTTP/1 framed in the kernel, until it hands the connection over to `parser`. */
  kernel: KernelHttp1 | undefined;
  /** HTTP/2: records lost from the connection's byte stream (made with the HTTP/2 parser). */
  seq: StreamSeq | undefined;
  container: number;
  who: Attribution & { pid: number; comm: string };
  endpoints: TcpEndpoints;
  routes: RouteTable;
  /** The last request target and its route: keep-alive clients repeat theirs. */
  lastTarget: string;
  lastRoute: string;
  /** A mirrored pair's client end: the server end it reports for (bpf/http_mirror.h). */
  peer?: Conn;
  /** A run that only counts: this connection's exchanges into the stats. */
  count?: CountExchange;
  /** ... framed in user space: requests from `since` on are the server end's too */
  mirror?: { peer: MirrorPeer; since: number };
  /** HTTP/2: the pod's own connection's client end, whose calls are its server end's too */
  h2mirror?: H2Mirror;
  /** HTTP/2: a server end that mirrors its client end (its bytes are no longer copied) */
  mirrors?: boolean;
  /** HTTP/2: the kernel was told this is a client end (h2_clients) */
  marked?: boolean;
}

/**
 * An HTTP/2 server end from its join on (bpf/http.bpf.c, h2_pair): calls whose request it read
 * from `since[DIR_RECEIVED]` on are placed by its stamps; those it had framed and not finished
 * began at `open` (by stream id), the others up to `maxStream` it reported itself.
 */
interface H2Mirror {
  server: Conn;
  since: [number, number];
  open: Map<number, bigint>;
  maxStream: number;
  /** The client end's ranges of skipped streams counted for the server end so far. */
  skipsCounted: number;
}

export class HttpProbe implements Probe {
  readonly name: "http" | "grpc";
  readonly readyLine: string;
  /** grpc-go processes' own headers, for calls the capture could not decode (started on need). */
  #go: GrpcGoProbe | undefined;
  #goStarting: Promise<void> | undefined;
  #goFailure: string | undefined;
  readonly #goAsked = new Set<number>();
  #stopping = false;
  readonly #http: boolean;
  readonly #grpc: boolean;
  readonly #grpcStats = new GrpcStats();
  reading: Promise<void> = Promise.resolve();
  #events = 0;
  #holes = 0;
  /** HTTP/2 bytes of control frames the kernel left out of the records (bpf/http.bpf.c) */
  #controlSkipped = 0;
  /** HTTP/2 server ends that joined a client end not framed here: their calls go unreported */
  #h2Unframed = 0;
  #target: Target;
  readonly #sink: EventSink;
  readonly #object: ProbeObject;
  /** By sockKey() of the records' sock_id. */
  readonly #conns = new Map<number, Conn>();
  readonly #routes = new Map<number, RouteTable>();
  /** Mirrored server ends' stamps while their client ends are framed here, by sockKey(). */
  readonly #stamps = new Map<number, MirrorStamps>();
  readonly #counts = { mirrorLost: 0, mirrored: 0, h2Mirrored: 0, h2Lost: 0 };
  /** The pod's own connections framed at one end (the kernel mirrors the other). */
  readonly #mirrorPairs: boolean;
  readonly #stats = new HttpStats();
  readonly #previewBytes: number;
  readonly #requestEvents: boolean;
  /** A byte view of the ring, made once: chunks are views of it, read before the next record. */
  #ringBytes: Uint8Array | undefined;
  readonly #maxRoutes: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  /**
   * The object stamps records with the monotonic clock (cheaper to read there than the boot
   * clock); events carry boot-clock times like every other probe's. Both run at one rate.
   */
  readonly #monoToBoot = nowNs(CLOCK_BOOTTIME) - nowNs(CLOCK_MONOTONIC);

  private constructor(target: Target, sink: EventSink, opts: HttpProbeOptions) {
    if (!hasFeature("local_storage")) {
      throw new KupodError(
        "the HTTP probe keeps each connection's state in socket-local storage, which this " +
          "kernel does not offer to tracing programs (Linux 5.11 or later)",
      );
    }
    this.#target = target;
    this.#sink = sink;
    this.#http = opts.http ?? true;
    this.#grpc = opts.grpc ?? false;
    this.name = this.#http ? "http" : "grpc";
    this.readyLine = this.#http
      ? (this.#grpc ? "HTTP and gRPC monitor started!" : "HTTP monitor started!")
      : "gRPC monitor started!";
    this.#previewBytes = opts.previewBytes ?? 0;
    this.#requestEvents = opts.requestEvents ?? true;
    this.#maxRoutes = opts.maxRoutes ?? MAX_ROUTES;
    const sendStart = hasFeature("tcp_send_start");
    this.#mirrorPairs = this.#previewBytes === 0 && sendStart;
    this.#object = ProbeObject.open({
      object: "http",
      target,
      rodataLayout: RODATA,
      // previews need body bytes, which only the user-space framer sees; a server end can
      // mirror its client end only where writes are stamped before the peer can read them
      rodata: {
        frame_http1: this.#previewBytes === 0,
        mirror_pairs: this.#mirrorPairs,
        ...(opts.h2Pieces ? { h2_pieces: opts.h2Pieces } : {}),
      },
      ringBytes: opts.ringBytes ?? 1 << 21,
      skip: sendStart ? [] : [SEND_START],
      attach: (obj: BpfObject) =>
        [...PROGRAMS, ...(sendStart ? [SEND_START] : [])].map((p) => obj.program(p).attach()),
      onSample: (view, offset, length) => this.#record(view, offset, length),
    });
  }

  /** Loads and attaches; requests are reported once started. */
  static start(target: Target, sink: EventSink, opts: HttpProbeOptions = {}): HttpProbe {
    const probe = new HttpProbe(target, sink, opts);
    probe.reading = probe.#object.read();
    probe.#timer = setInterval(() => probe.reportCounters(), READ_INTERVAL_MS);
    return probe;
  }

  #record(view: DataView, at: number, length: number): void {
    const key = sockKey(view, at + L.sock_id.offset);
    const kind = view.getUint8(at + L.kind.offset);
    if (kind === RECORD.STAMP) return this.#stamp(key, view, at);
    if (kind === RECORD.JOIN) return this.#join(view, at);
    if (kind === RECORD.CLOSE) {
      const conn = this.#conns.get(key);
      if (!conn) return;
      this.#conns.delete(key);
      this.#closeParser(conn, this.#tsOf(view, at));
      return;
    }
    if (this.#ringBytes?.buffer !== view.buffer) {
      this.#ringBytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    }
    let conn = this.#conns.get(key);
    const first = kind <= RECORD.OPEN && view.getUint8(at + L.first.offset) !== 0;
    if (first || !conn) {
      // a socket's first record; a known id again is a new socket at a freed one's address
      if (conn) this.#closeParser(conn, this.#tsOf(view, at));
      conn = this.#open(view, at, key, first);
    }
    if (kind === RECORD.OPEN || conn.mirrors) return;
    if (kind !== RECORD.DATA) return this.#kernelRecord(conn, view, at, kind);
    const ts = this.#tsOf(view, at);
    const len = view.getUint32(at + L.len.offset, true);
    const headLen = view.getUint16(at + L.head_len.offset, true);
    const tailLen = view.getUint8(at + L.tail_len.offset);
    const bytes = this.#ringBytes!;
    const headAt = at + length - headLen;
    // the tail is the payload's last bytes; only those past the head are new
    const tailNew = Math.min(tailLen, len - headLen);
    const tailAt = at + HTTP_EVENT_SIZE + tailLen - tailNew;
    // views into the ring, not copies: the parser copies what it keeps past this call
    const received = view.getUint8(at + L.dir.offset) === DIR_RECEIVED;
    const chunk: Chunk = {
      dir: received ? "in" : "out",
      ts,
      len,
      head: headLen ? bytes.subarray(headAt, headAt + headLen) : EMPTY,
      tail: tailNew > 0 ? bytes.subarray(tailAt, tailAt + tailNew) : EMPTY,
      cont: view.getUint8(at + L.cont.offset) !== 0,
    };
    if (conn.mirror) chunk.seq = view.getUint32(at + L.seq.offset, true);
    conn.parser ??= chunk.head.length
      ? parserFor(chunk, this.#previewBytes, view.getUint8(at + L.h2.offset) !== 0)
      : undefined;
    if (conn.parser?.h2) {
      const h2 = conn.parser.h2, seqEnd = view.getUint32(at + L.seq.offset, true);
      // calls of control frames alone the kernel left out came between the hole and this one
      const skipped = view.getUint16(at + L.skipped.offset, true);
      const hole = (conn.seq ??= new StreamSeq()).missing(received ? 0 : 1, seqEnd, len + skipped);
      if (hole) {
        this.#holes++;
        const gap = { dir: chunk.dir, ts, len: hole, head: EMPTY, tail: EMPTY, cont: false };
        this.#reportCalls(conn, h2.push(gap));
      }
      if (skipped) {
        this.#controlSkipped += skipped;
        this.#reportCalls(conn, h2.skipped(chunk.dir, skipped, ts));
      }
      if (seqEnd !== 0) chunk.seq = seqEnd;
      this.#reportCalls(conn, h2.push(chunk));
      const unseen = h2.takeUnseen();
      if (unseen) this.#grpcStats.addUnseen(unseen);
      if (conn.h2mirror) this.#mirroredUnseen(h2, conn.h2mirror);
      if (!conn.marked && this.#mirrorPairs && h2.clientEnd) this.#markClient(conn, h2);
    } else if (conn.parser) this.#report(conn, this.#mirrored(conn, conn.parser.h1.push(chunk)));
  }

  /** A mirrored server end's read or write, for its client end framed here. */
  #stamp(key: number, view: DataView, at: number): void {
    let stamps = this.#stamps.get(key);
    if (!stamps) {
      if (this.#stamps.size >= MAX_CONNS) this.#stamps.delete(this.#stamps.keys().next().value!);
      this.#stamps.set(key, stamps = new MirrorStamps());
    }
    stamps.add(
      view.getUint8(at + S.dir.offset) === DIR_RECEIVED,
      view.getUint32(at + S.seq.offset, true),
      view.getUint32(at + S.end.offset, true),
      view.getBigUint64(at + S.ts_ns.offset, true) + this.#monoToBoot,
    );
  }

  /**
   * The pod's own HTTP/2 connection: its server end stops copying (the kernel's h2_pair), its
   * client end's framing reports both ends from here on.
   */
  #join(view: DataView, at: number): void {
    const server = this.#conns.get(sockKey(view, at + J.sock_id.offset));
    const client = this.#conns.get(sockKey(view, at + J.client_sock.offset));
    const { open, maxStream } = server?.parser?.h2?.handOver() ??
      { open: new Map<number, bigint>(), maxStream: 0 };
    if (server) {
      server.parser = undefined;
      server.mirrors = true;
    }
    if (!server || !client?.parser?.h2 || client.parser.h2.notH2) {
      // neither end can report what the server end does from here on
      this.#h2Lost(open.size);
      this.#h2Unframed++;
      return;
    }
    client.h2mirror = {
      server,
      since: [
        view.getUint32(at + J.since.offset + 4 * DIR_SENT, true),
        view.getUint32(at + J.since.offset + 4 * DIR_RECEIVED, true),
      ],
      open,
      maxStream,
      skipsCounted: 0,
    };
    // streams its client end skipped so far that the server end did not frame either
    this.#mirroredUnseen(client.parser.h2, client.h2mirror);
  }

  /**
   * The server end's share of the streams its client end skipped: those above its own. Runs
   * after every record of the client end; new ranges are rare.
   */
  #mirroredUnseen(h2: H2Conn, m: H2Mirror): void {
    if (m.skipsCounted === h2.skipRanges) return;
    const n = h2.skippedAbove(m.skipsCounted, m.maxStream);
    m.skipsCounted = h2.skipRanges;
    if (n) this.#grpcStats.addUnseen(n);
  }

  /**
   * A client end of an HTTP/2 connection whose start went by unseen: the kernel cannot tell its
   * ends apart, this framer can (it writes requests). Only the pod's own connections pair.
   */
  #markClient(conn: Conn, h2: H2Conn): void {
    conn.marked = true;
    const e = conn.endpoints;
    if (h2.fromPreface || (e.saddr !== "" && !ownConnection(e.saddr, e.daddr))) return;
    const key = new Uint8Array(8);
    new DataView(key.buffer).setBigUint64(0, conn.sockId, true);
    try {
      this.#object.object.map("h2_clients").update(key, ONE);
    } catch {
      // an LRU map makes room: an error here is a kernel's, and costs only the pairing
    }
  }

  /**
   * Calls of a mirrored HTTP/2 server end, from its client end's: the server end's times are its
   * read of the request's HEADERS and the start of its write of the response's last frame.
   */
  #mirroredCalls(m: H2Mirror, calls: H2Call[]): void {
    const stamps = this.#stamps.get(sockKeyOf(m.server.sockId));
    const out: H2Call[] = [];
    for (const c of calls) {
      let start: bigint | undefined;
      if (c.reqSeq >= 0 && ((c.reqSeq - m.since[DIR_RECEIVED]) | 0) >= 0) {
        start = stamps?.readAt(c.reqSeq);
      } else {
        // framed at the server end before the join: finished there, or handed over open
        start = m.open.get(c.streamId);
        if (start !== undefined) m.open.delete(c.streamId);
        else if (c.streamId <= m.maxStream) continue;
      }
      const end = c.respEndSeq >= 0 ? stamps?.writeAt((c.respEndSeq - 1) >>> 0) : c.endNs;
      if (start === undefined || end === undefined) {
        this.#h2Lost(1);
        continue;
      }
      out.push({ ...c, side: "server", startNs: start, endNs: end > start ? end : start });
    }
    if (out.length === 0) return;
    this.#counts.h2Mirrored += out.length;
    this.#reportCalls(m.server, out);
  }

  /**
   * Calls of a mirrored HTTP/2 server end that cannot be reported (their stamps are gone): in the
   * closing line, and counted with the calls no framing saw, so every call is reported or counted.
   */
  #h2Lost(n: number): void {
    if (!n) return;
    this.#counts.h2Lost += n;
    this.#grpcStats.addUnseen(n);
  }

  /**
   * A mirrored pair's client end framed here: each exchange from the mirroring's start is also
   * the server end's, timed by its stamps (a close ends both where the client end saw it).
   */
  #mirrored(conn: Conn, xs: HttpExchange[]): HttpExchange[] {
    const m = conn.mirror;
    if (!m || xs.length === 0) return xs;
    const stamps = this.#stamps.get(sockKeyOf(m.peer.sock));
    const out: HttpExchange[] = [];
    for (const x of xs) {
      out.push(x);
      if (x.reqSeq === undefined || ((x.reqSeq - m.since) | 0) < 0) continue;
      const start = x.serverStartNs ?? stamps?.readAt(x.reqSeq);
      // a request the server end never read has no span there
      if (start === undefined && x.outcome === "no_response") continue;
      const end = x.respEndSeq === undefined ? x.endNs : stamps?.writeAt((x.respEndSeq - 1) >>> 0);
      if (start === undefined || end === undefined) {
        this.#counts.mirrorLost++;
        continue;
      }
      // answers come in order: later requests stay within 2 GiB of the last one answered
      if (x.outcome !== "no_response") m.since = x.reqSeq;
      out.push({ ...x, side: "server", startNs: start, endNs: end, peer: m.peer });
    }
    return out;
  }

  /** A record's time on the events' clock (a BigInt each: read only where it is needed). */
  #tsOf(view: DataView, at: number): bigint {
    return view.getBigUint64(at + L.ts_ns.offset, true) + this.#monoToBoot;
  }

  /** A record of HTTP/1 the kernel framed, or its handing over of the connection. */
  #kernelRecord(conn: Conn, view: DataView, at: number, kind: number): void {
    const k = conn.kernel ??= new KernelHttp1(this.#monoToBoot, this.#counts);
    // a run that only counts takes the common record without building its exchange
    if (!this.#requestEvents && this.#http) {
      conn.count ??= this.#counter(conn);
      if (k.count(view, this.#ringBytes!, at, kind, conn.count)) return;
    }
    if (kind === KERNEL_RECORD.HANDOFF) {
      conn.kernel = undefined;
      const h = k.handoff(view, this.#ringBytes!, at, { previewMax: this.#previewBytes });
      conn.parser = { h1: h.conn };
      conn.mirror = h.mirror;
      return;
    }
    this.#report(conn, k.push(view, this.#ringBytes!, at, kind));
  }

  #closeParser(conn: Conn, ts: bigint): void {
    if (conn.kernel) this.#report(conn, conn.kernel.close(ts));
    if (conn.parser?.h2) this.#reportCalls(conn, conn.parser.h2.close(ts));
    else if (conn.parser) this.#report(conn, this.#mirrored(conn, conn.parser.h1.close(ts)));
    if (conn.mirror) this.#stamps.delete(sockKeyOf(conn.mirror.peer.sock));
    if (conn.h2mirror) {
      // calls the server end had open at its join and the client end never finished
      this.#h2Lost(conn.h2mirror.open.size);
      this.#stamps.delete(sockKeyOf(conn.h2mirror.server.sockId));
      conn.h2mirror = undefined;
    }
  }

  /** gRPC calls as grpc events and counts; plain HTTP/2 requests as HTTP. */
  #reportCalls(conn: Conn, calls: H2Call[]): void {
    if (calls.length && conn.h2mirror) this.#mirroredCalls(conn.h2mirror, calls);
    for (const c of calls) {
      // a stream a grpc-go process reported is gRPC, whatever its headers let the capture see
      const exact = this.#grpc ? exactGrpcMethod(this.#go, conn.sockId, c) : undefined;
      if (this.#grpc && c.pathUnknown && !exact) this.#askGo(conn.who.pid);
      if (!c.grpc && !exact) {
        if (this.#http) this.#report(conn, [h2Exchange(c)]);
        // framed too little to tell gRPC from plain HTTP/2: counted, as the calls not framed at all
        else if (c.truncated) this.#grpcStats.addUnseen(1);
        continue;
      }
      if (!this.#grpc) continue;
      const service = exact?.service ?? (c.pathUnknown ? "unknown" : c.service || "unknown");
      const method = exact?.method ?? (c.pathUnknown ? "unknown" : c.rpcMethod || "unknown");
      this.#grpcStats.add(
        conn.who.container ?? "",
        exact ? { ...c, pathUnknown: false } : c,
        service,
        method,
      );
      if (!this.#requestEvents) continue;
      this.#events++;
      const e: GrpcEvent = {
        ts: bootNsToRfc3339(c.startNs),
        type: "grpc",
        ...conn.who,
        ...conn.endpoints,
        side: c.side,
        service,
        method,
        grpc_status: c.grpcStatus,
        kind: c.kind,
        duration_seconds: Number(c.endNs - c.startNs) * 1e-9,
        request_messages: c.requestMessages,
        response_messages: c.responseMessages,
        request_bytes: c.requestBytes,
        response_bytes: c.responseBytes,
        outcome: c.outcome,
      };
      if (c.authority) e.authority = c.authority;
      if (c.userAgent) e.user_agent = c.userAgent;
      if (c.timeoutSeconds >= 0) e.timeout_seconds = c.timeoutSeconds;
      if (c.traceparent) {
        const [, traceId, parentId] = c.traceparent.split("-");
        e.trace_id = traceId;
        e.parent_span_id = parentId;
      }
      this.#sink.event(e);
    }
  }

  /**
   * A connection seen for the first time: who owns it and its endpoints, from its first record
   * (`first`); unknown when that record was lost.
   */
  #open(view: DataView, at: number, key: number, first: boolean): Conn {
    const sockId = view.getBigUint64(at + L.sock_id.offset, true);
    if (this.#conns.size >= MAX_CONNS) {
      const oldest = this.#conns.keys().next().value!;
      this.#conns.delete(oldest);
    }
    const bytes = this.#ringBytes!; // set by #record for this view
    const family = first ? view.getUint8(at + L.family.offset) : 0;
    const container = view.getUint32(at + L.container.offset, true);
    const commAt = at + L.comm.offset;
    const commEnd = bytes.indexOf(0, commAt);
    const comm = decoder.decode(
      bytes.subarray(commAt, commEnd < 0 || commEnd > commAt + 16 ? commAt + 16 : commEnd),
    );
    let routes = this.#routes.get(container);
    if (!routes) this.#routes.set(container, routes = new RouteTable(this.#maxRoutes));
    const conn: Conn = {
      sockId,
      parser: undefined,
      kernel: undefined,
      seq: undefined,
      container,
      lastTarget: "",
      lastRoute: "",
      who: {
        ...attribution(this.#target, container),
        pid: view.getUint32(at + L.pid.offset, true),
        comm,
      },
      endpoints: first
        ? {
          family: family === 2 ? "ipv4" : "ipv6",
          saddr: formatAddr(family, bytes.subarray(at + L.saddr.offset, at + L.saddr.offset + 16)),
          sport: view.getUint16(at + L.sport.offset, true),
          daddr: formatAddr(family, bytes.subarray(at + L.daddr.offset, at + L.daddr.offset + 16)),
          dport: view.getUint16(at + L.dport.offset, true),
          conn_id: connId(sockId),
        }
        : { family: "ipv4", saddr: "", sport: 0, daddr: "", dport: 0, conn_id: connId(sockId) },
      routes,
    };
    this.#conns.set(key, conn);
    return conn;
  }

  /** The connection that reports an exchange: the client's own, or its mirrored server end. */
  #reporter(client: Conn, peer: MirrorPeer | undefined, target: string): Conn {
    let conn = client;
    if (peer) {
      conn = this.#peerConn(client, peer);
      this.#counts.mirrored++;
    }
    if (target !== conn.lastTarget) {
      conn.lastTarget = target;
      conn.lastRoute = conn.routes.route(foldRoute(target));
    }
    return conn;
  }

  /** Counts a connection's exchanges straight from their fields (see KernelHttp1.count). */
  #counter(client: Conn): CountExchange {
    return (side, method, target, status, outcome, ns, reqBytes, respBytes, peer) => {
      const conn = this.#reporter(client, peer, target);
      const container = conn.who.container ?? "";
      const route = conn.lastRoute;
      this.#stats.count(container, side, method, route, status, outcome, ns, reqBytes, respBytes);
    };
  }

  #report(client: Conn, exchanges: HttpExchange[]): void {
    if (!this.#http) return;
    for (const x of exchanges) {
      const conn = this.#reporter(client, x.peer, x.target);
      this.#stats.add(conn.who.container ?? "", x, conn.lastRoute);
      if (!this.#requestEvents) continue;
      this.#events++;
      this.#sink.event(this.#toEvent(conn, x));
    }
  }

  /**
   * The server end a mirrored client end reports for: its owner from the pair's entry, its
   * endpoints the client end's turned around.
   */
  #peerConn(client: Conn, peer: MirrorPeer): Conn {
    if (client.peer?.sockId === peer.sock) return client.peer;
    const e = client.endpoints;
    let routes = this.#routes.get(peer.container);
    if (!routes) this.#routes.set(peer.container, routes = new RouteTable(this.#maxRoutes));
    return client.peer = {
      sockId: peer.sock,
      parser: undefined,
      kernel: undefined,
      seq: undefined,
      container: peer.container,
      lastTarget: "",
      lastRoute: "",
      who: { ...attribution(this.#target, peer.container), pid: peer.pid, comm: peer.comm },
      endpoints: {
        family: e.family,
        saddr: e.daddr,
        sport: e.dport,
        daddr: e.saddr,
        dport: e.sport,
        conn_id: connId(peer.sock),
      },
      routes,
    };
  }

  #toEvent(conn: Conn, x: HttpExchange): HttpEvent {
    const e: HttpEvent = {
      ts: bootNsToRfc3339(x.startNs),
      type: "http",
      ...conn.who,
      ...conn.endpoints,
      side: x.side,
      method: x.method,
      route: conn.lastRoute,
      status: x.status,
      duration_seconds: Number(x.endNs - x.startNs) * 1e-9,
      request_bytes: x.requestBodyBytes,
      response_bytes: x.responseBodyBytes,
      outcome: x.outcome,
    };
    if (x.contentType) e.content_type = x.contentType;
    if (x.traceparent) {
      const [, traceId, parentId] = x.traceparent.split("-");
      e.trace_id = traceId;
      e.parent_span_id = parentId;
    }
    if (x.preview?.length) e.response_preview = decoder.decode(x.preview);
    return e;
  }

  /** Sends the request counts so far (when there are any) to the sink. */
  reportCounters(): void {
    const pod: Attribution = attribution(this.#target, -1);
    const ts = new Date().toISOString();
    if (this.#stats.size) this.#sink.event(this.#stats.snapshot({ ts, ...pod }));
    if (!this.#grpcStats.empty) this.#sink.event(this.#grpcStats.snapshot({ ts, ...pod }));
  }

  retarget(target: Target): void {
    this.#target = target;
    this.#object.retarget(target);
    this.#go?.retarget(target);
  }

  /**
   * A gRPC call of process `pid` came with its :path unknown (a connection older than kupod):
   * if the process is grpc-go, its own decoded headers are read with uprobes from now on. Only
   * such processes pay for the uprobes (a trap per call); the uprobe probe starts on first need.
   */
  #askGo(pid: number): void {
    if (!pid || this.#goAsked.has(pid) || this.#stopping) return;
    this.#goAsked.add(pid);
    // a proxy in C or a JVM has no grpc-go to ask: no second object, no process scans for it
    if (!runsGo(pid)) return;
    this.#goStarting ??= GrpcGoProbe.start(this.#target, { scan: "asked" }).then(
      (go) => {
        this.#go = go;
      },
      (e) => {
        // the calls keep "unknown": what the capture could not decode is never guessed
        this.#goFailure = e instanceof Error ? e.message : String(e);
      },
    );
    void this.#goStarting.then(() => this.#go?.probePid(pid)).catch(() => {});
  }

  /** Why grpc-go processes could not be asked for their headers, if they could not. */
  get goFailure(): string | undefined {
    return this.#goFailure;
  }

  stats(): ProbeStats {
    return { events: this.#events, lost: this.#object.lost() };
  }

  /** How many server ends' exchanges came from their client ends' records (bpf/http_mirror.h). */
  summary(): { line: string; warn: boolean } | undefined {
    const { mirrored, mirrorLost, h2Mirrored, h2Lost } = this.#counts;
    const parts: string[] = [];
    if (mirrored || mirrorLost) {
      parts.push(
        `${mirrored} requests of the pod's own connections reported at their server end from ` +
          `their client end's framing, ${mirrorLost} lost (server end's stamps gone)`,
      );
    }
    if (h2Mirrored || h2Lost || this.#h2Unframed) {
      parts.push(
        `${h2Mirrored} HTTP/2 calls of the pod's own connections reported at their server end ` +
          `from their client end's framing, ${h2Lost} lost` +
          (this.#h2Unframed
            ? `, ${this.#h2Unframed} connections' server ends not reported (client end unframed)`
            : ""),
      );
    }
    if (!parts.length) return undefined;
    return {
      line: `${this.name}: ${parts.join("; ")}`,
      warn: mirrorLost + h2Lost + this.#h2Unframed > 0,
    };
  }

  /** Holes found in HTTP/2 connections' byte streams: records the full ring dropped. */
  get holes(): number {
    return this.#holes;
  }

  get controlSkipped(): number {
    return this.#controlSkipped;
  }

  /** Detaches, drains the ring, ends what the connections still hold, reports the counts. */
  async stop(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    await this.#object.close();
    this.reportCounters();
    await this.#goStarting;
    await this.#go?.stop();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

const PREFACE_START = [0x50, 0x52, 0x49, 0x20]; // "PRI "

/** A connection within the pod: to loopback, or to its own address (as the kernel's pair_key_of). */
function ownConnection(saddr: string, daddr: string): boolean {
  return saddr === daddr || daddr.startsWith("127.") || daddr === "::1" ||
    daddr.startsWith("::ffff:127.");
}

/**
 * The parser for a connection whose first captured call is `first`: HTTP/2 where the kernel
 * took it for HTTP/2 (`h2`: it saw the preface or whole frames in some call), from its preface,
 * or from whole frames (a connection that was open before the capture began: its side is then
 * decided by the first request, see H2Conn), or when it is a later piece of a long call (only
 * HTTP/2 calls are cut in pieces; the ring lost the first), else HTTP/1.x. The kernel's verdict
 * matters for a connection joined midway whose first captured call does not show whole frames:
 * a read (reads split frames anywhere) or a long call cut at what the kernel copies.
 */
export function parserFor(first: Chunk, previewMax: number, h2 = false): Parser {
  const preface = PREFACE_START.every((b, i) => first.head[i] === b);
  if (h2 || first.cont || preface || plausibleStart(first, DEFAULT_MAX_FRAME) >= 0) {
    return { h2: new H2Conn({ known: h2 }) };
  }
  return { h1: new Http1Conn({ previewMax }) };
}

/** A plain HTTP/2 request as an HTTP exchange. */
function h2Exchange(c: H2Call): HttpExchange {
  return {
    side: c.side,
    method: c.method || "unknown",
    target: c.path,
    version: "1.1",
    status: c.status,
    startNs: c.startNs,
    endNs: c.endNs,
    requestBodyBytes: c.requestBytes,
    responseBodyBytes: c.responseBytes,
    contentType: "",
    traceparent: c.traceparent,
    outcome: c.outcome === "reset" ? "closed" : c.outcome,
    credentials: false,
  };
}
