/**
 * HTTP/1.x framed in the kernel (bpf/http1_fast.h), checked call by call: a local process plays
 * scripted conversations over loopback (tests/fixtures/http_script.py, one syscall per step) and
 * kupod watches it with --pid, so every exchange is reported from both of its sockets, the
 * client's and the server's. Covered: keep-alive with bodies over many calls, writev heads,
 * pipelining, HEAD/204/304, 100-continue, HTTP/1.0 close-delimited bodies, a close mid-response
 * and an unanswered request, traceparent, the handover to user space's framer (chunked, split
 * heads), Upgrade, and a connection joined by a response. Both ends being followed, each server
 * end mirrors its client end (bpf/http_mirror.h): its reports come from the client end's framing.
 */

import { hasFeature } from "../bpf/preflight.ts";
import type { HttpEvent } from "../probes/events.ts";
import { assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { mirrored } from "./helpers/http_mirror.ts";
import { Child, ROOT, startKupod } from "./helpers/process.ts";

type Step = [string, string | string[] | number];

interface Conversation {
  name: string;
  steps: Step[];
  /** What each side reports, in order: "METHOD route status req/resp outcome". */
  expect: string[];
}

const ok = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const get = (path: string, more = "") => `GET ${path} HTTP/1.1\r\nHost: x\r\n${more}\r\n`;
const TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

const CONVERSATIONS: Conversation[] = [
  {
    name: "keepalive",
    steps: [
      ["c", get("/a")],
      ["s", [
        "HTTP/1.1 200 OK\r\nContent-Type: Text/Plain; charset=utf-8\r\n",
        "Content-Length: 5\r\n\r\n",
        "hello",
      ]],
      ["c", "POST /b/42 HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + "x".repeat(100)],
      ["c", "x".repeat(100)],
      ["c", "x".repeat(100)],
      ["s", "HTTP/1.1 201 Created\r\nContent-Length: 2000\r\n\r\n"],
      ["s", "y".repeat(1000)],
      ["s", ["y".repeat(500), "y".repeat(500)]],
      ["c", "DELETE /c HTTP/1.1\r\n\r\n"],
      ["s", "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nnot found"],
    ],
    expect: [
      "GET /a 200 0/5 complete text/plain",
      "POST /b/* 201 300/2000 complete",
      "DELETE /c 404 0/9 complete",
    ],
  },
  {
    name: "pipelined",
    steps: [
      ["c", "GET /p/1 HTTP/1.1\r\n\r\nGET /p/2 HTTP/1.1\r\n\r\nHEAD /p/3 HTTP/1.1\r\n\r\n"],
      ["s", ok("abc") + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"],
      ["s", "cdHTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"],
      ["c", get("/p/4")],
      ["s", "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"],
      ["c", get("/p/5")],
      ["s", "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"],
      ["c", get("/p/6")],
      ["s", ok("ok")],
    ],
    expect: [
      "GET /p/* 200 0/3 complete",
      "GET /p/* 200 0/4 complete",
      "HEAD /p/* 200 0/0 complete",
      "GET /p/* 204 0/0 complete",
      "GET /p/* 304 0/0 complete",
      "GET /p/* 200 0/2 complete",
    ],
  },
  {
    name: "continue",
    steps: [
      ["c", "POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"],
      ["s", "HTTP/1.1 100 Continue\r\n\r\n"],
      ["c", "0123456789"],
      ["s", ok("ok")],
      ["c", get("/after")],
      ["s", ok("fine")],
    ],
    expect: ["POST /up 200 10/2 complete", "GET /after 200 0/4 complete"],
  },
  {
    name: "http10",
    steps: [
      ["c", "GET /old HTTP/1.0\r\n\r\n"],
      ["s", "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n"],
      ["s", "<html>"],
      ["s", "</html>"],
      ["close_s", 0],
    ],
    expect: ["GET /old 200 0/13 complete text/html"],
  },
  {
    name: "cut",
    steps: [
      ["c", get("/big")],
      ["s", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"],
      ["close_s", 0],
    ],
    expect: ["GET /big 200 0/10 closed"],
  },
  {
    name: "unanswered",
    steps: [["c", get("/x")], ["pause", 50], ["close_s", 0]],
    expect: ["GET /x 0 0/0 no_response"],
  },
  {
    name: "trace",
    steps: [
      ["c", get("/t", `traceparent: ${TRACE}\r\nCookie: a=b\r\n`)],
      ["s", ok("")],
      ["c", get("/t2", `traceparent: ${TRACE}\r\nTraceparent: ${TRACE}\r\n`)],
      ["s", ok("")],
      ["c", get("/t3", `traceparent: 00-${"0".repeat(32)}-00f067aa0ba902b7-01\r\n`)],
      ["s", ok("")],
    ],
    expect: [
      "GET /t 200 0/0 complete trace=4bf92f3577b34da6a3ce929d0e0e4736/00f067aa0ba902b7",
      "GET /t2 200 0/0 complete",
      "GET /t3 200 0/0 complete",
    ],
  },
  {
    name: "handoff",
    steps: [
      ["c", get("/one")],
      ["s", ok("ok")],
      ["c", get("/two")],
      ["s", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"],
      ["s", "0\r\n\r\n"],
      ["c", get("/three")],
      ["s", ok("abc")],
    ],
    expect: [
      "GET /one 200 0/2 complete",
      "GET /two 200 0/5 complete",
      "GET /three 200 0/3 complete",
    ],
  },
  {
    name: "split",
    steps: [
      ["c", "GET /s HTTP/1.1\r\nHo"],
      ["c", "st: x\r\n\r\n"],
      ["s", ok("ok")],
      ["c", get("/s2")],
      ["s", ok("ok")],
    ],
    expect: ["GET /s 200 0/2 complete", "GET /s2 200 0/2 complete"],
  },
  {
    name: "upgrade",
    steps: [
      ["c", get("/ws", "Upgrade: websocket\r\nConnection: Upgrade\r\n")],
      ["s", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"],
      ["c", get("/not-http")],
      ["s", ok("")],
    ],
    expect: ["GET /ws 101 0/0 complete"],
  },
  {
    name: "joined",
    steps: [
      ["s", ok("unasked")],
      ["c", get("/m")],
      ["s", ok("m")],
    ],
    expect: ["GET /m 200 0/1 complete"],
  },
];

function line(e: HttpEvent): string {
  let s = `${e.method} ${e.route} ${e.status} ${e.request_bytes}/${e.response_bytes} ${e.outcome}`;
  if (e.content_type) s += ` ${e.content_type}`;
  if (e.trace_id) s += ` trace=${e.trace_id}/${e.parent_span_id}`;
  return s;
}

/** Plays every conversation under one kupod run with `flags` and checks what each side reported. */
async function playAll(flags: string[]): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kupod-http-script-" });
  try {
    const plan = `${dir}/plan.json`;
    await Deno.writeTextFile(
      plan,
      JSON.stringify(CONVERSATIONS.map(({ name, steps }) => ({ name, steps }))),
    );
    await using script = new Child("python3", [`${ROOT}tests/fixtures/http_script.py`, plan], {
      stdin: true,
    });
    await script.waitForLine(/^ready/);
    await using kupod = await startKupod([
      "monitor",
      "user",
      "http",
      "--pid",
      String(script.pid),
      "--output",
      "json",
      ...flags,
    ]);
    await script.writeLine("go");
    await script.waitForLine(/^done/);
    const ports = new Map<number, string>();
    for (const l of script.stdout) {
      const m = /^conn (\S+) (\d+)$/.exec(l);
      if (m) ports.set(Number(m[2]), m[1]);
    }
    // every socket closed before "done": the close-delimited and cut exchanges are reported
    await new Promise((r) => setTimeout(r, 1500));
    kupod.kill("SIGTERM");
    assertEquals((await kupod.wait()).code, 0, kupod.stderr.join(" | "));
    await script.writeLine("exit");
    const events = kupod.stdout.filter((l) => l.includes('"type":"http"'))
      .map((l) => JSON.parse(l) as HttpEvent);
    const got = new Map<string, string[]>();
    for (const e of events) {
      const name = e.side === "client" ? ports.get(e.sport) : ports.get(e.dport);
      const key = `${name} ${e.side}`;
      got.set(key, [...got.get(key) ?? [], line(e)]);
    }
    for (const c of CONVERSATIONS) {
      for (const side of ["client", "server"]) {
        assertEquals(got.get(`${c.name} ${side}`) ?? [], c.expect, `${c.name}, ${side} side`);
      }
    }
    assertEquals(events.length, 2 * CONVERSATIONS.reduce((n, c) => n + c.expect.length, 0));
    // both ends are the script's: each server end mirrors its client end from the first request
    // (the client's write has returned, its program run, before the server reads), except where
    // the client end goes to user space before framing one (the split head): its server end
    // frames itself
    const m = mirrored(kupod);
    const mirroring = hasFeature("tcp_send_start") && flags.length === 0;
    assertEquals(
      [m.reported, m.lost],
      mirroring ? [CONVERSATIONS.reduce((n, c) => n + c.expect.length, 0) - 2, 0] : [0, 0],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assertEquals(await waitNoKupodPrograms(), []);
}

Deno.test("http framing: in the kernel, each conversation reported once from each socket", () =>
  playAll([]));

// a preview needs the bodies, so the kernel hands every call over: the same reports
Deno.test("http framing: user space's framer reports the same", () =>
  playAll(["--http-preview", "8"]));
