/* A raw-syscall fuzzer for quark's application kernel.
 *
 *   fuzz SEED [CALLS] [-v]
 *
 * From SEED it draws CALLS (default 20000) system calls among those quark
 * implements, with adversarial arguments: interesting integers, bad and edge
 * pointers (NULL, kernel, non-canonical, unmapped, read-only, PROT_NONE,
 * misaligned, buffers ending at an unmapped page), valid / closed / huge fds,
 * random flags, nasty paths and random structs (iovecs, msghdrs, sockaddrs,
 * timespecs, sigactions ...). It only checks that it survives: the test around
 * it reads quark's log for handler failures.
 *
 * The fuzzer must not end or wedge itself, so a few calls are never made
 * (exit, execve, rt_sigreturn, pause, rt_sigsuspend) and some get tamed
 * arguments: memory calls only touch a scratch arena it owns, fork-like calls
 * run a child that exits at once without touching memory, signals sent to
 * itself are ones it handles, limits are only raised, calls that may wait run
 * under a 30 ms watchdog (ITIMER_REAL) and timeouts it passes are short. Anything drawn
 * from the PRNG depends on SEED only, so a seed replays the same calls.
 *
 * The real stdout is kept on fd 200, which no call is allowed to name; 0-2
 * point at /dev/null so garbage written there goes nowhere. The last line is
 * "fuzz done seed=S calls=N". -v prints each call before making it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#define OUT_FD 200
#define PAGE 4096UL
#define ARENA_PAGES 64
#define P_RO 16        /* read-only page */
#define P_NONE 17      /* PROT_NONE page */
#define P_EDGE 18      /* pages 18..20 RW, page 21 unmapped: buffers ending at a hole */
#define P_HOLE 21
#define P_ZONE 32      /* pages 32..63: where mmap/munmap/mremap/... may act */
#define REFRESH 256    /* calls between rebuilding the arena and the fds */
#define WATCHDOG_US 30000

typedef unsigned long u64;

/* ---- PRNG (splitmix64: the whole run is a function of the seed) ---------- */
static u64 rng_state;
static u64 rnd(void)
{
    u64 z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static u64 below(u64 n) { return n ? rnd() % n : 0; }
static int chance(int pct) { return (int)below(100) < pct; }
#define PICK(arr) ((arr)[below(sizeof(arr) / sizeof((arr)[0]))])

/* ---- raw syscalls ------------------------------------------------------- */
static long sc6(long nr, long a, long b, long c, long d, long e, long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret)
                     : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define sc(nr, a, b, c) sc6(nr, (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* clone/fork/vfork/clone3: the child exits at once, never touching memory (it may
 * share ours, or run on a stack that is garbage). */
static long sc_fork(long nr, long a, long b, long c, long d, long e)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    long ret;
    __asm__ volatile("syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "mov $60, %%eax\n\t"
                     "xor %%edi, %%edi\n\t"
                     "syscall\n\t"
                     "hlt\n"
                     "1:"
                     : "=a"(ret)
                     : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

/* ---- output (no stdio: brk may move, and fds 0-2 are fuzzed) ---------- */
static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    sc(SYS_write, OUT_FD, buf, n);
}

/* ---- state -------------------------------------------------------------- */
static unsigned char *arena;
static unsigned char *cursor;  /* next free byte of pages 0..15 for this call's data */
static long main_tid, main_pid, brk0;
static sigjmp_buf jump;
static volatile sig_atomic_t in_call;
static long fds[40];
static int nfds;
static long closed_fd, last_fd = -1;
static long timeouts, faults;

static unsigned char *page(int i) { return arena + i * PAGE; }

static void *take(size_t n)
{
    n = (n + 15) & ~15UL;
    if (cursor + n > page(P_RO))
        cursor = arena;
    void *p = cursor;
    cursor += n;
    return p;
}

static void fill_random(void *p, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i += 8) {
        u64 r = rnd();
        memcpy(b + i, &r, n - i < 8 ? n - i : 8);
    }
}

/* ---- signals ------------------------------------------------------------ */
static void on_signal(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sc(SYS_gettid, 0, 0, 0) != main_tid) {
        /* A CLONE_VM child or thread that had no time to exit. */
        sc(SYS_exit, 0, 0, 0);
    }
    if (!in_call) {
        if ((sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE) && si->si_code > 0) {
            /* The fuzzer's own bug, not the kernel's: say where, and stop. */
            out("fuzzer fault: signal %d at %p\n", sig, si->si_addr);
            sc(SYS_exit_group, 99, 0, 0);
        }
        return;
    }
    if (sig == SIGALRM)
        timeouts++;
    else if (sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE || sig == SIGTRAP)
        faults++;
    else
        return;          /* an ordinary signal: the call returns EINTR or restarts */
    in_call = 0;
    siglongjmp(jump, 1);
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    for (int s = 1; s < 65; s++) {
        if (s == SIGKILL || s == SIGSTOP || s == 32 || s == 33)
            continue;
        sigaction(s, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* An alternate stack the fuzz may have set is not used: no SA_ONSTACK. */
}

static void watchdog(long usec)
{
    struct itimerval it = {{0, 0}, {0, usec}};
    sc(SYS_setitimer, ITIMER_REAL, &it, 0);
}

/* ---- interesting values -------------------------------------------------- */
static const long INTS[] = {
    0, 1, -1, 2, 3, 4, 7, 8, 16, 31, 32, 63, 64, 100, 127, 128, 255, 256, 1023,
    1024, 1025, 4095, 4096, 4097, 65535, 65536, 0x7fffffff, -0x7fffffffL - 1,
    0xffffffffL, 0x80000000L, 0x7fffffffffffffffL, -0x7fffffffffffffffL - 1,
    1L << 32, 1L << 40, 1L << 62, -4096, -2, 0x100000000L + 1, 0xffff,
};

static long gen_int(void)
{
    switch (below(4)) {
    case 0: return (long)rnd();
    case 1: return (long)below(70) - 3;
    default: return PICK(INTS);
    }
}

static long gen_len(void)
{
    static const long L[] = {0, 1, 2, 3, 8, 16, 24, 64, 100, 128, 4095, 4096, 4097,
                             8192, 65536, 1 << 20, 0x7fffffff, 0xffffffffL, -1L,
                             0x7fffffffffffffffL, 1L << 40, 0x7ffff000};
    return chance(25) ? (long)below(300) : PICK(L);
}

/* Lengths that can make a call move many bytes (sendfile from /dev/zero ...):
 * small or plainly invalid, never gigabytes to the host disk. */
static long gen_small_len(void)
{
    static const long L[] = {0, 1, 7, 4096, 65536, 1 << 20, -1L, -4096L,
                             0x8000000000000000L};
    return chance(50) ? (long)below(5000) : PICK(L);
}

static long gen_flags(void)
{
    switch (below(6)) {
    case 0: return 0;
    case 1: return 1L << below(32);
    case 2: return (long)(rnd() & 0xffffffff);
    case 3: return (1L << below(32)) | (1L << below(32)) | (1L << below(12));
    case 4: return -1;
    default: return (long)below(16) | ((long)below(4) << below(24));
    }
}

static long gen_offset(void)
{
    static const long O[] = {0, 1, -1, 4096, 1L << 31, 1L << 32, 1L << 40, 1L << 62,
                             0x7fffffffffffffffL, -0x7fffffffffffffffL - 1, -4096};
    return chance(40) ? (long)below(10000) : PICK(O);
}

static long gen_fd(void);

/* Half-valid struct contents: zeros, small numbers, fds, pointers into the
 * scratch pages; random bytes alone rarely get past a handler's first check. */
static void fill_structured(void *p, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        u64 v;
        switch (below(8)) {
        case 0: case 1: case 2: v = 0; break;
        case 3: v = below(64); break;
        case 4: v = (u64)arena + below(P_RO * PAGE); break;
        case 5: v = (u64)gen_fd() | ((u64)below(4) << 32); break;
        case 6: v = below(5000); break;
        default: v = rnd(); break;
        }
        memcpy(b + i, &v, 8);
    }
}

/* A pointer: some good (scratch pages filled with random bytes), most bad. */
static long gen_ptr(size_t hint)
{
    if (hint == 0)
        hint = 64;
    if (hint > 8192)
        hint = 8192;
    switch (below(20)) {
    case 0: case 1: case 2: case 3: case 4: case 5: case 6: {
        void *p = take(hint);
        if (chance(40))
            fill_structured(p, hint);
        else
            fill_random(p, hint);
        return (long)p;
    }
    case 7: return (long)(page(P_RO) + below(PAGE));
    case 8: return (long)(page(P_NONE) + below(PAGE));
    case 9: {
        static const long back[] = {1, 2, 4, 8, 12, 16, 24, 32, 64, 100};
        long k = chance(50) ? PICK(back) : (long)(hint / (1 + below(3)));
        return (long)(page(P_HOLE) - k);
    }
    case 10: return (long)(page(P_HOLE) + below(PAGE));
    case 11: return 0;
    case 12: {
        static const long K[] = {(long)0xffff800000000000UL, (long)0xffffffffff600000UL,
                                 -1L, -4096L, (long)0xffffffff81000000UL, (long)0xfffffffffffff000UL};
        return PICK(K);
    }
    case 13: {
        static const long N[] = {0x800000000000L, 0x7ffffffff000L, 0x7fffffffffffL,
                                 1L << 62, 0x0000800000001000L, 0x7ffffffffffeL};
        return PICK(N);
    }
    case 14: return (long)PICK(((const long[]){1, 8, 4096, 0x10000, 0x1000000}));
    case 15: return (long)((unsigned char *)take(hint + 8) + 1 + below(7));
    case 16: case 17: return (long)(page(P_ZONE) + below((ARENA_PAGES - P_ZONE) * PAGE));
    default: return (long)page(P_EDGE + below(3)) + (long)below(PAGE);
    }
}

static long gen_fd(void)
{
    switch (below(10)) {
    case 0: return (long)below(40);
    case 1: {
        static const long F[] = {-1, -100, 1L << 20, 0x7fffffff, -0x7fffffffL - 1,
                                 199, 201, 1023, 1024, 65535, 0xffffffffL, 1L << 32 | 3};
        return PICK(F);
    }
    case 2: return closed_fd;
    case 3: return last_fd;
    default: return nfds ? fds[below(nfds)] : 3;
    }
}

static long gen_dirfd(void) { return chance(40) ? -100 /* AT_FDCWD */ : gen_fd(); }

static long gen_pid(void)
{
    static const long P[] = {0, 1, -1, 2, 99999, 0x7fffffff, -0x7fffffffL - 1, 4194304};
    switch (below(3)) {
    case 0: return main_pid;
    case 1: return -main_pid;
    default: return PICK(P);
    }
}

static long gen_uid(void)
{
    static const long U[] = {0, -1, 1, 65534, 0xffffffffL, 0xfffffffeL, 1L << 32, 1000};
    return PICK(U);
}

/* Signals the fuzzer may send itself: handled ones (never KILL or STOP). */
static long gen_sig(void)
{
    static const long S[] = {0, SIGUSR1, SIGUSR2, SIGCHLD, SIGWINCH, SIGURG, SIGHUP,
                             SIGINT, SIGTERM, SIGQUIT, SIGCONT, SIGTSTP, SIGTTIN, SIGPIPE,
                             SIGIO, 35, 64, 65, -1, 1000, SIGSEGV, SIGALRM};
    return PICK(S);
}

static const char *PATHS[] = {
    "/tmp/fz/a", "/tmp/fz/b", "/tmp/fz/dir", "/tmp/fz/dir/x", "/tmp/fz/loop",
    "/tmp/fz/loop/x", "/tmp/fz/sym", "/tmp/fz/dangling", "/tmp/fz/fifo", "/tmp/fz/sock",
    "/tmp/fz/new", "/tmp/fz/new2", "/tmp/fz", "/tmp/fz/", "/tmp/fz/.", "/tmp/fz/..",
    "/", ".", "..", "", "a", "dir", "../../../../HOST-MARKER", "/../../../etc/shadow",
    "/proc/self/status", "/proc/self/fd/3", "/proc/self/fd/1",
    "/proc/self/cwd", "/proc/self/root/tmp/fz/a", "/proc/self/maps", "/proc/1/status",
    "/proc/self/task", "/proc", "/dev/null", "/dev/zero", "/dev/full", "/dev/urandom",
    "/etc/shadow", "/data/hello.txt", "/data/link", "/tmp/fz/a/", "/tmp/fz/a/..",
    "/tmp//fz///a", "/tmp/fz/\xff\xfe\x80", "/tmp/fz/dir/../../fz/a", "/sys", "/nonexistent/x",
};

/* A path: a known one, a built one, too long, or running into an unmapped page. */
static long gen_path(void)
{
    switch (below(12)) {
    case 0: {
        size_t n = PICK(((const size_t[]){255, 256, 4095, 4096, 4097, 6000}));
        char *p = take(n + 1);
        for (size_t i = 0; i < n; i++)
            p[i] = (i % 2 == 1 && chance(3)) ? '/' : 'a';
        p[0] = '/';
        p[n] = 0;
        return (long)p;
    }
    case 1: {
        /* Not NUL-terminated: runs into the hole. */
        size_t n = PICK(((const size_t[]){1, 5, 100, 4096, 3 * 4096}));
        char *p = (char *)page(P_HOLE) - n;
        memset(p, 'b', n);
        p[0] = '/';
        return (long)p;
    }
    case 2: {
        static const char *comp[] = {"tmp", "fz", "a", "dir", "..", ".", "loop", "sym",
                                     "proc", "self", "fd", "x", ""};
        char *p = take(256);
        size_t off = 0;
        int k = 1 + (int)below(8);
        for (int i = 0; i < k && off < 200; i++)
            off += (size_t)snprintf(p + off, 256 - off, "/%s", PICK(comp));
        return (long)p;
    }
    case 3: return gen_ptr(16);
    case 4: {
        /* a component of 300 bytes */
        char *p = take(320);
        strcpy(p, "/tmp/fz/");
        memset(p + 8, 'c', 300);
        p[308] = 0;
        return (long)p;
    }
    default: {
        const char *s = PICK(PATHS);
        char *p = take(strlen(s) + 1);
        strcpy(p, s);
        return (long)p;
    }
    }
}

static long gen_timespec(void)
{
    long *t = take(16);
    switch (below(8)) {
    case 0: case 1: case 2: t[0] = 0; t[1] = (long)below(2000000); break;
    case 3: t[0] = 0; t[1] = 0; break;
    case 4: t[0] = -1; t[1] = 0; break;
    case 5: t[0] = 0; t[1] = PICK(((const long[]){1000000000, -1, 999999999, 1L << 40})); break;
    case 6: fill_random(t, 16); break;
    default: return gen_ptr(16);
    }
    return (long)t;
}

/* A sigset: random, but never holding the signals the fuzzer needs (a temporary
 * mask in ppoll & co. must let the watchdog through). */
static long gen_sigset(void)
{
    if (chance(20))
        return gen_ptr(8);
    u64 *m = take(16);
    m[0] = rnd() & ~((1UL << (SIGALRM - 1)) | (1UL << (SIGSEGV - 1)) | (1UL << (SIGBUS - 1)));
    m[1] = rnd();
    return (long)m;
}

static long gen_sigsetsize(void) { return chance(80) ? 8 : gen_int(); }

static long gen_sockaddr(long *len)
{
    unsigned char *p = take(256);
    fill_random(p, 256);
    long natural;
    switch (below(6)) {
    case 0: {
        struct sockaddr_un *u = (void *)p;
        u->sun_family = AF_UNIX;
        static const char *names[] = {"/tmp/fz/sock", "/tmp/fz/sock2", "/tmp/fz/a",
                                      "/nonexistent/s", "", "/tmp/fz/dir"};
        if (chance(20))
            u->sun_path[0] = 0;           /* abstract; rest random */
        else if (chance(15))
            memset(u->sun_path, 'u', sizeof u->sun_path);  /* not terminated */
        else
            strcpy(u->sun_path, PICK(names));
        natural = (long)sizeof *u;
        break;
    }
    case 1: {
        struct sockaddr_in *i = (void *)p;
        i->sin_family = AF_INET;
        i->sin_port = (unsigned short)(chance(30) ? 0 : below(65536));
        i->sin_addr.s_addr = htonl(chance(50) ? 0x7f000001 : 0x7f000000 | below(256));
        natural = (long)sizeof *i;
        break;
    }
    case 2: {
        struct sockaddr_in6 *i = (void *)p;
        i->sin6_family = AF_INET6;
        i->sin6_port = (unsigned short)below(65536);
        memset(&i->sin6_addr, 0, 16);
        i->sin6_addr.s6_addr[15] = 1;
        natural = (long)sizeof *i;
        break;
    }
    case 3: {
        p[0] = 16; p[1] = 0;              /* AF_NETLINK, pid/groups random */
        natural = 12;
        break;
    }
    case 4: {
        p[0] = AF_UNSPEC; p[1] = 0;
        natural = 16;
        break;
    }
    default:
        natural = (long)below(130);
        break;
    }
    static const long L[] = {0, 1, 2, 3, 16, 28, 110, 111, 128, 129, 0x7fffffff, -1, 1L << 32};
    *len = chance(60) ? natural : PICK(L);
    return chance(85) ? (long)p : gen_ptr(16);
}

/* A socklen_t* (value-result). */
static long gen_socklen_ptr(void)
{
    if (chance(30))
        return gen_ptr(4);
    int *l = take(8);
    static const int L[] = {0, 1, 16, 28, 110, 128, 256, -1, 0x7fffffff};
    *l = PICK(L);
    return (long)l;
}

static long gen_iov(long *cnt)
{
    int n = (int)PICK(((const int[]){0, 1, 1, 2, 3, 4, 8, 16, 64}));
    u64 *v = take((size_t)(n + 1) * 16 + 64);
    fill_random(v, (size_t)(n + 1) * 16 + 64);
    for (int i = 0; i < n; i++) {
        long l = chance(70) ? (long)below(5000) : gen_len();
        v[2 * i] = (u64)gen_ptr(l > 0 && l < 8192 ? (size_t)l : 64);
        v[2 * i + 1] = (u64)l;
    }
    static const long C[] = {0, 1, 1024, 1025, -1, 0x7fffffff, 2, 1L << 32};
    *cnt = chance(75) ? n : PICK(C);
    return chance(90) ? (long)v : gen_ptr(16);
}

static void fill_msghdr(struct msghdr *m)
{
    long len, cnt;
    m->msg_name = chance(50) ? NULL : (void *)gen_sockaddr(&len);
    m->msg_namelen = m->msg_name ? (socklen_t)len : (socklen_t)below(3);
    m->msg_iov = (void *)gen_iov(&cnt);
    m->msg_iovlen = (size_t)cnt;
    if (chance(50)) {
        size_t cl = 64 + below(64);
        unsigned char *c = take(cl);
        fill_random(c, cl);
        struct cmsghdr *h = (void *)c;
        static const long CL[] = {16, 20, 24, 28, 32, 0, 1, 0x7fffffff, -1};
        h->cmsg_len = (size_t)(chance(60) ? 20 + 4 * below(8) : PICK(CL));
        h->cmsg_level = chance(80) ? SOL_SOCKET : (int)gen_int();
        h->cmsg_type = chance(80) ? (int)(1 + below(3)) : (int)gen_int(); /* RIGHTS, CREDS, ... */
        int *fdv = (int *)CMSG_DATA(h);
        for (int i = 0; i < 8; i++)
            fdv[i] = (int)gen_fd();
        m->msg_control = chance(85) ? c : (void *)gen_ptr(16);
        m->msg_controllen = chance(70) ? cl : (size_t)gen_len();
    } else {
        m->msg_control = NULL;
        m->msg_controllen = chance(80) ? 0 : (size_t)gen_len();
    }
    m->msg_flags = (int)gen_flags();
}

static long gen_msghdr(void)
{
    if (chance(10))
        return gen_ptr(56);
    struct msghdr *m = take(sizeof *m);
    fill_msghdr(m);
    return (long)m;
}

static long gen_mmsg(void)
{
    int n = 1 + (int)below(4);
    struct mmsghdr *v = take(sizeof *v * (size_t)n);
    for (int i = 0; i < n; i++) {
        fill_msghdr(&v[i].msg_hdr);
        v[i].msg_len = (unsigned)rnd();
    }
    return (long)v;
}

/* ---- the call table ------------------------------------------------------ */
/* Argument kinds: f fd, d dirfd, b buffer, l length, L small length, p path,
 * F flags, i int, o offset, P pid, u uid, s signal (to self), t timespec*,
 * v iovec* (the next argument gets its count), m msghdr*, M mmsghdr*,
 * S sockaddr* (the next argument gets its length), Z socklen_t*, k sigset*,
 * K sigset size, - zero. Calls marked '!' have their own generator. */
struct call { int nr; const char *name; const char *args; };

static const struct call CALLS[] = {
    {0, "read", "fbl"}, {1, "write", "fbl"}, {2, "open", "pFi"}, {3, "close", "f"},
    {4, "stat", "pb"}, {5, "fstat", "fb"}, {6, "lstat", "pb"}, {7, "poll", "!"},
    {8, "lseek", "foi"}, {9, "mmap", "!"}, {10, "mprotect", "!"}, {11, "munmap", "!"},
    {12, "brk", "!"}, {13, "rt_sigaction", "ibbK"}, {14, "rt_sigprocmask", "ikbK"},
    {16, "ioctl", "!"}, {17, "pread64", "fblo"}, {18, "pwrite64", "fblo"},
    {19, "readv", "fv"}, {20, "writev", "fv"}, {21, "access", "pi"}, {22, "pipe", "b"},
    {23, "select", "!"}, {24, "sched_yield", ""}, {25, "mremap", "!"}, {26, "msync", "!"},
    {27, "mincore", "!"}, {28, "madvise", "!"}, {32, "dup", "f"}, {33, "dup2", "ff"},
    {35, "nanosleep", "tb"}, {36, "getitimer", "ib"}, {37, "alarm", "i"},
    {38, "setitimer", "ibb"}, {39, "getpid", ""}, {40, "sendfile", "ffbL"},
    {41, "socket", "!"}, {42, "connect", "fS"}, {43, "accept", "fbZ"},
    {44, "sendto", "fblFS"}, {45, "recvfrom", "fblFbZ"}, {46, "sendmsg", "fmF"},
    {47, "recvmsg", "fmF"}, {48, "shutdown", "fi"}, {49, "bind", "fS"}, {50, "listen", "fi"},
    {51, "getsockname", "fbZ"}, {52, "getpeername", "fbZ"}, {53, "socketpair", "iiib"},
    {54, "setsockopt", "!"}, {55, "getsockopt", "!"}, {56, "clone", "!"}, {57, "fork", "!"},
    {58, "vfork", "!"}, {61, "wait4", "PbFb"}, {62, "kill", "!"}, {63, "uname", "b"},
    {72, "fcntl", "!"}, {73, "flock", "fi"}, {74, "fsync", "f"}, {75, "fdatasync", "f"},
    {76, "truncate", "po"}, {77, "ftruncate", "fo"}, {79, "getcwd", "bl"}, {80, "chdir", "p"},
    {81, "fchdir", "f"}, {82, "rename", "pp"}, {83, "mkdir", "pi"}, {84, "rmdir", "p"},
    {85, "creat", "pi"}, {86, "link", "pp"}, {87, "unlink", "p"}, {88, "symlink", "pp"},
    {89, "readlink", "pbl"}, {90, "chmod", "pi"}, {91, "fchmod", "fi"}, {92, "chown", "puu"},
    {93, "fchown", "fuu"}, {94, "lchown", "puu"}, {95, "umask", "i"},
    {96, "gettimeofday", "bb"}, {97, "getrlimit", "ib"}, {99, "sysinfo", "b"},
    {100, "times", "b"}, {102, "getuid", ""}, {104, "getgid", ""}, {105, "setuid", "u"},
    {106, "setgid", "u"}, {107, "geteuid", ""}, {108, "getegid", ""}, {109, "setpgid", "PP"},
    {110, "getppid", ""}, {111, "getpgrp", ""}, {112, "setsid", ""}, {113, "setreuid", "uu"},
    {114, "setregid", "uu"}, {115, "getgroups", "ib"}, {116, "setgroups", "ib"},
    {117, "setresuid", "uuu"}, {118, "getresuid", "bbb"}, {119, "setresgid", "uuu"},
    {120, "getresgid", "bbb"}, {121, "getpgid", "P"}, {122, "setfsuid", "u"},
    {123, "setfsgid", "u"}, {124, "getsid", "P"}, {125, "capget", "bb"}, {126, "capset", "bb"},
    {127, "rt_sigpending", "bK"}, {128, "rt_sigtimedwait", "kbtK"},
    {131, "sigaltstack", "bb"}, {133, "mknod", "pii"}, {135, "personality", "i"},
    {137, "statfs", "pb"}, {138, "fstatfs", "fb"}, {140, "getpriority", "iP"},
    {141, "setpriority", "iPi"}, {149, "mlock", "!"}, {150, "munlock", "!"},
    {151, "mlockall", "!"}, {152, "munlockall", ""}, {157, "prctl", "!"},
    {158, "arch_prctl", "!"}, {160, "setrlimit", "!"}, {162, "sync", ""},
    {170, "sethostname", "bl"}, {171, "setdomainname", "bl"}, {186, "gettid", ""},
    {188, "setxattr", "ppblF"}, {189, "lsetxattr", "ppblF"}, {190, "fsetxattr", "fpblF"},
    {191, "getxattr", "ppbl"}, {192, "lgetxattr", "ppbl"}, {193, "fgetxattr", "fpbl"},
    {194, "listxattr", "pbl"}, {195, "llistxattr", "pbl"}, {196, "flistxattr", "fbl"},
    {197, "removexattr", "pp"}, {198, "lremovexattr", "pp"}, {199, "fremovexattr", "fp"},
    {200, "tkill", "!"}, {201, "time", "b"}, {202, "futex", "!"},
    {203, "sched_setaffinity", "Plb"}, {204, "sched_getaffinity", "Plb"},
    {213, "epoll_create", "i"}, {217, "getdents64", "fbl"}, {218, "set_tid_address", "b"},
    {219, "restart_syscall", ""}, {228, "clock_gettime", "ib"}, {229, "clock_getres", "ib"},
    {230, "clock_nanosleep", "iFtb"}, {232, "epoll_wait", "!"}, {233, "epoll_ctl", "fifb"},
    {234, "tgkill", "!"}, {247, "waitid", "iPbFb"}, {257, "openat", "dpFi"},
    {258, "mkdirat", "dpi"}, {259, "mknodat", "dpii"}, {260, "fchownat", "dpuuF"},
    {262, "newfstatat", "dpbF"}, {263, "unlinkat", "dpF"}, {264, "renameat", "dpdp"},
    {265, "linkat", "dpdpF"}, {266, "symlinkat", "pdp"}, {267, "readlinkat", "dpbl"},
    {268, "fchmodat", "dpi"}, {269, "faccessat", "dpi"}, {270, "pselect6", "!"},
    {271, "ppoll", "!"}, {273, "set_robust_list", "bl"}, {274, "get_robust_list", "Pbb"},
    {280, "utimensat", "dpbF"}, {281, "epoll_pwait", "!"}, {282, "signalfd", "fkK"},
    {283, "timerfd_create", "iF"}, {284, "eventfd", "i"}, {285, "fallocate", "fioL"},
    {286, "timerfd_settime", "fFbb"}, {287, "timerfd_gettime", "fb"},
    {288, "accept4", "fbZF"}, {289, "signalfd4", "fkKF"}, {290, "eventfd2", "iF"},
    {291, "epoll_create1", "F"}, {292, "dup3", "ffF"}, {293, "pipe2", "bF"},
    {295, "preadv", "fvoo"}, {296, "pwritev", "fvoo"}, {299, "recvmmsg", "fMiFt"},
    {302, "prlimit64", "!"}, {306, "syncfs", "f"}, {307, "sendmmsg", "fMiF"},
    {309, "getcpu", "bbb"}, {316, "renameat2", "dpdpF"}, {318, "getrandom", "blF"},
    {319, "memfd_create", "pF"}, {324, "membarrier", "iFi"}, {326, "copy_file_range", "fbfbLF"},
    {332, "statx", "dpFib"}, {435, "clone3", "!"}, {436, "close_range", "!"},
    {439, "faccessat2", "dpiF"}, {441, "epoll_pwait2", "!"},
};
#define NCALLS (sizeof CALLS / sizeof CALLS[0])

/* Calls that may wait (or close a lingering socket): only these run under the
 * watchdog, because setitimer(2) itself is not cheap. */
static int may_block(int nr)
{
    static const int B[] = {0, 1, 2, 3, 7, 16, 17, 18, 19, 20, 23, 32, 33, 35, 40, 42, 43,
                            44, 45, 46, 47, 48, 56, 58, 61, 72, 73, 85, 128, 202, 219, 230,
                            232, 247, 257, 270, 271, 281, 288, 292, 295, 296, 299, 307, 326,
                            435, 436, 441};
    for (size_t i = 0; i < sizeof B / sizeof B[0]; i++)
        if (B[i] == nr)
            return 1;
    return 0;
}

/* Generic arguments from the kind string. */
static void gen_generic(const char *kinds, long *a)
{
    for (int i = 0; kinds[i] && i < 6; i++) {
        switch (kinds[i]) {
        case 'f': a[i] = gen_fd(); break;
        case 'd': a[i] = gen_dirfd(); break;
        case 'b': a[i] = gen_ptr(chance(50) ? 256 : 4096); break;
        case 'l': a[i] = gen_len(); break;
        case 'L': a[i] = gen_small_len(); break;
        case 'p': a[i] = gen_path(); break;
        case 'F': a[i] = gen_flags(); break;
        case 'i': a[i] = gen_int(); break;
        case 'o': a[i] = gen_offset(); break;
        case 'P': a[i] = gen_pid(); break;
        case 'u': a[i] = gen_uid(); break;
        case 's': a[i] = gen_sig(); break;
        case 't': a[i] = gen_timespec(); break;
        case 'v': a[i] = gen_iov(&a[i + 1]); i++; break;
        case 'm': a[i] = gen_msghdr(); break;
        case 'M': a[i] = gen_mmsg(); break;
        case 'S': a[i] = gen_sockaddr(&a[i + 1]); i++; break;
        case 'Z': a[i] = gen_socklen_ptr(); break;
        case 'k': a[i] = gen_sigset(); break;
        case 'K': a[i] = gen_sigsetsize(); break;
        default: a[i] = 0; break;
        }
    }
}

/* An (address, length) inside the zone pages, or bad in ways that cannot reach
 * the fuzzer's own memory: kernel / non-canonical / misaligned / overflowing. */
static void gen_range(long *addr, long *len)
{
    u64 zone_lo = (u64)page(P_ZONE), zone_hi = (u64)page(ARENA_PAGES);
    switch (below(10)) {
    case 0: {
        static const long K[] = {(long)0xffff800000000000UL, 0x800000000000L,
                                 (long)0xfffffffffffff000UL, 0x7ffffffff000L};
        *addr = PICK(K);
        *len = gen_len();
        return;
    }
    case 1:
        *addr = (long)zone_lo + 1 + (long)below(4095);
        *len = (long)below(3 * PAGE);
        return;
    case 2:
        *addr = (long)(zone_lo + below(16) * PAGE);
        *len = PICK(((const long[]){-1L, -4096L, (long)0x8000000000000000UL, -8192L}));
        return;
    case 3:
        *addr = 0;
        *len = (long)below(16 * PAGE);
        return;
    default: {
        u64 a = zone_lo + below(ARENA_PAGES - P_ZONE) * PAGE;
        u64 room = zone_hi - a;
        u64 l = chance(20) ? 0 : (1 + below(room / PAGE)) * PAGE - (chance(20) ? below(PAGE) : 0);
        *addr = (long)a;
        *len = (long)l;
        return;
    }
    }
}

static void reap(long pid)
{
    int st;
    if (pid > 0) {
        in_call = 1;
        if (sigsetjmp(jump, 1) == 0) {
            watchdog(WATCHDOG_US * 10);
            sc6(SYS_wait4, pid, (long)&st, 0x40000000 /* __WALL */, 0, 0, 0);
        }
        in_call = 0;
        watchdog(0);
    }
    while (sc6(SYS_wait4, -1, (long)&st, 1 /* WNOHANG */ | 0x40000000, 0, 0, 0) > 0)
        ;
}

/* Special generators: fill a[], return the call kind for the post-processing. */
enum { POST_NONE, POST_MMAP, POST_MREMAP, POST_FORK, POST_SIGNALS };

static int gen_special(int nr, long *a)
{
    switch (nr) {
    case 7:   /* poll */
    case 271: /* ppoll */ {
        int n = (int)below(12);
        short *p = take((size_t)(n + 1) * 8);
        for (int i = 0; i < n; i++) {
            ((int *)p)[2 * i] = (int)gen_fd();
            p[4 * i + 2] = (short)gen_flags();
            p[4 * i + 3] = (short)rnd();
        }
        a[0] = chance(90) ? (long)p : gen_ptr(8);
        a[1] = chance(80) ? n : gen_int();
        if (nr == 7) {
            a[2] = PICK(((const long[]){0, 1, 5, 0, -1, -5}));
        } else {
            a[2] = gen_timespec();
            a[3] = gen_sigset();
            a[4] = gen_sigsetsize();
        }
        return POST_NONE;
    }
    case 23:  /* select */
    case 270: /* pselect6 */ {
        a[0] = chance(70) ? (long)below(70) : gen_int();
        for (int i = 1; i <= 3; i++)
            a[i] = chance(30) ? 0 : gen_ptr(128);
        if (nr == 23) {
            long *tv = take(16);
            tv[0] = 0; tv[1] = (long)below(3000);
            if (chance(10)) tv[1] = -1;
            if (chance(10)) tv[1] = 1000000;
            a[4] = chance(90) ? (long)tv : gen_ptr(16);
        } else {
            a[4] = gen_timespec();
            long *sm = take(16);
            sm[0] = gen_sigset(); sm[1] = gen_sigsetsize();
            a[5] = chance(70) ? (long)sm : gen_ptr(16);
        }
        return POST_NONE;
    }
    case 9: { /* mmap */
        long flags = gen_flags();
        if (chance(60))
            flags = (chance(50) ? MAP_PRIVATE : MAP_SHARED) | (chance(60) ? MAP_ANONYMOUS : 0)
                    | (chance(30) ? MAP_FIXED : 0) | (chance(10) ? MAP_FIXED_NOREPLACE : 0)
                    | (chance(10) ? (long)(1UL << below(24)) : 0);
        if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
            gen_range(&a[0], &a[1]);
        } else {
            a[0] = chance(50) ? 0 : gen_ptr(8);
            a[1] = gen_len();
        }
        if ((u64)a[1] > (1 << 20))
            flags &= ~(long)(MAP_POPULATE | MAP_LOCKED);
        a[2] = chance(70) ? (long)below(8) : gen_flags();
        a[3] = flags;
        a[4] = gen_fd();
        a[5] = chance(60) ? (long)(below(4) * PAGE) : gen_offset();
        return POST_MMAP;
    }
    case 10: gen_range(&a[0], &a[1]); a[2] = chance(80) ? (long)below(8) : gen_flags(); return POST_NONE;
    case 11: gen_range(&a[0], &a[1]); return POST_NONE;
    case 26: gen_range(&a[0], &a[1]); a[2] = chance(70) ? (long)below(8) : gen_flags(); return POST_NONE;
    case 27: gen_range(&a[0], &a[1]); a[2] = gen_ptr(64); return POST_NONE;
    case 28: gen_range(&a[0], &a[1]);
        /* The kernel reads an int: 2**32 + 100 is MADV_HWPOISON too. */
        do a[2] = chance(80) ? (long)below(30) : gen_int(); while ((int)a[2] == 100 || (int)a[2] == 101);
        return POST_NONE;
    case 149: case 150: gen_range(&a[0], &a[1]); return POST_NONE;
    case 151: a[0] = gen_flags() & ~2L /* MCL_FUTURE would lock later huge maps */; return POST_NONE;
    case 25: { /* mremap */
        gen_range(&a[0], &a[1]);
        a[3] = chance(70) ? (long)below(8) : gen_flags();
        if (a[3] & 2 /* MREMAP_FIXED */) {
            long na, nl;
            gen_range(&na, &nl);
            a[4] = na;
            a[2] = nl;
        } else {
            a[2] = chance(70) ? (long)((1 + below(24)) * PAGE) : gen_len();
            a[4] = gen_ptr(8);
        }
        return POST_MREMAP;
    }
    case 12: { /* brk: never below where it started (static TLS lives there) */
        static const long B[] = {0, 1, 0x1000, -1, (long)0xffff800000000000UL, 0x7ffffffff000L};
        a[0] = chance(50) ? brk0 + (long)below(64) * (long)PAGE + (chance(20) ? 1 : 0) : PICK(B);
        return POST_NONE;
    }
    case 16: { /* ioctl */
        static const long R[] = {0x5401, 0x5402, 0x5413, 0x5414, 0x541B, 0x5421, 0x5451,
                                 0x5450, 0x5452, 0x540F, 0x5410, 0x540E, 0x5422, 0x5429,
                                 0x8912, 0x8913, 0x8933, 0x8910, 0x8915, 0x8927, 0x8921,
                                 0x80045430, 0x80086601, 1, 2, 0x40086602, 0x894C, 0x5420,
                                 0x4020940d, 0xc0185879};
        a[0] = gen_fd();
        a[1] = chance(80) ? PICK(R) : gen_int();
        a[2] = chance(80) ? gen_ptr(64) : gen_int();
        if ((a[1] & 0xff00) == 0x8900 && chance(60)) {
            char *ifr = take(64);           /* struct ifreq naming a real interface */
            fill_structured(ifr, 64);
            strcpy(ifr, chance(80) ? "lo" : "nonexistent0");
            a[2] = (long)ifr;
        }
        return POST_NONE;
    }
    case 41: { /* socket */
        static const long D[] = {1, 2, 10, 16, 17, 0, 3, 44, 46, -1};
        a[0] = PICK(D);
        a[1] = (chance(80) ? 1 + (long)below(5) : gen_int()) | (chance(30) ? 04000 | 02000000 : 0);
        a[2] = chance(70) ? 0 : gen_int();
        return POST_NONE;
    }
    case 54: case 55: {
        static const long LV[] = {1, 0, 6, 17, 41, 263, 270, -1};
        a[0] = gen_fd();
        a[1] = PICK(LV);
        a[2] = chance(70) ? (long)below(80) : gen_int();
        a[3] = gen_ptr(64);
        if (nr == 54)
            a[4] = chance(70) ? PICK(((const long[]){0, 1, 4, 8, 16, 64, 4096, -1})) : gen_len();
        else
            a[4] = gen_socklen_ptr();
        return POST_NONE;
    }
    case 56: { /* clone: exit signal among handled ones; pointers into the arena */
        long flags = gen_flags() & ~0xffL;
        if (chance(50))
            flags = 0;
        flags |= PICK(((const long[]){0, SIGCHLD, SIGCHLD, SIGUSR1, 36}));
        a[0] = flags;
        a[1] = chance(50) ? 0 : (long)page(P_ZONE + 8);
        a[2] = (long)take(16);
        a[3] = (long)take(16);
        a[4] = gen_int();
        return POST_FORK;
    }
    case 57: case 58: return POST_FORK;
    case 435: { /* clone3 */
        u64 *ca = take(128);
        fill_random(ca, 128);
        ca[0] = chance(50) ? 0 : (u64)gen_flags() & ~0xffUL;   /* flags */
        ca[1] = (u64)take(16);                                  /* pidfd */
        ca[2] = (u64)take(16);                                  /* child_tid */
        ca[3] = (u64)take(16);                                  /* parent_tid */
        ca[4] = PICK(((const u64[]){0, SIGCHLD, SIGCHLD, SIGUSR1, 65, (u64)-1}));
        ca[5] = chance(50) ? 0 : (u64)page(P_ZONE);             /* stack */
        ca[6] = chance(50) ? 0 : (u64)gen_len();                /* stack_size */
        if (chance(50)) ca[7] = 0;                              /* tls */
        ca[8] = chance(70) ? 0 : (u64)take(64);                 /* set_tid */
        ca[9] = chance(70) ? 0 : below(40);                     /* set_tid_size */
        if (chance(70)) ca[10] = 0;                             /* cgroup */
        if (ca[4] == (u64)-1 || ca[4] == 65) { /* bad exit signals: EINVAL expected */ }
        a[0] = chance(90) ? (long)ca : gen_ptr(64);
        a[1] = chance(70) ? 88 : PICK(((const long[]){0, 64, 80, 96, 4096, 4097, -1}));
        return POST_FORK;
    }
    case 62: a[0] = gen_pid(); a[1] = gen_sig(); return POST_NONE;
    case 200: a[0] = chance(60) ? main_tid : gen_pid(); a[1] = gen_sig(); return POST_NONE;
    case 234:
        a[0] = chance(60) ? main_pid : gen_pid();
        a[1] = chance(60) ? main_tid : gen_pid();
        a[2] = gen_sig();
        return POST_NONE;
    case 72: { /* fcntl */
        static const long C[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 16, 36, 37, 38,
                                 1024, 1025, 1026, 1030, 1031, 1032, 1033, 1034};
        a[0] = gen_fd();
        a[1] = chance(90) ? PICK(C) : gen_int();
        switch ((int)a[1]) {      /* the kernel's cmd is an unsigned int */
        case 5: case 6: case 7: case 36: case 37: case 38: case 15: case 16: {
            short *fl = take(32);
            fill_random(fl, 32);
            if (chance(80)) {
                fl[0] = (short)below(4);          /* l_type */
                fl[1] = (short)below(4);          /* l_whence */
                ((long *)fl)[1] = chance(50) ? (long)below(100) : gen_offset();
                ((long *)fl)[2] = chance(50) ? (long)below(100) : gen_offset();
                ((int *)fl)[6] = chance(70) ? 0 : (int)gen_int();
            }
            a[2] = chance(85) ? (long)fl : gen_ptr(32);
            break;
        }
        case 10: a[2] = gen_sig(); break;
        case 8: a[2] = gen_pid(); break;
        default: a[2] = chance(50) ? gen_flags() : gen_int(); break;
        }
        return POST_NONE;
    }
    case 157: { /* prctl: not SECCOMP, TSC, MM, SYSCALL_USER_DISPATCH */
        static const long O[] = {1, 2, 3, 4, 7, 8, 15, 16, 21, 23, 24, 25, 27, 29, 30, 36, 37,
                                 38, 39, 40, 41, 42, 47, 52, 0, -1, 1000, 0x59616d61};
        a[0] = PICK(O);
        a[1] = a[0] == 1 ? gen_sig() : (chance(50) ? gen_ptr(32) : gen_int());
        for (int i = 2; i < 5; i++)
            a[i] = chance(50) ? 0 : gen_int();
        return POST_NONE;
    }
    case 158: { /* arch_prctl: not SET_FS (our TLS) nor MAP_VDSO */
        static const long C[] = {0x1001, 0x1003, 0x1004, 0x1011, 0x1012, 0x3001, 0x1021,
                                 0x1022, 0x1023, 0x1024, 0, -1, 0x1000, 0x1005};
        a[0] = PICK(C);
        a[1] = chance(50) ? gen_ptr(8) : gen_int();
        if (a[0] == 0x1012)
            a[1] = 1;
        return POST_NONE;
    }
    case 160: case 302: { /* setrlimit / prlimit64: lower only harmless limits */
        long *lim = take(16);
        long res = chance(85) ? (long)below(18) : gen_int();
        unsigned r32 = (unsigned)res;     /* what the kernel reads: 2**32 is RLIMIT_CPU */
        int harmless = r32 == 4 || r32 == 10 || r32 == 12 || r32 == 13 || r32 == 14 || r32 >= 16;
        if (harmless && chance(60)) {
            lim[0] = gen_int(); lim[1] = gen_int();
        } else {
            lim[0] = -1; lim[1] = -1;
        }
        long p = chance(70) ? (long)lim : (chance(50) ? 0 : gen_ptr(16));
        if (p != (long)lim && p != 0 && !harmless)
            p = 0;     /* random bytes only where lowering cannot hurt */
        if (nr == 160) {
            a[0] = res; a[1] = p;
        } else {
            a[0] = chance(60) ? 0 : gen_pid();
            a[1] = res; a[2] = p; a[3] = chance(50) ? 0 : gen_ptr(16);
        }
        return POST_NONE;
    }
    case 202: { /* futex */
        static const long OP[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
        int *w = take(16);
        *w = chance(50) ? 0 : (int)gen_int();
        a[0] = chance(70) ? (long)w : gen_ptr(4);
        a[1] = chance(85) ? PICK(OP) | (chance(50) ? 128 : 0) | (chance(10) ? 256 : 0)
                          : gen_int();
        a[2] = chance(50) ? *w : gen_int();
        a[3] = chance(70) ? gen_timespec() : gen_int();
        a[4] = chance(50) ? (long)take(16) : gen_ptr(4);
        a[5] = chance(50) ? -1 : gen_int();
        return POST_NONE;
    }
    case 232: case 281: case 441: {
        a[0] = gen_fd();
        a[1] = gen_ptr(12 * 8);
        a[2] = chance(70) ? (long)below(9) : gen_int();
        if (nr == 441)
            a[3] = gen_timespec();
        else
            a[3] = PICK(((const long[]){0, 1, 3, 0, -1, -7}));
        a[4] = gen_sigset();
        a[5] = gen_sigsetsize();
        return POST_NONE;
    }
    case 436: { /* close_range: never our stdout */
        long first = chance(70) ? (long)below(260) : gen_int();
        long last = chance(50) ? first + (long)below(30) : gen_int();
        first = (unsigned)first;          /* the kernel reads unsigned ints */
        last = (unsigned)last;
        if (first <= OUT_FD && last >= OUT_FD) {
            if ((u64)first < OUT_FD) last = OUT_FD - 1; else first = OUT_FD + 1;
        }
        a[0] = first; a[1] = last;
        a[2] = chance(70) ? PICK(((const long[]){0, 2, 4, 6})) : gen_flags();
        return POST_NONE;
    }
    }
    return POST_NONE;
}

/* ---- setup: the arena and a pool of fds of every kind ---------------------- */
static void build_arena(void)
{
    sc6(SYS_mmap, (long)arena, ARENA_PAGES * PAGE, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    fill_random(page(P_RO), PAGE);
    sc(SYS_mprotect, page(P_RO), PAGE, PROT_READ);
    sc(SYS_mprotect, page(P_NONE), PAGE, PROT_NONE);
    sc(SYS_munmap, page(P_HOLE), PAGE, 0);
    cursor = arena;
}

static void add_fd(long fd)
{
    if (fd >= 0 && nfds < (int)(sizeof fds / sizeof fds[0]))
        fds[nfds++] = fd;
}

static void build_fds(void)
{
    /* Everything but stdout-for-results goes. */
    sc(SYS_close_range, 3, OUT_FD - 1, 0);
    sc(SYS_close_range, OUT_FD + 1, ~0U, 0);
    long null = sc(SYS_open, "/dev/null", O_RDWR, 0);
    if (null < 0)   /* a native run in a bare chroot: stdout must not stay on 1 */
        null = sc(SYS_open, "/tmp/fz/null", O_RDWR | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; i < 3; i++)
        sc(SYS_dup2, null, i, 0);
    if (null > 2)
        sc(SYS_close, null, 0, 0);
    sc(SYS_chdir, "/tmp/fz", 0, 0);
    nfds = 0;
    add_fd(0); add_fd(1); add_fd(2);
    add_fd(sc(SYS_open, "/tmp/fz/a", O_RDWR | O_CREAT, 0644));
    add_fd(sc(SYS_open, "/tmp/fz/a", O_RDONLY, 0));
    add_fd(sc(SYS_open, "/data/hello.txt", O_RDONLY, 0));
    add_fd(sc(SYS_open, "/tmp/fz", O_RDONLY | O_DIRECTORY, 0));
    add_fd(sc(SYS_open, "/tmp/fz/dir", O_PATH, 0));
    add_fd(sc(SYS_open, "/proc/self/status", O_RDONLY, 0));
    add_fd(sc(SYS_open, "/proc", O_RDONLY | O_DIRECTORY, 0));
    add_fd(sc(SYS_open, "/dev/zero", O_RDWR, 0));
    add_fd(sc(SYS_open, "/dev/urandom", O_RDONLY, 0));
    add_fd(sc(SYS_open, "/", O_RDONLY | O_DIRECTORY, 0));
    int pv[2];
    if (sc(SYS_pipe2, pv, O_NONBLOCK, 0) == 0) { add_fd(pv[0]); add_fd(pv[1]); }
    int sv[2];
    if (sc6(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, (long)sv, 0, 0) == 0) {
        add_fd(sv[0]); add_fd(sv[1]);
    }
    if (sc6(SYS_socketpair, AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, (long)sv, 0, 0) == 0) {
        add_fd(sv[0]); add_fd(sv[1]);
    }
    long ls = sc(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (ls >= 0) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        strcpy(un.sun_path, "/tmp/fz/sock");
        sc(SYS_unlink, "/tmp/fz/sock", 0, 0);
        sc(SYS_bind, ls, &un, sizeof un);
        sc(SYS_listen, ls, 4, 0);
        add_fd(ls);
    }
    add_fd(sc(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    add_fd(sc(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    add_fd(sc(SYS_socket, AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    add_fd(sc(SYS_socket, AF_NETLINK, SOCK_RAW, 0));
    add_fd(sc(SYS_eventfd2, 0, 04000 /* EFD_NONBLOCK */, 0));
    add_fd(sc(SYS_timerfd_create, 1 /* CLOCK_MONOTONIC */, 04000, 0));
    add_fd(sc(SYS_epoll_create1, 0, 0, 0));
    u64 mask = 1UL << (SIGUSR2 - 1);
    add_fd(sc6(SYS_signalfd4, -1, (long)&mask, 8, 04000, 0, 0));
    add_fd(sc(SYS_memfd_create, "fz", 0, 0));
    /* A closed fd that a stale pointer would name. */
    closed_fd = sc(SYS_dup, 0, 0, 0);
    sc(SYS_close, closed_fd, 0, 0);
    last_fd = -1;
}

static void build_tree(void)
{
    sc(SYS_mkdir, "/tmp", 0777, 0);
    sc(SYS_mkdir, "/tmp/fz", 0777, 0);
    sc(SYS_mkdir, "/tmp/fz/dir", 0777, 0);
    long fd = sc(SYS_open, "/tmp/fz/a", O_RDWR | O_CREAT, 0644);
    sc(SYS_write, fd, "some file content\n", 18);
    sc(SYS_close, fd, 0, 0);
    sc(SYS_symlink, "loop", "/tmp/fz/loop", 0);
    sc(SYS_symlink, "a", "/tmp/fz/sym", 0);
    sc(SYS_symlink, "/nonexistent", "/tmp/fz/dangling", 0);
    sc(SYS_mknod, "/tmp/fz/fifo", S_IFIFO | 0644, 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fuzz SEED [CALLS] [-v]\n");
        return 2;
    }
    u64 seed = strtoull(argv[1], NULL, 0);
    long calls = argc > 2 ? strtol(argv[2], NULL, 0) : 20000;
    int verbose = argc > 3 && strcmp(argv[3], "-v") == 0;
    rng_state = seed * 0x2545f4914f6cdd1dULL + 1;

    if (sc(SYS_dup2, 1, OUT_FD, 0) != OUT_FD)
        return 3;
    main_tid = sc(SYS_gettid, 0, 0, 0);
    main_pid = sc(SYS_getpid, 0, 0, 0);
    brk0 = sc(SYS_brk, 0, 0, 0);
    arena = (unsigned char *)sc6(SYS_mmap, 0, ARENA_PAGES * PAGE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if ((long)arena < 0)
        return 4;
    install_handlers();
    build_tree();

    long i;
    for (i = 0; i < calls; i++) {
        if (i % REFRESH == 0) {
            build_arena();
            build_fds();
            install_handlers();
        }
        const struct call *c = &CALLS[below(NCALLS)];
        long a[6] = {0, 0, 0, 0, 0, 0};
        volatile int post = POST_NONE;
        if (c->args[0] == '!')
            post = gen_special(c->nr, a);
        else
            gen_generic(c->args, a);
        if (verbose)
            out("%ld %s(%#lx, %#lx, %#lx, %#lx, %#lx, %#lx)\n", i, c->name,
                a[0], a[1], a[2], a[3], a[4], a[5]);
        if (verbose && c->nr == 435 && (u64)a[0] - (u64)arena < P_RO * PAGE - 88) {
            u64 *ca = (u64 *)a[0];
            out("  clone_args %#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx %#lx\n",
                ca[0], ca[1], ca[2], ca[3], ca[4], ca[5], ca[6], ca[7], ca[8], ca[9], ca[10]);
        }
        volatile long r = -4;
        in_call = 1;
        int guarded = may_block(c->nr);
        if (sigsetjmp(jump, 1) == 0) {
            if (guarded)
                watchdog(WATCHDOG_US);
            if (post == POST_FORK)
                r = sc_fork(c->nr, a[0], a[1], a[2], a[3], a[4]);
            else
                r = sc6(c->nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        }
        in_call = 0;
        if (guarded)
            watchdog(0);
        if (c->nr == 37 || c->nr == 38) {
            /* A timer the fuzz armed would interrupt later calls at random. */
            struct itimerval z = {{0, 0}, {0, 0}};
            for (int w = 0; w < 3; w++)
                sc(SYS_setitimer, w, &z, 0);
        }
        if (verbose)
            out("  = %ld\n", r);
        switch (post) {
        case POST_MMAP: case POST_MREMAP: {
            u64 lo = (u64)arena, hi = (u64)page(ARENA_PAGES);
            long len = post == POST_MMAP ? a[1] : a[2];
            if (r > 0 && r < (long)0x800000000000L && ((u64)r < lo || (u64)r >= hi))
                sc(SYS_munmap, r, len, 0);
            break;
        }
        case POST_FORK: reap(r); break;
        }
        if (c->nr == 13 || c->nr == 14 || c->nr == 131 || c->nr == 157)
            install_handlers();
        if (r >= 0 && r < 1024 && r != OUT_FD)
            last_fd = r;
    }
    reap(0);
    out("fuzz done seed=%llu calls=%ld\n", (unsigned long long)seed, i);
    /* Counters vary with timing; only on request. */
    if (verbose)
        out("timeouts=%ld faults=%ld\n", timeouts, faults);
    return 0;
}
