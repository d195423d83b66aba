/*
 * The addresses, protocol and ports of the packet in an skb, read from its
 * network header. Used by probes that select packets by flow.
 */
#ifndef KUPOD_FLOW_H
#define KUPOD_FLOW_H

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_OFFSET 0x1FFF
#define NO_HEADER ((__u16)~0U)

struct flow {
	__u8 saddr[16]; /* IPv4 as ::ffff:a.b.c.d, so one key type serves both families */
	__u8 daddr[16];
	__u16 sport;    /* host order; 0 when the protocol has no ports or it is a fragment */
	__u16 dport;
	__u8 family;    /* 4 or 6 */
	__u8 proto;     /* IPPROTO_* of the transport header */
};

static __always_inline void flow_v4_mapped(__u8 *to, __be32 addr)
{
	__builtin_memset(to, 0, 10);
	to[10] = 0xff;
	to[11] = 0xff;
	__builtin_memcpy(to + 12, &addr, 4);
}

/* Fills `f` from the skb's IP header; false for non-IP packets or no network header yet. */
static __always_inline bool flow_read(const struct sk_buff *skb, struct flow *f)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 eth = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	bool ports = true;
	__u32 l4;

	if (nh == NO_HEADER)
		return false;
	if (eth == ETH_P_IP) {
		struct iphdr ip;

		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || ip.version != 4)
			return false;
		f->family = 4;
		f->proto = ip.protocol;
		flow_v4_mapped(f->saddr, ip.saddr);
		flow_v4_mapped(f->daddr, ip.daddr);
		ports = !(ip.frag_off & bpf_htons(IP_OFFSET));
		l4 = nh + ip.ihl * 4;
	} else if (eth == ETH_P_IPV6) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) || ip6.version != 6)
			return false;
		f->family = 6;
		f->proto = ip6.nexthdr; /* extension headers are not walked */
		__builtin_memcpy(f->saddr, &ip6.saddr, 16);
		__builtin_memcpy(f->daddr, &ip6.daddr, 16);
		l4 = nh + sizeof(ip6);
	} else {
		return false;
	}
	if (ports && (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP)) {
		__be16 p[2];

		if (bpf_probe_read_kernel(p, sizeof(p), head + l4))
			return false;
		f->sport = bpf_ntohs(p[0]);
		f->dport = bpf_ntohs(p[1]);
	}
	return true;
}

/*
 * Fills `f` from a TCP or UDP socket's endpoints (packets not built yet have
 * no header). `sk` is a BTF pointer (tp_btf programs): plain loads, which
 * cost less than a helper call each.
 */
static __always_inline bool flow_of_sock(const struct sock *sk, struct flow *f)
{
	__u16 family = sk->__sk_common.skc_family;

	f->proto = sk->sk_protocol;
	f->sport = sk->__sk_common.skc_num;
	f->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (family == 2 /* AF_INET */) {
		f->family = 4;
		flow_v4_mapped(f->saddr, sk->__sk_common.skc_rcv_saddr);
		flow_v4_mapped(f->daddr, sk->__sk_common.skc_daddr);
		return true;
	}
	if (family == 10 /* AF_INET6 */) {
		f->family = 6;
		__builtin_memcpy(f->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(f->daddr, &sk->__sk_common.skc_v6_daddr, 16);
		return true;
	}
	return false;
}

#endif
