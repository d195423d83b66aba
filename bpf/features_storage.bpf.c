// SPDX-License-Identifier: GPL-2.0
/*
 * Whether tracing programs may keep state in socket- and task-local storage
 * (Linux 5.11): the socket probe's per-connection state lives there. An object
 * of its own, since a kernel without these map types refuses every object
 * that declares them.
 */
#include "kupod.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} feat_sk_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} feat_task_storage SEC(".maps");

SEC("?tp_btf/inet_sock_set_state")
int BPF_PROG(kupod_feat_lsto, const struct sock *sk)
{
	bpf_sk_storage_get(&feat_sk_storage, (struct sock *)sk, NULL, 0);
	bpf_task_storage_get(&feat_task_storage, bpf_get_current_task_btf(), NULL, 0);
	return 0;
}
