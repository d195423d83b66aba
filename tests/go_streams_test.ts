import { GoStreamTable } from "../probes/go_streams.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const enc = new TextEncoder();
/** A socket key above 2^32, as kernel addresses are. */
const SOCK = 0x1f_8881_2345_6780;

Deno.test("go streams: paths by socket, stream and side; the newest record of a stream wins", () => {
  const t = new GoStreamTable(8);
  t.record(SOCK, 1, false, enc.encode("/a.S/M"));
  t.record(SOCK, 1, true, enc.encode("/a.S/N"));
  t.record(SOCK + 64, 1, false, enc.encode("/a.S/O"));
  t.record(SOCK, 3, false, undefined); // longer than was recorded
  assertEquals(t.get(SOCK, 1, false), "/a.S/M");
  assertEquals(t.get(SOCK, 1, true), "/a.S/N");
  assertEquals(t.get(SOCK + 64, 1, false), "/a.S/O");
  assertEquals([t.get(SOCK, 3, false), t.get(SOCK, 5, false)], [undefined, undefined]);
  // a socket address reused by a new connection
  t.record(SOCK, 1, false, enc.encode("/b.T/P"));
  assertEquals(t.get(SOCK, 1, false), "/b.T/P");
});

Deno.test("go streams: bounded, the oldest go first; paths are decoded once and bounded too", () => {
  const t = new GoStreamTable(4);
  for (let id = 1; id <= 9; id += 2) t.record(SOCK, id, false, enc.encode(`/a.S/M${id % 3}`));
  assertEquals(t.size, 4);
  assertEquals(t.get(SOCK, 1, false), undefined, "pushed out");
  assertEquals([3, 5, 7, 9].map((id) => t.get(SOCK, id, false)), [
    "/a.S/M0",
    "/a.S/M2",
    "/a.S/M1",
    "/a.S/M0",
  ]);
  // thousands of distinct paths: the table starts over rather than grow
  const many = new GoStreamTable(16);
  for (let i = 0; i < 5000; i++) many.record(SOCK, 2 * i + 1, false, enc.encode(`/x.Y/m${i}`));
  assertEquals(many.get(SOCK, 2 * 4999 + 1, false), "/x.Y/m4999");
  assert(many.size >= 1 && many.size <= 16, `size ${many.size}`);
});

Deno.test("go streams: under churn every lookup answers as the last records do (random, many collisions)", () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const cap = 8;
  const t = new GoStreamTable(cap);
  const last: { sock: number; id: number; client: boolean; path: string }[] = [];
  for (let n = 0; n < 20000; n++) {
    const r = { sock: SOCK + 64 * rand(3), id: 2 * rand(12) + 1, client: rand(2) === 1, path: "" };
    r.path = `/s.S/m${rand(5)}`;
    t.record(r.sock, r.id, r.client, enc.encode(r.path));
    last.push(r);
    if (last.length > cap) last.shift();
    const q = { sock: SOCK + 64 * rand(3), id: 2 * rand(12) + 1, client: rand(2) === 1 };
    const want = last.findLast((x) => x.sock === q.sock && x.id === q.id && x.client === q.client);
    assertEquals(t.get(q.sock, q.id, q.client), want?.path, `step ${n}`);
    assertEquals(t.size, new Set(last.map((x) => `${x.sock}/${x.id}/${x.client}`)).size);
  }
});
