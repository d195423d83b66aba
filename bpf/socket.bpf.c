// SPDX-License-Identifier: GPL-2.0
/*
 * Socket probe: the TCP connections of the target's processes, from
 * tracepoints only. A connection is attributed in process context — at
 * connect() (SYN_SENT), or for an accepted one when its owner first reads,
 * writes or closes it — and its state lives in socket-local storage, so that
 * events raised later in softirq (retransmits, close) still name the right
 * process and container, and the state goes away with the socket.
 *
 * accept() itself is not traced: a syscall tracepoint switches every thread
 * of the node onto the slow syscall path. A passive handshake completing in
 * the target's netns leaves a mark on the child socket instead (`accepting`),
 * and the first process-context touch claims it.
 *
 * What the exporter shows is counted here, per container and direction
 * (conn_stats) and per sidecar (sidecar_stats); events go to the ring only
 * for what the console or the spans print: accepts, connects, retransmits,
 * resets, and closes and per-request timings when asked for.
 *
 * Sidecar timing follows one request: a sidecar thread reads it on an
 * inbound connection, writes it on an outbound one (process time), and a
 * service reads it from the other end of that connection (to-service time).
 *
 * What the owner wrote is the advance of tcp_sock's write_seq, taken at each
 * read, at its close or shutdown (before the FIN takes a sequence number)
 * and at the last state change. So a write looks up no connection unless it
 * is the connection's first; a sidecar's forward finds its upstream slot
 * from the socket's endpoints. The work on the target's sockets, a storage
 * lookup per read and write first, was the larger part of the probe's cost
 * (bench:interleave). Paths that run once per connection (a claim, a
 * service's first read) and per-request events are subprograms (__noinline),
 * so that the code every read and write runs stays compact: measured with
 * the programs' run-time statistics under the bench's load, ~90 ns less per
 * request (6%) than with everything inlined.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "hist.h"
#include "flow.h"
#include "socket.h"
#include "socket_upstreams.h"

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_CLOSE_WAIT 8
#define TCP_LAST_ACK 9
#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define DIR_OUT 0
#define DIR_IN 1
#define LAST_SEND 1
#define LAST_RECV 2
#define ROLE_NONE 0xff /* no container: the pod's netns only */
#define RESET_SENT 1
#define RESET_RECEIVED 2

/* Send tcp_accept/tcp_connect events (not with --quiet); conn_stats count them anyway. */
const volatile bool open_events = true;
/* Send a tcp_close event per connection (--verbose, spans); conn_stats count them anyway. */
const volatile bool close_events = false;
/* Send a sidecar_timing event per request (--verbose); sidecar_stats count them anyway. */
const volatile bool timing_events = false;

#define UPSTREAM_UNKNOWN 0
#define UPSTREAM_SIDECAR 1 /* the other end is a sidecar's upstream connection */
#define UPSTREAM_NONE 2

/* A connection of the target, from connect()/accept() to close. */
struct conn {
	__u64 cgroup_id;
	__u64 up_tag;         /* sidecar outbound, or service inbound from a sidecar: upstream_tag() */
	__u64 start_ns;
	__u64 established_ns;
	__u64 closing_ns;
	__u64 bytes_sent;     /* written by the owner, up to seq_seen (writes_seen()) */
	__u64 bytes_received; /* read by the owner (sock_recv_length) */
	struct flow flow;     /* endpoints from the owner's side, once the handshake is done */
	__u32 pid;
	__u32 tid;
	__u32 netns;
	__u32 container;
	__u32 turns; /* changes of data direction */
	__u32 up_slot; /* the upstream slot of up_tag */
	__u32 seq_base; /* tcp_sock's write_seq before the first write */
	__u32 seq_seen; /* ... and when bytes_sent was last brought up to date */
	__u8 direction;
	__u8 role; /* ROLE_* of the container */
	__u8 last; /* LAST_SEND / LAST_RECV */
	__u8 upstream; /* UPSTREAM_*: inbound connections of a service */
	__u8 reset;    /* RESET_*: the first reset seen */
	__u8 closed;   /* counted as closed; the storage stays until the socket is freed */
	__u8 fin_sent; /* writes are over: bytes_sent is final (a FIN took write_seq one further) */
	__u8 psock;    /* a socket redirect (sk_msg) owns the sends: counted per write, not by write_seq */
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct conn);
} conns SEC(".maps");

/*
 * Accepted sockets in the target's netns whose owner has not touched them
 * yet: when their handshake completed, and where their writes begin. The
 * owner's first read, write or close turns the mark into a connection, or
 * drops it if the owner is not the target's.
 */
struct accept_mark {
	__u64 handshake_ns; /* bpf_ktime_get_boot_ns() */
	__u32 write_seq;    /* before anything was written */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct accept_mark);
} accepting SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 2 * MAX_CONTAINERS + 2);
	__type(key, struct stats_key);
	__type(value, struct conn_stats);
} conn_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CONTAINERS);
	__type(key, __u32); /* sidecar container */
	__type(value, struct sidecar_stats);
} sidecar_stats SEC(".maps");

/* When a sidecar thread last read a request on an inbound connection. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} sidecar_reads SEC(".maps");

/* Zeroed values to create counters from: too large for the BPF stack. */
static struct conn_stats zero_conn_stats;

/*
 * Whether the caller holds socket `sk` locked: a syscall of its owner (or the
 * owner's release_sock() running what softirqs queued meanwhile), never a
 * softirq or timer, which leave an owned socket alone.
 */
static __always_inline bool owner_running(const struct sock *sk)
{
	return sk->sk_lock.owned;
}

/* The per-CPU value of `map` at `key`, created zeroed when missing. */
static __always_inline void *stats_of(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

static __always_inline struct conn_stats *conn_stats_of(const struct conn *c)
{
	struct stats_key key = { .container = c->container, .direction = c->direction };

	return stats_of(&conn_stats, &key, &zero_conn_stats);
}

static __always_inline void conn_from_current(struct conn *c, __u32 container, __u8 direction)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	__builtin_memset(c, 0, sizeof(*c));
	c->pid = pid_tgid >> 32;
	c->tid = (__u32)pid_tgid;
	c->cgroup_id = bpf_get_current_cgroup_id();
	c->netns = current_netns();
	c->container = container;
	c->role = container == NO_CONTAINER ? ROLE_NONE : container_role(container);
	c->direction = direction;
	c->start_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(c->comm, sizeof(c->comm));
}

/* The state of a target's connection; NULL for other sockets and unclaimed accepted ones. */
static __always_inline struct conn *conn_of(struct sock *sk)
{
	return bpf_sk_storage_get(&conns, sk, NULL, 0);
}

/* Reserves an event for connection `c` of socket `sk`, filled with who and where. */
static __always_inline struct sock_event *conn_event(__u32 kind, struct sock *sk,
						     const struct conn *c)
{
	struct sock_event *e = event_reserve(sizeof(*e));

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
	e->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->sport = c->flow.sport;
	e->dport = c->flow.dport;
	if (c->flow.family == 4) {
		/* the event carries IPv4 in its first 4 bytes, the flow as ::ffff:a.b.c.d */
		__builtin_memcpy(e->saddr, c->flow.saddr + 12, 4);
		__builtin_memcpy(e->daddr, c->flow.daddr + 12, 4);
	} else {
		__builtin_memcpy(e->saddr, c->flow.saddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, c->flow.daddr, sizeof(e->daddr));
	}
	return e;
}

/* A connection opened: counted, and announced on the ring. */
static __always_inline void opened(__u32 kind, struct sock *sk, const struct conn *c)
{
	struct conn_stats *s = conn_stats_of(c);
	struct sock_event *e;

	if (s)
		s->opened += 1;
	if (!open_events)
		return;
	e = conn_event(kind, sk, c);
	if (e)
		event_submit(e);
}

static __always_inline __u32 exchanges(const struct conn *c)
{
	return c->last ? (c->turns + 2) / 2 : 0;
}

/* Data moved in direction `dir` (LAST_*): a change of direction is a turn. */
static __always_inline void data_moved(struct conn *c, __u8 dir)
{
	if (c->last && c->last != dir)
		c->turns++;
	c->last = dir;
}

/*
 * Brings bytes_sent up to the owner's writes so far; writes between two
 * observations are one turn however many calls they took. write_seq gives
 * the written bytes modulo 4 GiB; tcp_sock's 64-bit count of bytes sent once
 * (sent minus resent) is at most the send buffer behind them, which places
 * the value.
 */
static __always_inline void writes_seen(struct sock *sk, struct conn *c)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u64 sent_once;
	__u32 seq;

	if (!tp || c->fin_sent || c->psock)
		return;
	seq = tp->write_seq;
	if (seq == c->seq_seen)
		return;
	c->seq_seen = seq;
	sent_once = tp->bytes_sent - tp->bytes_retrans;
	c->bytes_sent = sent_once + (__s64)(__s32)(seq - c->seq_base - (__u32)sent_once);
	data_moved(c, LAST_SEND);
}

/* A connection closed: counted, and sent on the ring when closes are printed. */
static __always_inline void closed(struct sock *sk, struct conn *c, __u64 now)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	__u32 retrans = BPF_CORE_READ(tp, total_retrans);
	struct conn_stats *s = conn_stats_of(c);
	struct sock_event *e;

	if (!c->closing_ns)
		c->closing_ns = now; /* reset or abort: no FIN */
	writes_seen(sk, c);
	if (s) {
		s->closed += 1;
		/* what the application wrote and read: tcp_sock's byte counters count FINs and resends */
		s->bytes_sent += c->bytes_sent;
		s->bytes_received += c->bytes_received;
		s->retransmits += retrans;
		if (exchanges(c) > 1)
			s->long_conns += 1;
		hist_add(&s->rtt_us, srtt_us);
		hist_add(&s->duration_us, (now - c->start_ns) / 1000);
	}
	if (c->role == ROLE_SIDECAR && c->direction == DIR_OUT)
		upstream_release(c->up_slot, c->up_tag);
	if (!close_events)
		return;
	e = conn_event(SOCK_EVENT_CLOSE, sk, c);
	if (!e)
		return;
	e->start_ns = c->start_ns;
	e->established_ns = c->established_ns;
	e->closing_ns = c->closing_ns;
	e->bytes_sent = c->bytes_sent;
	e->bytes_received = c->bytes_received;
	e->srtt_us = srtt_us;
	e->retransmits = retrans;
	e->exchanges = exchanges(c);
	event_submit(e);
}

/* Handshake done on an outbound connection: the flow is known now (connect() binds the port). */
static __always_inline void connected(struct sock *sk, struct conn *c)
{
	c->established_ns = bpf_ktime_get_boot_ns();
	c->seq_base = BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
	c->seq_seen = c->seq_base;
	flow_of_sock(sk, &c->flow);
	if (c->role == ROLE_SIDECAR) {
		c->up_tag = upstream_tag(&c->flow, false);
		c->up_slot = upstream_claim(c->up_tag, c->container);
	}
	opened(SOCK_EVENT_CONNECT, sk, c);
}

/* An accepted socket still marked in `accepting`: see claim_conn(). */
static __noinline struct conn *claim_accepted(struct sock *sk)
{
	struct accept_mark *mark;
	struct conn *c = NULL;
	__u32 container;
	struct conn fresh;

	mark = bpf_sk_storage_get(&accepting, sk, NULL, 0);
	if (!mark)
		return NULL;
	if (target_current(&container)) {
		conn_from_current(&fresh, container, DIR_IN);
		fresh.start_ns = mark->handshake_ns;
		fresh.established_ns = mark->handshake_ns;
		fresh.seq_base = mark->write_seq;
		fresh.seq_seen = mark->write_seq;
		flow_of_sock(sk, &fresh.flow);
		c = bpf_sk_storage_get(&conns, sk, &fresh, BPF_SK_STORAGE_GET_F_CREATE);
		if (c)
			opened(SOCK_EVENT_ACCEPT, sk, c);
	}
	bpf_sk_storage_delete(&accepting, sk);
	return c;
}

/*
 * The connection of socket `sk` for a process-context caller: an accepted
 * socket still marked in `accepting` becomes the caller's connection if the
 * caller is the target's (its owner: it reads, writes or closes it). The
 * claim is a subprogram, out of the way of the reads and writes that find
 * their connection.
 */
static __always_inline struct conn *claim_conn(struct sock *sk)
{
	struct conn *c = conn_of(sk);

	return c ? c : claim_accepted(sk);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kupod_sk_state, const struct sock *csk, int oldstate, int newstate)
{
	struct sock *sk = (struct sock *)csk;
	struct conn *c, fresh;
	__u32 container;

	if (sk->sk_protocol != IPPROTO_TCP || sock_outside_target(sk))
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* connect(): process context, the caller owns the socket */
		if (!target_current(&container))
			return 0;
		conn_from_current(&fresh, container, DIR_OUT);
		c = bpf_sk_storage_get(&conns, sk, &fresh, BPF_SK_STORAGE_GET_F_CREATE);
		if (c && c->closed)
			*c = fresh; /* a closed socket connecting again: a new connection */
		return 0;
	}
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		/* a passive handshake (softirq): the owner claims it in claim_conn() */
		struct accept_mark mark = {
			.handshake_ns = bpf_ktime_get_boot_ns(),
			.write_seq = BPF_CORE_READ((struct tcp_sock *)sk, write_seq),
		};

		bpf_sk_storage_get(&accepting, sk, &mark, BPF_SK_STORAGE_GET_F_CREATE);
		return 0;
	}
	/* close() of a connection its owner never read or wrote claims it too */
	c = owner_running(sk) ? claim_conn(sk) : conn_of(sk);
	if (!c || c->closed)
		return 0;
	if (oldstate == TCP_SYN_SENT) {
		if (newstate == TCP_ESTABLISHED)
			connected(sk, c);
		else
			bpf_sk_storage_delete(&conns, sk); /* refused or timed out */
		return 0;
	}
	if (newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK) {
		/* close() or shutdown(): the FIN is queued right after this change */
		writes_seen(sk, c);
		c->fin_sent = 1;
	}
	if ((newstate == TCP_FIN_WAIT1 || newstate == TCP_CLOSE_WAIT) && !c->closing_ns)
		c->closing_ns = bpf_ktime_get_boot_ns();
	if (newstate == TCP_CLOSE) {
		closed(sk, c, bpf_ktime_get_boot_ns());
		/*
		 * Kept (freed with the socket): an abort sends its reset after
		 * this change (close() with unread data, SO_LINGER 0).
		 */
		c->closed = 1;
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(kupod_retrans, struct sock *sk)
{
	struct sock_event *e;
	struct conn *c;

	if (sock_outside_target(sk))
		return 0;
	c = conn_of(sk);
	if (!c)
		return 0;
	e = conn_event(SOCK_EVENT_RETRANSMIT, sk, c);
	if (!e)
		return 0;
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	event_submit(e);
	return 0;
}

/* The first reset a connection sends or receives: counted, and announced on the ring. */
static __always_inline int on_reset(struct sock *sk, __u8 how)
{
	struct conn_stats *s;
	struct sock_event *e;
	struct conn *c;

	if (!sk || sock_outside_target(sk))
		return 0;
	c = conn_of(sk);
	if (!c || c->reset)
		return 0;
	c->reset = how;
	s = conn_stats_of(c);
	if (s)
		s->resets += 1;
	e = conn_event(SOCK_EVENT_RESET, sk, c);
	if (!e)
		return 0;
	e->reset = how;
	e->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	event_submit(e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(kupod_rst_out, const struct sock *sk)
{
	return on_reset((struct sock *)sk, RESET_SENT);
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(kupod_rst_in, struct sock *sk)
{
	return on_reset(sk, RESET_RECEIVED);
}

/* A sidecar thread reads a request on an inbound connection. */
static __always_inline void sidecar_read(__u64 now)
{
	__u64 *read_at = bpf_task_storage_get(&sidecar_reads, bpf_get_current_task_btf(), NULL,
					      BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (read_at)
		*read_at = now;
}

/*
 * sk_user_data's flag of a socket in a sockmap/sockhash (include/net/sock.h,
 * Linux 5.19+): its sends may be redirected to the peer socket, which moves
 * no write_seq.
 */
#define SK_USER_DATA_PSOCK 4UL

static __always_inline bool psock_of(struct sock *sk)
{
	return (unsigned long)sk->sk_user_data & SK_USER_DATA_PSOCK;
}

/*
 * One forward timed: the sidecar's histograms, and its event (--verbose),
 * told from socket `sk` with state `c` (NULL: no event).
 */
static __noinline void sidecar_timed(struct sock *sk, struct conn *c, struct upstream *u,
				     __u32 service, __u64 to_service)
{
	struct sidecar_stats *s = bpf_map_lookup_elem(&sidecar_stats, &u->sidecar);
	struct sock_event *e;

	if (s) {
		hist_add(&s->process_ns, u->process_ns);
		hist_add(&s->to_service_ns, to_service);
	}
	if (!timing_events || !c)
		return;
	e = conn_event(SOCK_EVENT_SIDECAR, sk, c);
	if (!e)
		return;
	e->process_ns = u->process_ns;
	e->to_service_ns = to_service;
	e->peer_container = service;
	e->container = u->sidecar;
	event_submit(e);
}

/*
 * Where the service read bytes of the forward `u` just published, before the
 * write that returned; 0 if it did not.
 */
static __always_inline __u64 read_before_return(struct upstream *u, __u64 read_at)
{
	__u64 early = u->early_ns;

	if (early < read_at)
		return 0;
	if (!u->seq_known)
		return early; /* redirected: no sequence numbers, the read's time decides */
	return (__s32)(u->early_seq - u->written_seq) > 0 ? early : 0;
}

/*
 * A sidecar thread that has read a request at `read_at` writes on socket `sk`
 * (`sent` bytes, if the write is taken where it returned): if `sk` is one of
 * the sidecars' upstream connections, the request leaves the sidecar now. The
 * slot is found from the socket's own endpoints, so the write needs no
 * connection state.
 */
static __always_inline bool sidecar_sent(struct sock *sk, __u64 read_at, __u64 sent)
{
	struct tcp_sock *tp;
	struct upstream *u;
	struct flow f;
	__u64 now, early;
	__u32 slot;

	if (!flow_of_sock(sk, &f))
		return false;
	u = upstream_find(upstream_tag(&f, false), &slot);
	if (!u)
		return false;
	now = bpf_ktime_get_boot_ns();
	tp = psock_of(sk) ? NULL : bpf_skc_to_tcp_sock(sk);
	u->written_seq = tp ? tp->write_seq - (__u32)sent : 0;
	u->seq_known = tp != NULL;
	u->process_ns = now - read_at;
	if (!sent) {
		/* taken where the write begins: no byte of it is queued yet, no read came first */
		u->written_ns = now;
		return true;
	}
	/*
	 * Publish, then look for a read that came first; the service publishes
	 * its read, then looks for a forward (take_forward()). Both exchanges are
	 * full barriers: at least one side sees the other, and the forward goes
	 * to whichever takes written_ns from `now` back to 0.
	 */
	__sync_lock_test_and_set(&u->written_ns, now);
	early = read_before_return(u, read_at);
	if (!early)
		return true;
	u->early_ns = 0;
	if (__sync_val_compare_and_swap(&u->written_ns, now, 0) == now) {
		/* the write began before that read, where is unknown: its share goes to the sidecar */
		u->process_ns = early - read_at;
		sidecar_timed(sk, conn_of(sk), u, u->service, 0);
	}
	return true;
}

/* A service's first read on inbound connection `c`: is a sidecar's upstream connection the peer? */
static __noinline void find_upstream(struct conn *c)
{
	/* the sidecar claims its slot when its handshake completes, before our first read */
	c->up_tag = upstream_tag(&c->flow, true);
	upstream_find(c->up_tag, &c->up_slot);
	c->upstream = c->up_slot == UPSTREAM_NO_SLOT ? UPSTREAM_NONE : UPSTREAM_SIDECAR;
}

/* Whether the service's read up to `copied` took bytes of the forward in `u`. */
static __always_inline bool took_bytes_of(struct upstream *u, __u32 copied)
{
	return !u->seq_known || (__s32)(copied - u->written_seq) > 0;
}

/*
 * A service read on the upstream connection of `u`: the forward it took
 * (its time), or 0 if it took none. A read that finds none is kept for a
 * write that has not returned yet (sidecar_sent()); then it looks again for
 * one published meanwhile, as the sidecar looks for it after publishing.
 */
static __noinline __u64 take_forward(struct sock *sk, struct conn *c, struct upstream *u, __u64 now)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 copied;
	__u64 w;

	if (!tp)
		return 0;
	copied = tp->copied_seq;
	/* a plain load first: a forward missed here is looked for again below, after a barrier */
	w = *(volatile __u64 *)&u->written_ns;
	if (!w || !took_bytes_of(u, copied)) {
		u->early_seq = copied;
		u->service = c->container;
		__sync_lock_test_and_set(&u->early_ns, now);
		w = __sync_fetch_and_add(&u->written_ns, 0);
		/* none, or the next request's while this read took the rest of the last one */
		if (!w || !took_bytes_of(u, copied))
			return 0;
	}
	return __sync_val_compare_and_swap(&u->written_ns, w, 0) == w ? w : 0;
}

/* A service reads a request on `c`: if a sidecar forwarded it, count both durations. */
static __always_inline void service_received(struct sock *sk, struct conn *c, __u64 now)
{
	__u64 to_service, written;
	struct upstream *u;

	if (c->upstream == UPSTREAM_NONE)
		return;
	if (c->upstream == UPSTREAM_UNKNOWN)
		find_upstream(c);
	u = upstream_at(c->up_slot, c->up_tag);
	if (!u)
		return;
	written = take_forward(sk, c, u, now);
	if (!written)
		return;
	/* a forward published after this read began is timed as read at once */
	to_service = now > written ? now - written : 0;
	sidecar_timed(sk, c, u, c->container, to_service);
}

/* Whether a read or write of `ret` bytes on `sk` may concern the target. */
static __always_inline bool target_data(struct sock *sk, int ret, int flags)
{
	return ret > 0 && !(flags & MSG_PEEK) && sk && sk->sk_protocol == IPPROTO_TCP &&
	       !sock_outside_target(sk);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(kupod_recv, struct sock *sk, int ret, int flags)
{
	struct conn *c;

	if (!target_data(sk, ret, flags))
		return 0;
	c = claim_conn(sk);
	if (!c || c->closed)
		return 0;
	writes_seen(sk, c);
	data_moved(c, LAST_RECV);
	c->bytes_received += ret;
	if (c->direction != DIR_IN)
		return 0;
	if (c->role == ROLE_SIDECAR)
		sidecar_read(bpf_ktime_get_boot_ns());
	else if (c->role == ROLE_SERVICE)
		service_received(sk, c, bpf_ktime_get_boot_ns());
	return 0;
}

/*
 * A write is counted from write_seq (writes_seen()); here only two writes
 * matter: a connection's first (an accepted socket is claimed by its writer:
 * a server that speaks first) and a sidecar's forward of a request it has
 * just read. Both are taken where the write begins (tcp_sendmsg_locked,
 * Linux 6.16+), which only TCP sends reach: over loopback the service can
 * read a forwarded request before the sidecar's write returns.
 * sock_send_length (every socket's sends, after the fact) is attached only
 * where redirected sends are expected, or on older kernels; a forward taken
 * there finds the service's read that came first (read_before_return()).
 */
/* kupod_send_start is attached: sock_send_length only counts redirected sends. */
const volatile bool send_start = false;

/* A send of a redirected socket: counted as the application wrote it. */
static __noinline void psock_sent(struct sock *sk, int ret)
{
	struct conn *c = claim_conn(sk);

	if (!c || c->closed)
		return;
	if (!c->psock) {
		writes_seen(sk, c); /* what went through TCP before */
		c->psock = 1;
	}
	c->bytes_sent += ret;
	data_moved(c, LAST_SEND);
}

/* A write on `sk`: the forward of a request this thread has just read, if `sk` is an upstream. */
static __always_inline void sidecar_write(struct sock *sk, __u64 sent)
{
	__u64 *read_at = bpf_task_storage_get(&sidecar_reads, bpf_get_current_task_btf(), NULL, 0);

	if (read_at && *read_at && sidecar_sent(sk, *read_at, sent))
		*read_at = 0; /* the rest of the request's writes are not new requests */
}

/* A write of the target begins; `sent` is what this write adds to bytes_sent if it ended. */
static __always_inline void write_begins(struct sock *sk, __u64 sent)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return;
	if (tp->bytes_sent <= sent)
		claim_conn(sk);
	sidecar_write(sk, sent);
}

/* Once per segment a TCP write fills. */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(kupod_send_start, struct sock *sk)
{
	if (!sock_outside_target(sk))
		write_begins(sk, 0);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(kupod_send, struct sock *sk, int ret, int flags)
{
	bool psock;

	if (!target_data(sk, ret, flags))
		return 0;
	psock = psock_of(sk);
	if (psock)
		psock_sent(sk, ret);
	/* a redirected send does not pass tcp_sendmsg_locked */
	if (!send_start || psock)
		write_begins(sk, ret);
	return 0;
}

/* Keep the event and counter types in the object's BTF for the decoder generator. */
struct sock_event _sock_event = {};
struct conn_stats _conn_stats = {};
struct sidecar_stats _sidecar_stats = {};
struct stats_key _stats_key = {};
