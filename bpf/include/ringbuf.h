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
 * Batched wake-ups (0: wake the reader on every event). With a value, the
 * reader is woken by the first record into an empty ring (it may be asleep
 * waiting for one) and again once this many bytes wait; records in between
 * wait for the reader's next round (probes/probe_object.ts), so a busy ring
 * costs user space one wake-up per batch instead of one per event.
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
 * The wake-up flags for a record of `size` bytes, as `wakeup_bytes` says;
 * `queued`: whether the record is in the ring already (reserved) or not yet
 * (output).
 */
static __always_inline __u64 wakeup_flags(__u64 size, bool queued)
{
	/* a record takes an 8-byte header and is padded to 8 bytes */
	__u64 record = ((size + 7) & ~7ULL) + 8;
	__u64 avail;

	if (!wakeup_bytes)
		return 0;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	if (!queued)
		avail += record;
	return avail >= wakeup_bytes || avail <= record ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

/* Commit a reserved event of `size` bytes, waking the reader as `wakeup_bytes` says. */
static __always_inline void event_commit(void *e, __u64 size)
{
	bpf_ringbuf_submit(e, wakeup_flags(size, true));
}

/*
 * Per CPU: bytes output since the reader was last woken, and when that was.
 * event_output() decides its wake-ups from these instead of asking the ring
 * how much it holds: that query (bpf_ringbuf_query) measured ~7 us a call
 * here, against ~1 us for a whole HTTP capture program without it.
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
 * Copy `size` bytes of `data` into the ring as one record (counted as lost
 * when full). The reader is woken once `wakeup_bytes` were output on this CPU
 * since it was last woken from here, or when WAKE_GAP_NS passed since then:
 * the first record after a quiet spell wakes it at once, a busy CPU wakes it
 * at most 20 times a second besides its batches.
 */
static __always_inline void event_output(void *data, __u64 size, __u64 now)
{
	__u32 zero = 0;
	struct wake_state *w = bpf_map_lookup_elem(&wake_state, &zero);
	__u64 flags = 0;

	if (wakeup_bytes && w) {
		w->bytes += size + 8;
		if (w->bytes >= wakeup_bytes || now - w->woken_ns >= WAKE_GAP_NS) {
			w->bytes = 0;
			w->woken_ns = now;
			flags = BPF_RB_FORCE_WAKEUP;
		} else {
			flags = BPF_RB_NO_WAKEUP;
		}
	}
	if (bpf_ringbuf_output(&events, data, size, flags))
		count_lost();
}

#define event_submit(e) event_commit((e), sizeof(*(e)))

#endif
