// SPDX-License-Identifier: GPL-2.0
/*
 * Resources probe, scheduler side: how long the target's threads wait on a
 * run queue (from wake-up, or from being preempted while runnable, to running
 * again), and the OOM killer's choices among them.
 *
 * The kernel's own run-queue accounting (CONFIG_SCHED_INFO) stamps a thread
 * with its run queue's clock when it is queued (sched_info.last_queued) and
 * clears the stamp only after sched_switch has fired for it. So one program
 * on sched_switch, for the thread switched in, reads the wait from that stamp
 * and the run queue's clock, with plain loads: no wake-up tracepoints, no
 * per-thread storage, no clock helper. It fires for every context switch of
 * the node, and a thread not the target's costs the filter's lookups only.
 */
#include "kupod.h"
#include "ringbuf.h"
#include "filter.h"
#include "hist.h"
#include "sched.h"

#define SLOT_POD MAX_CONTAINERS /* threads of the pod's netns outside every container */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CONTAINERS + 1);
	__type(key, __u32);
	__type(value, struct sched_stats);
} sched_stats SEC(".maps");

/* The stats slot of thread `t` when it belongs to the target (direct loads: BTF pointers). */
static __always_inline bool task_slot(struct task_struct *t, __u32 *slot)
{
	__u32 *idx = NULL;

	if (require_netns || filter_by_netns) {
		__u32 ns = t->nsproxy->net_ns->ns.inum;

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
		__u64 cg = t->cgroups->dfl_cgrp->kn->id;
		__u32 *c = bpf_map_lookup_elem(&target_cgroups, &cg);

		if (c) {
			*slot = *c < MAX_CONTAINERS ? *c : SLOT_POD;
			return true;
		}
	}
	if (filter_by_pid) {
		__u32 tgid = t->tgid;
		__u32 *c = bpf_map_lookup_elem(&target_pids, &tgid);

		if (c) {
			*slot = *c < MAX_CONTAINERS ? *c : SLOT_POD;
			return true;
		}
	}
	/* a pod's thread outside every container cgroup */
	return idx != NULL;
}

/*
 * `next` gets the CPU: it was queued at next->sched_info.last_queued (0: not
 * stamped, e.g. the idle task), and the run queue's clock was updated for this
 * switch; both are rq_clock() times. The run queue is this CPU's, reached
 * through the thread's own fair-class entity (every thread has one, whatever
 * its class): the per-CPU `runqueues` symbol is not in kallsyms on every
 * kernel, and the verifier needs it there.
 */
SEC("tp_btf/sched_switch")
int BPF_PROG(kupod_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 queued = next->sched_info.last_queued, now;
	struct sched_stats *s;
	struct rq *rq;
	__u32 slot;

	if (!queued || !task_slot(next, &slot))
		return 0;
	rq = next->se.cfs_rq->rq;
	now = rq->clock;
	/*
	 * A wake-up that preempts the running thread asks the switch right after it not to update
	 * the clock again (rq_clock_skip_update): then the clock is the wake-up's, and the wait
	 * (as short as the switch that follows) reads 0, as the kernel's own run_delay does.
	 */
	if (now < queued)
		now = queued;
	s = bpf_map_lookup_elem(&sched_stats, &slot);
	if (s)
		hist_add(&s->runq_ns, now - queued);
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
