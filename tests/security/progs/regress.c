/* Bugs the fuzzer found that need a real kernel to show, one line each; run
 * natively and under quark, the outputs must be equal (test_fuzz.py). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *ename(long r)
{
    if (r >= 0)
        return "OK";
    const char *n = strerrorname_np(errno);
    return n ? n : "E?";
}

/* The child exits at once without touching memory (it may have a new stack). */
static long clone_exit7(long nr, long a, long b)
{
    long ret;
    __asm__ volatile("syscall\n\ttest %%rax, %%rax\n\tjnz 1f\n\t"
                     "mov $60, %%eax\n\tmov $7, %%edi\n\tsyscall\n\thlt\n1:"
                     : "=a"(ret) : "0"(nr), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return ret;
}

/* A process sharing the fd table (CLONE_FILES, no CLONE_THREAD) exits: the
 * parent's fds must stay open (quark closed them all). */
static void clone_files(void)
{
    uint64_t ca[11] = {0};
    ca[0] = CLONE_FILES;
    ca[4] = SIGCHLD;
    long pid = clone_exit7(SYS_clone3, (long)ca, sizeof ca);
    int st = 0;
    long w = waitpid((pid_t)pid, &st, __WALL);
    long r = write(1, "", 0);
    printf("clone3(CLONE_FILES) child exited %d, parent's stdout after: %s\n",
           w == pid && WIFEXITED(st) ? WEXITSTATUS(st) : -1, ename(r));
    long pid2 = clone_exit7(SYS_clone, CLONE_FILES | SIGCHLD, 0);
    w = waitpid((pid_t)pid2, &st, __WALL);
    r = write(1, "", 0);
    printf("clone(CLONE_FILES) child exited %d, parent's stdout after: %s\n",
           w == pid2 && WIFEXITED(st) ? WEXITSTATUS(st) : -1, ename(r));
    fflush(stdout);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* munmap/mprotect/madvise/mremap of a terabyte with three pages touched: quark
 * walked all 2**28 pages (23 s a call, the kernel lock held). */
static void huge_ranges(void)
{
    size_t big = 1UL << 40;
    double t0 = now();
    char *q = mmap(0, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (q == MAP_FAILED) {
        printf("huge mmap: %s\n", ename(-1));
        return;
    }
    q[0] = 1; q[big / 2] = 2; q[big - 1] = 3;
    int a = mprotect(q, big, PROT_READ);
    int b = mprotect(q, big, PROT_READ | PROT_WRITE);
    q[4096] = 4;
    int c = madvise(q, big, MADV_DONTNEED);
    q[1] = 5;
    char *r = mremap(q, big, big, MREMAP_MAYMOVE | MREMAP_FIXED, q - big - (1UL << 30));
    int moved = r != MAP_FAILED && r[1] == 5 && r[0] == 0 && r[4096] == 0;
    int d = munmap(r, big);
    printf("1 TiB range: mprotect %d %d, madvise %d, mremap kept data %d, munmap %d, "
           "under 2 s %d\n", a, b, c, moved, d, now() - t0 < 2);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    clone_files();
    huge_ranges();
    printf("regress done\n");
    return 0;
}
