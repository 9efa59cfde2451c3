/*
 * Per-call cost of a few system calls, and a stopwatch, for bench/run.py.
 *
 *   syscalls [N [BATCHES [FILE]]]
 *   syscalls --spawn N BATCHES
 *   syscalls --time CMD [ARG...]
 *
 * Runs each operation N times (default 100000) after a short warm-up, split in
 * BATCHES equal batches (default 10) that are timed one by one, and prints one JSON
 * object: for each operation the mean over all N calls (<op>_ns) and the median of
 * the batches' per-call times (<op>_med_ns), in nanoseconds. The median keeps one
 * slow batch (a host preemption, a runsc or quark hiccup) from moving the figure.
 *
 * getpid goes through syscall(2) so no libc can answer from a cache; clock_gettime
 * uses libc, i.e. the vDSO where the kernel provides one (static glibc uses it too);
 * read4k is read(2) of 4 KiB from /dev/zero into the same buffer each time; pread4k
 * is pread(2) of 4 KiB at offset 0 of FILE (a regular file; skipped if not given).
 *
 * --spawn times processes the same way: fork (the child calls _exit(0)) + waitpid,
 * and fork + execv of this program with --exit (a static binary that returns at
 * once) + waitpid, printed as fork_ns/fork_med_ns and spawn_ns/spawn_med_ns per
 * process. A shell script pays the second for each command it runs.
 *
 * --time runs CMD (fork, execvp, wait4) and then prints to stderr one JSON line
 * {"timed": CMD, "status": S, "wall_ns": W, "maxrss_kib": R}: the wall time from
 * before the fork to the end of wait4, and wait4's ru_maxrss, the peak RSS of the
 * largest single process of CMD's tree (itself and the descendants it reaped). This
 * program is static and small, so its forked child starts with next to no RSS,
 * unlike a child forked (or vforked) from Python. Its exit status is CMD's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCHES 1000

enum op { GETPID, CLOCK, READ4K, PREAD4K, FORK, SPAWN };

static char buf[4096];
static int zero_fd = -1, file_fd = -1;
static const char *self_path;     /* argv[0]: what SPAWN executes */

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* One child: _exit(0) at once, or exec this program with --exit; 0 if it exited 0. */
static int child(int exec)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (exec) {
			char *const args[] = {(char *)self_path, "--exit", NULL};
			execv(self_path, args);
		}
		_exit(exec ? 127 : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		return -1;
	return 0;
}

static int loop(enum op op, long n)
{
	struct timespec ts;

	for (long i = 0; i < n; i++) {
		switch (op) {
		case GETPID:
			syscall(SYS_getpid);
			break;
		case CLOCK:
			clock_gettime(CLOCK_MONOTONIC, &ts);
			break;
		case READ4K:
			if (read(zero_fd, buf, sizeof buf) != sizeof buf)
				return -1;
			break;
		case PREAD4K:
			if (pread(file_fd, buf, sizeof buf, 0) != sizeof buf)
				return -1;
			break;
		case FORK:
		case SPAWN:
			if (child(op == SPAWN) < 0)
				return -1;
			break;
		}
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Time `op`: mean ns/call over all batches into *mean, median of batches into *med. */
static int measure(enum op op, long n, int batches, double *mean, double *med)
{
	double per[MAX_BATCHES], total = 0, t0;
	long per_batch = n / batches;

	if (loop(op, n / 10 + 1) < 0)
		return -1;
	for (int b = 0; b < batches; b++) {
		t0 = now_ns();
		if (loop(op, per_batch) < 0)
			return -1;
		per[b] = now_ns() - t0;
		total += per[b];
		per[b] /= per_batch;
	}
	*mean = total / ((double)per_batch * batches);
	qsort(per, batches, sizeof per[0], cmp_double);
	*med = batches % 2 ? per[batches / 2] : (per[batches / 2 - 1] + per[batches / 2]) / 2;
	return 0;
}

static int timed(char **cmd)
{
	struct rusage ru;
	int status;
	double t0 = now_ns(), t1;
	pid_t pid = fork();

	if (pid < 0) {
		perror("syscalls: fork");
		return 125;
	}
	if (pid == 0) {
		execvp(cmd[0], cmd);
		perror(cmd[0]);
		_exit(127);
	}
	if (wait4(pid, &status, 0, &ru) < 0) {
		perror("syscalls: wait4");
		return 125;
	}
	t1 = now_ns();
	fprintf(stderr, "{\"timed\": \"%s\", \"status\": %d, \"wall_ns\": %.0f, \"maxrss_kib\": %ld}\n",
		cmd[0], status, t1 - t0, ru.ru_maxrss);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
	static const char *const names[] = {"getpid", "clock_gettime", "read4k", "pread4k",
					    "fork", "spawn"};
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int batches = argc > 2 ? atoi(argv[2]) : 10;
	const char *file = argc > 3 ? argv[3] : NULL;
	int first = GETPID, last = file ? PREAD4K : READ4K;
	double mean, med;

	self_path = argv[0];
	if (argc > 1 && strcmp(argv[1], "--exit") == 0)
		return 0;
	if (argc > 2 && strcmp(argv[1], "--time") == 0)
		return timed(argv + 2);
	if (argc > 3 && strcmp(argv[1], "--spawn") == 0) {
		n = atol(argv[2]);
		batches = atoi(argv[3]);
		file = NULL;
		first = FORK;
		last = SPAWN;
	}
	if (batches < 1 || batches > MAX_BATCHES || n < batches) {
		fprintf(stderr, "syscalls: need 1 <= BATCHES <= %d and N >= BATCHES\n", MAX_BATCHES);
		return 2;
	}
	zero_fd = open("/dev/zero", O_RDONLY);
	if (zero_fd < 0) {
		perror("syscalls: /dev/zero");
		return 2;
	}
	if (file) {
		file_fd = open(file, O_RDONLY);
		if (file_fd < 0) {
			perror(file);
			return 2;
		}
	}
	printf("{\"iterations\": %ld, \"batches\": %d", n / batches * batches, batches);
	for (int op = first; op <= last; op++) {
		if (measure(op, n, batches, &mean, &med) < 0) {
			fprintf(stderr, "syscalls: %s: short or failed call\n", names[op]);
			return 3;
		}
		printf(", \"%s_ns\": %.1f, \"%s_med_ns\": %.1f", names[op], mean, names[op], med);
	}
	printf("}\n");
	return 0;
}
