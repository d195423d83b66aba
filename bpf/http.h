/* Records of the HTTP probe; the TypeScript decoders are generated from their BTF. */
#ifndef KUPOD_HTTP_H
#define KUPOD_HTTP_H

/* Every record starts with ts_ns, sock_id and kind, at the same offsets in each struct. */
enum http_record_kind {
	HTTP_RECORD_DATA = 1,     /* a read or write of a socket's owner (http_event) */
	HTTP_RECORD_CLOSE = 2,    /* the socket closed: pending messages end here (http_event) */
	HTTP_RECORD_OPEN = 3,     /* a socket the kernel frames: owner and endpoints (http_event) */
	HTTP_RECORD_EXCHANGE = 4, /* a request and its response, framed in the kernel (http1_event) */
	HTTP_RECORD_REQUEST = 5,  /* a request whose response comes in a record of its own */
	HTTP_RECORD_RESPONSE = 6, /* the response to the oldest request reported alone */
	HTTP_RECORD_HANDOFF = 7,  /* user space frames the socket from here on (http1_handoff_event) */
	HTTP_RECORD_STAMP = 8,    /* a mirrored server end's read or write (http_stamp_event) */
	HTTP_RECORD_JOIN = 9,     /* an HTTP/2 server end mirrors its client end (http2_join_event) */
};

#define HTTP_HEAD_MAX 4096 /* most bytes copied from the start of a call, or of a piece */
#define HTTP2_PIECES 16    /* records of HTTP_HEAD_MAX bytes an HTTP/2 call is copied in at most */
#define HTTP_PREFIX 64     /* bytes copied from a read or write inside a message */
#define HTTP_TAIL 16       /* bytes copied from the end of a longer read or write */

#define HTTP_DIR_SENT 0
#define HTTP_DIR_RECEIVED 1

/*
 * One read or write of an HTTP socket, followed in the ring by HTTP_TAIL bytes
 * (the first `tail_len` valid: the payload's last bytes, which may overlap the
 * head) and then `head_len` bytes of the payload's start. Bytes in between are
 * counted in `len`, not copied.
 */
struct http_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): the monotonic clock, as every record's */
	__u64 sock_id;    /* kernel socket address, as the socket probe's */
	__u8 kind;        /* enum http_record_kind */
	__u8 dir;         /* HTTP_DIR_* */
	__u8 family;      /* AF_INET or AF_INET6 */
	__u8 no_payload;  /* sendfile, splice, io_uring: counted, not readable */
	__u8 first;       /* the socket's first record: pid, endpoints and comm are set */
	__u8 tail_len;
	__u16 head_len;
	__u32 len;        /* bytes the call moved */
	__u32 pid;        /* tgid of the reader or writer (first record) */
	__u32 container;  /* index into the target's containers, or (u32)-1 */
	__u32 seq;        /* HTTP/2: TCP sequence number just past the call's bytes (0: not known) */
	__u16 sport;      /* host order */
	__u16 dport;      /* host order */
	__u8 saddr[16];   /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[16];
	__u8 cont;        /* HTTP/2: continues the previous record's call (a piece of a long one) */
	__u8 h2;          /* the kernel took the connection for HTTP/2 (its preface or whole frames) */
	/*
	 * HTTP/2: bytes of this direction's calls just before this one that held only control
	 * frames (PING, WINDOW_UPDATE, SETTINGS acknowledgements) and went out in no record
	 */
	__u16 skipped;
};

/* HTTP/1 messages framed in the kernel (bpf/http1_fast.h). */
#define HTTP1_TARGET_MAX 256 /* request-target bytes kept */
#define HTTP1_VALUE_MAX 64   /* bytes kept of a traceparent or content-type value */

/* http1_event.flags */
#define HTTP1_REQ_CREDENTIALS 1  /* Authorization, Proxy-Authorization or Cookie */
#define HTTP1_RESP_CREDENTIALS 2 /* Set-Cookie */
#define HTTP1_HTTP10 4           /* the request was HTTP/1.0 */
#define HTTP1_TRUNCATED 8        /* framing was lost: sizes are estimates */
#define HTTP1_CLOSED 16          /* the connection closed before the response ended */
#define HTTP1_TRACEPARENTS 32    /* more than one traceparent: none is reported */
#define HTTP1_MIRRORED 64        /* the srv_* fields: the server end's times for this exchange */
#define HTTP1_MIRROR_LOST 128    /* the server end did not frame it and its stamps are gone */

/*
 * A request and/or its response (kind EXCHANGE, REQUEST or RESPONSE). Its
 * strings follow each other in `data`, and the record is sent up to their
 * end: most records take two cache lines.
 */
struct http1_event {
	__u64 ts_ns;     /* the response's end (a request alone: its head) */
	__u64 sock_id;
	__u8 kind;       /* enum http_record_kind */
	__u8 req_dir;    /* HTTP_DIR_* of requests: received by a server, sent by a client */
	__u8 method;     /* index into the methods user space knows (GET, HEAD, POST, ...) */
	__u8 flags;      /* HTTP1_* */
	__u8 tp_len;     /* traceparent bytes (0: none) */
	__u8 ctype_len;  /* content-type bytes, parameters included (0: none) */
	__u16 target_len;
	__u16 status;    /* final status, 0 when none came */
	__u16 interim;   /* the last 1xx status, 0 when none came */
	__u32 req_seq;   /* TCP sequence number of the request's first byte (mirrored pairs) */
	__u64 req_ts_ns; /* the request's head */
	__u64 req_body;  /* request body bytes */
	__u64 resp_body; /* response body bytes */
	__u32 resp_seq;  /* ... just past the response's last byte (0: not known) */
	__u8 seqs;       /* req_seq and resp_seq are known */
	__u8 pad[3];
	/* HTTP1_MIRRORED: the server end of the pod's own connection (bpf/http_mirror.h) */
	__u64 srv_sock;
	__u64 srv_req_ts;  /* its read of the request's first byte */
	__u64 srv_resp_ts; /* the start of its write of the response's last byte */
	__u32 srv_container;
	__u32 srv_pid;
	char srv_comm[16];
	/* the request-target (target_len bytes), traceparent (tp_len), content-type (ctype_len) */
	char data[HTTP1_TARGET_MAX + 2 * HTTP1_VALUE_MAX];
};

/* Framer states handed to user space (http1_handoff.state). */
#define HTTP1_AT_START 0 /* a message starts at the next byte */
#define HTTP1_IN_BODY 1  /* `remaining` bytes of a request body are still to come */
#define HTTP1_LOST 2     /* not at a known boundary: resynchronize at a start line */

/*
 * From here on the socket's records are DATA: user space frames them. The
 * requests the kernel framed and not yet answered came in REQUEST records
 * before this one; `skip` bytes of the next DATA record in direction `dir`
 * were framed already.
 */
struct http1_handoff_event {
	__u64 ts_ns;
	__u64 sock_id;
	__u8 kind;       /* HTTP_RECORD_HANDOFF */
	__u8 req_dir;
	__u8 dir;        /* the direction whose next record starts at `skip` */
	__u8 state[2];   /* HTTP1_AT_START etc., by direction */
	__u8 pad[3];
	__u32 skip;
	__u32 mirror_since; /* srv_sock != 0: requests from here on are the server end's to mirror */
	__u64 remaining[2];
	/* a mirrored pair's client end: the server end's stamps come as STAMP records */
	__u64 srv_sock;
	__u32 srv_container;
	__u32 srv_pid;
	char srv_comm[16];
};

/* A read or write of a mirrored server end, while its client end is framed in user space. */
struct http_stamp_event {
	__u64 ts_ns;  /* a read: where it returned; a write: where it began */
	__u64 sock_id; /* the server end */
	__u8 kind;    /* HTTP_RECORD_STAMP */
	__u8 dir;     /* HTTP_DIR_* */
	__u8 pad[2];
	__u32 seq;    /* the call's first byte */
	__u32 end;    /* a read: past its last byte */
	__u32 pad2;
};

/*
 * An HTTP/2 server end of the pod's own connection stops copying its bytes:
 * its client end's are framed in user space, and this end's reads and writes
 * come as STAMP records from the bytes at `since` on.
 */
struct http2_join_event {
	__u64 ts_ns;
	__u64 sock_id;     /* the server end */
	__u8 kind;         /* HTTP_RECORD_JOIN */
	__u8 pad[3];
	__u32 since[2];    /* by HTTP_DIR_*: the first byte this end no longer copies */
	__u32 pad2;
	__u64 client_sock; /* its client end, framed in user space */
};

#endif
