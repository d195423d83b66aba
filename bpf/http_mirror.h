/*
 * Both ends of a connection inside the pod (a sidecar's upstream call to the
 * service over loopback) carry the same bytes. Framing them twice doubled the
 * HTTP probe's cost on that leg, so once both ends are followed the server
 * end stops framing: it only stamps when its reads and writes happened, by
 * TCP sequence number, in the pair's entry. The client end frames both
 * directions (bpf/http1_fast.h) and its record of an exchange carries the
 * server end's times for the same bytes, found by their sequence numbers;
 * user space reports the server's span from it. Where the client end is
 * framed in user space, the stamps go out as records of their own.
 *
 * Needs the write-start hook (tcp_sendmsg_locked): a write stamped where it
 * returns could be read by the client end before its stamp exists.
 */
#ifndef KUPOD_HTTP_MIRROR_H
#define KUPOD_HTTP_MIRROR_H

#ifndef barrier
#define barrier() asm volatile("" ::: "memory")
#endif

#define PAIR_READS 8
#define PAIR_TURNS 4 /* a turn: a read after a write, where a request starts */
#define PAIR_WRITES 8
#define PAIR_CHECKS 8 /* boundary reads a loopback server end looks for its client end at */

/* http_pair.flags */
#define PAIR_MIRRORED 1   /* the server end stamps, from mirror_since on */
#define PAIR_CLIENT_RAW 2 /* the client end is framed in user space: stamps go out as records */
#define PAIR_H2 4         /* HTTP/2: the server end stamps from wherever it joins (see h2_pair) */

/* http_sock.pair */
#define PAIR_UNKNOWN 0
#define PAIR_NO 1        /* not a loopback connection */
#define PAIR_CANDIDATE 2 /* loopback: either end of a pair */
#define PAIR_CLIENT 3    /* the client end, its entry made */
#define PAIR_SERVER 4    /* the server end, stamping */

/* A loopback connection by its client end's view, the same from both ends. */
struct pair_key {
	__u32 netns;
	__u16 cport;
	__u16 sport;
	__u32 caddr; /* IPv6: the address's four words xor-ed */
	__u32 saddr;
};

struct pair_stamp {
	__u32 seq; /* the call's first byte */
	__u32 end; /* past its last (a write: 0, its end is not known where it begins) */
	__u64 ts;
};

struct http_pair {
	__u64 server_sock;
	__u64 client_sock;
	__u64 flags;        /* PAIR_* (64 bits: atomic operations on them return the old value) */
	__u32 mirror_since; /* the first request byte the server end did not frame itself */
	__u32 server_container;
	__u32 server_pid;
	__u32 reads, turns, writes; /* stamps made; a stamp's slot is its number mod the ring's size */
	char server_comm[16];
	struct pair_stamp read[PAIR_READS];
	struct pair_stamp turn[PAIR_TURNS];
	struct pair_stamp write[PAIR_WRITES];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, struct pair_key);
	__type(value, struct http_pair);
} http_pairs SEC(".maps");

static const struct http_pair empty_pair = {};

/*
 * HTTP/2 client ends user space found (by the requests they write) on
 * connections whose preface went by before kupod: the kernel cannot tell the
 * two ends of those apart. Taken out when the socket makes its pair's entry;
 * LRU: marks of sockets that closed first age out.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* the socket's address, records' sock_id */
	__type(value, __u8);
} h2_clients SEC(".maps");

static __always_inline __u32 fold6(const __u32 *a)
{
	return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/*
 * The pair key of a loopback socket (false: not loopback, or not TCP over IP).
 * `client`: the socket is the client end (its local address is the client's).
 * Read with probe reads, not BTF loads: the verifier resolves each BTF load of
 * every path it walks by name in the kernel's BTF, which made loading slow.
 */
static __noinline bool pair_key_of(const struct sock *sk, bool client, struct pair_key *k)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u32 local, remote, l[4], r[4];

	if (family == AF_INET) {
		local = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		remote = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		/* 127.0.0.0/8, or the pod's own address on both ends */
		if ((remote & 0xff) != 127 && remote != local)
			return false;
	} else if (family == AF_INET6) {
		if (BPF_CORE_READ_INTO(&l, sk, __sk_common.skc_v6_rcv_saddr) ||
		    BPF_CORE_READ_INTO(&r, sk, __sk_common.skc_v6_daddr))
			return false;
		if (!r[0] && !r[1] && r[2] == bpf_htonl(0xffff)) {
			/*
			 * A dual-stack socket on IPv4 (::ffff:a.b.c.d): its peer may be an
			 * AF_INET socket, keyed by the IPv4 addresses alone
			 */
			local = l[3];
			remote = r[3];
			if ((remote & 0xff) != 127 && remote != local)
				return false;
		} else {
			if ((r[0] || r[1] || r[2] || r[3] != bpf_htonl(1)) &&
			    (l[0] != r[0] || l[1] != r[1] || l[2] != r[2] || l[3] != r[3]))
				return false;
			local = fold6(l);
			remote = fold6(r);
		}
	} else {
		return false;
	}
	k->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (client) {
		k->cport = BPF_CORE_READ(sk, __sk_common.skc_num);
		k->sport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		k->caddr = local;
		k->saddr = remote;
	} else {
		k->cport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		k->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		k->caddr = remote;
		k->saddr = local;
	}
	return true;
}

/*
 * A stamp's time, with its sequence numbers in `seq` and `end`, read as a
 * whole: 0 when the server end is rewriting it (its time is written last,
 * after a zero, so a time unchanged across the read vouches for the rest;
 * this machine's stores stay in order, x86-TSO).
 */
static __always_inline __u64 stamp_get(const struct pair_stamp *t, __u32 *seq, __u32 *end)
{
	__u64 ts = t->ts;

	barrier();
	*seq = t->seq;
	*end = t->end;
	barrier();
	return ts == t->ts ? ts : 0;
}

/* The stamp of the read that holds byte `s`, its time (0: not among the stamps). */
static __always_inline __u64 pair_read_at(const struct http_pair *p, __u32 s)
{
	__u32 seq, end;
	__u64 ts;

	for (int i = 0; i < PAIR_READS; i++) {
		ts = stamp_get(&p->read[i], &seq, &end);
		if (ts && (__s32)(s - seq) >= 0 && (__s32)(end - s) > 0)
			return ts;
	}
	for (int i = 0; i < PAIR_TURNS; i++) {
		ts = stamp_get(&p->turn[i], &seq, &end);
		if (ts && (__s32)(s - seq) >= 0 && (__s32)(end - s) > 0)
			return ts;
	}
	return 0;
}

/*
 * When the write that holds byte `e` began: the latest write that began at or
 * before it (writes follow each other; a write that waited began again at the
 * same byte: the latest of those), 0 when every stamped write began after it.
 */
static __always_inline __u64 pair_write_at(const struct http_pair *p, __u32 e)
{
	__u32 seq, end;
	__u64 best_ts = 0, ts;
	__s32 best = -1, d;

	for (int i = 0; i < PAIR_WRITES; i++) {
		ts = stamp_get(&p->write[i], &seq, &end);
		d = e - seq;
		if (ts && d >= 0 && (best < 0 || d < best || (d == best && ts > best_ts))) {
			best = d;
			best_ts = ts;
		}
	}
	return best_ts;
}

#endif
