/*
 * Per-call cost of three system calls, for bench/run.py.
 *
 *   syscalls [N]    runs each operation N times (default 100000) after a short
 *                   warm-up and prints one JSON object: nanoseconds per operation.
 *
 * getpid goes through syscall(2) so no libc can answer from a cache; clock_gettime
 * uses libc, i.e. the vDSO where the kernel provides one (static glibc uses it too);
 * the read is 4 KiB from /dev/zero into the same buffer each time.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static char buf[4096];

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	long warm = n / 10 + 1;
	struct timespec ts;
	double t0, getpid_ns, clock_ns, read_ns;
	int fd = open("/dev/zero", O_RDONLY);

	if (n <= 0 || fd < 0) {
		fprintf(stderr, "syscalls: %s\n", n <= 0 ? "bad N" : "cannot open /dev/zero");
		return 2;
	}
	for (long i = 0; i < warm; i++)
		syscall(SYS_getpid);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		syscall(SYS_getpid);
	getpid_ns = (now_ns() - t0) / n;

	for (long i = 0; i < warm; i++)
		clock_gettime(CLOCK_MONOTONIC, &ts);
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		clock_gettime(CLOCK_MONOTONIC, &ts);
	clock_ns = (now_ns() - t0) / n;

	for (long i = 0; i < warm; i++)
		if (read(fd, buf, sizeof buf) != sizeof buf)
			return 3;
	t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (read(fd, buf, sizeof buf) != sizeof buf)
			return 3;
	read_ns = (now_ns() - t0) / n;

	printf("{\"iterations\": %ld, \"getpid_ns\": %.1f, \"clock_gettime_ns\": %.1f, "
	       "\"read4k_ns\": %.1f}\n", n, getpid_ns, clock_ns, read_ns);
	return 0;
}
