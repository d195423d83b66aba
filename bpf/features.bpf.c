// SPDX-License-Identifier: GPL-2.0
/*
 * One trivial program per hook kind that may be missing or blocked on a
 * node. Preflight loads and attaches each one on its own (all are off by
 * default, "?") to learn what this kernel allows.
 */
#include "kupod.h"

SEC("?fentry/tcp_sendmsg")
int BPF_PROG(kupod_feat_fent)
{
	return 0;
}

SEC("?kprobe/tcp_sendmsg")
int kupod_feat_kprb(struct pt_regs *ctx)
{
	return 0;
}

/* libbpf 1.1 does not know SEC("netfilter"): preflight sets the type itself. */
SEC("?tc")
int kupod_feat_nf(void *ctx)
{
	return 1; /* NF_ACCEPT */
}

SEC("?tp_btf/sched_process_fork")
int BPF_PROG(kupod_feat_tpbt)
{
	return 0;
}

/* The start of a TCP write (Linux 6.16+), where the socket probe takes a sidecar's forward. */
SEC("?tp_btf/tcp_sendmsg_locked")
int BPF_PROG(kupod_feat_sndst)
{
	return 0;
}

SEC("?tp/syscalls/sys_enter_getppid")
int kupod_feat_tp(void *ctx)
{
	return 0;
}

/* Attach kinds the loader supports, exercised by tests/attach_test.ts. */

SEC("?tc")
int kupod_feat_tc(struct __sk_buff *skb)
{
	return 0; /* TC_ACT_OK */
}

SEC("?sockops")
int kupod_feat_sops(struct bpf_sock_ops *ops)
{
	return 1;
}

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u64);
} feat_sockhash SEC(".maps");

SEC("?sk_msg")
int kupod_feat_skm(struct sk_msg_md *msg)
{
	return SK_PASS;
}

SEC("?uprobe")
int kupod_feat_upr(struct pt_regs *ctx)
{
	return 0;
}
