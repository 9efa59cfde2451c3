/*
 * quark's vDSO: clock_gettime, gettimeofday, time and getcpu answered in guest user
 * mode from a time page the host keeps current, with no exit to the host.
 *
 * The host maps the time page ("vvar") one page below this image. It holds a TSC
 * reading and the clocks at that moment; time now is that plus the TSC delta scaled
 * by mult >> shift. A sequence count (odd while the host writes) makes a reader retry
 * instead of mixing two updates. Clocks the page does not cover fall back to the real
 * system call. Built by the package build (quark/core/guest/build.py).
 */
#include <stdint.h>

struct timespec64 { int64_t tv_sec; int64_t tv_nsec; };
struct timeval64 { int64_t tv_sec; int64_t tv_usec; };
struct timezone64 { int tz_minuteswest; int tz_dsttime; };

struct vvar {                 /* keep in step with quark/kernel/timekeeper.py */
    volatile uint32_t seq;
    uint32_t valid;
    uint64_t tsc_base;
    int64_t mono_ns;
    int64_t real_ns;
    int64_t boot_ns;
    uint64_t mult;
    uint32_t shift;
    uint32_t pad;
};

static inline const struct vvar *vvar(void)
{
    /* The page below the image's own ELF header (a linker-defined symbol). */
    const struct vvar *v;
    __asm__("lea __ehdr_start-4096(%%rip), %0" : "=r"(v));
    return v;
}

static inline uint64_t rdtsc_ordered(void)
{
    uint32_t lo, hi;
    __asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) :: "memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline long sys2(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

#define NSEC 1000000000LL

/* Nanoseconds of `clock`, or -1 when the time page does not serve it. */
static int64_t read_clock(int clock)
{
    const struct vvar *v = vvar();
    uint32_t seq;
    int64_t base, ns;
    do {
        seq = v->seq;
        __asm__ volatile("" ::: "memory");
        if (!v->valid)
            return -1;
        switch (clock) {
        case 0: case 5: base = v->real_ns; break;          /* REALTIME(_COARSE) */
        case 1: case 6: base = v->mono_ns; break;          /* MONOTONIC(_COARSE) */
        case 7: base = v->boot_ns; break;                  /* BOOTTIME */
        default: return -1;   /* MONOTONIC_RAW (not NTP-slewed) and CPU clocks: syscall */
        }
        ns = base;
        if (clock != 5 && clock != 6) {
            int64_t delta = (int64_t)(rdtsc_ordered() - v->tsc_base);
            if (delta > 0)
                ns += (int64_t)(((unsigned __int128)delta * v->mult) >> v->shift);
        }
        __asm__ volatile("" ::: "memory");
    } while ((seq & 1) || seq != v->seq);
    return ns;
}

int __vdso_clock_gettime(int clock, struct timespec64 *ts)
{
    int64_t ns = read_clock(clock);
    if (ns < 0)
        return (int)sys2(228, clock, (long)ts);
    ts->tv_sec = ns / NSEC;
    ts->tv_nsec = ns % NSEC;
    return 0;
}

int __vdso_gettimeofday(struct timeval64 *tv, struct timezone64 *tz)
{
    int64_t ns = read_clock(0);
    if (ns < 0)
        return (int)sys2(96, (long)tv, (long)tz);
    if (tv) {
        tv->tv_sec = ns / NSEC;
        tv->tv_usec = (ns % NSEC) / 1000;
    }
    if (tz) {
        tz->tz_minuteswest = 0;
        tz->tz_dsttime = 0;
    }
    return 0;
}

long __vdso_time(long *t)
{
    int64_t ns = read_clock(0);
    long s = ns < 0 ? sys2(201, 0, 0) : (long)(ns / NSEC);
    if (t)
        *t = s;
    return s;
}

int __vdso_getcpu(unsigned *cpu, unsigned *node, void *unused)
{
    (void)unused;
    if (cpu)
        *cpu = 0;
    if (node)
        *node = 0;
    return 0;
}

int __vdso_clock_getres(int clock, struct timespec64 *res)
{
    return (int)sys2(229, clock, (long)res);
}

int clock_gettime(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_gettime")));
int gettimeofday(struct timeval64 *, struct timezone64 *) __attribute__((weak, alias("__vdso_gettimeofday")));
long time(long *) __attribute__((weak, alias("__vdso_time")));
int getcpu(unsigned *, unsigned *, void *) __attribute__((weak, alias("__vdso_getcpu")));
int clock_getres(int, struct timespec64 *) __attribute__((weak, alias("__vdso_clock_getres")));
