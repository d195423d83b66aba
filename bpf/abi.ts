/**
 * Byte layouts of the libbpf option structs and the one bpf_attr command
 * kupod builds itself. These are C ABI (libbpf's `sz`-versioned opts, the
 * kernel's UAPI), not BPF program structs; tests/abi_test.ts compiles a C
 * file against the installed headers and checks every offset below.
 */

/** struct bpf_object_open_opts (libbpf.h): only the fields kupod sets. */
export const OPEN_OPTS = { size: 16, sz: 0, object_name: 8 } as const;

/** struct bpf_uprobe_opts (libbpf.h). */
export const UPROBE_OPTS = {
  size: 40,
  sz: 0,
  ref_ctr_offset: 8,
  bpf_cookie: 16,
  retprobe: 24,
  func_name: 32,
} as const;

/** struct bpf_tc_hook (libbpf.h). */
export const TC_HOOK = { size: 24, sz: 0, ifindex: 8, attach_point: 12, parent: 16 } as const;

/** struct bpf_tc_opts (libbpf.h). */
export const TC_OPTS = {
  size: 32,
  sz: 0,
  prog_fd: 8,
  flags: 12,
  prog_id: 16,
  handle: 20,
  priority: 24,
} as const;

/**
 * union bpf_attr, BPF_LINK_CREATE member with its netfilter arm (linux/bpf.h, 6.4+); target_fd
 * is also target_ifindex (tcx, 6.6+).
 */
export const LINK_CREATE_ATTR = {
  size: 64,
  prog_fd: 0,
  target_fd: 4,
  attach_type: 8,
  flags: 12,
  netfilter_pf: 16,
  netfilter_hooknum: 20,
  netfilter_priority: 24,
  netfilter_flags: 28,
} as const;

/** struct bpf_prog_info (linux/bpf.h): the fields kupod reads. */
export const PROG_INFO = { size: 256, type: 0, id: 4, name: 64, name_len: 16 } as const;

/** Constants of linux/bpf.h and libbpf.h kupod uses. */
export const BPF = {
  CMD_LINK_CREATE: 28,
  SYS_BPF_X86_64: 321,
  SYS_BPF_ARM64: 280,
  ATTACH_SK_MSG_VERDICT: 7,
  ATTACH_NETFILTER: 45,
  ATTACH_TCX_INGRESS: 46,
  ATTACH_TCX_EGRESS: 47,
  PROG_TYPE_NETFILTER: 32,
  TC_INGRESS: 1,
  TC_EGRESS: 2,
  MAP_TYPE_PERCPU_HASH: 5,
  MAP_TYPE_PERCPU_ARRAY: 6,
  MAP_TYPE_LRU_PERCPU_HASH: 10,
  MAP_TYPE_RINGBUF: 27,
} as const;
