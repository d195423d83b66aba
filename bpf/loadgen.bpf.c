// SPDX-License-Identifier: GPL-2.0
/*
 * Load generator: every getppid() of process `target_tgid` emits `batch`
 * numbered events. Tests and the bench count what arrives against what was
 * sent, so the ring reader's throughput and loss accounting can be checked.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "loadgen.h"

#define MAX_BATCH 1024

const volatile __u32 target_tgid = 0;
const volatile __u32 batch = 1;
/* 0: whole events; fewer bytes: records cut to that length (8 < n < 56), which do not divide
 * the ring and so run past its end now and then (the reader's wrap-around). */
const volatile __u32 record_bytes = 0;

__u64 next_seq = 0;

static __always_inline void fill(struct load_event *e)
{
	e->seq = __sync_fetch_and_add(&next_seq, 1);
	e->ts_ns = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->pid = target_tgid;
	__builtin_memset(e->payload, (__u8)e->seq, sizeof(e->payload));
}

static long emit_one(__u64 index, void *ctx)
{
	struct load_event *e, cut = {};

	if (record_bytes) {
		fill(&cut);
		event_output(&cut, record_bytes < sizeof(cut) ? record_bytes : sizeof(cut), cut.ts_ns);
		return 0;
	}
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	fill(e);
	event_submit(e);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int kupod_loadgen(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	bpf_loop(batch < MAX_BATCH ? batch : MAX_BATCH, emit_one, NULL, 0);
	return 0;
}

struct load_event _load_event = {};
