/*
 * HTTP/1.x framed in the kernel. Per followed socket and direction the
 * kernel knows where the next message starts: a content-length body is
 * counted down without reading it, a head is parsed (bpf/http1_head.h) and
 * a request and its response leave in one record (http1_event) once the
 * response ended. Requests and responses pair in order; the newest request
 * waits in the socket's storage for its response, older ones (pipelining)
 * leave alone and user space pairs them.
 *
 * What the kernel does not frame (chunked or other transfer codings, bad
 * lengths, heads longer than the window or split over calls, sendfile at a
 * message start, responses without a request) hands the socket to user
 * space for good: the pending requests leave as REQUEST records, a
 * HANDOFF record says where each direction stands, and from then on every
 * call is a DATA record for probes/http1.ts, as before this framer existed.
 */
#ifndef KUPOD_HTTP1_FAST_H
#define KUPOD_HTTP1_FAST_H

#include "http1_head.h"
#include "http_mirror.h"

/* h1_state.mode */
#define H1_UNSYNCED 0 /* no request line seen yet */
#define H1_FAST 1     /* framed here */
#define H1_RAW 2      /* framed by user space (DATA records) */
#define H1_TUNNEL 3   /* upgraded or tunnelled: no HTTP any more */

/* h1_state.state, by direction */
#define H1_START 0      /* a message starts at the next byte */
#define H1_BODY 1       /* remaining[dir] body bytes to come */
#define H1_UNTIL_CLOSE 2 /* the body ends with the connection */

#define H1_MAX_PENDING 63 /* requests without a response head (bits of pend_*) */
#define H1_MAX_STEPS 16   /* heads and bodies taken in one call */
#define H1_MAX_SEGS 16    /* iovecs of a call the kernel reads heads in */
#define H1_MAX_FILLS 6    /* pieces one window is gathered from (segments, a second look) */
/*
 * Bytes read first at a message start: most heads end within them. Every
 * byte read lands in memory the proxy's own work evicted since the last
 * call (measured: reading 1024 bytes instead of 256 cost ~450 ns a head),
 * so more is read only when the head goes on.
 */
#define H1_FIRST_LOOK 256
#define H1_MAX_UNSYNCED 32 /* calls without a request line before a socket is let go */

/* The response in progress. */
struct h1_resp {
	__u64 body;
	__u16 status;
	__u16 interim;
	__u8 flags;
	__u8 ctype_len;
	__u8 active;      /* a head came: it answers the oldest pending request */
	__u8 with_held;   /* ... and that request is the held one */
	__u8 head_req;    /* the request was HEAD: no body */
	__u8 connect_req; /* the request was CONNECT: a 2xx tunnels */
	__u8 seq_known;   /* req_seq is its request's */
	__u8 pad[5];
	__u32 req_seq;    /* where its request starts (a mirrored pair's client end) */
	__u32 end_seq;    /* past its last byte, once it ended (0: cut short) */
	char ctype[HTTP1_VALUE_MAX]; /* of a response to a request that left alone */
};

struct h1_state {
	__u64 remaining[2];
	__u64 pend_head;    /* bit i: the i-th oldest pending request was HEAD */
	__u64 pend_connect; /* bit i: ... CONNECT */
	__u8 mode;
	__u8 req_dir;
	__u8 state[2];
	__u8 pending;       /* requests whose response has no head yet */
	__u8 unsynced;
	__u8 held;          /* `rec` holds the newest request */
	__u8 paired;        /* the client end of a mirrored pair: `pk` is its entry */
	__u32 nreq;         /* requests framed */
	__u32 pend_seq[8];  /* where the latest requests start, by nreq mod 8 */
	struct pair_key pk;
	struct h1_resp resp;
	/* the newest request, from its head until it leaves, laid out as its record: the
	 * response's fields join it and the record leaves from here, no copy made */
	struct http1_event rec;
};

/* Per-CPU room of the framer. */
struct h1_scratch {
	struct h1_window win;
	struct http1_event rec;
};

/*
 * One call being framed (scalars only: global functions take it). Its
 * iovecs are read as the walk reaches them: a head is mostly in the first,
 * a body needs none.
 */
struct h1_walk {
	__u64 buf;       /* a flat payload's address (0: iovecs, or nothing readable) */
	__u64 iov;       /* the call's iovec array (0: none) */
	__u64 iovcnt;
	__u64 seg;       /* index of the iovec read last; iovcnt while none was */
	__u64 seg_start; /* its payload offset */
	__u64 seg_base;  /* its address */
	__u64 seg_len;   /* its length */
	__u64 sock_id;
	__u64 ts;
	__u32 len;
	__u32 pos;
	__u32 raw_at;    /* where user space takes over (len: nowhere) */
	__u32 seq0;      /* TCP sequence number of the call's first byte (loopback sockets) */
	__u8 dir;
	__u8 skip;       /* the call has no request line yet: nothing to report */
	__u8 pad[2];
};

/* What the steps of a call share. */
struct h1_steps {
	struct h1_state *st;
	struct h1_scratch *sc;
	struct h1_walk w;
};

/* Where each string starts in a record's data. */
static __always_inline __u32 tp_at(const struct http1_event *r)
{
	return r->target_len < HTTP1_TARGET_MAX ? r->target_len : HTTP1_TARGET_MAX;
}

static __always_inline __u32 ctype_at(const struct http1_event *r)
{
	return tp_at(r) + (r->tp_len < HTTP1_VALUE_MAX ? r->tp_len : HTTP1_VALUE_MAX);
}

/*
 * A mirrored pair's record gets the server end's times for the same bytes
 * (bpf/http_mirror.h): requests from mirror_since on were not framed there.
 */
static __always_inline void h1_mirror(struct http1_event *r, const struct pair_key *pk)
{
	struct http_pair *p = bpf_map_lookup_elem(&http_pairs, pk);

	if (!p || !(p->flags & PAIR_MIRRORED))
		return;
	if (!r->seqs) {
		/* deeper pipelining than the ring of starts: the server end's span is counted lost */
		if (r->kind != HTTP_RECORD_REQUEST)
			r->flags |= HTTP1_MIRROR_LOST;
		return;
	}
	if ((__s32)(r->req_seq - p->mirror_since) < 0)
		return;
	/*
	 * Past the join only this end moves it, to each answered request's start (answers come in
	 * order): the requests still to come stay within 2 GiB of it, however long the connection.
	 */
	if (r->kind != HTTP_RECORD_REQUEST)
		p->mirror_since = r->req_seq;
	r->srv_sock = p->server_sock;
	r->srv_container = p->server_container;
	r->srv_pid = p->server_pid;
	__builtin_memcpy(r->srv_comm, p->server_comm, sizeof(r->srv_comm));
	r->srv_req_ts = pair_read_at(p, r->req_seq);
	if (r->kind == HTTP_RECORD_REQUEST) {
		/* a request alone: its response's record decides; at a close, whether it was read */
		if (r->srv_req_ts)
			r->flags |= HTTP1_MIRRORED;
		return;
	}
	/* a response cut short ends where the client end saw it end */
	r->srv_resp_ts = r->resp_seq ? pair_write_at(p, r->resp_seq - 1) : r->ts_ns;
	r->flags |= r->srv_req_ts && r->srv_resp_ts ? HTTP1_MIRRORED : HTTP1_MIRROR_LOST;
}

/* A record leaves (a function of its own: its paths are verified once, not at each caller). */
__noinline int h1_output(struct http1_event *r, const struct pair_key *pk)
{
	__u64 size;

	if (!r)
		return 0;
	r->flags &= ~(HTTP1_MIRRORED | HTTP1_MIRROR_LOST);
	if (pk)
		h1_mirror(r, pk);
	size = __builtin_offsetof(struct http1_event, data) + ctype_at(r) +
	       (r->ctype_len < HTTP1_VALUE_MAX ? r->ctype_len : HTTP1_VALUE_MAX);

	/* a bound the verifier sees on the register the helper takes */
	asm volatile("" : "+r"(size));
	if (size > sizeof(*r))
		size = sizeof(*r);
	event_output(r, size, r->ts_ns);
	return 0;
}

static __always_inline void h1_rec_head(struct http1_event *r, __u8 kind, __u64 sock_id,
					__u64 ts, const struct h1_state *st)
{
	r->ts_ns = ts;
	r->sock_id = sock_id;
	r->kind = kind;
	r->req_dir = st->req_dir;
}

static __always_inline const struct pair_key *h1_pair(const struct h1_state *st)
{
	return st->paired ? &st->pk : NULL;
}

/* The response fields of a record. */
static __always_inline void h1_put_response(struct http1_event *r, const struct h1_resp *a,
					    __u8 flags)
{
	r->flags |= a->flags | flags;
	r->status = a->status;
	r->interim = a->interim;
	r->resp_body = a->body;
	r->ctype_len = a->ctype_len;
	r->req_seq = a->req_seq;
	r->resp_seq = a->end_seq;
	r->seqs = a->seq_known;
}

/* The held request leaves alone: its response will pair with it in user space. */
static __always_inline void h1_flush_request(struct h1_state *st, __u64 sock_id, __u64 ts)
{
	struct http1_event *r = &st->rec;

	h1_rec_head(r, HTTP_RECORD_REQUEST, sock_id, ts, st);
	r->status = 0;
	r->interim = 0;
	r->resp_body = 0;
	r->ctype_len = 0;
	r->resp_seq = 0;
	st->held = 0;
	h1_output(r, h1_pair(st));
}

/*
 * The response ended (or is cut short, `flags`): it leaves with its request
 * when that is the held one, else alone (built in `r`).
 */
static __always_inline void h1_report_response(struct h1_state *st, struct http1_event *r,
					       __u64 sock_id, __u64 ts, __u8 flags)
{
	struct h1_resp *a = &st->resp;

	a->active = 0;
	if (a->with_held && st->held) {
		r = &st->rec;
		h1_rec_head(r, HTTP_RECORD_EXCHANGE, sock_id, ts, st);
		h1_put_response(r, a, flags);
		st->held = 0;
		h1_output(r, h1_pair(st));
		return;
	}
	h1_rec_head(r, HTTP_RECORD_RESPONSE, sock_id, ts, st);
	r->method = 0;
	r->flags = 0;
	r->tp_len = 0;
	r->target_len = 0;
	r->req_ts_ns = 0;
	r->req_body = 0;
	h1_put_response(r, a, flags);
	__builtin_memcpy(r->data, a->ctype, HTTP1_VALUE_MAX);
	h1_output(r, h1_pair(st));
}

static __always_inline void h1_count_body(struct h1_state *st, __u8 d, __u64 n)
{
	if (d == st->req_dir) {
		if (st->held)
			st->rec.req_body += n;
	} else if (st->resp.active) {
		st->resp.body += n;
	}
}

/* The message in direction `d` ended with this call. */
static __always_inline void h1_message_end(struct h1_state *st, struct h1_scratch *sc,
					   struct h1_walk *w, __u8 d)
{
	if (d != st->req_dir && st->resp.active && st->resp.status) {
		st->resp.end_seq = w->seq0 + w->pos;
		h1_report_response(st, &sc->rec, w->sock_id, w->ts, 0);
	}
}

/*
 * Copies payload bytes [from, from + want) into the window at `at`, as many
 * as the segment holding `from` has: from the flat buffer, or from the
 * iovec the walk reaches. Returns how many (0: none could be read).
 */
__noinline int h1_fill(struct h1_scratch *sc, struct h1_walk *w, __u32 from, __u32 at,
		       __u32 want)
{
	const __u8 *src;
	__u64 n = want;
	struct iovec v;

	if (!sc || !w)
		return 0;
	src = (const __u8 *)w->buf + from;
	if (!w->buf) {
		for (int k = 0; k < H1_MAX_SEGS; k++) {
			if (w->seg < w->iovcnt && from < w->seg_start + w->seg_len)
				break;
			/* the next iovec (the first when none was read) */
			if (w->seg >= w->iovcnt) {
				if (!w->iov || !w->iovcnt)
					return 0;
				w->seg = 0;
				w->seg_start = 0;
			} else {
				w->seg++;
				w->seg_start += w->seg_len;
				if (w->seg >= w->iovcnt || w->seg >= H1_MAX_SEGS)
					return 0;
			}
			if (bpf_probe_read_user(&v, sizeof(v),
						(const struct iovec *)w->iov + (w->seg & (H1_MAX_SEGS - 1))))
				return 0;
			w->seg_base = (__u64)v.iov_base;
			w->seg_len = v.iov_len;
		}
		if (w->seg >= w->iovcnt || from < w->seg_start || from >= w->seg_start + w->seg_len)
			return 0;
		src = (const __u8 *)w->seg_base + (from - w->seg_start);
		if (n > w->seg_start + w->seg_len - from)
			n = w->seg_start + w->seg_len - from;
	}
	if (n > H1_WINDOW)
		n = H1_WINDOW;
	asm volatile("" : "+r"(n));
	n &= 2 * H1_WINDOW - 1;
	at &= H1_WMASK;
	if (!n || bpf_probe_read_user(sc->win.buf + at, n, src))
		return 0;
	return n;
}

/* Copies `len` (<= 256) bytes in blocks of 64: short values cost one block. */
static __always_inline void h1_copy(char *dst, const __u8 *src, __u32 len)
{
	for (int i = 0; i < HTTP1_TARGET_MAX / 64; i++) {
		if (i * 64 >= len)
			break;
		__builtin_memcpy(dst + i * 64, src + i * 64, 64);
	}
}

/* A request head was parsed at w->pos. Returns false when user space must take it. */
static __always_inline bool h1_request(struct h1_state *st, struct h1_scratch *sc,
				       struct h1_walk *w)
{
	struct h1_head *h = &sc->win.h;
	struct http1_event *q = &st->rec;
	__u64 bit;

	if (h->te || h->length == H1_BAD_LENGTH || st->pending >= H1_MAX_PENDING)
		return false;
	/* a pipelined request behind one whose response is still coming: no room to hold it */
	if (st->held && st->resp.active && st->resp.with_held)
		return false;
	if (st->held)
		h1_flush_request(st, w->sock_id, w->ts);
	q->req_ts_ns = w->ts;
	q->req_seq = w->seq0 + w->pos;
	q->seqs = 1;
	st->pend_seq[st->nreq & 7] = q->req_seq;
	st->nreq++;
	q->req_body = 0;
	q->method = h->method;
	q->flags = h->flags & (HTTP1_REQ_CREDENTIALS | HTTP1_HTTP10);
	if (h->tps > 1)
		q->flags |= HTTP1_TRACEPARENTS;
	q->target_len = h->target_len < HTTP1_TARGET_MAX ? h->target_len : HTTP1_TARGET_MAX;
	h1_copy(q->data, sc->win.buf + (h->target_at & H1_WMASK), q->target_len);
	q->tp_len = h->tps == 1 ? h->tp_len : 0;
	if (q->tp_len)
		__builtin_memcpy(q->data + tp_at(q), sc->win.buf + (h->tp_at & H1_WMASK),
				 HTTP1_VALUE_MAX);
	q->ctype_len = 0;
	st->held = 1;
	bit = 1ULL << (st->pending & 63);
	if (h->method == H1_HEAD)
		st->pend_head |= bit;
	else
		st->pend_head &= ~bit;
	if (h->method == H1_CONNECT)
		st->pend_connect |= bit;
	else
		st->pend_connect &= ~bit;
	st->pending++;
	w->pos += h->end;
	if (h->length > 0) {
		st->state[w->dir & 1] = H1_BODY;
		st->remaining[w->dir & 1] = h->length;
	}
	return true;
}

/* A response head was parsed at w->pos (RFC 9112 6.3). Returns false when user space must take it. */
static __always_inline bool h1_response(struct h1_state *st, struct h1_scratch *sc,
					struct h1_walk *w)
{
	struct h1_head *h = &sc->win.h;
	struct h1_resp *a = &st->resp;
	__u16 status = h->status;
	bool head_req, connect_req, final = status >= 200 || status == 101, tunnel, no_body;

	if (!a->active && !st->pending)
		return false; /* no request to answer: user space drops it */
	head_req = a->active ? a->head_req : st->pend_head & 1;
	connect_req = a->active ? a->connect_req : st->pend_connect & 1;
	tunnel = status == 101 || (connect_req && status >= 200 && status < 300);
	no_body = head_req || status == 204 || status == 304;
	if (final && !tunnel && !no_body && (h->te || h->length == H1_BAD_LENGTH))
		return false;
	if (!a->active) {
		a->active = 1;
		a->with_held = st->pending == 1 && st->held;
		a->head_req = head_req;
		a->connect_req = connect_req;
		a->body = 0;
		a->status = 0;
		a->interim = 0;
		a->flags = 0;
		a->ctype_len = 0;
		/* the oldest pending request's start, while the ring still holds it */
		a->seq_known = st->pending <= 8;
		a->req_seq = st->pend_seq[(st->nreq - st->pending) & 7];
		a->end_seq = 0;
		st->pend_head >>= 1;
		st->pend_connect >>= 1;
		st->pending--;
	}
	w->pos += h->end;
	a->end_seq = w->seq0 + w->pos;
	if (!final) {
		a->interim = status;
		return true;
	}
	a->status = status;
	a->flags = h->flags & HTTP1_RESP_CREDENTIALS;
	a->ctype_len = h->ctype_len;
	if (h->ctype_len)
		__builtin_memcpy(a->with_held ? st->rec.data + ctype_at(&st->rec) : a->ctype,
				 sc->win.buf + (h->ctype_at & H1_WMASK), HTTP1_VALUE_MAX);
	if (tunnel) {
		h1_report_response(st, &sc->rec, w->sock_id, w->ts, 0);
		st->mode = H1_TUNNEL;
		w->pos = w->len;
	} else if (no_body || h->length == 0) {
		h1_report_response(st, &sc->rec, w->sock_id, w->ts, 0);
	} else if (h->length > 0) {
		st->state[w->dir & 1] = H1_BODY;
		st->remaining[w->dir & 1] = h->length;
	} else {
		st->state[w->dir & 1] = H1_UNTIL_CLOSE;
	}
	return true;
}

#define H1_TAKEN 0  /* the message was framed here */
#define H1_TO_USER 1 /* user space takes the socket from this message on */
#define H1_NOT_YET 2 /* no request line on an unsynchronized socket: the call is passed over */

/* A message starts at w->pos: its head is read and parsed. */
__noinline int h1_message(struct h1_state *st, struct h1_scratch *sc, struct h1_walk *w)
{
	struct h1_head *h;
	bool unsynced;
	__u32 want, left, got = 0, n;

	if (!st || !sc || !w)
		return H1_TO_USER;
	h = &sc->win.h;
	unsynced = st->mode == H1_UNSYNCED;
	left = w->len - w->pos;
	want = left < H1_FIRST_LOOK ? left : H1_FIRST_LOOK;
	h1_head_init(h, unsynced || w->dir == st->req_dir, unsynced);
	for (int k = 0; k < H1_MAX_FILLS; k++) {
		n = h1_fill(sc, w, w->pos + got, got, want - got);
		if (!n)
			break;
		got += n;
		h->n = got;
		h1_parse(&sc->win);
		if (h->end || h->bad)
			break;
		if (got >= want) {
			/* the head goes on past the first look: the whole window */
			if (want >= left || want >= H1_WINDOW)
				break;
			want = left < H1_WINDOW ? left : H1_WINDOW;
		}
	}
	if (unsynced && (h->bad || !got))
		return H1_NOT_YET;
	if (!h->end || h->bad)
		return H1_TO_USER;
	if (unsynced) {
		/* the first request line: its direction is the requests' */
		st->req_dir = w->dir;
		if (!h1_request(st, sc, w))
			return H1_TO_USER;
		st->mode = H1_FAST;
		return H1_TAKEN;
	}
	if (w->dir == st->req_dir)
		return h1_request(st, sc, w) ? H1_TAKEN : H1_TO_USER;
	return h1_response(st, sc, w) ? H1_TAKEN : H1_TO_USER;
}

/* Body bytes of direction `d` in the call from w->pos: counted; returns false at a message start. */
static __always_inline bool h1_body(struct h1_state *st, struct h1_scratch *sc, struct h1_walk *w,
				    __u8 d)
{
	__u64 left = w->len - w->pos, n;

	if (st->state[d] == H1_BODY) {
		n = st->remaining[d] < left ? st->remaining[d] : left;
		h1_count_body(st, d, n);
		st->remaining[d] -= n;
		w->pos += n;
		if (!st->remaining[d]) {
			st->state[d] = H1_START;
			h1_message_end(st, sc, w, d);
		}
		return true;
	}
	if (st->state[d] == H1_UNTIL_CLOSE) {
		h1_count_body(st, d, left);
		w->pos = w->len;
		return true;
	}
	return false;
}

/*
 * One step of a call: a body counted, or a message head taken with its body
 * in the call. Returns false once the call is done.
 */
static __always_inline bool h1_take(struct h1_state *st, struct h1_scratch *sc,
				    struct h1_walk *w)
{
	__u8 d = w->dir & 1;
	int r;

	if (w->pos >= w->len || st->mode == H1_TUNNEL)
		return false;
	if (h1_body(st, sc, w, d))
		return true;
	r = h1_message(st, sc, w);
	if (r == H1_TAKEN) {
		if (w->pos < w->len && st->mode != H1_TUNNEL)
			h1_body(st, sc, w, d);
		return true;
	}
	if (r == H1_NOT_YET)
		w->skip = 1;
	else
		w->raw_at = w->pos;
	return false;
}

static long h1_step(__u32 i, void *data)
{
	struct h1_steps *c = data;

	return !h1_take(c->st, c->sc, &c->w);
}

/* The state user space's framer takes over in direction `d`. */
static __always_inline __u8 h1_user_state(struct h1_state *st, __u8 d, __u64 *remaining)
{
	*remaining = 0;
	if (st->state[d] == H1_START)
		return HTTP1_AT_START;
	if (st->state[d] == H1_BODY && d == st->req_dir) {
		*remaining = st->remaining[d];
		return HTTP1_IN_BODY;
	}
	return HTTP1_LOST;
}

/* A mirrored pair's server end stamp as a record of its own. */
static __always_inline void stamp_out(__u64 sock, __u8 dir, __u32 seq, __u32 end, __u64 ts)
{
	struct http_stamp_event *e = event_reserve(sizeof(*e));

	if (!e)
		return;
	e->ts_ns = ts;
	e->sock_id = sock;
	e->kind = HTTP_RECORD_STAMP;
	e->dir = dir;
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->seq = seq;
	e->end = end;
	e->pad2 = 0;
	bpf_ringbuf_submit(e, wake_flags(sizeof(*e), ts));
}

static __always_inline void pair_stamp_out(__u64 sock, __u8 dir, const struct pair_stamp *t)
{
	__u32 seq, end;
	__u64 ts = stamp_get(t, &seq, &end);

	if (ts)
		stamp_out(sock, dir, seq, end, ts);
}

/*
 * A mirrored pair's client end goes to user space: from here on the server
 * end sends its stamps as records, and the ones it made so far go now (both
 * ends may stamp meanwhile: a stamp may go twice, user space keeps one).
 */
__noinline int h1_mirror_handoff(struct h1_state *st, struct http1_handoff_event *o)
{
	struct http_pair *p;

	if (!st || !o)
		return 0;
	p = bpf_map_lookup_elem(&http_pairs, &st->pk);
	if (!p || !(__sync_fetch_and_or(&p->flags, PAIR_CLIENT_RAW) & PAIR_MIRRORED))
		return 0;
	o->srv_sock = p->server_sock;
	o->mirror_since = p->mirror_since;
	o->srv_container = p->server_container;
	o->srv_pid = p->server_pid;
	__builtin_memcpy(o->srv_comm, p->server_comm, sizeof(o->srv_comm));
	for (int i = 0; i < PAIR_READS; i++)
		pair_stamp_out(p->server_sock, HTTP_DIR_RECEIVED, &p->read[i]);
	for (int i = 0; i < PAIR_TURNS; i++)
		pair_stamp_out(p->server_sock, HTTP_DIR_RECEIVED, &p->turn[i]);
	for (int i = 0; i < PAIR_WRITES; i++)
		pair_stamp_out(p->server_sock, HTTP_DIR_SENT, &p->write[i]);
	return 0;
}

/*
 * User space frames the socket from w->raw_at of this call on: what the
 * kernel holds leaves (pending requests alone, a response cut short as
 * truncated), then the HANDOFF record.
 */
static __always_inline void h1_handoff(struct h1_state *st, struct h1_scratch *sc,
				       struct h1_walk *w)
{
	struct http1_handoff_event *o = (struct http1_handoff_event *)&sc->rec;
	__u8 d = w->dir & 1, other = d ^ 1;
	__u64 remaining;

	if (st->mode == H1_UNSYNCED) {
		/* nothing framed yet: user space starts from scratch */
		st->mode = H1_RAW;
		return;
	}
	if (st->resp.active) {
		if (st->state[(st->req_dir ^ 1) & 1] == H1_START) {
			/* only interim responses came: user space pairs the final one */
			if (st->resp.with_held && st->held)
				h1_flush_request(st, w->sock_id, w->ts);
			st->resp.active = 0;
		} else {
			st->resp.end_seq = 0;
			h1_report_response(st, &sc->rec, w->sock_id, w->ts, HTTP1_TRUNCATED);
		}
	}
	if (st->held)
		h1_flush_request(st, w->sock_id, w->ts);
	__builtin_memset(o, 0, sizeof(*o));
	o->ts_ns = w->ts;
	o->sock_id = w->sock_id;
	o->kind = HTTP_RECORD_HANDOFF;
	o->req_dir = st->req_dir;
	o->dir = d;
	o->skip = w->raw_at;
	o->state[d] = HTTP1_AT_START;
	o->state[other] = h1_user_state(st, other, &remaining);
	o->remaining[other] = remaining;
	if (st->paired)
		h1_mirror_handoff(st, o);
	event_output(o, sizeof(*o), w->ts);
	st->mode = H1_RAW;
}

/*
 * Frames one call (its payload `p`: unread when the call is all body).
 * Returns where user space takes over (len: nowhere), -1 when the call is
 * passed over (no request line yet), -2 when the socket should be let go.
 */
static __always_inline long h1_call(struct h1_state *st, struct h1_scratch *sc,
				    const struct payload *p, __u64 sock_id, __u32 len, __u8 dir,
				    __u64 ts, __u32 seq0)
{
	struct h1_steps c = {
		.st = st,
		.sc = sc,
		.w = {
			.sock_id = sock_id,
			.ts = ts,
			.len = len,
			.raw_at = len,
			.seq0 = seq0,
			.dir = dir,
		},
	};
	struct h1_walk *w = &c.w;

	if (p->kind == PAYLOAD_FLAT) {
		w->buf = (__u64)p->buf;
	} else if (p->kind == PAYLOAD_IOV) {
		w->iov = (__u64)p->iov;
		w->iovcnt = p->iovcnt;
		w->seg = p->iovcnt; /* none read yet */
	}
	/* the common call, one message or a piece of a body, in place; more in a loop */
	if (h1_take(st, sc, w) && w->pos < len)
		bpf_loop(H1_MAX_STEPS, h1_step, &c, 0);
	if (w->skip) {
		if (++st->unsynced >= H1_MAX_UNSYNCED)
			return -2;
		return -1;
	}
	if (w->raw_at >= len && w->pos < len && st->mode == H1_FAST)
		w->raw_at = w->pos; /* more messages than steps */
	if (w->raw_at < len)
		h1_handoff(st, sc, w);
	return w->raw_at;
}

/* Whether the call is body only, to be counted without its bytes. */
static __always_inline bool h1_all_body(const struct h1_state *st, __u8 dir, __u32 len)
{
	__u8 d = dir & 1;

	return st->mode == H1_FAST && ((st->state[d] == H1_BODY && st->remaining[d] >= len) ||
				       st->state[d] == H1_UNTIL_CLOSE);
}

/* A call inside a body the kernel frames that does not end it: counted, nothing read. */
static __always_inline bool h1_in_body(struct h1_state *st, __u8 dir, __u32 len)
{
	__u8 d = dir & 1;

	if (st->mode != H1_FAST)
		return false;
	if (st->state[d] == H1_UNTIL_CLOSE || (st->state[d] == H1_BODY && st->remaining[d] > len)) {
		if (st->state[d] == H1_BODY)
			st->remaining[d] -= len;
		h1_count_body(st, d, len);
		return true;
	}
	return false;
}

/* The socket closed: a request still held and a response in progress are reported. */
static __always_inline void h1_close(struct h1_state *st, struct http1_event *r, __u64 sock_id,
				     __u64 ts)
{
	__u8 rd = st->req_dir ^ 1;

	if (st->mode != H1_FAST)
		return;
	if (st->held && !(st->resp.active && st->resp.with_held))
		h1_flush_request(st, sock_id, ts);
	st->resp.end_seq = 0; /* it ends at the close */
	if (st->resp.active)
		h1_report_response(st, r, sock_id, ts,
				   st->state[rd & 1] == H1_UNTIL_CLOSE && st->resp.status ? 0 :
											 HTTP1_CLOSED);
}

#endif
