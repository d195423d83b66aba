/*
 * HTTP/1.x message heads parsed in the kernel (RFC 9112): the start line and
 * the header fields kupod reports or frames by, from a window of the
 * message's first bytes copied into a buffer. Lines are found eight bytes at
 * a time; each line is one bpf_loop step, so the verifier checks a line once.
 * What this parser does not take (a transfer coding, a bad length, a head
 * longer than the window) is left to user space's parser (probes/http1.ts).
 */
#ifndef KUPOD_HTTP1_HEAD_H
#define KUPOD_HTTP1_HEAD_H

#define H1_WINDOW 1024 /* bytes of a message's start looked at (a power of two) */
#define H1_WMASK (H1_WINDOW - 1)
#define H1_MAX_LINES 128

#define H1_NO_LENGTH -1
#define H1_BAD_LENGTH -2
#define H1_LENGTH_DIGITS 15 /* exact in a double, as user space counts */
#define H1_VALUE_SCAN 32    /* Content-Length values longer than this are left to user space */

/* Methods by their index in user space's list (probes/http1.ts METHODS). */
#define H1_GET 0
#define H1_HEAD 1
#define H1_POST 2
#define H1_PUT 3
#define H1_DELETE 4
#define H1_CONNECT 5
#define H1_OPTIONS 6
#define H1_TRACE 7
#define H1_PATCH 8

/* What a head said. */
struct h1_head {
	__u32 n;          /* valid bytes in the window */
	__u32 p;          /* where the next line starts */
	__u32 end;        /* just past the empty line: the head's length (0: not found yet) */
	__u32 target_at;
	__u32 target_len;
	__u32 tp_at;
	__u32 tp_len;
	__u32 ctype_at;
	__u32 ctype_len;
	__s64 length;     /* Content-Length, or H1_NO_LENGTH / H1_BAD_LENGTH */
	__u16 status;
	__u8 is_req;
	__u8 sync;        /* a request line must also look like one to start following a socket */
	__u8 started;     /* the start line was read */
	__u8 bad;         /* not a head this parser takes */
	__u8 te;          /* a Transfer-Encoding came */
	__u8 tps;         /* traceparent fields seen */
	__u8 flags;       /* HTTP1_REQ_CREDENTIALS, HTTP1_RESP_CREDENTIALS, HTTP1_HTTP10 */
	__u8 method;
};

/*
 * A window of a message's first bytes and what its head says. The buffer
 * takes a piece at an offset below H1_WINDOW and of a size below
 * 2 * H1_WINDOW (the bounds the verifier follows), then slack for word loads
 * and the fixed-size copies of values.
 */
struct h1_window {
	struct h1_head h;
	__u8 buf[3 * H1_WINDOW + HTTP1_TARGET_MAX];
};

/* Eight bytes as a little-endian word, the order a load from memory gives. */
#define W8(a, b, c, d, e, f, g, h)                                                            \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 |                 \
	 (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)
/* The case bit of the letters among them: names compare as (word | case) == lower case. */
#define CB(c) ((c) >= 'a' && (c) <= 'z' ? 0x20 : 0)
#define C8(a, b, c, d, e, f, g, h) W8(CB(a), CB(b), CB(c), CB(d), CB(e), CB(f), CB(g), CB(h))
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* The low `n` bytes of a word. */
#define LOW(n) ((n) >= 8 ? ~0ULL : (1ULL << (8 * (n))) - 1)

#define HTTP11 W8('H', 'T', 'T', 'P', '/', '1', '.', '1')
#define HTTP10 W8('H', 'T', 'T', 'P', '/', '1', '.', '0')

static __always_inline __u64 load8(const __u8 *b, __u32 at)
{
	return *(const __u64 *)(b + (at & H1_WMASK));
}

static __always_inline __u8 byte_at(const __u8 *b, __u32 at)
{
	return b[at & H1_WMASK];
}

/*
 * Index (0-7) of the lowest byte whose high bit is set in m (m != 0, only
 * high bits set), without branches: the lowest bit moved to bit 0 of its
 * byte, times a constant whose byte j is 7 - j, leaves the index in the top
 * byte.
 */
static __always_inline __u32 low_byte(__u64 m)
{
	return (((m & -m) >> 7) * 0x0001020304050607ULL) >> 56;
}

/*
 * Index of the first byte `x` in b[from, end), or end. The zero-byte test
 * flags the lowest match exactly (only bytes above a match can be flagged
 * falsely), and only the lowest is taken.
 */
static __always_inline __u32 h1_find(const __u8 *b, __u32 from, __u32 end, __u8 x)
{
	__u64 pat = ONES * x;

	for (int k = 0; k < H1_WINDOW / 8 + 1; k++) {
		__u32 at = from + k * 8;
		__u64 v, m;

		if (at >= end)
			return end;
		v = load8(b, at) ^ pat;
		m = (v - ONES) & ~v & HIGHS;
		if (m) {
			at += low_byte(m);
			return at < end ? at : end;
		}
	}
	return end;
}

/* Whether the `n` (<= 8) bytes at `at` are the lower-case name `w` (case bits `c`). */
static __always_inline bool name8(const __u8 *b, __u32 at, __u64 w, __u64 c, int n)
{
	return ((load8(b, at) & LOW(n)) | c) == w;
}

/* METHOD SP target SP HTTP/1.x in b[p, e). */
static __always_inline bool request_line(struct h1_window *win, __u32 p, __u32 e)
{
	const __u8 *b = win->buf;
	struct h1_head *h = &win->h;
	__u64 x = load8(b, p), v;
	__u32 ts, te;
	__u8 t;

	switch (x & LOW(4)) {
	case W8('G', 'E', 'T', ' ', 0, 0, 0, 0):
		h->method = H1_GET;
		ts = p + 4;
		break;
	case W8('P', 'U', 'T', ' ', 0, 0, 0, 0):
		h->method = H1_PUT;
		ts = p + 4;
		break;
	default:
		switch (x & LOW(5)) {
		case W8('P', 'O', 'S', 'T', ' ', 0, 0, 0):
			h->method = H1_POST;
			ts = p + 5;
			break;
		case W8('H', 'E', 'A', 'D', ' ', 0, 0, 0):
			h->method = H1_HEAD;
			ts = p + 5;
			break;
		default:
			if ((x & LOW(6)) == W8('P', 'A', 'T', 'C', 'H', ' ', 0, 0)) {
				h->method = H1_PATCH;
				ts = p + 6;
			} else if ((x & LOW(6)) == W8('T', 'R', 'A', 'C', 'E', ' ', 0, 0)) {
				h->method = H1_TRACE;
				ts = p + 6;
			} else if ((x & LOW(7)) == W8('D', 'E', 'L', 'E', 'T', 'E', ' ', 0)) {
				h->method = H1_DELETE;
				ts = p + 7;
			} else if (x == W8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ')) {
				h->method = H1_OPTIONS;
				ts = p + 8;
			} else if (x == W8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' ')) {
				h->method = H1_CONNECT;
				ts = p + 8;
			} else {
				return false;
			}
		}
	}
	/* a target of one byte at least, then " HTTP/1.x" ending the line */
	if (e < ts + 10 || byte_at(b, e - 9) != ' ')
		return false;
	v = load8(b, e - 8);
	if (v == HTTP10)
		h->flags |= HTTP1_HTTP10;
	else if (v != HTTP11)
		return false;
	te = e - 9;
	if (h1_find(b, ts, te, ' ') != te)
		return false;
	if (h->sync) {
		/* what user space takes for a request line when it joins a connection */
		t = byte_at(b, ts) | 0x20;
		if (t != '/' && t != '*' && !(t >= 'a' && t <= 'z') && !(t >= '0' && t <= '9'))
			return false;
	}
	h->target_at = ts;
	h->target_len = te - ts;
	return true;
}

/* HTTP/1.x SP 3DIGIT [SP reason] in b[p, e). */
static __always_inline bool status_line(struct h1_window *win, __u32 p, __u32 e)
{
	const __u8 *b = win->buf;
	struct h1_head *h = &win->h;
	__u64 v = load8(b, p);
	__u8 d0 = byte_at(b, p + 9), d1 = byte_at(b, p + 10), d2 = byte_at(b, p + 11);

	if (e < p + 12 || (v != HTTP11 && v != HTTP10) || byte_at(b, p + 8) != ' ')
		return false;
	if (d0 < '0' || d0 > '9' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9')
		return false;
	if (e > p + 12 && byte_at(b, p + 12) != ' ')
		return false;
	h->status = (d0 - '0') * 100 + (d1 - '0') * 10 + (d2 - '0');
	return h->status >= 100;
}

/* The start line in b[p, e): false when it is not one. */
__noinline int h1_start_line(struct h1_window *win, __u32 p, __u32 e)
{
	if (!win)
		return 0;
	return win->h.is_req ? request_line(win, p, e) : status_line(win, p, e);
}

struct h1_digits {
	const __u8 *b;
	__u32 s;
	__u32 e;
	__s64 value;
	__s64 cur;
	int digits;
	bool spaced;
	bool bad;
};

/* One byte of a Content-Length value (its end counts as a comma). */
static long h1_digit(__u32 i, void *data)
{
	struct h1_digits *d = data;
	__u32 at = d->s + i;
	__u8 x;

	if (at > d->e)
		return 1;
	x = at < d->e ? byte_at(d->b, at) : ',';
	if (x >= '0' && x <= '9') {
		if (d->spaced || ++d->digits > H1_LENGTH_DIGITS)
			goto bad;
		d->cur = d->cur * 10 + (x - '0');
	} else if (x == ' ' || x == '\t') {
		d->spaced = d->digits > 0;
	} else if (x == ',') {
		if (!d->digits || (d->value != H1_NO_LENGTH && d->value != d->cur))
			goto bad;
		d->value = d->cur;
		d->cur = 0;
		d->digits = 0;
		d->spaced = false;
	} else {
		goto bad;
	}
	return 0;
bad:
	d->bad = true;
	return 1;
}

/* Content-Length: 1*DIGIT, or a list of identical ones (RFC 9110 8.6). */
__noinline long h1_length(struct h1_window *win, __u32 s, __u32 e)
{
	struct h1_digits d = {.s = s, .e = e, .value = H1_NO_LENGTH};

	if (!win || e - s > H1_VALUE_SCAN)
		return H1_BAD_LENGTH;
	d.b = win->buf;
	bpf_loop(H1_VALUE_SCAN + 1, h1_digit, &d, 0);
	return d.bad ? H1_BAD_LENGTH : d.value;
}

static __always_inline bool ows(__u8 x)
{
	return x == ' ' || x == '\t';
}

/*
 * The value of the field line b[p, e) whose name (with its colon) is `n`
 * bytes, without its surrounding whitespace: [*vs, *ve).
 */
static __always_inline void value_of(struct h1_window *win, __u32 p, __u32 e, __u32 n, __u32 *vs,
				     __u32 *ve)
{
	const __u8 *b = win->buf;
	__u32 s = p + n, t = e;

	for (int i = 0; i < 8 && s < t && ows(byte_at(b, s)); i++)
		s++;
	for (int i = 0; i < 8 && t > s && ows(byte_at(b, t - 1)); i++)
		t--;
	*vs = s;
	*ve = t;
}

/* A Content-Length of plain digits, the common case, without a loop step per byte. */
static __always_inline __s64 plain_length(struct h1_window *win, __u32 s, __u32 e)
{
	__s64 v = 0;

	if (e <= s || e - s > H1_LENGTH_DIGITS)
		return H1_BAD_LENGTH;
	for (int i = 0; i < H1_LENGTH_DIGITS; i++) {
		__u8 x;

		if (s + i >= e)
			return v;
		x = byte_at(win->buf, s + i);
		if (x < '0' || x > '9')
			return H1_BAD_LENGTH;
		v = v * 10 + (x - '0');
	}
	return v;
}

/* A header field line b[p, e): the fields kupod reports or frames by. */
__noinline int h1_field(struct h1_window *win, __u32 p, __u32 e)
{
	__u32 len = e - p, vs, ve;
	struct h1_head *h;
	const __u8 *b;
	__s64 n;

	if (!win)
		return 0;
	b = win->buf;
	h = &win->h;
	if (len < 7)
		return 0;
	/* content-length, content-type */
	if (name8(b, p, W8('c', 'o', 'n', 't', 'e', 'n', 't', '-'),
		  C8('c', 'o', 'n', 't', 'e', 'n', 't', '-'), 8)) {
		if (len >= 15 && name8(b, p + 8, W8('l', 'e', 'n', 'g', 't', 'h', ':', 0),
				       C8('l', 'e', 'n', 'g', 't', 'h', ':', 0), 7)) {
			value_of(win, p, e, 15, &vs, &ve);
			n = plain_length(win, vs, ve);
			if (n == H1_BAD_LENGTH)
				n = h1_length(win, vs, ve); /* a list, or not a length */
			if (n == H1_BAD_LENGTH || (h->length != H1_NO_LENGTH && h->length != n))
				h->length = H1_BAD_LENGTH;
			else
				h->length = n;
		} else if (!h->is_req && len >= 13 &&
			   name8(b, p + 8, W8('t', 'y', 'p', 'e', ':', 0, 0, 0),
				 C8('t', 'y', 'p', 'e', ':', 0, 0, 0), 5)) {
			value_of(win, p, e, 13, &vs, &ve);
			h->ctype_at = vs;
			h->ctype_len = ve - vs < HTTP1_VALUE_MAX ? ve - vs : HTTP1_VALUE_MAX;
		}
		return 0;
	}
	if (len >= 18 && name8(b, p, W8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r'),
			       C8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r'), 8) &&
	    name8(b, p + 8, W8('-', 'e', 'n', 'c', 'o', 'd', 'i', 'n'),
		  C8('-', 'e', 'n', 'c', 'o', 'd', 'i', 'n'), 8) &&
	    name8(b, p + 16, W8('g', ':', 0, 0, 0, 0, 0, 0), C8('g', ':', 0, 0, 0, 0, 0, 0), 2)) {
		value_of(win, p, e, 18, &vs, &ve);
		if (ve > vs)
			h->te = 1;
		return 0;
	}
	if (h->is_req) {
		if (len >= 12 && name8(b, p, W8('t', 'r', 'a', 'c', 'e', 'p', 'a', 'r'),
				       C8('t', 'r', 'a', 'c', 'e', 'p', 'a', 'r'), 8) &&
		    name8(b, p + 8, W8('e', 'n', 't', ':', 0, 0, 0, 0),
			  C8('e', 'n', 't', ':', 0, 0, 0, 0), 4)) {
			value_of(win, p, e, 12, &vs, &ve);
			h->tps++;
			h->tp_at = vs;
			/* a longer value is no traceparent kupod reports */
			h->tp_len = ve - vs <= HTTP1_VALUE_MAX ? ve - vs : 0;
		} else if ((len >= 14 &&
			    name8(b, p, W8('a', 'u', 't', 'h', 'o', 'r', 'i', 'z'),
				  C8('a', 'u', 't', 'h', 'o', 'r', 'i', 'z'), 8) &&
			    name8(b, p + 8, W8('a', 't', 'i', 'o', 'n', ':', 0, 0),
				  C8('a', 't', 'i', 'o', 'n', ':', 0, 0), 6)) ||
			   name8(b, p, W8('c', 'o', 'o', 'k', 'i', 'e', ':', 0),
				 C8('c', 'o', 'o', 'k', 'i', 'e', ':', 0), 7) ||
			   (len >= 20 &&
			    name8(b, p, W8('p', 'r', 'o', 'x', 'y', '-', 'a', 'u'),
				  C8('p', 'r', 'o', 'x', 'y', '-', 'a', 'u'), 8) &&
			    name8(b, p + 8, W8('t', 'h', 'o', 'r', 'i', 'z', 'a', 't'),
				  C8('t', 'h', 'o', 'r', 'i', 'z', 'a', 't'), 8) &&
			    name8(b, p + 16, W8('i', 'o', 'n', ':', 0, 0, 0, 0),
				  C8('i', 'o', 'n', ':', 0, 0, 0, 0), 4))) {
			h->flags |= HTTP1_REQ_CREDENTIALS;
		}
	} else if (len >= 11 && name8(b, p, W8('s', 'e', 't', '-', 'c', 'o', 'o', 'k'),
				      C8('s', 'e', 't', '-', 'c', 'o', 'o', 'k'), 8) &&
		   name8(b, p + 8, W8('i', 'e', ':', 0, 0, 0, 0, 0),
			 C8('i', 'e', ':', 0, 0, 0, 0, 0), 3)) {
		h->flags |= HTTP1_RESP_CREDENTIALS;
	}
	return 0;
}

/*
 * The line from h.p ends at the LF at `lf`: the start line, a field, or the
 * empty line that ends the head. Returns true once the head ended or is not one.
 */
static __always_inline bool h1_line(struct h1_window *win, __u32 lf)
{
	struct h1_head *h = &win->h;
	__u32 p = h->p, e = lf > p && byte_at(win->buf, lf - 1) == '\r' ? lf - 1 : lf;

	h->p = lf + 1;
	if (!h->started) {
		h->started = 1;
		h->bad = !h1_start_line(win, p, e);
		return h->bad;
	}
	if (e == p) {
		h->end = lf + 1;
		return true;
	}
	/* only fields that start so matter: most lines need no more look */
	switch ((__u32)load8(win->buf, p) | 0x20202020) {
	case W8('c', 'o', 'n', 't', 0, 0, 0, 0):
	case W8('t', 'r', 'a', 'n', 0, 0, 0, 0):
	case W8('t', 'r', 'a', 'c', 0, 0, 0, 0):
	case W8('a', 'u', 't', 'h', 0, 0, 0, 0):
	case W8('p', 'r', 'o', 'x', 0, 0, 0, 0):
	case W8('c', 'o', 'o', 'k', 0, 0, 0, 0):
	case W8('s', 'e', 't', '-', 0, 0, 0, 0):
		if (e - p >= 7)
			h1_field(win, p, e);
	}
	return false;
}

/* Starts parsing a head at the window's first byte. */
static __always_inline void h1_head_init(struct h1_head *h, bool is_req, bool sync)
{
	__builtin_memset(h, 0, sizeof(*h));
	h->length = H1_NO_LENGTH;
	h->is_req = is_req;
	h->sync = sync;
}

struct h1_scan {
	struct h1_window *win;
	__u32 from;
};

/*
 * 64 bytes of the window: their line ends, found eight bytes a load. The
 * zero-byte test may flag bytes above a line end falsely, so each is checked.
 */
static long h1_block(__u32 i, void *data)
{
	struct h1_scan *s = data;
	struct h1_window *win = s->win;
	const __u8 *b = win->buf;
	__u32 base = s->from + i * 64, n = win->h.n;

	for (int k = 0; k < 8; k++) {
		__u32 at = base + k * 8;
		__u64 v, m;

		if (at >= n)
			return 1;
		v = load8(b, at) ^ (ONES * '\n');
		m = (v - ONES) & ~v & HIGHS;
		for (int j = 0; j < 8 && m; j++) {
			__u32 lf = at + low_byte(m);

			m &= m - 1;
			if (lf >= n)
				return 1;
			if (byte_at(b, lf) == '\n' && h1_line(win, lf))
				return 1;
		}
	}
	return 0;
}

/*
 * Parses the lines of the window from h.p to h.n (resuming at the line the
 * last window ended in): h.end is set once the head ended, h.bad when it is
 * not one.
 */
__noinline int h1_parse(struct h1_window *win)
{
	struct h1_scan s = {.win = win};

	if (!win)
		return 0;
	s.from = win->h.p;
	bpf_loop(H1_WINDOW / 64 + 1, h1_block, &s, 0);
	return 0;
}

#endif
