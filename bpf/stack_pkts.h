/*
 * The packets the stack probe follows: a direct-mapped table in an array map,
 * one slot per skb address hash. An array lookup is inlined by the verifier
 * (a multiply and an add), where a hash map lookup, update and delete took
 * most of the probe's per-packet cost. The table is shared by all CPUs: a
 * packet is often read by an application on another CPU than the softirq
 * that received it. A packet whose slot is taken by a newer one stops being
 * followed and is counted as vanished; with a table much larger than the
 * packets in flight that is rare.
 */
#ifndef KUPOD_STACK_PKTS_H
#define KUPOD_STACK_PKTS_H

#define PKT_SLOT_BITS 14
#define PKT_SLOTS (1U << PKT_SLOT_BITS)

/* 32 bytes: two slots a cache line, none across two. */
struct pkt {
	__u64 skb;     /* struct sk_buff * followed in this slot; 0: none */
	__u64 last_ns; /* bpf_ktime_get_ns() when last seen (untimed: in the tick of last_j) */
	__u64 head;    /* skb->head when last seen: its data buffer (0: not known) */
	__u32 last_j;  /* jiffies (low bits) when last_ns was taken */
	__u8 hook;     /* where it was last seen (enum stack_hook) */
	__u8 timed;    /* each hop's latency goes to the histograms */
	__u8 ring;     /* its path goes to the ring */
	__u8 window;   /* low bits of the path window it was followed in: older ones are free slots */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PKT_SLOTS);
	__type(key, __u32);
	__type(value, struct pkt);
} pkts SEC(".maps");

/* One u64 per CPU to turn a kernel pointer into a number (skb_addr). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} addr_scratch SEC(".maps");

/*
 * The address of `skb` as a number: the verifier allows no arithmetic on a
 * BTF pointer, but a privileged program may store one in a map value and
 * load it back as a scalar (a store and a load, cheaper than a helper call).
 */
static __always_inline __u64 skb_addr(const void *skb)
{
	__u32 zero = 0;
	__u64 *s = bpf_map_lookup_elem(&addr_scratch, &zero);

	if (!s)
		return 0;
	*(volatile __u64 *)s = (__u64)skb;
	return *(volatile __u64 *)s;
}

/*
 * The slot of skb address `skb`: skbs come from slab caches at multiples of
 * their size, so the low bits alone would crowd a few slots; a Fibonacci
 * multiply spreads them.
 */
static __always_inline struct pkt *pkt_slot(__u64 skb)
{
	__u32 slot = (skb * 0x9E3779B97F4A7C15ULL) >> (64 - PKT_SLOT_BITS);

	return bpf_map_lookup_elem(&pkts, &slot);
}

#endif
