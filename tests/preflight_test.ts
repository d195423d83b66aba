/** Preflight's readers and checks, on fixture text and on this machine. */

import {
  checkKernel,
  checkPrivileges,
  effectiveCaps,
  featureReport,
  kernelVersion,
  mountsOfType,
  preflight,
} from "../bpf/preflight.ts";
import { KupodError } from "../base/errors.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

const MOUNTINFO = [
  "22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
  "30 22 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw",
  "41 22 0:12 / /sys/kernel/tracing rw,nosuid,nodev,noexec,relatime shared:20 - tracefs tracefs rw",
  "43 22 0:35 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:21 - bpf bpf rw,mode=700",
].join("\n");

function throwsKupod(f: () => void, pattern: RegExp): void {
  try {
    f();
  } catch (e) {
    assert(e instanceof KupodError, `KupodError, got ${e}`);
    assert(pattern.test((e as Error).message), (e as Error).message);
    assert(!(e as Error).message.includes("\n"), "one line");
    return;
  }
  throw new Error("did not throw");
}

Deno.test("preflight: mount points by type from mountinfo", () => {
  assertEquals(mountsOfType(MOUNTINFO, "tracefs"), ["/sys/kernel/tracing"]);
  assertEquals(mountsOfType(MOUNTINFO, "bpf"), ["/sys/fs/bpf"]);
  assertEquals(mountsOfType(MOUNTINFO, "cgroup2"), ["/sys/fs/cgroup/unified"]);
  assertEquals(mountsOfType(MOUNTINFO, "debugfs"), []);
});

Deno.test("preflight: capabilities decide, root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN", () => {
  assertEquals(effectiveCaps("Name:\tx\nCapEff:\t000001ffffffffff\n"), 0x1ffffffffffn);
  checkPrivileges(1n << 21n); // CAP_SYS_ADMIN
  checkPrivileges((1n << 39n) | (1n << 38n) | (1n << 12n));
  throwsKupod(
    () => checkPrivileges(0n),
    /needs root .* missing CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN/,
  );
  throwsKupod(() => checkPrivileges(1n << 39n), /missing CAP_PERFMON, CAP_NET_ADMIN/);
});

Deno.test("preflight: kernel version", () => {
  assertEquals(kernelVersion("6.18.44-fc-v657"), [6, 18]);
  assertEquals(kernelVersion("5.10.0-28-amd64"), [5, 10]);
  checkKernel("5.8.0");
  throwsKupod(() => checkKernel("5.4.0-150-generic"), /too old: kupod needs Linux 5\.8/);
  throwsKupod(() => checkKernel("4.19.0"), /too old/);
});

Deno.test("preflight: this machine passes, with tracefs and bpffs mounted", () => {
  const report = preflight();
  const mountinfo = Deno.readTextFileSync("/proc/self/mountinfo");
  assert(mountsOfType(mountinfo, "tracefs").includes(report.tracefs), report.tracefs);
  assert(mountsOfType(mountinfo, "bpf").includes(report.bpffs), report.bpffs);
});

Deno.test("preflight: feature probes agree with the kernel's hooks", () => {
  const f = featureReport();
  // what every kernel kupod supports has
  for (
    const must of ["tracepoint", "tp_btf", "raw_tp", "ringbuf", "tc", "local_storage"] as const
  ) {
    assert(f[must], `${must} works`);
  }
  // the tcp_sendmsg_locked tracepoint came with Linux 6.16
  const [major, minor] = kernelVersion();
  assertEquals(f.tcp_send_start, major > 6 || major === 6 && minor >= 16, "tcp_sendmsg_locked");
  // kprobes are reported as present exactly when the kernel offers the kprobe PMU
  let kprobePmu = true;
  try {
    Deno.statSync("/sys/bus/event_source/devices/kprobe/type");
  } catch {
    kprobePmu = false;
  }
  if (!kprobePmu) assertEquals(f.kprobe, false);
});
