// SPDX-License-Identifier: GPL-2.0
/*
 * Socket probe: the TCP connections of the target's processes, from
 * tracepoints only. A connection is attributed in process context — at
 * connect() (SYN_SENT) or at the return of accept() — and remembered per
 * socket, so that events raised later in softirq (handshake done,
 * retransmits, close) still name the right process and container.
 *
 * Sidecar timing follows one request: a sidecar thread reads it on an
 * inbound connection, writes it on an outbound one (process time), and a
 * service reads it from the other end of that connection (to-service time).
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "hist.h"
#include "socket.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define DIR_OUT 0
#define DIR_IN 1
#define LAST_SEND 1
#define LAST_RECV 2

/* A connection of the target, from connect()/accept() to close. */
struct conn {
	__u64 cgroup_id;
	__u64 start_ns;
	__u64 established_ns;
	__u64 closing_ns;
	__u64 bytes_sent;     /* written by the owner (sock_send_length) */
	__u64 bytes_received; /* read by the owner (sock_recv_length) */
	__u32 pid;
	__u32 tid;
	__u32 netns;
	__u32 container;
	__u32 turns; /* changes of data direction */
	__u8 direction;
	__u8 last; /* LAST_SEND / LAST_RECV */
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, struct conn);
} conns SEC(".maps");

/* A connection's endpoints as seen from the side that owns it. */
struct flow {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
};

/* Send one sidecar_timing event per request (--verbose); the histograms always count. */
const volatile bool timing_events = false;

#define TIMING_PROCESS 0    /* inbound read -> upstream write, in the sidecar */
#define TIMING_TO_SERVICE 1 /* upstream write -> read by the service */

struct timing_key {
	__u32 sidecar; /* container index */
	__u32 which;   /* TIMING_* */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 2 * MAX_CONTAINERS);
	__type(key, struct timing_key);
	__type(value, struct log2_hist);
} sidecar_timings SEC(".maps");

static __always_inline void timing_add(__u32 sidecar, __u32 which, __u64 ns)
{
	struct timing_key key = { .sidecar = sidecar, .which = which };
	struct log2_hist *h = bpf_map_lookup_elem(&sidecar_timings, &key);

	if (!h) {
		struct log2_hist zero = {};

		bpf_map_update_elem(&sidecar_timings, &key, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&sidecar_timings, &key);
		if (!h)
			return;
	}
	hist_add(h, ns);
}

/* A request the sidecar read on an inbound connection, by sidecar thread. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, __u64); /* read at */
} sidecar_reads SEC(".maps");

/* A request the sidecar wrote upstream, by the flow it went out on. */
struct forwarded {
	__u64 written_ns;
	__u64 process_ns;
	__u32 sidecar;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct flow);
	__type(value, struct forwarded);
} forwarded SEC(".maps");

static __always_inline void conn_from_current(struct conn *c, __u32 container, __u8 direction)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(c, 0, sizeof(*c));
	c->pid = pid_tgid >> 32;
	c->tid = (__u32)pid_tgid;
	c->cgroup_id = bpf_get_current_cgroup_id();
	c->netns = current_netns();
	c->container = container;
	c->direction = direction;
	c->start_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(c->comm, sizeof(c->comm));
}

static __always_inline void read_flow(struct flow *f, struct sock *sk, __u16 *family)
{
	__builtin_memset(f, 0, sizeof(*f));
	*family = BPF_CORE_READ(sk, __sk_common.skc_family);
	f->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	f->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (*family == AF_INET) {
		bpf_core_read(f->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(f->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(f->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(f->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* Reserves an event for connection `c` of socket `sk`, filled with who and where. */
static __always_inline struct sock_event *conn_event(__u32 kind, struct sock *sk,
						     const struct conn *c)
{
	struct sock_event *e = event_reserve(sizeof(*e));
	struct flow f;

	if (!e)
		return NULL;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->sock_id = (__u64)sk;
	e->pid = c->pid;
	e->tid = c->tid;
	e->cgroup_id = c->cgroup_id;
	e->netns = c->netns;
	e->container = c->container;
	e->direction = c->direction;
	__builtin_memcpy(e->comm, c->comm, sizeof(e->comm));
	read_flow(&f, sk, &e->family);
	e->sport = f.sport;
	e->dport = f.dport;
	__builtin_memcpy(e->saddr, f.saddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, f.daddr, sizeof(e->daddr));
	return e;
}

static __always_inline void emit_close(struct sock *sk, struct conn *c)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	struct sock_event *e = conn_event(SOCK_EVENT_CLOSE, sk, c);

	if (!e)
		return;
	e->start_ns = c->start_ns;
	e->established_ns = c->established_ns;
	e->closing_ns = c->closing_ns;
	/* what the application wrote and read: tcp_sock's counters include FIN sequence numbers */
	e->bytes_sent = c->bytes_sent;
	e->bytes_received = c->bytes_received;
	e->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	e->retransmits = BPF_CORE_READ(tp, total_retrans);
	e->exchanges = c->last ? (c->turns + 2) / 2 : 0;
	event_submit(e);
}

SEC("tp/sock/inet_sock_set_state")
int kupod_sk_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	/* ctx fields are read once: the verifier refuses derived ctx pointers */
	struct sock *sk = (struct sock *)BPF_CORE_READ(ctx, skaddr);
	int oldstate = BPF_CORE_READ(ctx, oldstate);
	int newstate = BPF_CORE_READ(ctx, newstate);
	__u64 key = (__u64)sk;
	struct sock_event *e;
	struct conn *c, fresh;
	__u32 container;

	if (BPF_CORE_READ(ctx, protocol) != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the caller owns the socket */
		if (!target_current(&container))
			return 0;
		conn_from_current(&fresh, container, DIR_OUT);
		bpf_map_update_elem(&conns, &key, &fresh, BPF_ANY);
		return 0;
	}
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	if (oldstate == TCP_SYN_SENT) {
		if (newstate != TCP_ESTABLISHED) {
			bpf_map_delete_elem(&conns, &key); /* refused or timed out */
			return 0;
		}
		c->established_ns = bpf_ktime_get_boot_ns();
		e = conn_event(SOCK_EVENT_CONNECT, sk, c);
		if (e)
			event_submit(e);
		return 0;
	}
	if ((newstate == TCP_FIN_WAIT1 || newstate == TCP_CLOSE_WAIT) && !c->closing_ns)
		c->closing_ns = bpf_ktime_get_boot_ns();
	if (newstate == TCP_CLOSE) {
		if (!c->closing_ns)
			c->closing_ns = bpf_ktime_get_boot_ns(); /* reset or abort: no FIN */
		emit_close(sk, c);
		bpf_map_delete_elem(&conns, &key);
	}
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
	struct sock_event *e;
	__u32 container;
	struct conn c;
	struct sock *sk;
	__u64 key;

	if (ret < 0 || !target_current(&container))
		return 0;
	sk = sock_of_fd((int)ret);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	conn_from_current(&c, container, DIR_IN);
	c.established_ns = c.start_ns; /* the kernel finished the handshake before accept() */
	key = (__u64)sk;
	bpf_map_update_elem(&conns, &key, &c, BPF_ANY);
	e = conn_event(SOCK_EVENT_ACCEPT, sk, &c);
	if (e)
		event_submit(e);
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

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(kupod_retrans, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct sock_event *e;
	struct conn *c = bpf_map_lookup_elem(&conns, &key);

	if (!c)
		return 0;
	e = conn_event(SOCK_EVENT_RETRANSMIT, sk, c);
	if (!e)
		return 0;
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	event_submit(e);
	return 0;
}

/* A request leaves the sidecar: remember when, by the flow it went out on. */
static __always_inline void sidecar_sent(struct sock *sk, struct conn *c, __u64 now)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *read_at = bpf_map_lookup_elem(&sidecar_reads, &tid);
	struct forwarded fw = {};
	struct flow f;
	__u16 family;

	if (!read_at)
		return;
	fw.written_ns = now;
	fw.process_ns = now - *read_at;
	fw.sidecar = c->container;
	bpf_map_delete_elem(&sidecar_reads, &tid);
	read_flow(&f, sk, &family);
	bpf_map_update_elem(&forwarded, &f, &fw, BPF_ANY);
}

/* A service reads a request: if the sidecar forwarded it, report both durations. */
static __always_inline void service_received(struct sock *sk, struct conn *c, __u64 now)
{
	struct forwarded *fw;
	struct sock_event *e;
	struct flow mine, theirs;
	__u16 family;

	read_flow(&mine, sk, &family);
	/* the sidecar's end of this connection has the endpoints swapped */
	__builtin_memcpy(theirs.saddr, mine.daddr, sizeof(theirs.saddr));
	__builtin_memcpy(theirs.daddr, mine.saddr, sizeof(theirs.daddr));
	theirs.sport = mine.dport;
	theirs.dport = mine.sport;
	fw = bpf_map_lookup_elem(&forwarded, &theirs);
	if (!fw)
		return;
	timing_add(fw->sidecar, TIMING_PROCESS, fw->process_ns);
	timing_add(fw->sidecar, TIMING_TO_SERVICE, now - fw->written_ns);
	e = timing_events ? conn_event(SOCK_EVENT_SIDECAR, sk, c) : NULL;
	if (e) {
		e->process_ns = fw->process_ns;
		e->to_service_ns = now - fw->written_ns;
		e->peer_container = c->container;
		e->container = fw->sidecar;
		event_submit(e);
	}
	bpf_map_delete_elem(&forwarded, &theirs);
}

static __always_inline int on_data(struct trace_event_raw_sock_msg_length *ctx, __u8 dir)
{
	struct sock *sk = (struct sock *)BPF_CORE_READ(ctx, sk);
	__u64 key = (__u64)sk;
	__u64 now;
	struct conn *c;
	__u32 role;

	if (BPF_CORE_READ(ctx, protocol) != IPPROTO_TCP || BPF_CORE_READ(ctx, ret) <= 0 ||
	    (BPF_CORE_READ(ctx, flags) & MSG_PEEK))
		return 0;
	c = bpf_map_lookup_elem(&conns, &key);
	if (!c)
		return 0;
	if (c->last && c->last != dir)
		c->turns++;
	c->last = dir;
	if (dir == LAST_SEND)
		c->bytes_sent += BPF_CORE_READ(ctx, ret);
	else
		c->bytes_received += BPF_CORE_READ(ctx, ret);
	if (c->container == NO_CONTAINER)
		return 0;
	now = bpf_ktime_get_boot_ns();
	role = container_role(c->container);
	if (role == ROLE_SIDECAR && c->direction == DIR_IN && dir == LAST_RECV) {
		__u32 tid = (__u32)bpf_get_current_pid_tgid();

		bpf_map_update_elem(&sidecar_reads, &tid, &now, BPF_ANY);
	} else if (role == ROLE_SIDECAR && c->direction == DIR_OUT && dir == LAST_SEND) {
		sidecar_sent(sk, c, now);
	} else if (role == ROLE_SERVICE && c->direction == DIR_IN && dir == LAST_RECV) {
		service_received(sk, c, now);
	}
	return 0;
}

SEC("tp/sock/sock_send_length")
int kupod_send(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_data(ctx, LAST_SEND);
}

SEC("tp/sock/sock_recv_length")
int kupod_recv(struct trace_event_raw_sock_msg_length *ctx)
{
	return on_data(ctx, LAST_RECV);
}

/* Keep the event type in the object's BTF for the decoder generator. */
struct sock_event _sock_event = {};
