/* mremap(2): growing in place and by moving, shrinking, MREMAP_FIXED, DONTUNMAP,
 * shared mappings staying shared after a move, and the errors Linux gives. */
#include "common.h"
#include <sys/mman.h>

#define PG 4096L

static int fill_ok(const unsigned char *p, long n, unsigned char seed)
{
    for (long i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i / PG))
            return 0;
    return 1;
}

static void fill(unsigned char *p, long n, unsigned char seed)
{
    for (long i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i / PG);
}

int main(void)
{
    int rw = PROT_READ | PROT_WRITE, priv = MAP_PRIVATE | MAP_ANONYMOUS;

    /* Grow: in place when the space after is free, else moved with the data. */
    unsigned char *a = mmap(NULL, 8 * PG, rw, priv, -1, 0);
    munmap(a + 4 * PG, 4 * PG);                     /* room after the first 4 pages */
    fill(a, 4 * PG, 1);
    unsigned char *g = mremap(a, 4 * PG, 8 * PG, 0);
    say("grow in place: %s, same address: %d, data kept: %d\n",
        g == MAP_FAILED ? ename(errno) : "ok", g == a, g != MAP_FAILED && fill_ok(g, 4 * PG, 1));
    g[7 * PG] = 9;
    say("new tail page is zero-filled then writable: %d\n", g[6 * PG] == 0 && g[7 * PG] == 9);
    unsigned char *blocker = mmap(g + 8 * PG, PG, PROT_READ, priv | MAP_FIXED, -1, 0);
    errno = 0;
    void *r = mremap(g, 8 * PG, 16 * PG, 0);
    say("grow without MAYMOVE when blocked: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    unsigned char *m = mremap(g, 8 * PG, 16 * PG, MREMAP_MAYMOVE);
    say("grow with MAYMOVE: moved %d, data kept %d\n", m != g, fill_ok(m, 4 * PG, 1));
    errno = 0;
    say("old address unmapped after the move: %s\n",
        msync(g, PG, MS_ASYNC) ? ename(errno) : "still mapped");
    munmap(blocker, PG);

    /* Shrink in place; the cut pages are gone. */
    unsigned char *s = mremap(m, 16 * PG, 2 * PG, 0);
    say("shrink: same address %d, data kept %d\n", s == m, fill_ok(s, 2 * PG, 1));
    errno = 0;
    say("cut page unmapped: %s\n", msync(m + 4 * PG, PG, MS_ASYNC) ? ename(errno) : "mapped");

    /* MREMAP_FIXED: to a chosen address, replacing what was there; overlap EINVAL. */
    unsigned char *dst = mmap(NULL, 4 * PG, PROT_READ, priv, -1, 0);
    unsigned char *f = mremap(s, 2 * PG, 3 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
    say("FIXED: at the address %d, data kept %d, writable %d\n", f == dst,
        fill_ok(f, 2 * PG, 1), (f[2 * PG] = 5) == 5);
    errno = 0;
    r = mremap(f, 2 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, f + PG);
    say("FIXED overlapping the source: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    errno = 0;
    r = mremap(f, PG, PG, MREMAP_FIXED, f + 8 * PG);
    say("FIXED without MAYMOVE: %s\n", r == MAP_FAILED ? ename(errno) : "ok");

    /* Move and shrink at once. */
    unsigned char *ms = mremap(f, 3 * PG, PG, MREMAP_MAYMOVE | MREMAP_FIXED, f + 16 * PG);
    say("move+shrink: data kept %d\n", ms != MAP_FAILED && fill_ok(ms, PG, 1));

    /* DONTUNMAP: pages move, the old range stays mapped and reads zeros. */
    unsigned char *d = mmap(NULL, 2 * PG, rw, priv, -1, 0);
    fill(d, 2 * PG, 40);
    /* The raw call: glibc passes no fifth argument without MREMAP_FIXED, and
     * Linux >= 6.17 checks it (a placement hint) for DONTUNMAP too. */
    unsigned char *dn = (void *)syscall(SYS_mremap, d, 2 * PG, 2 * PG,
                                        MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0L);
    say("DONTUNMAP: %s, data moved %d, old range zero %d\n",
        dn == MAP_FAILED ? ename(errno) : "ok", dn != MAP_FAILED && fill_ok(dn, 2 * PG, 40),
        d[0] == 0 && d[PG] == 0);
    errno = 0;
    r = (void *)syscall(SYS_mremap, dn, 2 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, 0L);
    say("DONTUNMAP with a new size: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    errno = 0;
    r = (void *)syscall(SYS_mremap, dn, 2 * PG, 2 * PG, MREMAP_DONTUNMAP, 0L);
    say("DONTUNMAP without MAYMOVE: %s\n", r == MAP_FAILED ? ename(errno) : "ok");

    /* A shared mapping moved by one process is still shared with its child. */
    volatile int *sh = mmap(NULL, PG, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sh[0] = 1;
    pid_t pid = fork();
    if (pid == 0) {
        volatile int *moved = mremap((void *)sh, PG, 4 * PG, MREMAP_MAYMOVE);
        moved[0] = 77;
        moved[3 * PG / sizeof(int)] = 3;    /* beyond the parent's mapping */
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    say("shared after the child's mremap: %d\n", sh[0]);

    /* Errors. */
    errno = 0;
    r = mremap(d + 1, PG, PG, 0);
    say("unaligned old address: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    errno = 0;
    r = mremap(d, PG, 0, MREMAP_MAYMOVE);
    say("new size 0: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    errno = 0;
    r = mremap(d, PG, PG, 0x80);
    say("unknown flag: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    munmap(d, 2 * PG);
    errno = 0;
    r = mremap(d, PG, 2 * PG, MREMAP_MAYMOVE);
    say("unmapped old address: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    return 0;
}
