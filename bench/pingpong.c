// One-byte TCP ping-pong over loopback for bench/sockops.ts.
//   pingpong server [spin]            prints "listening <port>", echoes one connection's bytes
//   pingpong client <port> <n> [spin] prints the median round trip in ns
// With "spin" each side polls its socket (non-blocking reads in a loop) instead of sleeping in
// read(): a round trip is then the two sends and receives alone, with no wake-up of a sleeping
// reader (on a VM most of a blocking round trip across CPUs).
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

static int spin;

/* One byte from `fd`: 1, or 0 at its end, or -1 on an error. */
static int read1(int fd, char *b)
{
	for (;;) {
		ssize_t n = spin ? recv(fd, b, 1, MSG_DONTWAIT) : read(fd, b, 1);

		if (n >= 0)
			return (int)n;
		if (!spin || (errno != EAGAIN && errno != EWOULDBLOCK))
			return -1;
	}
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	char b = 'x';

	if (argc >= 2 && argv[1][0] == 's') {
		spin = argc >= 3 && argv[2][0] == 's';
		int s = socket(AF_INET, SOCK_STREAM, 0), c;

		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1) ||
		    getsockname(s, (struct sockaddr *)&a, &len))
			return 1;
		printf("listening %d\n", ntohs(a.sin_port));
		fflush(stdout);
		c = accept(s, NULL, NULL);
		nodelay(c);
		while (read1(c, &b) == 1)
			if (write(c, &b, 1) != 1)
				return 1;
		return 0;
	}
	if (argc < 4)
		return 2;
	spin = argc >= 5 && argv[4][0] == 's';
	{
		int n = atoi(argv[3]), c = socket(AF_INET, SOCK_STREAM, 0);
		long long *ts = malloc(sizeof(*ts) * n);

		a.sin_port = htons(atoi(argv[2]));
		if (!ts || connect(c, (struct sockaddr *)&a, sizeof(a)))
			return 1;
		nodelay(c);
		for (int i = 0; i < n; i++) {
			long long t = now_ns();

			if (write(c, &b, 1) != 1 || read1(c, &b) != 1)
				return 1;
			ts[i] = now_ns() - t;
		}
		qsort(ts, n, sizeof(*ts), cmp);
		printf("%lld\n", ts[n / 2]);
	}
	return 0;
}
