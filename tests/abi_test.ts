/** The option-struct layouts of bpf/abi.ts against the installed libbpf and kernel headers. */

import { LINK_CREATE_ATTR, OPEN_OPTS, TC_HOOK, TC_OPTS, UPROBE_OPTS } from "../bpf/abi.ts";
import { assertEquals } from "./helpers/assert.ts";

const PROGRAM = `
#include <stddef.h>
#include <stdio.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#define F(s, f) printf("%s.%s %zu\\n", #s, #f, offsetof(struct s, f))
#define S(s) printf("%s.size %zu\\n", #s, sizeof(struct s))
int main(void) {
  F(bpf_object_open_opts, sz); F(bpf_object_open_opts, object_name);
  S(bpf_uprobe_opts); F(bpf_uprobe_opts, sz); F(bpf_uprobe_opts, ref_ctr_offset);
  F(bpf_uprobe_opts, bpf_cookie); F(bpf_uprobe_opts, retprobe); F(bpf_uprobe_opts, func_name);
  S(bpf_tc_hook); F(bpf_tc_hook, sz); F(bpf_tc_hook, ifindex); F(bpf_tc_hook, attach_point);
  F(bpf_tc_hook, parent);
  S(bpf_tc_opts); F(bpf_tc_opts, sz); F(bpf_tc_opts, prog_fd); F(bpf_tc_opts, flags);
  F(bpf_tc_opts, prog_id); F(bpf_tc_opts, handle); F(bpf_tc_opts, priority);
  union bpf_attr a;
  printf("attr.prog_fd %zu\\n", (size_t)((char *)&a.link_create.prog_fd - (char *)&a));
  printf("attr.target_fd %zu\\n", (size_t)((char *)&a.link_create.target_fd - (char *)&a));
  printf("attr.attach_type %zu\\n", (size_t)((char *)&a.link_create.attach_type - (char *)&a));
  printf("attr.flags %zu\\n", (size_t)((char *)&a.link_create.flags - (char *)&a));
  /* the netfilter arm follows the four u32 above; older uapi headers lack it */
  printf("attr.union %zu\\n", (size_t)((char *)&a.link_create.target_btf_id - (char *)&a));
  return 0;
}
`;

Deno.test("abi: libbpf option structs and bpf_attr match the C headers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "kupod-abi-" });
  try {
    await Deno.writeTextFile(`${dir}/abi.c`, PROGRAM);
    const cc = await new Deno.Command("gcc", { args: ["-o", `${dir}/abi`, `${dir}/abi.c`] })
      .output();
    assertEquals(cc.success, true, new TextDecoder().decode(cc.stderr));
    const out = new TextDecoder().decode((await new Deno.Command(`${dir}/abi`).output()).stdout);
    const c = Object.fromEntries(
      out.trim().split("\n").map((l) => {
        const [k, v] = l.split(" ");
        return [k, Number(v)];
      }),
    );
    assertEquals(
      [c["bpf_object_open_opts.sz"], c["bpf_object_open_opts.object_name"]],
      [OPEN_OPTS.sz, OPEN_OPTS.object_name],
    );
    for (
      const [struct, layout] of [
        ["bpf_uprobe_opts", UPROBE_OPTS],
        ["bpf_tc_hook", TC_HOOK],
        ["bpf_tc_opts", TC_OPTS],
      ] as const
    ) {
      for (const [field, offset] of Object.entries(layout)) {
        assertEquals(offset, c[`${struct}.${field}`], `${struct}.${field}`);
      }
    }
    assertEquals(
      [
        c["attr.prog_fd"],
        c["attr.target_fd"],
        c["attr.attach_type"],
        c["attr.flags"],
        c["attr.union"],
      ],
      [
        LINK_CREATE_ATTR.prog_fd,
        LINK_CREATE_ATTR.target_fd,
        LINK_CREATE_ATTR.attach_type,
        LINK_CREATE_ATTR.flags,
        LINK_CREATE_ATTR.netfilter_pf,
      ],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
