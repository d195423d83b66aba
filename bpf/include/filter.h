/*
 * In-kernel target filter. User space fills the maps from the Target
 * (pids, cgroup v2 ids, netns inodes), each mapped to the index of the
 * target container the key belongs to, and switches on the filters it uses
 * in rodata before load. Updating the maps retargets a running probe
 * without reloading it. With no filter switched on, everything matches.
 */
#ifndef KUPOD_FILTER_H
#define KUPOD_FILTER_H

#define NO_CONTAINER ((__u32)-1)
#define FILTER_MAX_KEYS 4096

const volatile bool filter_by_pid = false;
const volatile bool filter_by_cgroup = false;
const volatile bool filter_by_netns = false;
/*
 * The netns decides who belongs to the target (a pod found by --veth or
 * --netns); cgroups only say which container. A cgroup may hold processes
 * outside the pod (a pod built without container cgroups shares the host's).
 */
const volatile bool require_netns = false;
/* Children forked by a target process join its container. */
const volatile bool follow_children = true;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_KEYS);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* container index */
} target_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FILTER_MAX_KEYS);
	__type(key, __u64);   /* cgroup v2 id */
	__type(value, __u32); /* container index */
} target_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);   /* netns inode */
	__type(value, __u32); /* container index, or NO_CONTAINER for the pod */
} target_netns SEC(".maps");

/*
 * The network namespace every socket of the target lives in (a pod's), or 0
 * when the target has none (a process tree, a cgroup): sockets of other
 * namespaces, the rest of the node, are passed over with one compare before
 * any per-socket lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* netns inode */
} target_sock_netns SEC(".maps");

/* Whether socket `sk` (a BTF pointer: tp_btf programs only) is outside the target's netns. */
static __always_inline bool sock_outside_target(const struct sock *sk)
{
	__u32 zero = 0;
	__u32 *netns = bpf_map_lookup_elem(&target_sock_netns, &zero);

	return netns && *netns && sk->__sk_common.skc_net.net->ns.inum != *netns;
}

#define ROLE_SERVICE 0
#define ROLE_SIDECAR 1
#define MAX_CONTAINERS 256

/* Role of each target container (ROLE_*), by container index. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CONTAINERS);
	__type(key, __u32);
	__type(value, __u32);
} target_roles SEC(".maps");

static __always_inline __u32 container_role(__u32 container)
{
	__u32 *role = bpf_map_lookup_elem(&target_roles, &container);

	return role ? *role : ROLE_SERVICE;
}

static __always_inline __u32 current_netns(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
}

/*
 * Whether the current task belongs to the target; *container receives the
 * index of its container (NO_CONTAINER when only its netns matched).
 */
static __always_inline bool target_current(__u32 *container)
{
	__u32 *idx;

	*container = NO_CONTAINER;
	if (require_netns) {
		__u32 ns = current_netns();
		__u64 cg;

		if (!bpf_map_lookup_elem(&target_netns, &ns))
			return false;
		cg = bpf_get_current_cgroup_id();
		idx = bpf_map_lookup_elem(&target_cgroups, &cg);
		if (idx)
			*container = *idx;
		return true;
	}
	if (!filter_by_pid && !filter_by_cgroup && !filter_by_netns)
		return true;
	if (filter_by_pid) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;

		idx = bpf_map_lookup_elem(&target_pids, &tgid);
		if (idx) {
			*container = *idx;
			return true;
		}
	}
	if (filter_by_cgroup) {
		__u64 cg = bpf_get_current_cgroup_id();

		idx = bpf_map_lookup_elem(&target_cgroups, &cg);
		if (idx) {
			*container = *idx;
			return true;
		}
	}
	if (filter_by_netns) {
		__u32 ns = current_netns();

		idx = bpf_map_lookup_elem(&target_netns, &ns);
		if (idx) {
			*container = *idx;
			return true;
		}
	}
	return false;
}

/* Keep the pid filter complete: a process forked by a target process is part of the target. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(kupod_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_tgid, child_tgid;
	__u32 *idx;

	if (!filter_by_pid || !follow_children)
		return 0;
	child_tgid = BPF_CORE_READ(child, tgid);
	parent_tgid = BPF_CORE_READ(parent, tgid);
	if (child_tgid == parent_tgid)
		return 0; /* a new thread of a known process */
	idx = bpf_map_lookup_elem(&target_pids, &parent_tgid);
	if (idx)
		bpf_map_update_elem(&target_pids, &child_tgid, idx, BPF_ANY);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(kupod_exit, struct task_struct *task)
{
	__u32 tgid;

	if (!filter_by_pid || BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	bpf_map_delete_elem(&target_pids, &tgid);
	return 0;
}

#endif
