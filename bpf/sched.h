/* Records and counters of the resources probe's scheduler side; decoders come from their BTF. */
#ifndef KUPOD_SCHED_H
#define KUPOD_SCHED_H

#include "hist.h"

/* Per container, per CPU: time from becoming runnable to running, and OOM kills. */
struct sched_stats {
	struct log2_hist runq_ns; /* wake-up (or preemption) to running, ns */
	__u64 oom_kills;
};

/* A process of the target chosen by the OOM killer. */
struct oom_event {
	__u64 ts_ns;     /* bpf_ktime_get_boot_ns() */
	__u32 pid;       /* the victim's tgid */
	__u32 tid;
	__u32 container; /* index into the target's containers, or (u32)-1 */
	char comm[16];   /* the victim's */
};

#endif
