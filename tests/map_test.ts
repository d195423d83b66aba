/** BpfMap on real maps of a loaded object: update, lookup, delete, iterate, per-CPU sums. */

import { u32Key, u64Key } from "../bpf/map.ts";
import { BpfObject } from "../bpf/object.ts";
import { objectBytes } from "../bpf/objects.ts";
import { BpfError, verifierReason } from "../bpf/errors.ts";
import { RODATA } from "../bpf/gen/socket.ts";
import { preflight } from "../bpf/preflight.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

/** The BpfError `call` throws; fails when it throws nothing or something else. */
function bpfErrorOf(call: () => void): BpfError {
  let caught: unknown;
  try {
    call();
  } catch (e) {
    caught = e;
  }
  assert(caught instanceof BpfError, `BpfError, got ${caught}`);
  return caught;
}

Deno.test("map: update, lookup, iterate and delete on a hash map", () => {
  preflight();
  using obj = BpfObject.open(objectBytes("socket"), "kupod_socket");
  obj.setRodata(RODATA, { filter_by_pid: true });
  obj.load();
  const pids = obj.map("target_pids");
  assertEquals([pids.keySize, pids.valueSize, pids.perCpu], [4, 4, false]);
  for (const pid of [11, 22, 33]) pids.update(u32Key(pid), u32Key(pid * 2));
  const value = pids.lookup(u32Key(22))!;
  assertEquals(new DataView(value.buffer).getUint32(0, true), 44);
  assertEquals(pids.lookup(u32Key(99)), undefined);
  const keys = [...pids.keys()].map((k) => new DataView(k.buffer).getUint32(0, true)).sort();
  assertEquals(keys, [11, 22, 33]);
  assertEquals(pids.delete(u32Key(22)), true);
  assertEquals(pids.delete(u32Key(22)), false);
  pids.clear();
  assertEquals([...pids.keys()].length, 0);
});

Deno.test("map: per-CPU values are summed over every possible CPU", () => {
  preflight();
  using obj = BpfObject.open(objectBytes("socket"), "kupod_socket");
  obj.load();
  const lost = obj.map("events_lost");
  assert(lost.perCpu, "events_lost is per-CPU");
  // the same value is written into every CPU's slot
  lost.update(u32Key(0), u64Key(5n));
  const cpus = lost.valueBufferSize / 8;
  assertEquals(lost.sumU64(u32Key(0)), 5n * BigInt(cpus));
  // values past 32 bits sum exactly; a zero sum at the index asked for reads as absent
  const big = 3n * 2n ** 32n + 7n;
  lost.update(u32Key(0), u64Key(big));
  assertEquals(lost.sumU64s(u32Key(0)), [Number(big) * cpus]);
  assertEquals(lost.sumU64s(u32Key(0), 0), [Number(big) * cpus]);
  assertEquals(lost.summedValue(u32Key(0))!.getBigUint64(0, true), big * BigInt(cpus));
  lost.update(u32Key(0), u64Key(0n));
  assertEquals(lost.sumU64s(u32Key(0)), [0]);
  assertEquals(lost.sumU64s(u32Key(0), 0), undefined);
});

Deno.test("map: errors carry the call, the errno and libbpf's words", () => {
  preflight();
  using obj = BpfObject.open(objectBytes("socket"), "kupod_socket");
  obj.load();
  const cgroups = obj.map("target_cgroups");
  const err = bpfErrorOf(() => {
    cgroups.update(u64Key(1n), u32Key(0), 1 /* BPF_NOEXIST */);
    cgroups.update(u64Key(1n), u32Key(0), 1);
  });
  assertEquals(err.errno, 17);
  assert(err.message.startsWith("update of map target_cgroups:"), err.message);
});

Deno.test("object: a load the kernel refuses is one BpfError carrying libbpf's log", () => {
  preflight();
  using obj = BpfObject.open(objectBytes("features"), "kupod_features");
  const prog = obj.program("kupod_feat_nf");
  prog.setAutoload(true);
  prog.setType(32); // netfilter without its expected attach type: the kernel says EINVAL
  const err = bpfErrorOf(() => obj.load());
  assertEquals(err.errno, 22);
  assert(err.message.startsWith("load BPF object kupod_features:"), err.message);
  assert(!err.message.includes("\n"), "one line");
  assert(err.libbpfLog.some((l) => l.includes("kupod_feat_nf")), err.libbpfLog.join(" | "));
});

Deno.test("object: a program the verifier rejects fails with the verifier's reason on one line", () => {
  preflight();
  using obj = BpfObject.open(objectBytes("loadgen"), "kupod_loadgen");
  obj.program("kupod_loadgen").setType(26); // tracing, but no kernel function to attach to
  assertEquals(
    bpfErrorOf(() => obj.load()).message,
    "load BPF object kupod_loadgen: Invalid argument (EINVAL): " +
      "program kupod_loadgen: Tracing programs must provide btf_id",
  );
});

Deno.test("object: the verifier's reason is its last line, also when the log's start is gone", () => {
  const tail = [
    "R1 pointer arithmetic with *= operator prohibited",
    "verification time 4744 usec",
    "stack depth 168",
    "processed 100 insns (limit 1000000) max_states_per_insn 0 total_states 7 peak_states 7",
    "-- END PROG LOAD LOG --",
    "libbpf: prog 'kupod_send': failed to load: -13",
    "libbpf: failed to load object 'kupod_socket'",
  ];
  const reason = "program kupod_send: R1 pointer arithmetic with *= operator prohibited";
  assertEquals(verifierReason(tail), reason);
  assertEquals(
    verifierReason([
      "libbpf: prog 'kupod_send': -- BEGIN PROG LOAD LOG --",
      "0: R1=ctx() R10=fp0",
      ...tail,
    ]),
    reason,
  );
  // a log that does not end in a newline has the end marker on its last line
  assertEquals(
    verifierReason([
      "libbpf: prog 'p': -- BEGIN PROG LOAD LOG --",
      "unknown func-- END PROG LOAD LOG --",
    ]),
    "program p: unknown func",
  );
  assertEquals(verifierReason(["libbpf: failed to load object 'kupod_socket'"]), undefined);
});
