/* Records of the HTTP probe; the TypeScript decoders are generated from their BTF. */
#ifndef KUPOD_HTTP_H
#define KUPOD_HTTP_H

enum http_record_kind {
	HTTP_RECORD_DATA = 1,  /* a read or write of a socket's owner */
	HTTP_RECORD_CLOSE = 2, /* the socket closed: pending messages end here */
};

#define HTTP_HEAD_MAX 4096 /* most bytes copied from the start of a call (HTTP/2's) */
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
	__u64 ts_ns;      /* bpf_ktime_get_boot_ns() */
	__u64 sock_id;    /* kernel socket address, as the socket probe's */
	__u32 len;        /* bytes the call moved */
	__u32 pid;        /* tgid of the reader or writer (first record) */
	__u32 container;  /* index into the target's containers, or (u32)-1 */
	__u16 head_len;
	__u16 sport;      /* host order */
	__u16 dport;      /* host order */
	__u8 tail_len;
	__u8 kind;        /* enum http_record_kind */
	__u8 dir;         /* HTTP_DIR_* */
	__u8 family;      /* AF_INET or AF_INET6 */
	__u8 no_payload;  /* sendfile, splice, io_uring: counted, not readable */
	__u8 first;       /* the socket's first record: pid, endpoints and comm are set */
	__u8 saddr[16];   /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[16];
};

#endif
