// SPDX-License-Identifier: GPL-2.0
/*
 * Reference consumer of the ring buffer bench (bench/ringbuf.ts): plain
 * libbpf, ring_buffer__new + ring_buffer__poll.
 *
 *   consumer OBJECT PID CALLS BATCH RING_BYTES
 *
 * Opens OBJECT (bpf/.output/loadgen.bpf.o), sets its rodata target_tgid = PID
 * and batch = BATCH (offsets from the object's BTF), sizes the `events` ring,
 * loads, attaches, then releases the waiting producer PID (SIGUSR1) and reads
 * until every one of CALLS * BATCH events was either received or counted in
 * `events_lost`. The callback copies each event out of the ring and checks
 * it, like kupod's decodeLoadEvent + the bench's checks. Prints one line of
 * JSON: {"received", "lost", "seconds", "gaps", "disorder", "bad", "polls"};
 * seconds run from the release to the end of the poll that read the last
 * event. Exits 3 when nothing arrives for 10 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "loadgen.h"

struct state {
	__u64 received;
	__u64 next_seq; /* the seq expected next: events are numbered 0, 1, ... */
	__u64 last_ts;
	__u64 gaps;     /* seq jumped forward: an event was skipped */
	__u64 disorder; /* seq went back: duplicate or out of order */
	__u64 bad;      /* short record, payload or timestamp not as written */
	__u64 sum;
	struct load_event last;
};

static int on_event(void *ctx, void *data, size_t len)
{
	struct state *s = ctx;
	struct load_event e;

	if (len < sizeof(e)) {
		s->bad++;
		return 0;
	}
	memcpy(&e, data, sizeof(e));
	if (e.seq != s->next_seq) {
		if (e.seq < s->next_seq)
			s->disorder++;
		else
			s->gaps++;
	}
	s->next_seq = e.seq + 1;
	if (e.ts_ns < s->last_ts || e.payload[0] != (__u8)e.seq || e.payload[31] != (__u8)e.seq)
		s->bad++;
	s->last_ts = e.ts_ns;
	s->sum += e.cpu + e.pid;
	s->last = e;
	s->received++;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes a u32 `const volatile` variable of .rodata, found by name in the object's BTF. */
static int set_rodata_u32(struct bpf_object *obj, const char *name, __u32 value)
{
	struct bpf_map *map = bpf_object__find_map_by_name(obj, ".rodata");
	struct btf *btf = bpf_object__btf(obj);
	size_t size = 0;
	char *data = map ? (char *)bpf_map__initial_value(map, &size) : NULL;
	int id = btf ? btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC) : -1;

	if (!data || id < 0)
		return -ENOENT;
	const struct btf_type *sec = btf__type_by_id(btf, id);
	const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
	for (int i = 0; i < btf_vlen(sec); i++, vs++) {
		const struct btf_type *var = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, var->name_off), name))
			continue;
		if (vs->size != sizeof(value) || vs->offset + vs->size > size)
			return -EINVAL;
		memcpy(data + vs->offset, &value, sizeof(value));
		return 0;
	}
	return -ENOENT;
}

static __u64 read_lost(int fd, __u64 *values, int ncpus)
{
	__u32 zero = 0;
	__u64 total = 0;

	if (bpf_map_lookup_elem(fd, &zero, values))
		return 0;
	for (int i = 0; i < ncpus; i++)
		total += values[i];
	return total;
}

static int fail(const char *what, int err)
{
	fprintf(stderr, "consumer: %s: %s\n", what, strerror(err < 0 ? -err : err));
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s OBJECT PID CALLS BATCH RING_BYTES\n", argv[0]);
		return 1;
	}
	const char *path = argv[1];
	pid_t pid = atoi(argv[2]);
	__u64 calls = strtoull(argv[3], NULL, 10);
	__u32 batch = strtoul(argv[4], NULL, 10);
	__u32 ring_bytes = strtoul(argv[5], NULL, 10);
	__u64 total = calls * batch;

	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "kupod_loadgen");
	struct bpf_object *obj = bpf_object__open_file(path, &opts);
	if (!obj)
		return fail("open", errno);
	int err = set_rodata_u32(obj, "target_tgid", pid);
	if (!err)
		err = set_rodata_u32(obj, "batch", batch);
	if (err)
		return fail("set rodata", err);
	struct bpf_map *events = bpf_object__find_map_by_name(obj, "events");
	struct bpf_map *lost_map = bpf_object__find_map_by_name(obj, "events_lost");
	struct bpf_program *prog = bpf_object__find_program_by_name(obj, "kupod_loadgen");
	if (!events || !lost_map || !prog)
		return fail("find maps/program", ENOENT);
	if ((err = bpf_map__set_max_entries(events, ring_bytes)))
		return fail("resize ring", err);
	if ((err = bpf_object__load(obj)))
		return fail("load", err);
	struct bpf_link *link = bpf_program__attach(prog);
	if (!link)
		return fail("attach", errno);

	static struct state s;
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(events), on_event, &s, NULL);
	if (!rb)
		return fail("ring_buffer__new", errno);
	int ncpus = libbpf_num_possible_cpus();
	__u64 *values = calloc(ncpus, sizeof(*values));
	int lost_fd = bpf_map__fd(lost_map);

	double start = now_s();
	if (kill(pid, SIGUSR1))
		return fail("release producer", errno);
	double last_event = start, progress_at = start;
	__u64 lost = 0, polls = 0, seen = 0;
	int rc = 0;
	for (;;) {
		int n = ring_buffer__poll(rb, 100);
		polls++;
		if (n < 0 && n != -EINTR) {
			rc = fail("ring_buffer__poll", n);
			break;
		}
		double now = now_s();
		if (n > 0)
			last_event = now;
		lost = read_lost(lost_fd, values, ncpus);
		if (s.received + lost >= total)
			break;
		if (s.received + lost != seen) {
			seen = s.received + lost;
			progress_at = now;
		} else if (now - progress_at > 10) {
			fprintf(stderr, "consumer: stalled at %llu of %llu events\n",
				(unsigned long long)seen, (unsigned long long)total);
			rc = 3;
			break;
		}
	}
	printf("{\"received\": %llu, \"lost\": %llu, \"seconds\": %.6f, \"gaps\": %llu, "
	       "\"disorder\": %llu, \"bad\": %llu, \"polls\": %llu}\n",
	       (unsigned long long)s.received, (unsigned long long)lost, last_event - start,
	       (unsigned long long)s.gaps, (unsigned long long)s.disorder,
	       (unsigned long long)s.bad, (unsigned long long)polls);
	fflush(stdout);

	ring_buffer__free(rb);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	free(values);
	return rc;
}
