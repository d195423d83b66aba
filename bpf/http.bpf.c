// SPDX-License-Identifier: GPL-2.0
/*
 * HTTP probe, kernel side: the bytes of the target's TCP sockets that HTTP
 * needs, from the socket probe's own tracepoints (sock_send_length,
 * sock_recv_length) and the syscall's registers — no syscall tracepoint,
 * which would slow every task of the node.
 *
 * A socket is followed once one of its reads or writes starts with an HTTP
 * start line (a method or "HTTP/"), the HTTP/2 preface, or HTTP/2 frames (a
 * connection opened before kupod started: gRPC channels live long); a socket
 * that shows none in its first MAX_MISSES calls is left alone for good, so
 * other protocols cost one storage lookup per call.
 *
 * HTTP/1.x is framed here (bpf/http1_fast.h): one record per request and its
 * response, nothing for the calls inside a content-length body. What that
 * framer leaves to user space, and HTTP/2, goes out call by call: a call that
 * starts a message carries its head (up to head_max bytes: the start line and
 * headers), so do the next calls while the headers may go on; a call inside a
 * body carries HTTP_PREFIX bytes (chunk framing) and its last HTTP_TAIL bytes
 * (the end of a chunked body). The rest is counted by length. User space
 * (probes/http1.ts, probes/h2/) does the framing and pairing of those.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "http.h"
#include "payload.h"
#include "http1_fast.h"

#define IPPROTO_TCP 6
#define MSG_PEEK 2
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define MAX_IOV 64
#define MAX_MISSES 16
/* Calls after a message's first that still get a full head: its headers may go on. */
#define HEAD_CALLS 2

#define VERDICT_UNKNOWN 0
#define VERDICT_HTTP 1
#define VERDICT_OTHER 2
#define VERDICT_H2 3 /* HTTP/2 (gRPC): frames fall anywhere in a call, every head is copied */

#define PREFACE WORD('P', 'R', 'I', ' ')

/* Bytes copied from the start of an HTTP/1.x message (≤ HTTP_HEAD_MAX). */
const volatile __u32 head_max = 1024;
/* HTTP/1.x framed in the kernel; off, every call goes to user space (previews need bodies). */
const volatile bool frame_http1 = true;
/* Records an HTTP/2 call is copied in at most (HTTP2_PIECES bounds it). */
const volatile __u32 h2_pieces = HTTP2_PIECES;
/* The pod's own connections framed at their client end only (bpf/http_mirror.h). */
const volatile bool mirror_pairs = false;

struct http_sock {
	__u32 container;
	__u8 verdict;
	__u8 misses;
	__u8 head_calls[2]; /* by direction: calls that may still carry headers */
	__u8 announced;     /* who owns it and its endpoints went out in a record */
	__u8 pair;          /* PAIR_* (bpf/http_mirror.h) */
	__u8 last_dir;      /* a mirrored server end's last call: HTTP_DIR_* + 1, 0 before any */
	__u8 pair_checks;   /* boundary reads it looked for its client end at */
	__u8 connected;     /* its connect() was seen: the client end of its connection */
	__u32 send_seq;     /* write_seq when the write stamped in send_ns began */
	__u64 send_ns;      /* when the write in progress began (0: not seen, or taken) */
	__u16 skipped[2];   /* HTTP/2, by direction: control-frame calls since its last record */
	struct h1_state h1;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct http_sock);
} http_socks SEC(".maps");

/*
 * A record being built: the event, the tail, the head. The head has room for
 * an offset below HTTP_HEAD_MAX plus a size masked to HEAD_MASK: the bounds
 * the verifier can follow.
 */
#define HEAD_MASK (2 * HTTP_HEAD_MAX - 1)
#define IOV_BATCH 16 /* iovecs read at once by the HTTP/2 walk */

/* Where the walk over an HTTP/2 call stands (h2_copy). */
struct h2_walk {
	__u64 iov;       /* the call's iovec array (user memory) */
	__u64 iovcnt;
	__u64 base;      /* the current segment's next byte (user memory) */
	__u64 seg_start;
	__u64 seg_left;  /* bytes of the current segment not yet walked */
	__u64 now;
	__u32 next_iov;  /* the next iovec */
	__u32 left;      /* bytes of the call not yet walked */
	__u32 pieces;    /* full records sent */
	__u32 seq_end;
	__u8 copying;    /* 0 once the last record is full: the rest is walked for its tail */
};

struct scratch {
	struct http_event e;
	__u8 tail[HTTP_TAIL];
	__u8 head[HTTP_HEAD_MAX + HEAD_MASK];
	struct h1_scratch h1;
	struct iovec iov[IOV_BATCH];
	struct h2_walk w;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

#define WORD(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* Whether the first four bytes open an HTTP/1.x request or response. */
static __always_inline bool start_line(__u32 w)
{
	switch (w) {
	case WORD('G', 'E', 'T', ' '):
	case WORD('P', 'O', 'S', 'T'):
	case WORD('P', 'U', 'T', ' '):
	case WORD('H', 'E', 'A', 'D'):
	case WORD('D', 'E', 'L', 'E'):
	case WORD('P', 'A', 'T', 'C'):
	case WORD('O', 'P', 'T', 'I'):
	case WORD('C', 'O', 'N', 'N'):
	case WORD('T', 'R', 'A', 'C'):
	case WORD('H', 'T', 'T', 'P'):
		return true;
	}
	return false;
}

/* The first bytes of the payload's first segment (0 when unreadable). */
static __always_inline __u32 first_word(const struct payload *p, __u32 len)
{
	const void *base = p->buf;
	struct iovec v;
	__u32 w = 0;

	if (len < 4)
		return 0;
	if (p->kind == PAYLOAD_IOV) {
		if (!p->iovcnt || bpf_probe_read_user(&v, sizeof(v), p->iov) || v.iov_len < 4)
			return 0;
		base = v.iov_base;
	}
	bpf_probe_read_user(&w, sizeof(w), base);
	return w;
}

#define H2_FRAME_HEADER 9
#define H2_SYNC_MAX_FRAME 16384 /* SETTINGS_MAX_FRAME_SIZE's default, what peers mostly keep */

/* Flags each frame type defines (RFC 9113 6), DATA through CONTINUATION. */
static const __u8 h2_flags[10] = {0x09, 0x2d, 0, 0, 0x01, 0x0c, 0x01, 0, 0, 0x04};

/*
 * The payload length of the HTTP/2 frame whose header is `h`, or -1 when the
 * bytes cannot be one that may start a call: a known type with its defined
 * flags and the stream and length its type requires, not a CONTINUATION.
 */
static __always_inline int h2_frame(const __u8 *h)
{
	__u32 n = (__u32)h[0] << 16 | (__u32)h[1] << 8 | h[2];
	__u8 type = h[3], flags = h[4];
	bool stream = (h[5] & 0x7f) | h[6] | h[7] | h[8];

	if (h[5] & 0x80 || type >= 9 || n > H2_SYNC_MAX_FRAME || (flags & ~h2_flags[type]))
		return -1;
	switch (type) {
	case 0: /* DATA */
	case 1: /* HEADERS */
		return stream ? n : -1;
	case 2: /* PRIORITY */
		return stream && n == 5 ? n : -1;
	case 3: /* RST_STREAM */
		return stream && n == 4 ? n : -1;
	case 4: /* SETTINGS */
		return !stream && n % 6 == 0 && (!(flags & 1) || !n) ? n : -1;
	case 5: /* PUSH_PROMISE */
		return stream && n >= 4 ? n : -1;
	case 6: /* PING */
		return !stream && n == 8 ? n : -1;
	case 7: /* GOAWAY */
		return !stream && n >= 8 ? n : -1;
	default: /* WINDOW_UPDATE */
		return n == 4 ? n : -1;
	}
}

/*
 * Whether a call of `len` bytes is HTTP/2 frames from its first byte: a
 * well-formed frame header whose frame fits in the call, and the next header
 * well-formed too where the first segment holds it. Calls of a connection
 * joined midway that start on a frame boundary pass (writes do: peers write
 * whole frames); user space checks the framing of every byte before it
 * believes them, so a false match costs records, never a wrong call.
 */
static __always_inline bool h2_frames(const struct payload *p, __u32 len)
{
	const __u8 *base = p->buf;
	__u8 h[H2_FRAME_HEADER];
	struct iovec v;
	__u64 seg = len;
	int n;

	if (len < H2_FRAME_HEADER)
		return false;
	if (p->kind == PAYLOAD_IOV) {
		if (!p->iovcnt || bpf_probe_read_user(&v, sizeof(v), p->iov))
			return false;
		base = v.iov_base;
		seg = v.iov_len < len ? v.iov_len : len;
	}
	if (seg < H2_FRAME_HEADER || bpf_probe_read_user(h, sizeof(h), base))
		return false;
	n = h2_frame(h);
	if (n < 0 || len < H2_FRAME_HEADER + n)
		return false;
	if (len == H2_FRAME_HEADER + n || seg < 2 * H2_FRAME_HEADER + n)
		return true;
	if (bpf_probe_read_user(h, sizeof(h), base + H2_FRAME_HEADER + n))
		return false;
	/* a CONTINUATION may follow HEADERS */
	return h2_frame(h) >= 0 || (h[3] == 9 && !(h[5] & 0x80));
}

/*
 * HTTP/2 calls of up to H2_CONTROL_MAX bytes that hold only whole control
 * frames user space has no use for (PING, WINDOW_UPDATE, SETTINGS
 * acknowledgements) go out in no record: their length rides on the
 * direction's next record (`skipped`). A proxy that acknowledges its peer's
 * pings in writes of their own (nginx, one per gRPC call) made a record of
 * each. User space takes the bytes as skipped frames where its reading is at
 * a frame's start, as a hole otherwise (bytes that only looked like frames).
 */
#define H2_CONTROL_MAX 64
#define H2_CONTROL_FRAMES 4

/* Whether the `len` bytes at `b` (kernel memory) are whole control frames of those kinds. */
static __always_inline bool h2_control_only(const __u8 *b, __u32 len)
{
	__u32 off = 0;
	const __u8 *h;
	int n;

	if (len > H2_CONTROL_MAX)
		return false;
	for (int i = 0; i < H2_CONTROL_FRAMES; i++) {
		if (off + H2_FRAME_HEADER > len)
			return false;
		h = b + (off & (H2_CONTROL_MAX - 1));
		n = h2_frame(h);
		if (n < 0 || !(h[3] == 6 || h[3] == 8 || (h[3] == 4 && (h[4] & 1))))
			return false;
		off += H2_FRAME_HEADER + n;
		if (off == len)
			return true;
	}
	return false;
}

/* The walk over an iovec array, one bpf_loop step per iovec. */
struct iov_walk {
	const struct iovec *iov;
	struct scratch *s;
	const void *last_base;
	__u64 iovcnt;
	__u64 left;     /* payload bytes not yet placed in an iovec */
	__u64 last_seg; /* bytes of the payload in the last iovec reached */
	__u32 limit;
};

/*
 * One iovec: its bytes go after those copied so far, up to the limit. The
 * offset lives in the record (s->e.head_len), not in the walk: read back from
 * a map it is a bounded unknown to the verifier, which then checks this step
 * once, where an offset it tracked exactly made every iteration a new state.
 */
static long iov_step(__u32 i, void *data)
{
	struct iov_walk *w = data;
	struct scratch *s = w->s;
	struct iovec v;
	__u64 seg, n, off;

	if (!w->left || i >= w->iovcnt || bpf_probe_read_user(&v, sizeof(v), &w->iov[i]))
		return 1;
	seg = v.iov_len < w->left ? v.iov_len : w->left;
	off = s->e.head_len;
	if (off < w->limit && seg) {
		n = w->limit - off;
		if (n > seg)
			n = seg;
		if (n > HTTP_HEAD_MAX)
			n = HTTP_HEAD_MAX;
		n &= HEAD_MASK;
		off &= HTTP_HEAD_MAX - 1;
		if (bpf_probe_read_user(s->head + off, n, v.iov_base))
			return 1;
		s->e.head_len = off + n;
	}
	w->left -= seg;
	w->last_base = v.iov_base;
	w->last_seg = seg;
	return 0;
}

/*
 * Copies up to `limit` bytes of the payload's start into s->head (across the
 * iovecs of a readv/writev/sendmsg/recvmsg) and its last bytes into s->tail.
 */
static __always_inline void copy_payload(struct scratch *s, const struct payload *p, __u32 len,
					 __u32 limit)
{
	struct iov_walk w = {
		.iov = p->iov,
		.s = s,
		.last_base = p->buf,
		.iovcnt = p->iovcnt,
		.left = len,
		.last_seg = len,
		.limit = limit,
	};
	__u64 n, t;

	s->e.head_len = 0;
	if (p->kind == PAYLOAD_FLAT) {
		n = len < limit ? len : limit;
		if (n > HTTP_HEAD_MAX)
			n = HTTP_HEAD_MAX;
		asm volatile("" : "+r"(n));
		n &= HEAD_MASK;
		if (n && !bpf_probe_read_user(s->head, n, p->buf))
			s->e.head_len = n;
	} else {
		bpf_loop(MAX_IOV, iov_step, &w, 0);
		if (w.left)
			w.last_seg = 0; /* the end lies in an iovec past MAX_IOV */
	}
	t = len < HTTP_TAIL ? len : HTTP_TAIL;
	if (t > w.last_seg)
		t = w.last_seg;
	/* a no-op (t <= HTTP_TAIL) the compiler must keep: a bound for the verifier */
	asm volatile("" : "+r"(t));
	t &= 2 * HTTP_TAIL - 1;
	if (t && bpf_probe_read_user(s->tail, t, w.last_base + w.last_seg - t))
		t = 0;
	s->e.tail_len = t;
}

/*
 * Whether the payload ends a header block (its last four bytes are CR LF CR
 * LF). Told from a whole tail only: a payload ending in a shorter last
 * segment counts as not ending one, which costs a full head more, no more.
 */
static __always_inline bool ends_headers(const struct scratch *s)
{
	const __u8 *end = s->tail + HTTP_TAIL - 4;

	return s->e.tail_len == HTTP_TAIL && end[0] == '\r' && end[1] == '\n' && end[2] == '\r' &&
	       end[3] == '\n';
}

static __always_inline void fill_endpoints(struct http_event *e, const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;

	e->family = family;
	e->sport = sk->__sk_common.skc_num;
	e->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_daddr, 4);
	} else {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_v6_daddr, 16);
	}
}

/*
 * The followed state of a target's socket, created on its owner's first call.
 * A socket with state is the target's: only sockets without it are checked.
 */
static __always_inline struct http_sock *http_sock_of(struct sock *sk)
{
	struct http_sock *hs;
	__u32 container;

	/* the rest of the node's sockets (a client on the host) leave before any storage lookup */
	if (sock_outside_target(sk))
		return NULL;
	hs = bpf_sk_storage_get(&http_socks, sk, NULL, 0);
	if (hs)
		return hs;
	if (!target_current(&container))
		return NULL;
	/* created zeroed: the state is too large to build on the stack */
	hs = bpf_sk_storage_get(&http_socks, sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (hs)
		hs->container = container;
	return hs;
}

/* Who owns the socket and its endpoints, in the record `e` (its first). */
static __always_inline void announce(struct http_sock *hs, struct http_event *e,
				     const struct sock *sk)
{
	hs->announced = 1;
	e->first = 1;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	fill_endpoints(e, sk);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* A socket the kernel frames is announced in a record of its own before any other. */
static __always_inline void announce_alone(struct http_sock *hs, struct scratch *s,
					   struct sock *sk, __u64 now)
{
	__builtin_memset(&s->e, 0, sizeof(s->e));
	s->e.ts_ns = now;
	s->e.sock_id = (__u64)sk;
	s->e.kind = HTTP_RECORD_OPEN;
	s->e.container = hs->container;
	announce(hs, &s->e, sk);
	event_output(&s->e, sizeof(s->e) + HTTP_TAIL, now);
}

/*
 * Where the call's bytes end in the connection's byte stream (write_seq after a
 * send, copied_seq after a receive): consecutive calls of a direction meet, so
 * user space tells a record lost in a full ring from the hole it leaves.
 */
static __always_inline __u32 seq_after(struct sock *sk, __u8 dir)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 seq;
	int state;

	if (!tp)
		return 0;
	if (dir == HTTP_DIR_SENT)
		return tp->write_seq;
	/*
	 * A read that reaches the peer's FIN (data and FIN in one segment: a peer
	 * that writes and closes) moves copied_seq past it too: one number, no byte.
	 */
	seq = tp->copied_seq;
	state = sk->__sk_common.skc_state;
	if (seq == tp->rcv_nxt &&
	    (state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING))
		seq--;
	return seq;
}

/*
 * An HTTP/2 call is copied whole, up to h2_pieces records of HTTP_HEAD_MAX
 * bytes: a proxy's shared upstream connection writes many calls' frames at
 * once, and with one record a call most of those calls went unframed. Every
 * record but the last is a full piece (`cont` after the first: it need not
 * start on a frame); the last takes the rest, copied up to HTTP_HEAD_MAX,
 * with the call's last bytes as its tail (trailers after a long body).
 */
#define H2_MAX_IOV 1024 /* UIO_MAXIOV: gRPC C-core writes a few iovecs per frame */
/* a step reaches each iovec, at least one more copies or passes it, one more ends each piece */
#define H2_STEPS (2 * H2_MAX_IOV + 2 * HTTP2_PIECES)

/*
 * One step: the next segment, or one copy into the record (sent when it is a
 * full piece). The walk's state lives in the map value, not on the stack: read
 * back from a map it is unknown to the verifier, which then checks the step
 * once, where counters it tracked exactly made every iteration a new state.
 */
static long h2_step(__u32 i, void *data)
{
	struct scratch *s = *(struct scratch **)data;
	struct h2_walk *w = &s->w;
	__u64 off, n, b;

	if (!w->left)
		return 1;
	if (!w->seg_left) {
		b = w->next_iov % IOV_BATCH;
		if (w->next_iov >= w->iovcnt)
			return 1;
		if (!b) {
			n = w->iovcnt - w->next_iov;
			if (n > IOV_BATCH)
				n = IOV_BATCH;
			if (bpf_probe_read_user(s->iov, n * sizeof(struct iovec),
						(const struct iovec *)w->iov + w->next_iov))
				return 1;
		}
		w->next_iov++;
		w->base = w->seg_start = (__u64)s->iov[b & (IOV_BATCH - 1)].iov_base;
		n = s->iov[b & (IOV_BATCH - 1)].iov_len;
		w->seg_left = n < w->left ? n : w->left;
		return 0;
	}
	if (!w->copying) {
		w->left -= w->seg_left;
		w->base += w->seg_left;
		w->seg_left = 0;
		return 0;
	}
	off = s->e.head_len;
	n = HTTP_HEAD_MAX - off;
	if (n > w->seg_left)
		n = w->seg_left;
	n &= HEAD_MASK;
	off &= HTTP_HEAD_MAX - 1;
	if (bpf_probe_read_user(s->head + off, n, (const void *)w->base))
		return 1; /* the rest of the call is counted, not copied */
	s->e.head_len = off + n;
	w->base += n;
	w->seg_left -= n;
	w->left -= n;
	if (s->e.head_len < HTTP_HEAD_MAX || !w->left)
		return 0;
	if (w->pieces + 1 >= h2_pieces || w->pieces + 1 >= HTTP2_PIECES) {
		w->copying = 0;
		return 0;
	}
	s->e.len = HTTP_HEAD_MAX;
	/* sequence numbers wrap: unsigned arithmetic is the point */
	s->e.seq = w->seq_end ? w->seq_end - w->left : 0;
	s->e.cont = w->pieces > 0;
	event_output(s, sizeof(s->e) + HTTP_TAIL + HTTP_HEAD_MAX, w->now);
	s->e.first = 0;
	s->e.skipped = 0;
	s->e.head_len = 0;
	w->pieces++;
	return 0;
}

/* The call's pieces sent, and its last record (the rest of it) in s, not yet sent. */
static __always_inline void h2_copy(struct scratch *s, const struct payload *p, __u32 len,
				    __u64 now)
{
	struct h2_walk *w = &s->w;
	__u64 t, walked;

	w->iov = (__u64)p->iov;
	w->iovcnt = p->kind == PAYLOAD_IOV ? p->iovcnt : 0;
	w->base = w->seg_start = p->kind == PAYLOAD_FLAT ? (__u64)p->buf : 0;
	w->seg_left = p->kind == PAYLOAD_FLAT ? len : 0;
	w->now = now;
	w->next_iov = 0;
	w->left = len;
	w->pieces = 0;
	w->seq_end = s->e.seq;
	w->copying = 1;
	bpf_loop(H2_STEPS, h2_step, &s, 0);
	s->e.len = len - w->pieces * HTTP_HEAD_MAX;
	s->e.seq = w->seq_end;
	s->e.cont = w->pieces > 0;
	/* the tail: from the segment that holds the call's end, when the walk reached it */
	walked = w->base - w->seg_start;
	t = s->e.len - s->e.head_len;
	if (w->left || !t || !walked)
		return;
	if (t > HTTP_TAIL)
		t = HTTP_TAIL;
	if (t > walked)
		t = walked;
	asm volatile("" : "+r"(t));
	t &= 2 * HTTP_TAIL - 1;
	if (t && !bpf_probe_read_user(s->tail, t, (const void *)(w->base - t)))
		s->e.tail_len = t;
}

/*
 * When the write that just returned `ret` bytes began, or 0 if its start was not seen: the stamp
 * is this write's if the write_seq then plus what it wrote is the write_seq now (a sendfile or a
 * redirected send in between leaves a stamp that is not).
 */
static __always_inline __u64 send_began(struct sock *sk, struct http_sock *hs, int ret)
{
	__u64 began = hs->send_ns;
	struct tcp_sock *tp;

	if (!began)
		return 0;
	hs->send_ns = 0;
	tp = bpf_skc_to_tcp_sock(sk);
	return tp && tp->write_seq - hs->send_seq == (__u32)ret ? began : 0;
}

/* One stamp, its time written last: a reader never takes a stamp half rewritten for its time. */
static __always_inline void stamp_set(struct pair_stamp *t, __u32 seq, __u32 end, __u64 ts)
{
	t->ts = 0;
	barrier();
	t->seq = seq;
	t->end = end;
	barrier();
	t->ts = ts;
}

/*
 * A mirrored server end's call, stamped in its pair's entry (and sent as a
 * record while the client end is framed in user space). The count is bumped
 * with an atomic operation, a full barrier: the flags read after it see a
 * client end that went to user space before, or that end sees this stamp.
 */
static __always_inline void pair_stamp(struct http_pair *p, __u64 sock, __u8 dir, __u32 seq,
				       __u32 end, __u64 ts, bool turn)
{
	struct pair_stamp *t;

	/* HTTP/2's client end is always framed in user space, which alone matches stamps */
	if (p->flags & PAIR_H2) {
		stamp_out(sock, dir, seq, end, ts);
		return;
	}
	if (dir == HTTP_DIR_RECEIVED) {
		t = &p->read[p->reads % PAIR_READS];
		stamp_set(t, seq, end, ts);
		if (turn)
			stamp_set(&p->turn[p->turns++ % PAIR_TURNS], seq, end, ts);
		__sync_fetch_and_add(&p->reads, 1);
	} else {
		t = &p->write[p->writes % PAIR_WRITES];
		stamp_set(t, seq, 0, ts);
		__sync_fetch_and_add(&p->writes, 1);
	}
	if (p->flags & PAIR_CLIENT_RAW)
		pair_stamp_out(sock, dir, t);
}

/* Whether a read of `len` bytes holds only control frames (h2_control_only), from its buffer. */
static __always_inline bool h2_control_read(__u32 len)
{
	struct payload p = {};
	struct scratch *s;
	const void *base;
	struct iovec v;
	__u32 zero = 0, n = len;

	if (n < H2_FRAME_HEADER || n > H2_CONTROL_MAX)
		return false;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return false;
	payload_of_current(&p);
	base = p.buf;
	if (p.kind == PAYLOAD_IOV) {
		if (!p.iovcnt || bpf_probe_read_user(&v, sizeof(v), p.iov) || v.iov_len < n)
			return false;
		base = v.iov_base;
	} else if (p.kind != PAYLOAD_FLAT) {
		return false;
	}
	if (bpf_probe_read_user(s->head, n & (2 * H2_CONTROL_MAX - 1), base))
		return false;
	return h2_control_only(s->head, n);
}

/* A mirrored server end's read: stamped; a pair whose client end is gone is let go. */
static __always_inline void pair_read(struct sock *sk, struct http_sock *hs, __u32 len)
{
	struct http_pair *p = bpf_map_lookup_elem(&http_pairs, &hs->h1.pk);
	__u32 end;

	if (!p) {
		hs->verdict = VERDICT_OTHER;
		return;
	}
	end = seq_after(sk, HTTP_DIR_RECEIVED);
	pair_stamp(p, (__u64)sk, HTTP_DIR_RECEIVED, end - len, end, bpf_ktime_get_ns(),
		   hs->last_dir != HTTP_DIR_RECEIVED + 1);
	hs->last_dir = HTTP_DIR_RECEIVED + 1;
}

/*
 * A loopback server end at a message boundary, its read about to start a
 * request: when its client end is followed and framed in the kernel, this
 * end becomes its mirror from this read on. The flag bits decide a race with
 * the client end going to user space: whichever sets its bit second sees the
 * other's.
 */
static __always_inline bool pair_join(struct sock *sk, struct http_sock *hs, __u32 len)
{
	struct pair_key k = {};
	struct http_pair *p;
	__u64 old;
	__u32 end;

	hs->pair_checks++;
	if (!pair_key_of(sk, false, &k)) {
		hs->pair = PAIR_NO;
		return false;
	}
	p = bpf_map_lookup_elem(&http_pairs, &k);
	if (!p || p->server_sock || (p->flags & PAIR_CLIENT_RAW))
		return false;
	end = seq_after(sk, HTTP_DIR_RECEIVED);
	p->server_sock = (__u64)sk;
	p->server_container = hs->container;
	p->server_pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(p->server_comm, sizeof(p->server_comm));
	p->mirror_since = end - len;
	old = __sync_fetch_and_or(&p->flags, PAIR_MIRRORED);
	if (old & PAIR_CLIENT_RAW) {
		hs->pair = PAIR_NO;
		return false;
	}
	hs->h1.pk = k;
	hs->pair = PAIR_SERVER;
	hs->last_dir = HTTP_DIR_RECEIVED + 1;
	pair_stamp(p, (__u64)sk, HTTP_DIR_RECEIVED, end - len, end, bpf_ktime_get_ns(), true);
	return true;
}

/* A loopback client end framed in the kernel makes its pair's entry. */
static __always_inline void pair_open(struct sock *sk, struct http_sock *hs)
{
	if (!pair_key_of(sk, true, &hs->h1.pk) ||
	    bpf_map_update_elem(&http_pairs, &hs->h1.pk, &empty_pair, BPF_ANY)) {
		hs->pair = PAIR_NO;
		return;
	}
	hs->h1.paired = 1;
	hs->pair = PAIR_CLIENT;
}

/*
 * An HTTP/2 connection of the pod with itself, where one of its writes begins.
 * Its client end (its connect() was seen, or user space found it writing
 * requests) makes the pair's entry; the server end, at a write once the entry
 * is there, joins: from that write on it copies nothing, user space frames the
 * client end's bytes for both ends and places each call at this end by the
 * stamps of its reads and writes. Unlike HTTP/1 the join needs no message
 * boundary: user space knows which streams the server end framed before. Here
 * rather than in on_data, whose verification its branches would multiply.
 */
static __always_inline void h2_pair(struct sock *sk, struct http_sock *hs)
{
	struct http2_join_event *e;
	struct pair_key k = {};
	struct http_pair *p;
	__u64 id = (__u64)sk, old, now;
	__u32 seq;

	/* its key as a client end, kept: the server end's is the same turned around */
	if (hs->pair == PAIR_UNKNOWN)
		hs->pair = pair_key_of(sk, true, &hs->h1.pk) ? PAIR_CANDIDATE : PAIR_NO;
	if (hs->pair != PAIR_CANDIDATE)
		return;
	if (hs->connected || bpf_map_lookup_elem(&h2_clients, &id)) {
		if (!hs->connected)
			bpf_map_delete_elem(&h2_clients, &id);
		if (bpf_map_update_elem(&http_pairs, &hs->h1.pk, &empty_pair, BPF_NOEXIST)) {
			hs->pair = PAIR_NO;
			return;
		}
		p = bpf_map_lookup_elem(&http_pairs, &hs->h1.pk);
		if (!p) {
			hs->pair = PAIR_NO;
			return;
		}
		p->client_sock = id;
		__sync_fetch_and_or(&p->flags, PAIR_H2 | PAIR_CLIENT_RAW);
		hs->pair = PAIR_CLIENT;
		return;
	}
	k.netns = hs->h1.pk.netns;
	k.cport = hs->h1.pk.sport;
	k.sport = hs->h1.pk.cport;
	k.caddr = hs->h1.pk.saddr;
	k.saddr = hs->h1.pk.caddr;
	p = bpf_map_lookup_elem(&http_pairs, &k);
	if (!p || !(p->flags & PAIR_H2) || p->client_sock == id)
		return;
	old = __sync_fetch_and_or(&p->flags, PAIR_MIRRORED);
	if (old & PAIR_MIRRORED)
		return;
	e = event_reserve(sizeof(*e));
	if (!e) {
		/* user space would not know: the pair stays unmirrored, both ends copied */
		hs->pair = PAIR_NO;
		return;
	}
	now = bpf_ktime_get_ns();
	seq = seq_after(sk, HTTP_DIR_SENT);
	p->server_sock = id;
	hs->h1.pk = k;
	hs->pair = PAIR_SERVER;
	e->ts_ns = now;
	e->sock_id = id;
	e->kind = HTTP_RECORD_JOIN;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->since[HTTP_DIR_SENT] = seq;
	e->since[HTTP_DIR_RECEIVED] = seq_after(sk, HTTP_DIR_RECEIVED);
	e->pad2 = 0;
	e->client_sock = p->client_sock;
	bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	/* this write: stamped before any of it is queued, not copied (on_data sees PAIR_SERVER) */
	pair_stamp(p, id, HTTP_DIR_SENT, seq, 0, now, false);
	hs->last_dir = HTTP_DIR_SENT + 1;
}

/* Nothing framed or pending in either direction: the next byte starts a request. */
static __always_inline bool h1_idle(const struct h1_state *st)
{
	return st->mode == H1_UNSYNCED ||
	       (st->mode == H1_FAST && st->req_dir == HTTP_DIR_RECEIVED && !st->state[0] &&
		!st->state[1] && !st->pending && !st->held && !st->resp.active);
}

static __always_inline int on_data(struct sock *sk, int ret, int flags, __u8 dir)
{
	struct http_sock *hs;
	struct payload p = {};
	struct scratch *s;
	__u32 zero = 0, limit, len = ret, word = 0, skip = 0, seq0 = 0;
	__u64 now, began = 0;
	long at;
	bool start, body = false;

	if (ret <= 0 || (flags & MSG_PEEK) || !sk || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	hs = http_sock_of(sk);
	if (!hs || hs->verdict == VERDICT_OTHER)
		return 0;
	if (dir == HTTP_DIR_SENT)
		began = send_began(sk, hs, ret);
	if (hs->pair == PAIR_SERVER) {
		/* no call starts in a read of control frames: nothing to place by its stamp */
		if (dir == HTTP_DIR_RECEIVED &&
		    (hs->verdict != VERDICT_H2 || len > H2_CONTROL_MAX || !h2_control_read(len)))
			pair_read(sk, hs, len);
		else if (dir == HTTP_DIR_SENT)
			hs->last_dir = HTTP_DIR_SENT + 1;
		return 0;
	}
	if (hs->verdict == VERDICT_HTTP) {
		if (hs->h1.mode == H1_TUNNEL || h1_in_body(&hs->h1, dir, len))
			return 0;
		/* a call that ends a body needs no bytes either */
		body = h1_all_body(&hs->h1, dir, len);
	}
	if (!body)
		payload_of_current(&p);
	if (hs->verdict == VERDICT_UNKNOWN) {
		word = p.kind != PAYLOAD_NONE ? first_word(&p, len) : 0;
		start = start_line(word);
		if (word == PREFACE || (!start && h2_frames(&p, len)))
			hs->verdict = VERDICT_H2;
		else if (!start) {
			if (++hs->misses >= MAX_MISSES)
				hs->verdict = VERDICT_OTHER;
			return 0;
		} else {
			hs->verdict = VERDICT_HTTP;
			if (!frame_http1)
				hs->h1.mode = H1_RAW;
		}
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return 0;
	/*
	 * The monotonic clock: the boot clock's extra offset read cost ~50 ns a call here. A sent
	 * message is timed where its write began, a received one where the read returned.
	 */
	now = began ?: bpf_ktime_get_ns();
	if (hs->verdict == VERDICT_HTTP && hs->h1.mode != H1_RAW) {
		if (hs->pair == PAIR_UNKNOWN) {
			struct pair_key k;

			hs->pair = mirror_pairs && pair_key_of(sk, true, &k) ? PAIR_CANDIDATE : PAIR_NO;
		}
		if (hs->pair == PAIR_CANDIDATE && dir == HTTP_DIR_RECEIVED &&
		    hs->pair_checks < PAIR_CHECKS && h1_idle(&hs->h1) && pair_join(sk, hs, len))
			return 0;
		if (hs->pair == PAIR_CANDIDATE || hs->pair == PAIR_CLIENT)
			seq0 = seq_after(sk, dir) - len;
		if (!hs->announced)
			announce_alone(hs, s, sk, now);
		at = h1_call(&hs->h1, &s->h1, &p, (__u64)sk, len, dir, now, seq0);
		if (hs->pair == PAIR_CANDIDATE && hs->h1.mode == H1_FAST &&
		    hs->h1.req_dir == HTTP_DIR_SENT)
			pair_open(sk, hs);
		if (at == -2)
			hs->verdict = VERDICT_OTHER; /* no request line in many calls: not HTTP/1 */
		if (at < 0 || at >= len)
			return 0;
		/* user space frames from here: this call's head from the message that starts at `at` */
		skip = at;
		hs->head_calls[dir & 1] = HEAD_CALLS;
	}
	s->e.ts_ns = now;
	s->e.sock_id = (__u64)sk;
	s->e.len = len;
	s->e.container = hs->container;
	s->e.kind = HTTP_RECORD_DATA;
	s->e.dir = dir;
	s->e.no_payload = p.kind == PAYLOAD_NONE;
	s->e.head_len = 0;
	s->e.tail_len = 0;
	s->e.first = 0;
	s->e.cont = 0;
	s->e.h2 = hs->verdict == VERDICT_H2;
	s->e.skipped = 0;
	if (hs->verdict == VERDICT_H2) {
		s->e.skipped = hs->skipped[dir & 1];
		hs->skipped[dir & 1] = 0;
	}
	/* HTTP/2 only: HTTP/1's calls inside a body are left out on purpose, not lost */
	s->e.seq = hs->verdict == VERDICT_H2 ? seq_after(sk, dir) : 0;
	if (!hs->announced)
		announce(hs, &s->e, sk);
	if (p.kind != PAYLOAD_NONE && hs->verdict == VERDICT_H2) {
		/* HTTP/2 frames fall anywhere: the whole call */
		h2_copy(s, &p, len, now);
		if (!s->e.first && s->e.head_len == len && s->e.skipped + len <= 0xffff &&
		    h2_control_only(s->head, len)) {
			hs->skipped[dir & 1] = s->e.skipped + len;
			return 0;
		}
	} else if (p.kind != PAYLOAD_NONE) {
		if (!word && !skip)
			word = first_word(&p, len);
		start = !skip && start_line(word);
		limit = skip ? skip + head_max :
			start || hs->head_calls[dir & 1] ? head_max :
							   HTTP_PREFIX;
		if (limit > HTTP_HEAD_MAX)
			limit = HTTP_HEAD_MAX;
		copy_payload(s, &p, len, limit);
		if (ends_headers(s))
			hs->head_calls[dir & 1] = 0;
		else if (start)
			hs->head_calls[dir & 1] = HEAD_CALLS;
		else if (hs->head_calls[dir & 1] && !skip)
			hs->head_calls[dir & 1]--;
	}
	/*
	 * A mirrored pair's client end framed in user space: its calls match the server end's stamps
	 * by where they end (set last: a branch earlier doubled the verifier's paths above).
	 */
	if (hs->pair == PAIR_CLIENT && hs->verdict == VERDICT_HTTP)
		s->e.seq = seq_after(sk, dir);
	limit = s->e.head_len;
	if (limit > HTTP_HEAD_MAX)
		limit = HTTP_HEAD_MAX;
	event_output(s, sizeof(s->e) + HTTP_TAIL + limit, now);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(kupod_http_recv, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HTTP_DIR_RECEIVED);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(kupod_http_send, struct sock *sk, int ret, int flags)
{
	return on_data(sk, ret, flags, HTTP_DIR_SENT);
}

/*
 * A TCP write begins (tcp_sendmsg_locked, Linux 6.16+; it fires once per segment the write fills,
 * and the first one stamps; a mirrored server end stamps each). Over loopback the peer can read a
 * message before the write of it returns: timed at the return, a sidecar's upstream call would
 * start after the service's server span it encloses.
 */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(kupod_http_send_start, struct sock *sk)
{
	/* a lookup only: a socket has its state from its connect() or its first read or write */
	struct http_sock *hs = bpf_sk_storage_get(&http_socks, sk, NULL, 0);
	struct tcp_sock *tp;

	if (!hs || hs->verdict == VERDICT_OTHER)
		return 0;
	if (hs->pair == PAIR_SERVER) {
		/*
		 * A mirrored server end stamps every piece before its bytes are queued, the client end
		 * cannot read them unstamped: sendfile and splice too, which no sock_send_length ends.
		 */
		struct http_pair *p = bpf_map_lookup_elem(&http_pairs, &hs->h1.pk);

		tp = bpf_skc_to_tcp_sock(sk);
		if (p && tp)
			pair_stamp(p, (__u64)sk, HTTP_DIR_SENT, tp->write_seq, 0, bpf_ktime_get_ns(),
				   false);
		hs->last_dir = HTTP_DIR_SENT + 1;
		return 0;
	}
	if (mirror_pairs && hs->verdict == VERDICT_H2 && hs->pair != PAIR_CLIENT) {
		h2_pair(sk, hs);
		if (hs->pair == PAIR_SERVER)
			return 0;
	}
	if (hs->send_ns)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	hs->send_seq = tp->write_seq;
	hs->send_ns = bpf_ktime_get_ns();
	return 0;
}

/* The close program's own room: it may run in a softirq that interrupted a call's program. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct http1_event);
} close_scratch SEC(".maps");

/*
 * A target's connect() gets its socket's state (its first write is timed from the start); a
 * followed socket's end: close-delimited responses end, unanswered requests are reported.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kupod_http_state, const struct sock *csk, int oldstate, int newstate)
{
	struct sock *sk = (struct sock *)csk;
	struct http_sock *hs;
	struct http_event *e;
	__u32 zero = 0;
	__u64 now;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT) {
		/* connect(), in the caller's context: its first write is timed from its start too */
		hs = http_sock_of(sk);
		if (hs)
			hs->connected = 1;
		return 0;
	}
	if (newstate != TCP_CLOSE)
		return 0;
	hs = bpf_sk_storage_get(&http_socks, sk, NULL, 0);
	if (!hs || (hs->verdict != VERDICT_HTTP && hs->verdict != VERDICT_H2))
		return 0;
	now = bpf_ktime_get_ns();
	/* what the kernel framed and still holds, before the close */
	if (hs->verdict == VERDICT_HTTP) {
		struct http1_event *r = bpf_map_lookup_elem(&close_scratch, &zero);

		if (r)
			h1_close(&hs->h1, r, (__u64)sk, now);
	}
	/* its records are out: the pair's entry goes with the client end */
	if (hs->pair == PAIR_CLIENT)
		bpf_map_delete_elem(&http_pairs, &hs->h1.pk);
	e = event_reserve(sizeof(*e) + HTTP_TAIL);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->sock_id = (__u64)sk;
	e->kind = HTTP_RECORD_CLOSE;
	e->container = hs->container;
	hs->verdict = VERDICT_OTHER; /* nothing after the close is this connection's */
	bpf_ringbuf_submit(e, wake_flags(sizeof(*e) + HTTP_TAIL, now));
	return 0;
}

/* Keep the record types in the object's BTF for the decoder generator. */
struct http_event _http_event = {};
struct http1_event _http1_event = {};
struct http1_handoff_event _http1_handoff_event = {};
struct http_stamp_event _http_stamp_event = {};
struct http2_join_event _http2_join_event = {};
