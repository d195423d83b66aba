/* Events and counters of the socket probe; the TypeScript decoders are generated from their BTF. */
#ifndef KUPOD_SOCKET_H
#define KUPOD_SOCKET_H

#include "hist.h"

enum sock_event_kind {
	SOCK_EVENT_CONNECT = 1,
	SOCK_EVENT_ACCEPT = 2,
	SOCK_EVENT_CLOSE = 3,
	SOCK_EVENT_RETRANSMIT = 4,
	SOCK_EVENT_SIDECAR = 5,
	SOCK_EVENT_RESET = 6,
};

/* One event of any kind; fields a kind does not use are zero. */
struct sock_event {
	__u64 ts_ns;          /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id;      /* cgroup v2 id of the owning task */
	__u64 sock_id;        /* kernel socket address: pairs events of one connection */
	__u64 start_ns;       /* close: connect() called / accept() returned */
	__u64 established_ns; /* close: handshake done */
	__u64 closing_ns;     /* close: first FIN seen (0: none) */
	__u64 bytes_sent;     /* close: bytes the owner wrote */
	__u64 bytes_received; /* close: bytes the owner read */
	__u64 process_ns;     /* sidecar: inbound read → upstream write in the sidecar */
	__u64 to_service_ns;  /* sidecar: upstream write → read by the service */
	__u32 kind;           /* enum sock_event_kind */
	__u32 pid;            /* tgid of the owning process */
	__u32 tid;
	__u32 netns;
	__u32 container;      /* index into the target's containers, or (u32)-1 */
	__u32 peer_container; /* sidecar: the service container */
	__u32 srtt_us;        /* close: smoothed RTT */
	__u32 retransmits;    /* close: total; retransmit: 0 */
	__u32 exchanges;      /* close: request/response turns seen */
	__u16 family;
	__u16 sport;          /* host order */
	__u16 dport;          /* host order */
	__u8 direction;       /* 0 outbound (connect), 1 inbound (accept) */
	__u8 state;           /* retransmit, reset: TCP state */
	__u8 saddr[16];       /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[16];
	__u8 reset;           /* reset: 1 sent (an abort), 2 received */
};

/*
 * Counted in the kernel per container and direction (struct stats_key), per
 * CPU: the connections and what they carried, added up when they close.
 * Every field is a u64 so that user space can sum the CPUs field by field.
 */
struct conn_stats {
	__u64 opened;         /* accepted or connected (handshake done) */
	__u64 closed;
	__u64 bytes_sent;     /* of closed connections */
	__u64 bytes_received; /* of closed connections */
	__u64 retransmits;    /* of closed connections */
	__u64 long_conns;     /* closed after more than one request/response exchange */
	__u64 resets;         /* ended by a reset, sent (abort) or received */
	struct log2_hist rtt_us;      /* smoothed RTT at close, µs */
	struct log2_hist duration_us; /* connect/accept to close, µs */
};

/* Sidecar timings counted in the kernel per sidecar container, per CPU. */
struct sidecar_stats {
	struct log2_hist process_ns;    /* inbound read -> upstream write, in the sidecar */
	struct log2_hist to_service_ns; /* upstream write -> read by the service */
};

struct stats_key {
	__u32 container; /* index into the target's containers, or (u32)-1 */
	__u32 direction; /* 0 outbound (connect), 1 inbound (accept) */
};

#endif
