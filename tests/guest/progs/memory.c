/* Memory: brk, anonymous and file-backed private mmap, munmap, mprotect, madvise.
 * Faults that must kill are provoked in children; the parent reports how they died. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

#define PAGE 4096

static void in_child(const char *label, void (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    show_status(label, st);
}

static void touch_write(void *p) { *(volatile char *)p = 1; }
static void touch_read(void *p) { (void)*(volatile char *)p; }

int main(void)
{
    /* brk */
    char *b0 = (char *)syscall(SYS_brk, 0);
    say("brk(0) non-zero: %d\n", b0 != NULL);
    char *b1 = (char *)syscall(SYS_brk, b0 + 3 * PAGE + 5);
    say("brk grows: %d\n", b1 == b0 + 3 * PAGE + 5);
    memset(b0, 0x5a, 3 * PAGE + 5);
    say("brk memory usable: %d\n", b0[3 * PAGE + 4] == 0x5a);
    char *b2 = (char *)syscall(SYS_brk, b0 + PAGE);
    say("brk shrinks: %d\n", b2 == b0 + PAGE);
    in_child("touch above shrunk brk", touch_write, b0 + 2 * PAGE);
    char *b3 = (char *)syscall(SYS_brk, b0 + 3 * PAGE);
    say("brk regrown, old contents gone: %d\n", b3 == b0 + 3 * PAGE && b0[2 * PAGE] == 0);
    say("brk below start refused: %d\n", (char *)syscall(SYS_brk, (char *)4096) == b3);
    void *m = malloc(1 << 20);
    say("malloc 1 MiB: %d\n", m != NULL);
    free(m);

    /* anonymous mmap */
    size_t len = 16 * PAGE;
    unsigned char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        die("mmap anon");
    int zero = 1;
    for (size_t i = 0; i < len; i++)
        zero &= a[i] == 0;
    say("anon mmap zeroed: %d, page aligned: %d\n", zero, ((uintptr_t)a & (PAGE - 1)) == 0);
    for (size_t i = 0; i < len; i++)
        a[i] = (unsigned char)(i * 7);
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += a[i];
    say("anon checksum %u\n", sum);

    /* madvise(MADV_DONTNEED) on private anonymous memory gives zero pages back */
    CHECK("madvise DONTNEED", madvise(a + PAGE, 2 * PAGE, MADV_DONTNEED));
    say("after DONTNEED: page1[5]=%d page0[5]=%d\n", a[PAGE + 5], a[5]);
    CHECK("madvise WILLNEED", madvise(a, PAGE, MADV_WILLNEED));
    CHECK("madvise unaligned", madvise(a + 1, PAGE, MADV_DONTNEED));
    CHECK("madvise bad advice", madvise(a, PAGE, 12345));

    /* mprotect */
    CHECK("mprotect RO", mprotect(a, PAGE, PROT_READ));
    say("read RO page: %d\n", a[1]);
    in_child("write RO page", touch_write, a);
    CHECK("mprotect NONE", mprotect(a + PAGE, PAGE, PROT_NONE));
    in_child("read PROT_NONE page", touch_read, a + PAGE);
    CHECK("mprotect RW", mprotect(a, 2 * PAGE, PROT_READ | PROT_WRITE));
    a[0] = 42;
    say("write after RW: %d\n", a[0]);
    CHECK("mprotect unaligned", mprotect(a + 1, PAGE, PROT_READ));

    /* munmap, then touching it faults (in a child) */
    CHECK("munmap middle", munmap(a + 4 * PAGE, 2 * PAGE));
    say("neighbours intact: %d %d\n", a[3 * PAGE + 1] == (unsigned char)((3 * PAGE + 1) * 7),
        a[6 * PAGE + 1] == (unsigned char)((6 * PAGE + 1) * 7));
    in_child("touch unmapped", touch_read, a + 4 * PAGE);
    CHECK("munmap unaligned", munmap(a + 1, PAGE));
    CHECK("munmap len 0", munmap(a, 0));
    CHECK("munmap again (not mapped is fine)", munmap(a + 4 * PAGE, 2 * PAGE));

    /* MAP_FIXED over part of a mapping */
    unsigned char *f = mmap(a + 8 * PAGE, PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    say("MAP_FIXED at the hint: %d, zeroed: %d\n", f == a + 8 * PAGE, f[10] == 0);
    CHECK("munmap all", munmap(a, len));

    /* file-backed private mapping */
    int fd = open("/data/numbers.txt", O_RDONLY);
    char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        die("mmap file");
    say("file map: %.10s, tail zero: %d\n", p, p[21] == 0 && p[PAGE - 1] == 0);
    p[0] = 'X';
    char buf[8];
    pread(fd, buf, 3, 0);
    say("private write: map %.3s, file %.3s\n", p, buf);
    char *q = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 4096 * 0 + 0);
    say("second mapping sees the file: %.3s\n", q);
    char *r = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    in_child("read past EOF page of a file map", touch_read, r + PAGE);
    CHECK("mmap unaligned offset", (long)mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 100));
    CHECK("mmap len 0", (long)mmap(NULL, 0, PROT_READ, MAP_PRIVATE, fd, 0));
    CHECK("mmap no SHARED/PRIVATE", (long)mmap(NULL, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0));
    CHECK("mmap bad fd", (long)mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 99, 0));
    CHECK("mmap RW shared of O_RDONLY", (long)mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    close(fd);
    say("mapping outlives close: %.3s\n", q);

    /* a child's copy-on-write view */
    int *shared_val = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *shared_val = 1;
    pid_t pid = fork();
    if (pid == 0) {
        *shared_val = 2;
        _exit(*shared_val);
    }
    int st;
    waitpid(pid, &st, 0);
    say("fork is copy-on-write: child saw %d, parent still %d\n", WEXITSTATUS(st), *shared_val);
    return 0;
}
