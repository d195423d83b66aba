/* Events of the load generator object used by the ring buffer tests and bench. */
#ifndef KUPOD_LOADGEN_H
#define KUPOD_LOADGEN_H

struct load_event {
	__u64 seq;     /* 0, 1, 2, ... across all CPUs */
	__u64 ts_ns;
	__u32 cpu;
	__u32 pid;
	__u8 payload[32];
};

#endif
