// SPDX-License-Identifier: GPL-2.0
/*
 * Socket probe: TCP connections of the target's processes, from tracepoints
 * only. Each event is attributed in process context: connects when the
 * process enters SYN_SENT (the 4-tuple is complete only at ESTABLISHED,
 * which runs in softirq, so the owner is remembered per socket), accepts at
 * the return of accept()/accept4() where current is the accepting process.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "socket.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define IPPROTO_TCP 6

/* Owner of a socket, captured in process context. */
struct sock_owner {
	__u64 cgroup_id;
	__u32 pid;
	__u32 tid;
	__u32 netns;
	__u32 container;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct sock_owner);
} connecting SEC(".maps");

static __always_inline void owner_from_current(struct sock_owner *o, __u32 container)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->cgroup_id = bpf_get_current_cgroup_id();
	o->netns = current_netns();
	o->container = container;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void fill_owner(struct sock_event *e, const struct sock_owner *o)
{
	e->pid = o->pid;
	e->tid = o->tid;
	e->cgroup_id = o->cgroup_id;
	e->netns = o->netns;
	e->container = o->container;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
}

/* Addresses and ports of a socket, read with CO-RE. */
static __always_inline void fill_addrs(struct sock_event *e, struct sock *sk)
{
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->family == AF_INET) {
		bpf_core_read(e->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(e->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

static __always_inline void emit(__u32 kind, struct sock *sk, const struct sock_owner *o)
{
	struct sock_event *e = event_reserve(sizeof(*e));

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->sock_id = (__u64)sk;
	fill_owner(e, o);
	fill_addrs(e, sk);
	bpf_ringbuf_submit(e, 0);
}

SEC("tp/sock/inet_sock_set_state")
int kupod_sk_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr;
	struct sock_owner owner, *known;
	__u32 container;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_SYN_SENT) {
		/* connect(): process context, the caller owns the socket */
		if (!target_current(&container))
			return 0;
		owner_from_current(&owner, container);
		bpf_map_update_elem(&connecting, &sk, &owner, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate != TCP_SYN_SENT)
		return 0;
	known = bpf_map_lookup_elem(&connecting, &sk);
	if (!known)
		return 0;
	if (ctx->newstate == TCP_ESTABLISHED)
		emit(SOCK_EVENT_CONNECT, (struct sock *)ctx->skaddr, known);
	bpf_map_delete_elem(&connecting, &sk);
	return 0;
}

/* The socket behind a file descriptor of the current task. */
static __always_inline struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	struct file *file = NULL;
	struct socket *sock;

	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline int on_accept_exit(long ret)
{
	struct sock_owner owner;
	__u32 container;
	struct sock *sk;

	if (ret < 0 || !target_current(&container))
		return 0;
	sk = sock_of_fd((int)ret);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	owner_from_current(&owner, container);
	emit(SOCK_EVENT_ACCEPT, sk, &owner);
	return 0;
}

SEC("tp/syscalls/sys_exit_accept4")
int kupod_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx->ret);
}

SEC("tp/syscalls/sys_exit_accept")
int kupod_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx->ret);
}

/* Keep the event type in the object's BTF for the decoder generator. */
struct sock_event _sock_event = {};
