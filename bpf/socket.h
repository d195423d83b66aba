/* Events of the socket probe; the TypeScript decoder is generated from this struct's BTF. */
#ifndef KUPOD_SOCKET_H
#define KUPOD_SOCKET_H

enum sock_event_kind {
	SOCK_EVENT_CONNECT = 1,
	SOCK_EVENT_ACCEPT = 2,
};

struct sock_event {
	__u64 ts_ns;     /* bpf_ktime_get_boot_ns() */
	__u64 cgroup_id; /* cgroup v2 id of the owning task */
	__u64 sock_id;   /* kernel socket address: pairs events of one connection */
	__u32 kind;      /* enum sock_event_kind */
	__u32 pid;       /* tgid of the owning process */
	__u32 tid;
	__u32 netns;
	__u32 container; /* index into the target's containers, or (u32)-1 */
	__u16 family;
	__u16 sport;     /* host order */
	__u16 dport;     /* host order */
	__u8 saddr[16];  /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[16];
};

#endif
