/*
 * Which packets the stack probe times hop by hop. Every packet of the pod is
 * counted at every hook, but a clock read and a histogram update at each hook
 * cost more than the count, so only sampled packets are timed: a token bucket
 * per CPU lets one packet start timed per HOP_SAMPLE_GAP_NS, in bursts of up
 * to HOP_SAMPLE_BURST. A quiet pod has all its packets timed (a request and
 * its reply alike); under load at most one start per gap and CPU is (1000
 * packets/s per CPU at the default), spread evenly over time. Packets whose
 * path goes to the ring (--verbose) are always timed.
 */
#ifndef KUPOD_STACK_SAMPLE_H
#define KUPOD_STACK_SAMPLE_H

/* One packet in `sample_every` gets its path sent to the ring; 0 = none. */
const volatile __u32 sample_every = 0;

/* Per CPU: packets started (for sample_every) and the token bucket of timed starts. */
struct sampler {
	__u64 started;
	__u64 next_ns; /* bpf_ktime_get_ns() from which the next timed start is due */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sampler);
} samplers SEC(".maps");

/* A packet starting at `now` (bpf_ktime_get_ns()): whether it is timed and whether it goes to the ring. */
static __always_inline void sample_start(__u64 now, bool *timed, bool *ring)
{
	__u32 zero = 0;
	struct sampler *s = bpf_map_lookup_elem(&samplers, &zero);

	*timed = false;
	*ring = false;
	if (!s)
		return;
	if (sample_every) {
		s->started += 1;
		*ring = s->started % sample_every == 0;
	}
	/* a bucket idle for long holds HOP_SAMPLE_BURST starts, no more */
	if (s->next_ns + HOP_SAMPLE_BURST * HOP_SAMPLE_GAP_NS < now)
		s->next_ns = now - HOP_SAMPLE_BURST * HOP_SAMPLE_GAP_NS;
	if (*ring || s->next_ns <= now) {
		s->next_ns += HOP_SAMPLE_GAP_NS;
		*timed = true;
	}
}

#endif
