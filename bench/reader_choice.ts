/**
 * Why kupod reads the ring buffer in place: the same 1,024,000 pre-produced load_event records
 * decoded by kupod's mmapped reader (bpf/ringbuf.ts) and by libbpf's ring_buffer__consume
 * calling back into JavaScript once per record (Deno.UnsafeCallback). Run as root:
 * `deno task bench:reader`.
 */
import { BpfObject } from "../bpf/object.ts";
import { objectBytes } from "../bpf/objects.ts";
import { decodeLoadEvent, RODATA } from "../bpf/gen/loadgen.ts";
import { RingBuffer } from "../bpf/ringbuf.ts";
import { libc } from "../bpf/ffi.ts";
import { preflight } from "../bpf/preflight.ts";
preflight();
const lib = Deno.dlopen(
  "libbpf.so.1",
  {
    ring_buffer__new: { parameters: ["i32", "function", "pointer", "pointer"], result: "pointer" },
    ring_buffer__consume: { parameters: ["pointer"], result: "i32" },
    ring_buffer__free: { parameters: ["pointer"], result: "void" },
  } as const,
);
const N_CALLS = 4000, BATCH = 256; // 1,024,000 events per round
function load() {
  const obj = BpfObject.open(objectBytes("loadgen"), "kupod_loadgen");
  obj.setRodata(RODATA, { target_tgid: Deno.pid, batch: BATCH });
  obj.setMaxEntries("events", 1 << 26); // 64 MiB: everything fits, nothing lost
  obj.load();
  return obj;
}
for (let round = 0; round < 3; round++) {
  // kupod: read the mmapped ring in place
  {
    using obj = load();
    using _l = obj.program("kupod_loadgen").attach();
    let n = 0;
    using ring = new RingBuffer(obj.map("events"), (v, o) => {
      decodeLoadEvent(v, o);
      n++;
    }, obj.map("events_lost"));
    for (let i = 0; i < N_CALLS; i++) libc().getppid();
    const t = performance.now();
    while (ring.drain() > 0);
    const ms = performance.now() - t;
    console.log(
      `mmap reader:   ${n} events in ${ms.toFixed(1)} ms = ${
        (n / ms / 1000).toFixed(2)
      } M/s, lost ${ring.lost()}`,
    );
  }
  // libbpf ring_buffer__consume with a JavaScript callback per event
  {
    using obj = load();
    using _l = obj.program("kupod_loadgen").attach();
    let n = 0;
    const cb = new Deno.UnsafeCallback(
      { parameters: ["pointer", "pointer", "usize"], result: "i32" } as const,
      (_ctx, data, size) => {
        const v = new DataView(Deno.UnsafePointerView.getArrayBuffer(data!, Number(size)));
        decodeLoadEvent(v, 0);
        n++;
        return 0;
      },
    );
    const rb = lib.symbols.ring_buffer__new(obj.map("events").fd, cb.pointer, null, null);
    for (let i = 0; i < N_CALLS; i++) libc().getppid();
    const t = performance.now();
    lib.symbols.ring_buffer__consume(rb);
    const ms = performance.now() - t;
    console.log(
      `callback/event: ${n} events in ${ms.toFixed(1)} ms = ${(n / ms / 1000).toFixed(2)} M/s`,
    );
    lib.symbols.ring_buffer__free(rb);
    cb.close();
  }
}
