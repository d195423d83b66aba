// SPDX-License-Identifier: GPL-2.0
/*
 * Stack probe: one packet followed through the pod's network path, from
 * tracepoints, TC on the host-side veth and netfilter hooks in the pod's
 * netns. A packet is keyed by its skb address (the same skb crosses the veth
 * pair, bpf/stack_pkts.h). TC and drops stay attached for the whole run and
 * count every packet at the pod's boundary; the path's hooks are attached
 * only while a path window is open (probes/stack_window.ts, POD_WINDOW), and
 * packets are followed only then, counted at every hook. For sampled packets
 * (bpf/stack_sample.h) each hook also stores when it saw the packet, and the
 * next hook adds the time between them to the histogram of that hop. Counts
 * per hook, per hop and per drop reason stay in per-CPU maps that user space
 * reads periodically; only packets sampled by rodata sample_every reach the
 * ring.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "hist.h"
#include "flow.h"
#include "stack.h"
#include "stack_pkts.h"
#include "stack_sample.h"

#define NO_HOOK 255
/*
 * An observer's verdict: on tcx, TCX_NEXT runs the programs after kupod's (TCX_PASS would end the
 * chain and skip, say, a CNI's policy program); on a cls_bpf filter, the next filter.
 */
#define TC_ACT_UNSPEC (-1)
#define NF_ACCEPT 1
#define IPPROTO_ICMPV6 58
#define IFF_LOOPBACK 0x8
#define LOOPBACK_IFINDEX 1

/* The netns of the host-side veth (kupod's own); the veth's ifindex is in `stack_pod`. */
const volatile __u32 host_netns = 0;
/*
 * Optional packet selection: only packets with this transport protocol (ICMP
 * stands for ICMPv6 too), with this port at either end, with an address of
 * `match_addrs` at either end are followed. 0 / false: any.
 */
const volatile __u8 match_proto = 0;
const volatile __u16 match_port = 0;
const volatile bool match_addr = false;
/*
 * Also follow the pod's loopback traffic (a sidecar talking to its service):
 * by default only packets that cross the pod's veth, the wire side.
 */
const volatile bool loopback = false;
/* A packet not seen for this long is gone (freed without a tracepoint, e.g. TCP coalescing). */
const volatile __u64 max_age_ns = 100000000ULL;

/* Where the pod is (enum stack_pod, 0: none); a map, so a re-created pod replaces it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, POD_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} stack_pod SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u8[16]); /* IPv6, or IPv4 as ::ffff:a.b.c.d */
	__type(value, __u8);
} match_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HOOK_COUNT);
	__type(key, __u32);
	__type(value, struct hook_count);
} hook_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HOOK_COUNT * HOOK_COUNT);
	__type(key, __u32); /* from * HOOK_COUNT + to */
	__type(value, struct log2_hist); /* latency from -> to */
} hops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);   /* enum skb_drop_reason (with subsystem bits) */
	__type(value, __u64); /* drops */
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stack_stats SEC(".maps");

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

static __always_inline void stat_add(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&stack_stats, &stat);

	if (v)
		*v += 1;
}

static __always_inline void hop_add(__u32 from, __u32 to, __u64 ns)
{
	__u32 key = from * HOOK_COUNT + to;
	struct log2_hist *h;

	if (from >= HOOK_COUNT || to >= HOOK_COUNT)
		return;
	h = bpf_map_lookup_elem(&hops, &key);
	if (h)
		hist_add(h, ns);
}

static __always_inline void hook_add(__u32 hook, __u32 len)
{
	struct hook_count *c = bpf_map_lookup_elem(&hook_counts, &hook);

	if (c) {
		c->packets += 1;
		c->bytes += len;
	}
}

static __always_inline void emit(__u64 key, __u32 hook, __u32 prev, __u64 latency, __u32 netns,
				 __u32 ifindex, __u32 len, __u32 reason)
{
	struct stack_event *e = event_reserve(sizeof(*e));

	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->packet_id = key;
	e->latency_ns = latency;
	e->netns = netns;
	e->ifindex = ifindex;
	e->len = len;
	e->reason = reason;
	e->hook = hook;
	e->prev_hook = prev;
	event_submit(e);
	stat_add(STAT_SAMPLED);
}

static __always_inline bool selecting(void)
{
	return match_proto || match_port || match_addr;
}

/* Whether flow `f` is one the user selected (address, port, protocol). */
static __always_inline bool flow_wanted(const struct flow *f)
{
	__u8 proto = match_proto;

	if (proto == IPPROTO_ICMP && f->family == 6)
		proto = IPPROTO_ICMPV6;
	if (proto && f->proto != proto)
		return false;
	if (match_port && f->sport != match_port && f->dport != match_port)
		return false;
	return !match_addr || bpf_map_lookup_elem(&match_addrs, f->saddr) ||
	       bpf_map_lookup_elem(&match_addrs, f->daddr);
}

/* Whether a packet not followed yet is one the user selected. */
static __always_inline bool wanted(const struct sk_buff *skb)
{
	struct flow f = {};

	return !selecting() || (flow_read(skb, &f) && flow_wanted(&f));
}

static __always_inline __u32 pod_get(__u32 what)
{
	__u32 *v = bpf_map_lookup_elem(&stack_pod, &what);

	return v ? *v : 0;
}

/*
 * Packet `skb` reached `hook`. `matched`: the hook belongs to the target (its
 * device or netns). `follow`: a packet already followed counts here even if
 * the hook is not the target's (delivery to a host process, drops, frees).
 * `ends`: the packet is freed here. Returns whether it was counted.
 */
static __always_inline bool seen(void *skb, __u32 hook, bool matched, bool follow, bool ends,
				 __u32 netns, __u32 ifindex, __u32 len, __u32 reason)
{
	__u32 prev = NO_HOOK;
	__u64 now = 0, latency = 0, head = 0, key;
	__u32 now_j, window;
	bool mine, timed, ring;
	struct pkt *p;

	/* most runs: a packet of the rest of the node at a device hook; no table access */
	if (!matched && !follow)
		return false;
	window = pod_get(POD_WINDOW);
	if (!window) {
		/* between path windows only the always-attached hooks run: counted, not followed */
		if (!matched || !wanted(skb))
			return false;
		hook_add(hook, len);
		return true;
	}
	key = skb_addr(skb);
	p = pkt_slot(key);
	if (!p || !key)
		return false;
	/* a slot left by an earlier window is free: its packet went on while nothing followed it */
	mine = p->skb == key && p->window == (__u8)window;
	/* a packet not followed at a follow-only hook */
	if (!matched && !mine)
		return false;
	now_j = bpf_jiffies64();
	/* never where the skb may be gone (net_dev_xmit) */
	if (hook != HOOK_DEV_XMIT)
		head = (__u64)((struct sk_buff *)skb)->head;
	if (mine) {
		/*
		 * The clock (a helper call) only for a timed packet or once a tick has passed
		 * since the packet was last seen (jiffies are a plain load): within a tick it
		 * cannot be old.
		 */
		if (p->timed || now_j != p->last_j)
			now = bpf_ktime_get_ns();
		/*
		 * A packet seen where packets are born (sent by the pod, or by the host to the
		 * pod) is a new one, as is one not seen for long, or one outside the target with
		 * another data buffer: a followed skb at that address was freed without a
		 * tracepoint (e.g. a pure TCP ACK, a UDP datagram copied to its reader in one
		 * piece) and the address reused.
		 */
		if (hook == HOOK_NF_LOCAL_OUT || hook == HOOK_TC_EGRESS ||
		    (now && now - p->last_ns > max_age_ns) ||
		    (!matched && head && p->head && head != p->head)) {
			stat_add(STAT_VANISHED);
			p->skb = 0;
			mine = false;
			if (!matched)
				return false;
		}
	}
	if (!mine && !wanted(skb))
		return false;
	if (mine && p->hook == hook)
		return true; /* the same hook again (an application reading one skb in parts) */
	hook_add(hook, len);
	if (mine) {
		prev = p->hook;
		timed = p->timed;
		ring = p->ring;
		if (timed) {
			latency = now - p->last_ns;
			hop_add(prev, hook, latency);
		}
		if (ends) {
			stat_add(STAT_ENDED);
			p->skb = 0;
		} else {
			p->hook = hook;
			if (head)
				p->head = head;
			if (now) {
				p->last_ns = now;
				p->last_j = now_j;
			}
		}
	} else {
		now = bpf_ktime_get_ns();
		sample_start(now, &timed, &ring);
		if (!ends) {
			if (p->skb && p->window == (__u8)window)
				stat_add(STAT_VANISHED); /* displaced by this one */
			*p = (struct pkt){ .skb = key, .last_ns = now, .head = head, .last_j = now_j,
					   .hook = hook, .timed = timed, .ring = ring, .window = window };
			stat_add(STAT_TRACKED);
		}
	}
	if (ring)
		emit(key, hook, prev, latency, netns, ifindex, len, reason);
	return true;
}

static __always_inline bool netns_matches(__u32 ns)
{
	return ns && ns == pod_get(POD_NETNS);
}

/*
 * Whether `skb` came in through a loopback device (ifindex 1 in every netns) while loopback
 * traffic is not followed: then it is not followed, and the follow-only hooks (delivery, frees)
 * neither look it up in the packet table nor take it for a followed skb whose address it
 * reuses.
 */
static __always_inline bool unfollowed_loopback(const struct sk_buff *skb)
{
	return !loopback && skb->skb_iif == LOOPBACK_IFINDEX;
}

/*
 * Whether a hook without a device needs the netns of the packet's socket or reader: to match it
 * (loopback traffic) or to send it with a path event. Otherwise the pointer chase is skipped
 * (both are read-only settings, so the verifier drops the unused branch).
 */
static __always_inline bool netns_needed(void)
{
	return loopback || sample_every;
}

/* Whether a packet through device `dev` of the pod's netns is one to follow. */
static __always_inline bool pod_dev_wanted(const struct net_device *dev)
{
	return loopback || !dev || !(dev->flags & IFF_LOOPBACK);
}

/*
 * Whether device `dev` is the pod's (in its netns) or the host side of its veth.
 * Direct loads through BTF pointers: no probe-read helper calls.
 */
static __always_inline bool dev_matches(const struct net_device *dev, __u32 *netns, __u32 *ifindex)
{
	__u32 veth;

	*netns = 0;
	*ifindex = 0;
	/* loopback first: one load, and a third of a proxied request's device hook runs */
	if (!dev || !pod_dev_wanted(dev))
		return false;
	*netns = dev->nd_net.net->ns.inum;
	*ifindex = dev->ifindex;
	if (netns_matches(*netns))
		return true;
	veth = pod_get(POD_VETH);
	return veth && *ifindex == veth && *netns == host_netns;
}

static __always_inline int on_dev(const struct sk_buff *skb, const struct net_device *dev,
				  __u32 hook)
{
	__u32 netns, ifindex;
	bool matched = dev_matches(dev, &netns, &ifindex);

	seen((void *)skb, hook, matched, false, false, netns, ifindex, skb->len, 0);
	return 0;
}

SEC("tp_btf/netif_rx")
int BPF_PROG(kupod_stk_rx, struct sk_buff *skb)
{
	return on_dev(skb, skb->dev, HOOK_NETIF_RX);
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(kupod_stk_recv, struct sk_buff *skb)
{
	return on_dev(skb, skb->dev, HOOK_NETIF_RECEIVE);
}

SEC("tp_btf/net_dev_queue")
int BPF_PROG(kupod_stk_queue, struct sk_buff *skb)
{
	return on_dev(skb, skb->dev, HOOK_DEV_QUEUE);
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(kupod_stk_start, const struct sk_buff *skb, const struct net_device *dev)
{
	return on_dev(skb, dev, HOOK_DEV_START_XMIT);
}

/* The skb may be freed by now (veth passed it on): only its address and the arguments are used. */
SEC("tp_btf/net_dev_xmit")
int BPF_PROG(kupod_stk_xmit, struct sk_buff *skb, int rc, struct net_device *dev, unsigned int len)
{
	__u32 netns, ifindex;
	bool matched = dev_matches(dev, &netns, &ifindex);

	seen(skb, HOOK_DEV_XMIT, matched, false, false, netns, ifindex, len, 0);
	return 0;
}

SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(kupod_stk_gro, const struct sk_buff *skb)
{
	return on_dev(skb, skb->dev, HOOK_NAPI_GRO);
}

/*
 * TCP takes a segment for an established socket: between the netfilter hooks and delivery.
 * Here and at delivery the device is no longer known: without loopback, only packets already
 * followed from the pod's device or netfilter hooks count.
 */
SEC("tp_btf/tcp_probe")
int BPF_PROG(kupod_stk_tcpr, struct sock *sk, const struct sk_buff *skb)
{
	__u32 netns = 0;

	if (unfollowed_loopback(skb))
		return 0;
	if (netns_needed())
		netns = sk->__sk_common.skc_net.net->ns.inum;
	seen((void *)skb, HOOK_TCP_RECV, loopback && netns_matches(netns), true, false, netns, 0,
	     skb->len, 0);
	return 0;
}

/*
 * An application writes to a TCP socket (the tracepoint shows the send queue's tail skb, none
 * when the queue is empty). Counted only, with the bytes written: TCP sends clones of its
 * queued skbs, and the originals are freed without a tracepoint once acknowledged, so
 * following them would only age them out.
 */
SEC("tp_btf/tcp_sendmsg_locked")
int BPF_PROG(kupod_stk_tcps, const struct sock *sk, const struct msghdr *msg,
	     const struct sk_buff *skb, int size_goal)
{
	struct flow f = {};

	if (!netns_matches(sk->__sk_common.skc_net.net->ns.inum) ||
	    !pod_dev_wanted(sk->sk_dst_cache ? sk->sk_dst_cache->dev : NULL))
		return 0;
	/* no headers yet: the selection applies to the socket's endpoints */
	if (selecting() && !(flow_of_sock(sk, &f) && flow_wanted(&f)))
		return 0;
	hook_add(HOOK_TCP_SEND, BPF_CORE_READ(msg, msg_iter.count));
	return 0;
}

/* An application reads the packet's data: process context, the reader's netns. */
SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(kupod_stk_dlvr, const struct sk_buff *skb, int len)
{
	__u32 netns = 0;

	if (unfollowed_loopback(skb))
		return 0;
	if (netns_needed())
		netns = bpf_get_current_task_btf()->nsproxy->net_ns->ns.inum;
	seen((void *)skb, HOOK_DELIVER, loopback && netns_matches(netns), true, false, netns, 0, len,
	     0);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(kupod_stk_drop, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	__u32 netns, ifindex, r = reason;
	bool matched = dev_matches(skb->dev, &netns, &ifindex);
	__u64 *n;

	if (!seen(skb, HOOK_DROP, matched, true, true, netns, ifindex, skb->len, r))
		return 0;
	n = bpf_map_lookup_elem(&drops, &r);
	if (n) {
		*n += 1;
	} else {
		__u64 one = 1;

		bpf_map_update_elem(&drops, &r, &one, BPF_NOEXIST);
	}
	return 0;
}

/* Normal end of a followed packet; packets not followed are not counted here. */
SEC("tp_btf/consume_skb")
int BPF_PROG(kupod_stk_free, struct sk_buff *skb)
{
	if (unfollowed_loopback(skb))
		return 0;
	seen(skb, HOOK_CONSUME, false, true, true, 0, 0, skb->len, 0);
	return 0;
}

static __always_inline int on_tc(struct __sk_buff *ctx, __u32 hook)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);

	seen(skb, hook, true, false, false, host_netns, ctx->ifindex, ctx->len, 0);
	return TC_ACT_UNSPEC;
}

/* Host-side veth ingress: packets from the pod (rx). */
SEC("tc")
int kupod_stk_tc_in(struct __sk_buff *ctx)
{
	return on_tc(ctx, HOOK_TC_INGRESS);
}

/* Host-side veth egress: packets to the pod (tx). */
SEC("tc")
int kupod_stk_tc_out(struct __sk_buff *ctx)
{
	return on_tc(ctx, HOOK_TC_EGRESS);
}

/*
 * Netfilter hooks (BPF_PROG_TYPE_NETFILTER, set by the loader: libbpf 1.1 does
 * not know SEC("netfilter")), attached in the pod's netns: every packet there
 * is the pod's. The hook number comes from the state, so one program serves
 * all hooks of both families.
 */
SEC("tc")
int kupod_stk_nf(struct bpf_nf_ctx *ctx)
{
	const struct nf_hook_state *state = ctx->state;
	struct sk_buff *skb = ctx->skb;
	__u32 hook = HOOK_NF_PRE_ROUTING + state->hook;
	const struct net_device *dev = state->in ?: state->out;

	if (hook <= HOOK_NF_POST_ROUTING && pod_dev_wanted(dev))
		seen(skb, hook, true, false, false, state->net->ns.inum, dev ? dev->ifindex : 0,
		     skb->len, 0);
	return NF_ACCEPT;
}

/* Keep the event type in the object's BTF for the decoder generator. */
struct stack_event _stack_event = {};
