/* Clocks and sleeps, through libc (vDSO where there is one) and the raw syscalls. */
#include "common.h"
#include <sys/time.h>
#include <sys/times.h>
#include <time.h>

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static long long now(clockid_t c)
{
    struct timespec t;
    if (clock_gettime(c, &t) != 0)
        die("clock_gettime");
    return ns(t);
}

static long long raw_now(clockid_t c)
{
    struct timespec t;
    if (syscall(SYS_clock_gettime, c, &t) != 0)
        die("raw clock_gettime");
    return ns(t);
}

int main(void)
{
    static const struct { clockid_t id; const char *name; } clocks[] = {
        {CLOCK_REALTIME, "REALTIME"}, {CLOCK_MONOTONIC, "MONOTONIC"},
        {CLOCK_MONOTONIC_RAW, "MONOTONIC_RAW"}, {CLOCK_REALTIME_COARSE, "REALTIME_COARSE"},
        {CLOCK_MONOTONIC_COARSE, "MONOTONIC_COARSE"}, {CLOCK_BOOTTIME, "BOOTTIME"},
        {CLOCK_PROCESS_CPUTIME_ID, "PROCESS_CPUTIME"}, {CLOCK_THREAD_CPUTIME_ID, "THREAD_CPUTIME"},
    };
    for (unsigned i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        long long a = now(clocks[i].id), b = raw_now(clocks[i].id), c = now(clocks[i].id);
        struct timespec res;
        clock_getres(clocks[i].id, &res);
        say("%-16s positive %d, non-decreasing %d, res <= 10ms %d\n", clocks[i].name,
            a > 0, a <= c && (clocks[i].id >= 2 && clocks[i].id <= 3 ? 1 : a <= b + 20000000LL),
            ns(res) > 0 && ns(res) <= 10000000);
    }
    struct timespec t;
    SHOW("clock_gettime(99)", syscall(SYS_clock_gettime, 99, &t));
    SHOW("clock_getres(99)", syscall(SYS_clock_getres, 99, &t));
    SHOW("clock_getres(MONOTONIC, NULL)", syscall(SYS_clock_getres, CLOCK_MONOTONIC, NULL));

    /* wall clock agreement */
    struct timeval tv;
    CHECK("gettimeofday", gettimeofday(&tv, NULL));
    time_t t1 = time(NULL);
    say("time() ~ gettimeofday: %d, usec in range: %d\n",
        t1 - tv.tv_sec >= 0 && t1 - tv.tv_sec <= 2, tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    say("realtime after 2020: %d\n", t1 > 1577836800);
    long long rt = now(CLOCK_REALTIME);
    say("REALTIME ~ time(): %d\n", rt / 1000000000LL - t1 <= 2 && rt / 1000000000LL - t1 >= 0);
    time_t t2;
    say("raw time(&t) agrees: %d\n", syscall(SYS_time, &t2) == t2 && t2 >= t1);

    /* monotonic increases over a loop */
    long long prev = now(CLOCK_MONOTONIC);
    int ok = 1;
    for (int i = 0; i < 1000; i++) {
        long long cur = now(CLOCK_MONOTONIC);
        ok &= cur >= prev;
        prev = cur;
    }
    say("1000 monotonic reads never go back: %d\n", ok);

    /* nanosleep: at least the duration, not absurdly more */
    struct timespec req = {0, 50 * 1000000}, rem = {9, 9};
    long long s0 = now(CLOCK_MONOTONIC);
    SHOW("nanosleep 50ms", nanosleep(&req, &rem));
    long long slept = now(CLOCK_MONOTONIC) - s0;
    say("slept >= 50ms: %d, < 2s: %d\n", slept >= 50000000LL, slept < 2000000000LL);
    req.tv_nsec = 1000000000;
    SHOW("nanosleep nsec=1e9", nanosleep(&req, NULL));
    req.tv_sec = -1; req.tv_nsec = 0;
    SHOW("nanosleep sec=-1", nanosleep(&req, NULL));
    SHOW("nanosleep NULL", syscall(SYS_nanosleep, NULL, NULL));
    req.tv_sec = 0; req.tv_nsec = 0;
    SHOW("nanosleep 0", nanosleep(&req, NULL));

    /* clock_nanosleep relative and absolute (raw syscalls: glibc returns errno) */
    s0 = now(CLOCK_MONOTONIC);
    req.tv_sec = 0; req.tv_nsec = 30 * 1000000;
    SHOW("clock_nanosleep rel 30ms", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &req, NULL));
    long long target = now(CLOCK_MONOTONIC) + 30000000LL;
    struct timespec abs_t = {target / 1000000000LL, target % 1000000000LL};
    SHOW("clock_nanosleep abs +30ms", syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &abs_t, NULL));
    long long after = now(CLOCK_MONOTONIC);
    say("reached the absolute deadline: %d, total >= 60ms: %d\n", after >= target, after - s0 >= 60000000LL);
    struct timespec past = {1, 0};
    s0 = now(CLOCK_MONOTONIC);
    SHOW("clock_nanosleep abs in the past", syscall(SYS_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, &past, NULL));
    say("returned at once: %d\n", now(CLOCK_MONOTONIC) - s0 < 500000000LL);
    SHOW("clock_nanosleep THREAD_CPUTIME", syscall(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, &req, NULL));
    SHOW("clock_nanosleep clock 99", syscall(SYS_clock_nanosleep, 99, 0, &req, NULL));

    /* times() */
    struct tms tm;
    clock_t c1 = times(&tm);
    say("times() > 0: %d\n", c1 != (clock_t)-1 && c1 > 0);
    say("sysconf(_SC_CLK_TCK) = %ld\n", sysconf(_SC_CLK_TCK));
    return 0;
}
