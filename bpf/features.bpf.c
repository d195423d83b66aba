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

SEC("?tp/syscalls/sys_enter_getppid")
int kupod_feat_tp(void *ctx)
{
	return 0;
}
