/**
 * The ring buffer reader against the load generator object: a known number
 * of events is produced by this process's own getppid() calls, and every one
 * must be decoded in order, or be counted as lost by the kernel.
 */

import { libc } from "../bpf/ffi.ts";
import { decodeLoadEvent, LOAD_EVENT_LAYOUT as L, RODATA } from "../bpf/gen/loadgen.ts";
import { u32Key } from "../bpf/map.ts";
import { BpfObject } from "../bpf/object.ts";
import { objectBytes } from "../bpf/objects.ts";
import { preflight } from "../bpf/preflight.ts";
import { RingBuffer } from "../bpf/ringbuf.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { waitNoKupodPrograms } from "./helpers/bpf_state.ts";

function loadgen(batch: number, ringBytes: number, recordBytes = 0): BpfObject {
  preflight();
  const obj = BpfObject.open(objectBytes("loadgen"), "kupod_loadgen");
  try {
    obj.setRodata(RODATA, { target_tgid: Deno.pid, batch, record_bytes: recordBytes });
    obj.setMaxEntries("events", ringBytes);
    obj.load();
    return obj;
  } catch (e) {
    obj[Symbol.dispose]();
    throw e;
  }
}

/** Calls getppid() `calls` times, draining between bursts when asked. */
function produce(calls: number, drainEvery = 0, ring?: RingBuffer): void {
  for (let i = 1; i <= calls; i++) {
    libc().getppid();
    if (drainEvery && i % drainEvery === 0) ring!.drain();
  }
}

Deno.test("ringbuf: every event decoded exactly once, in order, when the ring has room", () => {
  using obj = loadgen(100, 1 << 22);
  using _link = obj.program("kupod_loadgen").attach();
  const seqs: bigint[] = [];
  using ring = new RingBuffer(
    obj.map("events"),
    (view, offset, length) => {
      assertEquals(length, 56);
      const e = decodeLoadEvent(view, offset);
      assertEquals(e.pid, Deno.pid);
      assertEquals(e.payload[31], Number(e.seq & 0xffn));
      seqs.push(e.seq);
    },
    obj.map("events_lost"),
  );
  produce(500, 50, ring); // 50 000 events, drained every 5 000
  ring.drain();
  assertEquals(ring.lost(), 0n);
  assertEquals(seqs.length, 50_000);
  assert(seqs.every((s, i) => s === BigInt(i)), "sequence 0..N-1 without gaps or repeats");
  assertEquals(ring.stats.received, 50_000);
});

Deno.test("ringbuf: records that run past the ring's end arrive whole, in order", () => {
  // 44-byte records take 56 bytes of the ring with their header: 4 KiB pages never hold a whole
  // number of them, so records keep straddling the end of the (once-mapped) data area
  const RECORD = 44;
  using obj = loadgen(100, 1 << 14, RECORD);
  using _link = obj.program("kupod_loadgen").attach();
  let next = 0n;
  let bad = "";
  using ring = new RingBuffer(obj.map("events"), (view, offset, length) => {
    if (bad) return;
    // read field by field: the whole struct would run past a cut record
    const seq = view.getBigUint64(offset + L.seq.offset, true);
    const pid = view.getUint32(offset + L.pid.offset, true);
    let payload = true;
    for (let i = L.payload.offset; i < RECORD; i++) {
      payload &&= view.getUint8(offset + i) === Number(seq & 0xffn);
    }
    if (length !== RECORD || seq !== next || pid !== Deno.pid || !payload) {
      bad = `record ${next}: length ${length}, seq ${seq}, pid ${pid}, payload ok ${payload}`;
    }
    next++;
  }, obj.map("events_lost"));
  produce(500, 2, ring); // 50 000 records, drained every 200 (11 KiB of a 16 KiB ring)
  ring.drain();
  assertEquals(bad, "");
  assertEquals(ring.lost(), 0n);
  assertEquals(next, 50_000n);
  // 50 000 records of 56 bytes go round a 16 KiB ring ~170 times; at the end of a round the
  // record there straddles it unless the end falls on its header or padding (~3 in 4 do)
  assert(ring.wrapped >= 100, `records copied out at the ring's end: ${ring.wrapped}`);
});

Deno.test("ringbuf: a full ring loses events, and every lost one is counted", () => {
  using obj = loadgen(200, 1 << 16); // 64 KiB: ~1000 events of 64 bytes
  using _link = obj.program("kupod_loadgen").attach();
  let received = 0;
  let last = -1n;
  using ring = new RingBuffer(obj.map("events"), (view, offset) => {
    const seq = decodeLoadEvent(view, offset).seq;
    assert(seq > last, "increasing");
    last = seq;
    received++;
  }, obj.map("events_lost"));
  produce(1000, 20, ring); // 200 000 events, 4 000 between drains: the ring overflows
  ring.drain();
  const lost = ring.lost();
  assert(lost > 0n, "the ring overflowed");
  assert(received > 0, "some events arrived");
  assertEquals(BigInt(received) + lost, 200_000n, "received + lost = produced");
  assertEquals(obj.map("events_lost").sumU64(u32Key(0)), lost);
});

Deno.test("ringbuf: run() reads in the background until stop(), then unmaps", async () => {
  const obj = loadgen(10, 1 << 20);
  const link = obj.program("kupod_loadgen").attach();
  let received = 0;
  const ring = new RingBuffer(obj.map("events"), () => received++, obj.map("events_lost"));
  const reading = ring.run();
  for (let round = 0; round < 20; round++) {
    produce(50);
    await new Promise((r) => setTimeout(r, 5));
  }
  // the reader sleeps in epoll_wait off the event loop; new events wake it
  const until = Date.now() + 3000;
  while (received < 10_000 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assertEquals(received, 10_000);
  link[Symbol.dispose]();
  await ring.stop();
  await reading;
  await ring.stop(); // idempotent
  assertEquals(ring.drain(), 0, "no reads after stop");
  obj[Symbol.dispose]();
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("ringbuf: signals and child exits while waiting do not end the reader", async () => {
  const obj = loadgen(10, 1 << 20);
  const link = obj.program("kupod_loadgen").attach();
  let received = 0;
  const ring = new RingBuffer(obj.map("events"), () => received++, obj.map("events_lost"));
  const reading = ring.run();
  // SIGCHLD from exiting children, and a signal kupod itself listens for
  const handler = () => {};
  Deno.addSignalListener("SIGHUP", handler);
  try {
    for (let i = 0; i < 100; i++) await new Deno.Command("true").output();
    for (let i = 0; i < 20; i++) Deno.kill(Deno.pid, "SIGHUP");
    produce(100);
    const until = Date.now() + 3000;
    while (received < 1000 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assertEquals(received, 1000);
  } finally {
    Deno.removeSignalListener("SIGHUP", handler);
    link[Symbol.dispose]();
    await ring.stop();
    await reading;
    obj[Symbol.dispose]();
  }
});
