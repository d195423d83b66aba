/* The stack probe's hooks, map values and sampled path event, shared with user space. */
#ifndef KUPOD_STACK_H
#define KUPOD_STACK_H

/* Where a packet was seen; user space names them (probes/stack.ts HOOKS, same order). */
enum stack_hook {
	HOOK_TC_INGRESS = 0,     /* host-side veth ingress: from the pod (rx) */
	HOOK_TC_EGRESS = 1,      /* host-side veth egress: to the pod (tx) */
	HOOK_NETIF_RX = 2,       /* net:netif_rx (veth hands the skb to its peer) */
	HOOK_NETIF_RECEIVE = 3,  /* net:netif_receive_skb */
	HOOK_DEV_QUEUE = 4,      /* net:net_dev_queue */
	HOOK_DEV_START_XMIT = 5, /* net:net_dev_start_xmit */
	HOOK_DEV_XMIT = 6,       /* net:net_dev_xmit */
	HOOK_NF_PRE_ROUTING = 7, /* netfilter hooks in the pod's netns: 7 + hook number */
	HOOK_NF_LOCAL_IN = 8,
	HOOK_NF_FORWARD = 9,
	HOOK_NF_LOCAL_OUT = 10,
	HOOK_NF_POST_ROUTING = 11,
	HOOK_DELIVER = 12,       /* skb:skb_copy_datagram_iovec: read by an application */
	HOOK_DROP = 13,          /* skb:kfree_skb */
	HOOK_CONSUME = 14,       /* skb:consume_skb: freed after normal use */
	HOOK_NAPI_GRO = 15,      /* net:napi_gro_receive_entry (NAPI devices; veth only with GRO/XDP) */
	HOOK_TCP_RECV = 16,      /* tcp:tcp_probe: a segment reaches an established TCP socket */
	HOOK_TCP_SEND = 17,      /* tcp:tcp_sendmsg_locked: an application writes to a TCP socket */
	HOOK_COUNT = 18,
};

/*
 * Packets timed hop by hop for the latency histograms: one starting per this
 * many ns and CPU, in bursts of up to this many (bpf/stack_sample.h); every
 * packet is counted. 1000 timed packets a second per CPU fill the log2
 * histograms well; each one more costs a clock read and a histogram update at
 * every hook.
 */
#define HOP_SAMPLE_GAP_NS 1000000ULL
#define HOP_SAMPLE_BURST 32ULL

/* Per-CPU counters of the probe (index into the `stack_stats` array). */
enum stack_stat {
	STAT_TRACKED = 0,  /* packets that started being followed */
	STAT_ENDED = 1,    /* followed packets that ended (dropped or consumed) */
	STAT_VANISHED = 2, /* followed packets that ended unseen: found stale or displaced */
	STAT_SAMPLED = 3,  /* path events sent */
	STAT_COUNT = 4,
};

/* Where the pod is and whether its path is traced: keys of the `stack_pod` array, set by user space. */
enum stack_pod {
	POD_VETH = 0,   /* ifindex of the host-side veth */
	POD_NETNS = 1,  /* inode of the pod's netns (not the host's) */
	POD_WINDOW = 2, /* the path window open now (1, 2, ...), 0: closed, only the boundary counts */
	POD_COUNT = 3,
};


/* Packets and bytes seen at one hook, per CPU. */
struct hook_count {
	__u64 packets;
	__u64 bytes;
};

/* One hop of a sampled packet (rodata sample_every). */
struct stack_event {
	__u64 ts_ns;      /* bpf_ktime_get_boot_ns() */
	__u64 packet_id;  /* kernel skb address: pairs the hops of one packet (masked in user space) */
	__u64 latency_ns; /* from the previous hook; 0 at the first */
	__u32 netns;      /* netns inode of the device (0: not known at this hook) */
	__u32 ifindex;    /* device, 0 when none */
	__u32 len;        /* skb->len */
	__u32 reason;     /* drop: enum skb_drop_reason */
	__u8 hook;        /* enum stack_hook */
	__u8 prev_hook;   /* enum stack_hook, 255 at the first */
	__u8 pad[6];
};

#endif
