/*
 * The object's event ring and its loss counter. User space sizes the ring
 * (bpf_map__set_max_entries) before load and reads `events_lost` so that
 * every event the kernel could not reserve is reported, never silently gone.
 */
#ifndef KUPOD_RINGBUF_H
#define KUPOD_RINGBUF_H

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} events_lost SEC(".maps");

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&events_lost, &zero);

	if (lost)
		*lost += 1;
}

/*
 * Batched wake-ups (0: the kernel's choice, a wake-up per event the reader
 * waits for). With a value, a CPU wakes the reader with its first record
 * after WAKE_GAP_NS without one, and again once this many bytes went into the
 * ring from it; records in between wait for the reader's next round
 * (probes/probe_object.ts), so a busy ring costs user space one wake-up per
 * batch instead of one per event.
 */
const volatile __u64 wakeup_bytes = 0;

/* Reserve an event in the ring; a failed reservation is counted as lost. */
static __always_inline void *event_reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e)
		count_lost();
	return e;
}

/*
 * Per CPU: bytes put in the ring since this CPU last woke the reader, and
 * when that was. Wake-ups are decided from these rather than by asking the
 * ring how much it holds: that query (bpf_ringbuf_query) measured ~7 us a
 * call on these machines, against ~1 us for a whole HTTP capture program.
 */
struct wake_state {
	__u64 bytes;
	__u64 woken_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct wake_state);
} wake_state SEC(".maps");

/* A record waits at most this long for the reader to be woken (a quiet ring wakes it at once). */
#define WAKE_GAP_NS 50000000ULL

/*
 * The wake-up flags for a record of `size` bytes at `now` (boot ns): woken
 * once `wakeup_bytes` went into the ring from this CPU since it last woke the
 * reader, or when WAKE_GAP_NS passed since then, so the first record after a
 * quiet spell wakes it at once and a busy CPU at most 20 times a second
 * besides its batches. 0 (the kernel's own choice) without `wakeup_bytes`.
 */
static __always_inline __u64 wake_flags(__u64 size, __u64 now)
{
	__u32 zero = 0;
	struct wake_state *w;

	if (!wakeup_bytes)
		return 0;
	w = bpf_map_lookup_elem(&wake_state, &zero);
	if (!w)
		return 0;
	/* a record takes an 8-byte header and is padded to 8 bytes */
	w->bytes += ((size + 7) & ~7ULL) + 8;
	if (w->bytes < wakeup_bytes && now - w->woken_ns < WAKE_GAP_NS)
		return BPF_RB_NO_WAKEUP;
	w->bytes = 0;
	w->woken_ns = now;
	return BPF_RB_FORCE_WAKEUP;
}

/* Commit a reserved event of `size` bytes, waking the reader as wake_flags() says. */
static __always_inline void event_commit(void *e, __u64 size)
{
	bpf_ringbuf_submit(e, wake_flags(size, bpf_ktime_get_boot_ns()));
}

/* Copy `size` bytes of `data` into the ring as one record (counted as lost when full). */
static __always_inline void event_output(void *data, __u64 size, __u64 now)
{
	if (bpf_ringbuf_output(&events, data, size, wake_flags(size, now)))
		count_lost();
}

#define event_submit(e) event_commit((e), sizeof(*(e)))

#endif
