/*
 * Log2 histograms counted in the kernel, per CPU: slot i counts values in
 * [2^i, 2^(i+1)) of the histogram's unit (ns for latencies, µs for RTTs and
 * lifetimes). User space sums the CPUs and renders Prometheus buckets from
 * the slots (exporters/metrics.ts). The struct is shared with user-space
 * headers; the helpers are BPF-only.
 */
#ifndef KUPOD_HIST_H
#define KUPOD_HIST_H

#define HIST_SLOTS 32

struct log2_hist {
	__u64 count;
	__u64 sum; /* in the histogram's unit */
	__u64 slots[HIST_SLOTS];
};

#ifdef __bpf__

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0;

	if (v >> 32)
		return HIST_SLOTS - 1;
	if (v >> 16) {
		v >>= 16;
		r += 16;
	}
	if (v >> 8) {
		v >>= 8;
		r += 8;
	}
	if (v >> 4) {
		v >>= 4;
		r += 4;
	}
	if (v >> 2) {
		v >>= 2;
		r += 2;
	}
	if (v >> 1)
		r += 1;
	return r;
}

static __always_inline void hist_add(struct log2_hist *h, __u64 v)
{
	__u32 slot = log2_slot(v);

	h->count += 1;
	h->sum += v;
	if (slot < HIST_SLOTS)
		h->slots[slot] += 1;
}

#endif /* __bpf__ */

#endif
