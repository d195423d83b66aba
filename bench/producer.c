// SPDX-License-Identifier: GPL-2.0
/*
 * Load producer of the ring buffer bench (bench/ringbuf.ts).
 *
 *   producer CALLS [RATE [BURSTS [WARM_CALLS WARM_RATE]]]
 *
 * Blocks SIGUSR1, prints "ready <pid>" and waits (at most 60 s) for SIGUSR1:
 * the consumer sends it once it reads the ring, so the consumer itself times
 * the run from the release. Then calls getppid() CALLS times; every call makes
 * bpf/loadgen.bpf.c emit `batch` events while this pid is its target_tgid.
 * RATE (calls per second; 0 or absent: back to back) paces the calls in 1 ms
 * steps. After the calls, prints "done <calls> <ns> <cpu_ns>" (cpu_ns: this
 * process's CPU time so far, user + system). With BURSTS > 1 it waits
 * for SIGUSR1 again before each further burst of CALLS calls. With WARM_CALLS
 * > 0, a warm-up burst of WARM_CALLS calls at WARM_RATE comes first (released
 * by SIGUSR1 too, and followed by "warm <calls> <ns>"). Exits 0, or 2 when not
 * released within 60 s.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static int wait_release(const sigset_t *set)
{
	struct timespec limit = { .tv_sec = 60 };
	int sig;

	do
		sig = sigtimedwait(set, NULL, &limit);
	while (sig < 0 && errno == EINTR);
	if (sig == SIGUSR1)
		return 0;
	fprintf(stderr, "producer: not released within 60 s\n");
	return -1;
}

static void burst(long long calls, double rate)
{
	if (rate == 0) {
		for (long long i = 0; i < calls; i++)
			syscall(SYS_getppid);
		return;
	}
	/* Every millisecond, as many calls as the rate allows up to then. */
	struct timespec tick;
	long long done = 0;

	clock_gettime(CLOCK_MONOTONIC, &tick);
	for (long long ms = 1;; ms++) {
		long long due = (long long)(rate * ms / 1000.0);
		if (due > calls)
			due = calls;
		for (; done < due; done++)
			syscall(SYS_getppid);
		if (done == calls)
			return;
		tick.tv_nsec += 1000000;
		if (tick.tv_nsec >= 1000000000) {
			tick.tv_nsec -= 1000000000;
			tick.tv_sec++;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL) == EINTR)
			;
	}
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 6 || argc == 5) {
		fprintf(stderr, "usage: %s CALLS [CALLS_PER_SECOND [BURSTS [WARM_CALLS WARM_RATE]]]\n",
			argv[0]);
		return 1;
	}
	long long calls = atoll(argv[1]);
	double rate = argc >= 3 ? atof(argv[2]) : 0;
	int bursts = argc >= 4 ? atoi(argv[3]) : 1;
	long long warm_calls = argc == 6 ? atoll(argv[4]) : 0;
	double warm_rate = argc == 6 ? atof(argv[5]) : 0;
	if (calls <= 0 || rate < 0 || bursts < 1 || warm_calls < 0 || warm_rate < 0) {
		fprintf(stderr, "producer: bad CALLS, rate, BURSTS or warm-up\n");
		return 1;
	}

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	if (sigprocmask(SIG_BLOCK, &set, NULL)) {
		perror("producer: sigprocmask");
		return 1;
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);

	if (warm_calls > 0) {
		if (wait_release(&set))
			return 2;
		long long start = now_ns();
		burst(warm_calls, warm_rate);
		printf("warm %lld %lld\n", warm_calls, now_ns() - start);
		fflush(stdout);
	}
	for (int b = 0; b < bursts; b++) {
		if (wait_release(&set))
			return 2;
		long long start = now_ns();
		burst(calls, rate);
		printf("done %lld %lld %lld\n", calls, now_ns() - start, cpu_ns());
		fflush(stdout);
	}
	return 0;
}
