// SPDX-License-Identifier: GPL-2.0
/*
 * Reference consumer of the ring buffer bench (bench/ringbuf.ts): plain
 * libbpf, ring_buffer__new + ring_buffer__poll.
 *
 *   consumer OBJECT PID CALLS BATCH RING_BYTES [live WARM_CALLS | drain BURSTS WARM_BURSTS]
 *
 * Opens OBJECT (bpf/.output/loadgen.bpf.o), sets its rodata target_tgid = PID
 * and batch = BATCH (offsets from the object's BTF), sizes the `events` ring,
 * loads, attaches, then releases the waiting producer PID (SIGUSR1) and reads
 * with ring_buffer__poll until every one of CALLS * BATCH events was either
 * received or counted in `events_lost`. The callback copies each event out of
 * the ring (every field read) and checks that the event numbers run 0, 1, 2,
 * ..., like the kupod consumer's decodeLoadEvent + check.
 * seconds run from the release to the end of the poll that read the last event.
 *
 * With `live WARM_CALLS` (WARM_CALLS > 0), the producer first makes a warm-up
 * burst of WARM_CALLS calls: it is released and read the same way, but not
 * timed, and the timed burst is released once all of it is accounted for.
 *
 * With `drain BURSTS WARM_BURSTS`, the producer makes BURSTS bursts of CALLS
 * calls; the consumer releases each and reads it only once it is complete (the
 * bench writes a line on stdin when the producer has finished the burst, so
 * the ring is full), with ring_buffer__consume. The first WARM_BURSTS bursts
 * warm up (page faults on the ring); seconds and `timed` are the sums over the
 * others: the reader's own speed.
 *
 * Prints one line of JSON: {"received", "lost", "seconds", "timed", "gaps",
 * "disorder", "bad", "last_seq", "cpu" (this process's CPU seconds), "polls"}.
 * Exits 3 when nothing arrives for 10 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "loadgen.h"

struct state {
	__u64 received;
	__u64 next_seq; /* the seq expected next: events are numbered 0, 1, ... */
	__u64 gaps;     /* seq jumped forward: an event was skipped */
	__u64 disorder; /* seq went back: duplicate or out of order */
	__u64 bad;      /* record shorter than a load_event */
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

struct reader {
	struct ring_buffer *rb;
	bool drain;
	int lost_fd;
	int ncpus;
	__u64 *values;
	__u64 lost;
	__u64 polls;
};

/*
 * Reads until received + lost reaches `target`; *last_event is set to the end
 * of the read that returned the last event. 0, or 3 when stalled, 1 on error.
 */
static int read_until(struct reader *r, struct state *s, __u64 target, double *last_event)
{
	double progress_at = now_s();
	__u64 seen = 0;

	for (;;) {
		int n = r->drain ? ring_buffer__consume(r->rb) : ring_buffer__poll(r->rb, 100);
		r->polls++;
		if (n < 0 && n != -EINTR)
			return fail("read ring", n);
		double now = now_s();
		if (n > 0)
			*last_event = now;
		r->lost = read_lost(r->lost_fd, r->values, r->ncpus);
		if (s->received + r->lost >= target)
			return 0;
		if (s->received + r->lost != seen) {
			seen = s->received + r->lost;
			progress_at = now;
		} else if (now - progress_at > 10) {
			fprintf(stderr, "consumer: stalled at %llu of %llu events\n",
				(unsigned long long)seen, (unsigned long long)target);
			return 3;
		}
	}
}

int main(int argc, char **argv)
{
	if (argc != 6 && !(argc == 8 && !strcmp(argv[6], "live")) &&
	    !(argc == 9 && !strcmp(argv[6], "drain"))) {
		fprintf(stderr,
			"usage: %s OBJECT PID CALLS BATCH RING_BYTES "
			"[live WARM_CALLS | drain BURSTS WARM_BURSTS]\n",
			argv[0]);
		return 1;
	}
	const char *path = argv[1];
	pid_t pid = atoi(argv[2]);
	__u64 calls = strtoull(argv[3], NULL, 10);
	__u32 batch = strtoul(argv[4], NULL, 10);
	__u32 ring_bytes = strtoul(argv[5], NULL, 10);
	bool drain = argc == 9;
	int bursts = drain ? atoi(argv[7]) : 1;
	int warm_bursts = drain ? atoi(argv[8]) : 0;
	__u64 warm_calls = argc == 8 ? strtoull(argv[7], NULL, 10) : 0;
	__u64 per_burst = calls * batch;

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
	struct reader r = { .drain = drain, .lost_fd = bpf_map__fd(lost_map) };
	r.rb = ring_buffer__new(bpf_map__fd(events), on_event, &s, NULL);
	if (!r.rb)
		return fail("ring_buffer__new", errno);
	r.ncpus = libbpf_num_possible_cpus();
	r.values = calloc(r.ncpus, sizeof(*r.values));

	double seconds = 0;
	__u64 timed = 0;
	__u64 target = 0;
	int rc = 0;
	/* The warm-up burst, if any, then the others. */
	for (int b = warm_calls ? -1 : 0; b < bursts && !rc; b++) {
		target += b < 0 ? warm_calls * batch : per_burst;
		double start = now_s();
		if (kill(pid, SIGUSR1)) {
			rc = fail("release producer", errno);
			break;
		}
		if (drain) {
			char line[16];
			if (!fgets(line, sizeof(line), stdin)) {
				rc = fail("wait for the burst's end on stdin", EPIPE);
				break;
			}
			start = now_s();
		}
		double last_event = start;
		__u64 from = s.received;
		rc = read_until(&r, &s, target, &last_event);
		if (b >= warm_bursts) {
			seconds += last_event - start;
			timed += s.received - from;
		}
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
		     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
	printf("{\"received\": %llu, \"lost\": %llu, \"seconds\": %.6f, \"timed\": %llu, "
	       "\"gaps\": %llu, \"disorder\": %llu, \"bad\": %llu, \"last_seq\": %lld, "
	       "\"cpu\": %.6f, \"polls\": %llu}\n",
	       (unsigned long long)s.received, (unsigned long long)r.lost, seconds,
	       (unsigned long long)timed, (unsigned long long)s.gaps,
	       (unsigned long long)s.disorder, (unsigned long long)s.bad,
	       s.received ? (long long)s.last.seq : -1LL, cpu, (unsigned long long)r.polls);
	fflush(stdout);

	ring_buffer__free(r.rb);
	bpf_link__destroy(link);
	bpf_object__close(obj);
	free(r.values);
	return rc;
}
