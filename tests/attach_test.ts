/**
 * Every attach kind of the loader on real kernel objects, checked from the
 * outside (tc, bpftool) both while attached and after the owner is disposed.
 */

import { libbpf } from "../bpf/ffi.ts";
import { BpfObject } from "../bpf/object.ts";
import { objectBytes } from "../bpf/objects.ts";
import { preflight } from "../bpf/preflight.ts";
import { TcHook } from "../bpf/tc.ts";
import { cgroupMounts } from "../k8s/cgroupfs.ts";
import { assert, assertEquals } from "./helpers/assert.ts";
import { bpftoolJson, waitNoKupodPrograms } from "./helpers/bpf_state.ts";
import { cgroupDir, run, vethPair } from "./helpers/netns.ts";

function features(...programs: string[]): BpfObject {
  preflight();
  const obj = BpfObject.open(objectBytes("features"), "kupod_features");
  for (const p of programs) obj.program(p).setAutoload(true);
  return obj;
}

Deno.test("attach: tc ingress and egress on a veth, removed with the clsact kupod created", async () => {
  await using veth = await vethPair(`kpt${Deno.pid % 100000}`);
  {
    using obj = features("kupod_feat_tc");
    obj.load();
    const ifindex = Number((await Deno.readTextFile(`/sys/class/net/${veth.host}/ifindex`)).trim());
    using hook = TcHook.create(ifindex);
    const prog = obj.program("kupod_feat_tc");
    using _in = prog.attachTc(hook, "ingress");
    using _out = prog.attachTc(hook, "egress");
    for (const dir of ["ingress", "egress"]) {
      const shown = await run("tc", ["filter", "show", "dev", veth.host, dir]);
      assert(shown.includes("kupod_feat_tc"), `tc ${dir}: ${shown}`);
    }
  }
  assertEquals((await run("tc", ["filter", "show", "dev", veth.host, "ingress"])).trim(), "");
  const qdiscs = await run("tc", ["qdisc", "show", "dev", veth.host]);
  assert(!qdiscs.includes("clsact"), qdiscs);
  assertEquals(await waitNoKupodPrograms(), []);
});

Deno.test("attach: tc keeps a clsact qdisc it did not create", async () => {
  await using veth = await vethPair(`kpq${Deno.pid % 100000}`);
  await run("tc", ["qdisc", "add", "dev", veth.host, "clsact"]);
  {
    using obj = features("kupod_feat_tc");
    obj.load();
    const ifindex = Number((await Deno.readTextFile(`/sys/class/net/${veth.host}/ifindex`)).trim());
    using hook = TcHook.create(ifindex);
    using _in = obj.program("kupod_feat_tc").attachTc(hook, "ingress");
  }
  assert((await run("tc", ["qdisc", "show", "dev", veth.host])).includes("clsact"), "clsact kept");
  assertEquals((await run("tc", ["filter", "show", "dev", veth.host, "ingress"])).trim(), "");
});

Deno.test("attach: netfilter link at LOCAL_IN, gone when closed", async () => {
  using obj = features("kupod_feat_nf");
  obj.program("kupod_feat_nf").setType(32, 45); // BPF_PROG_TYPE_NETFILTER, BPF_NETFILTER
  obj.load();
  const links = async () =>
    (await bpftoolJson(["link", "show"]) as { type: string | number; prog_id: number }[])
      .filter((l) => l.type === "netfilter" || l.type === 10); // bpftool 7.1 prints the number
  const before = (await links()).length;
  {
    using _link = obj.program("kupod_feat_nf").attachNetfilter({
      family: "ipv4",
      hook: 1, // NF_INET_LOCAL_IN
      priority: -128,
    });
    assertEquals((await links()).length, before + 1);
  }
  assertEquals((await links()).length, before);
});

Deno.test("attach: sockops on a cgroup v2 directory", async () => {
  const mount = cgroupMounts().v2;
  assert(mount, "cgroup2 is mounted");
  await using cg = await cgroupDir(mount, `kupod-test-${Deno.pid}`);
  using obj = features("kupod_feat_sops");
  obj.load();
  const attached = async () => JSON.stringify(await bpftoolJson(["cgroup", "show", cg.path]));
  {
    using _link = obj.program("kupod_feat_sops").attachCgroup(cg.path);
    assert((await attached()).includes("kupod_feat_sops"), await attached());
  }
  assert(!(await attached()).includes("kupod_feat_sops"), "detached");
});

Deno.test("attach: sk_msg verdict on a sockhash, detached by its owner", () => {
  using obj = features("kupod_feat_skm");
  obj.load();
  const prog = obj.program("kupod_feat_skm");
  const map = obj.map("feat_sockhash");
  {
    using _a = prog.attachSkMsg(map);
  }
  // detaching again fails: the owner already removed it
  assert(libbpf().bpf_prog_detach2(prog.fd, map.fd, 7) < 0, "already detached");
});

Deno.test("attach: uprobe on a libc function by symbol name", async () => {
  using obj = features("kupod_feat_upr");
  obj.load();
  const libcPath = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
  ]
    .find((p) => {
      try {
        return Deno.statSync(p).isFile;
      } catch {
        return false;
      }
    });
  assert(libcPath, "libc found");
  {
    using link = obj.program("kupod_feat_upr").attachUprobe({
      binary: libcPath,
      symbol: "getppid",
    });
    assert(link.fd > 0, "link fd");
    const shown = JSON.stringify(await bpftoolJson(["link", "show"]));
    assert(shown.includes(`"prog_id"`), shown);
  }
});
