// SPDX-License-Identifier: GPL-2.0
/*
 * Resources probe, scheduler side: how long the target's threads wait on a
 * run queue (from wake-up, or from being preempted while runnable, to running
 * again), and the OOM killer's choices among them.
 *
 * These tracepoints fire for every wake-up and context switch of the node:
 * a thread is checked against the target once, at its wake-up or preemption
 * (a map lookup by tgid, cgroup or netns), and only the target's threads get
 * a timestamp in task-local storage; a context switch costs one storage
 * lookup for the thread switched in.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "hist.h"
#include "sched.h"

#define TASK_RUNNING 0
#define SLOT_POD MAX_CONTAINERS /* threads of the pod's netns outside every container */

/* When the thread became runnable (0: not waiting), and its container slot. */
struct runnable {
	__u64 since_ns;
	__u32 slot;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct runnable);
} runnable SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CONTAINERS + 1);
	__type(key, __u32);
	__type(value, struct sched_stats);
} sched_stats SEC(".maps");

/* The stats slot of thread `t` when it belongs to the target. */
static __always_inline bool task_slot(struct task_struct *t, __u32 *slot)
{
	__u32 *idx = NULL;

	if (require_netns || filter_by_netns) {
		__u32 ns = BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);

		idx = bpf_map_lookup_elem(&target_netns, &ns);
		if (!idx)
			return false;
		*slot = SLOT_POD;
		if (!require_netns) {
			*slot = *idx < MAX_CONTAINERS ? *idx : SLOT_POD;
			return true;
		}
	}
	if (filter_by_cgroup) {
		__u64 cg = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
		__u32 *c = bpf_map_lookup_elem(&target_cgroups, &cg);

		if (c) {
			*slot = *c < MAX_CONTAINERS ? *c : SLOT_POD;
			return true;
		}
	}
	if (filter_by_pid) {
		__u32 tgid = BPF_CORE_READ(t, tgid);
		__u32 *c = bpf_map_lookup_elem(&target_pids, &tgid);

		if (c) {
			*slot = *c < MAX_CONTAINERS ? *c : SLOT_POD;
			return true;
		}
	}
	/* a pod's thread outside every container cgroup */
	return idx != NULL;
}

/* Thread `t` became runnable now: timed when it is the target's. */
static __always_inline void became_runnable(struct task_struct *t)
{
	struct runnable *r;
	__u32 slot;

	if (!task_slot(t, &slot))
		return;
	r = bpf_task_storage_get(&runnable, t, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!r)
		return;
	r->since_ns = bpf_ktime_get_ns();
	r->slot = slot;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(kupod_sched_wakeup, struct task_struct *p)
{
	became_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(kupod_sched_wakeup_new, struct task_struct *p)
{
	became_runnable(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(kupod_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct sched_stats *s;
	struct runnable *r;
	__u64 now;

	/* preempted while runnable: it waits on the run queue from now */
	if (prev_state == TASK_RUNNING)
		became_runnable(prev);
	r = bpf_task_storage_get(&runnable, next, NULL, 0);
	if (!r || !r->since_ns)
		return 0;
	now = bpf_ktime_get_ns();
	s = bpf_map_lookup_elem(&sched_stats, &r->slot);
	if (s)
		hist_add(&s->runq_ns, now - r->since_ns);
	r->since_ns = 0;
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(kupod_oom_victim, struct task_struct *task, uid_t uid)
{
	struct sched_stats *s;
	struct oom_event *e;
	__u32 slot;

	if (!task_slot(task, &slot))
		return 0;
	s = bpf_map_lookup_elem(&sched_stats, &slot);
	if (s)
		s->oom_kills += 1;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = BPF_CORE_READ(task, pid);
	e->container = slot == SLOT_POD ? NO_CONTAINER : slot;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	event_commit(e, sizeof(*e));
	return 0;
}

/* Keep the record and counter types in the object's BTF for the decoder generator. */
struct oom_event _oom_event = {};
struct sched_stats _sched_stats = {};
