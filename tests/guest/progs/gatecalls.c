/* The calls quark's gate answers by itself once the host granted them
 * (quark/kernel/gateio.py): read(2) of /dev/zero and /dev/null, write(2) to
 * /dev/null, and writes into the write ring of a rootfs file. Every answer, every
 * error, the registers and flags a call leaves, and what a signal arriving in the
 * middle sees, must be what Linux does. Run with cwd "/". */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <time.h>

/* A raw read/write that checks what the call must leave alone: every register but
 * RAX, RCX and R11, and the arithmetic flags (Linux restores RFLAGS from R11).
 * ``cf`` sets or clears CF (and so the flags) before the call. */
static long raw_rw(long nr, long fd, void *buf, long n, int cf, int *kept)
{
    long ret;
    unsigned long fl_before, fl_after;
    register long r8 asm("r8") = 0x1111;
    register long r9 asm("r9") = 0x2222;
    register long r10 asm("r10") = 0x3333;
    long rdi = fd, rsi = (long)buf, rdx = n;
    asm volatile(
        "lea -128(%%rsp), %%rsp\n\t"  /* keep off the caller's red zone */
        "cmp $1, %[cf]\n\t"         /* CF=1 when cf == 0, ZF=1 when cf == 1 */
        "pushfq\n\tpop %[fb]\n\t"
        "syscall\n\t"
        "pushfq\n\tpop %[fa]\n\t"
        "lea 128(%%rsp), %%rsp\n\t"
        : "=a"(ret), [fb] "=&r"(fl_before), [fa] "=&r"(fl_after),
          "+D"(rdi), "+S"(rsi), "+d"(rdx), "+r"(r8), "+r"(r9), "+r"(r10)
        : "a"(nr), [cf] "r"((long)cf)
        : "rcx", "r11", "memory", "cc");
    const unsigned long arith = 0x8d5;     /* CF PF AF ZF SF OF */
    *kept = rdi == fd && rsi == (long)buf && rdx == n && r8 == 0x1111 && r9 == 0x2222
            && r10 == 0x3333 && (fl_before & arith) == (fl_after & arith);
    return ret;
}

static void show_rw(const char *what, long nr, int fd, void *buf, long n)
{
    int kept0, kept1;
    long r0 = raw_rw(nr, fd, buf, n, 0, &kept0);
    long r1 = raw_rw(nr, fd, buf, n, 1, &kept1);
    say("%s = %ld %s, again %ld, registers and flags kept: %d\n", what,
        r0 < 0 ? -1 : r0, r0 < 0 ? ename((int)-r0) : "", r1 < 0 ? -1 : r1,
        kept0 && kept1);
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static volatile long ticks;
static void on_alarm(int sig) { (void)sig; ticks++; }

int main(void)
{
    size_t big = 2 << 20;
    unsigned char *buf = mmap(NULL, big, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* The native chroot is a copy of a rootfs, which cannot hold device nodes:
     * there (as root) they are made; under quark /dev has them. */
    mkdir("/dev", 0755);
    mknod("/dev/zero", S_IFCHR | 0666, makedev(1, 5));
    mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3));
    int zero = open("/dev/zero", O_RDWR), null = open("/dev/null", O_RDWR);
    int zro = open("/dev/zero", O_RDONLY);
    if (buf == MAP_FAILED || zero < 0 || null < 0 || zro < 0)
        die("setup");

    /* The first call of each kind is the host's; it grants the rest. */
    for (int round = 0; round < 2; round++) {
        say("round %d\n", round);
        memset(buf, 0xaa, 8192);
        show_rw("read zero 4096", SYS_read, zero, buf, 4096);
        say("  zeroed %d, byte after %#x\n", all_zero(buf, 4096), buf[4096]);
        show_rw("read zero 0", SYS_read, zero, buf, 0);
        show_rw("read zero 1", SYS_read, zero, buf + 4097, 1);
        say("  byte 4097 %#x, 4098 %#x\n", buf[4097], buf[4098]);
        show_rw("read zero 2 MiB", SYS_read, zero, buf, (long)big);
        show_rw("read null", SYS_read, null, buf, 100);
        show_rw("write null", SYS_write, null, buf, 100);
        show_rw("write zero", SYS_write, zero, buf, 100);
        show_rw("write to read-only zero fd", SYS_write, zro, buf, 100);
        show_rw("read zero to NULL", SYS_read, zero, NULL, 16);
        show_rw("read zero past the user range", SYS_read, zero,
                (void *)0x7ffffffff000L, 8192);
        show_rw("write null from NULL", SYS_write, null, NULL, 16);
        show_rw("read closed fd", SYS_read, 1000, buf, 16);
        show_rw("read fd 63 (not open)", SYS_read, 63, buf, 16);
    }

    /* A buffer whose second page is gone, one that is read-only, one that only
     * exists once faulted in. */
    unsigned char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(two + 4096, 4096);
    show_rw("read zero across a hole", SYS_read, zero, two + 2048, 4096);
    mprotect(two, 4096, PROT_READ);
    show_rw("read zero into a read-only page", SYS_read, zero, two, 16);
    unsigned char *fresh = mmap(NULL, 64 << 12, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show_rw("read zero into untouched pages", SYS_read, zero, fresh, 64 << 12);

    /* Direction flag set: still zeros forwards. */
    long r;
    memset(buf, 0x55, 64);
    asm volatile("std\n\tsyscall\n\tcld" : "=a"(r)
                 : "a"((long)SYS_read), "D"((long)zero), "S"(buf), "d"(32L)
                 : "rcx", "r11", "memory", "cc");
    say("read with DF set = %ld, zeroed %d, byte 32 %#x\n", r, all_zero(buf, 32), buf[32]);

    /* dup2 over a granted fd, then close it: the grant must not outlive it. */
    int hello = open("/data/hello.txt", O_RDONLY);
    SHOW("read zero before dup2", read(zero, buf, 8));
    dup2(hello, zero);
    r = read(zero, buf, 5);
    say("after dup2 read %ld: %.5s\n", r, buf);
    close(zero);
    SHOW("read after close", read(zero, buf, 8));
    zero = open("/dev/zero", O_RDONLY);

    /* Signals in the middle of a loop of granted calls: every call answers in full,
     * the handler runs, the loop ends. */
    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 500}, {0, 500}};
    setitimer(ITIMER_REAL, &it, NULL);
    long bad = 0, calls = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        for (int i = 0; i < 64; i++, calls++)
            if (read(zero, buf, 4096) != 4096 || write(null, buf, 4096) != 4096)
                bad++;
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while ((b.tv_sec - a.tv_sec) * 1000000000L + b.tv_nsec - a.tv_nsec < 300000000L);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    say("reads under signals: %s, bad %ld, handler ran %d\n", calls > 100 ? "many" : "few",
        bad, ticks > 0);

    /* The write ring: a run of writes, then everything that may look at the file. */
    int fd = open("/gate.out", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int other = open("/gate.out", O_RDONLY);
    for (int i = 0; i < 200; i++) {
        memset(buf, 'a' + i % 26, 1000);
        if (write(fd, buf, 1000) != 1000)
            die("ring write");
        if (i == 100) {
            struct stat st;
            fstat(other, &st);
            say("after 101 writes: size %ld, another fd reads byte 100500: %c\n",
                (long)st.st_size, pread(other, buf + 2000, 1, 100500) == 1 ? buf[2000] : '?');
        }
    }
    void *volatile nowhere = NULL;
    SHOW("ring write from NULL", write(fd, nowhere, 100));
    SHOW("ring write across a hole", write(fd, two + 2048, 4096));
    SHOW("ring write of 1 MiB", write(fd, buf, 1 << 20));
    SHOW("ring write of 0", write(fd, buf, 0));
    memset(buf, 'Z', 300);
    SHOW("ring write after the big one", write(fd, buf, 300));
    SHOW("lseek end", lseek(fd, 0, SEEK_CUR));
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 50; i++)
            if (write(fd, "child-", 6) != 6)
                _exit(1);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    for (int i = 0; i < 50; i++)
        if (write(fd, "parent", 6) != 6)
            die("parent write");
    struct stat sb;
    fstat(fd, &sb);
    say("after fork: child status %d, size %ld\n", WEXITSTATUS(st), (long)sb.st_size);

    /* A hostile program takes quark's write ring away (natively there is none):
     * unmapped mid-stream, then something else mapped at its place. What reaches
     * the file must not change. (A burst of writes, as dd's, makes the ring: quark
     * makes one only while its poller is awake.) */
    for (int step = 0; step < 2; step++) {
        for (int i = 0; i < 200; i++) {
            memset(buf, '0' + step * 20 + i % 40, 512);
            if (write(fd, buf, 512) != 512)
                die("write before the ring goes");
        }
        unsigned long lo = 0, hi = 0;
        FILE *maps = fopen("/proc/self/maps", "r");
        char line[512];
        while (maps && fgets(line, sizeof line, maps))
            if (strstr(line, "[quark-ring]"))
                sscanf(line, "%lx-%lx", &lo, &hi);
        if (maps)
            fclose(maps);
        if (lo) {
            munmap((void *)lo, hi - lo);
            if (step)
                mmap((void *)lo, hi - lo, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        }
        for (int i = 0; i < 20; i++) {
            memset(buf, 'A' + step * 20 + i % 26, 512);
            if (write(fd, buf, 512) != 512)
                die("write after the ring went");
        }
    }
    fstat(fd, &sb);
    say("after the ring was taken away: size %ld\n", (long)sb.st_size);
    unsigned long s = 0;
    lseek(other, 0, SEEK_SET);
    ssize_t n;
    long total = 0;
    while ((n = read(other, buf, 65536)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            s = s * 131 + buf[i];
        total += n;
    }
    say("file: %ld bytes, sum %lu\n", total, s);
    close(fd);
    close(other);
    say("done\n");
    return 0;
}
