// SPDX-License-Identifier: GPL-2.0
/*
 * Socket redirection for a pod's local TCP traffic (--with-sockops). A
 * sockops program attached to the pod's cgroups (never the root) puts each
 * established TCP socket whose peer is on this node into a sockhash; an
 * sk_msg program on that sockhash hands each send straight to the peer
 * socket's receive queue, skipping the lower stack. A send whose peer is not
 * in the map (traffic leaving the node) takes the normal path.
 *
 * Local means: the peer address is loopback, the socket's own address (the
 * pod talking to itself), or one of `local_addrs` (targets' pod IPs, filled by
 * user space).
 */
#include "kupod.h"
#include "filter.h"
#include "sockops.h"

#define SK_PASS 1
#define TCP_CLOSE 7
#define BPF_F_INGRESS_FLAG 1

/* The connection as its local socket sees it; ports in host order. */
struct sock_key {
	__u32 local[4]; /* IPv4 in local[0] */
	__u32 remote[4];
	__u16 local_port;
	__u16 remote_port;
	__u32 family;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
} sock_hash SEC(".maps");

/* Addresses of this node's pods that are targets (16 bytes, IPv4 as ::ffff:a.b.c.d). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u8[16]);
	__type(value, __u8);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CONTAINERS + 1);
	__type(key, __u32);
	__type(value, struct sockops_stats);
} sockops_stats SEC(".maps");

/*
 * Set by user space when it stops: sends take the normal path again. Sockets
 * stay in the map (taking them out would free what is queued for their
 * readers), and a reader empties its redirect queue before it reads what TCP
 * brought after it, so the byte stream keeps its order.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sockops_stopped SEC(".maps");

/* The stats of the current task's container (the pod's slot when none matches). */
static __always_inline struct sockops_stats *stats_of_current(void)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 *idx = bpf_map_lookup_elem(&target_cgroups, &cg);
	__u32 slot = idx && *idx < MAX_CONTAINERS ? *idx : MAX_CONTAINERS;

	return bpf_map_lookup_elem(&sockops_stats, &slot);
}

static __always_inline bool is_loopback4(__u32 addr)
{
	return (bpf_ntohl(addr) >> 24) == 127;
}

static __always_inline bool is_local(const struct sock_key *k)
{
	__u8 addr[16] = {};

	if (k->family == AF_INET) {
		if (is_loopback4(k->remote[0]) || k->remote[0] == k->local[0])
			return true;
		addr[10] = 0xff;
		addr[11] = 0xff;
		__builtin_memcpy(addr + 12, &k->remote[0], 4);
	} else {
		if (!k->remote[0] && !k->remote[1] && !k->remote[2] &&
		    k->remote[3] == bpf_htonl(1))
			return true; /* ::1 */
		if (k->remote[0] == k->local[0] && k->remote[1] == k->local[1] &&
		    k->remote[2] == k->local[2] && k->remote[3] == k->local[3])
			return true;
		__builtin_memcpy(addr, k->remote, 16);
	}
	return bpf_map_lookup_elem(&local_addrs, addr) != NULL;
}

SEC("sockops")
int kupod_sockops(struct bpf_sock_ops *skops)
{
	struct sock_key k = {};
	struct sockops_stats *s;
	__u32 pod_slot = MAX_CONTAINERS;

	/* a socket of the map closing (the callback is asked for only by those) */
	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == TCP_CLOSE) {
			s = bpf_map_lookup_elem(&sockops_stats, &pod_slot);
			if (s)
				s->removed += 1;
		}
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	k.family = skops->family;
	k.local_port = skops->local_port;
	/* remote_port holds the port in network order in its upper 16 bits */
	k.remote_port = bpf_ntohs(skops->remote_port >> 16);
	if (k.family == AF_INET) {
		k.local[0] = skops->local_ip4;
		k.remote[0] = skops->remote_ip4;
	} else if (k.family == AF_INET6) {
		k.local[0] = skops->local_ip6[0];
		k.local[1] = skops->local_ip6[1];
		k.local[2] = skops->local_ip6[2];
		k.local[3] = skops->local_ip6[3];
		k.remote[0] = skops->remote_ip6[0];
		k.remote[1] = skops->remote_ip6[1];
		k.remote[2] = skops->remote_ip6[2];
		k.remote[3] = skops->remote_ip6[3];
	} else {
		return 1;
	}
	if (!is_local(&k))
		return 1;
	if (bpf_sock_hash_update(skops, &sock_hash, &k, BPF_NOEXIST))
		return 1;
	/* its close is counted, so that the sockets in the map are known without walking it */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	s = bpf_map_lookup_elem(&sockops_stats, &pod_slot);
	if (s)
		s->inserted += 1;
	/* the passive side runs in softirq: count it under the pod, not whoever runs there */
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		s = stats_of_current();
	else
		s = bpf_map_lookup_elem(&sockops_stats, &pod_slot);
	if (s)
		s->added += 1;
	return 1;
}

SEC("sk_msg")
int kupod_sk_msg(struct sk_msg_md *msg)
{
	struct sock_key peer = {};
	struct sockops_stats *s;
	__u32 zero = 0, *stopped;
	long verdict;

	stopped = bpf_map_lookup_elem(&sockops_stopped, &zero);
	if (!stopped || *stopped)
		return SK_PASS;
	peer.family = msg->family;
	peer.local_port = bpf_ntohs(msg->remote_port >> 16);
	peer.remote_port = msg->local_port;
	if (peer.family == AF_INET) {
		peer.local[0] = msg->remote_ip4;
		peer.remote[0] = msg->local_ip4;
	} else {
		peer.local[0] = msg->remote_ip6[0];
		peer.local[1] = msg->remote_ip6[1];
		peer.local[2] = msg->remote_ip6[2];
		peer.local[3] = msg->remote_ip6[3];
		peer.remote[0] = msg->local_ip6[0];
		peer.remote[1] = msg->local_ip6[1];
		peer.remote[2] = msg->local_ip6[2];
		peer.remote[3] = msg->local_ip6[3];
	}
	/*
	 * Not found: the redirect is not set and the send takes the normal path
	 * (the program's verdict is always pass).
	 */
	verdict = bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS_FLAG);
	s = stats_of_current();
	if (s) {
		if (verdict == SK_PASS) {
			s->redirected_bytes += msg->size;
			s->redirected_msgs += 1;
		} else {
			s->redirect_errors += 1;
		}
	}
	return SK_PASS;
}

/* Keep the counter type in the object's BTF for the decoder generator. */
struct sockops_stats _sockops_stats = {};
