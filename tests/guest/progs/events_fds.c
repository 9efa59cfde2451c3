/* eventfd, timerfd, signalfd, memfd_create + seals, fallocate, copy_file_range and
 * the xattr path checks. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/xattr.h>
#include <time.h>

static int revents(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    poll(&p, 1, 0);
    return p.revents;
}

static void show_read64(const char *label, int fd)
{
    uint64_t v = 0;
    errno = 0;
    ssize_t n = read(fd, &v, sizeof v);
    if (n < 0)
        say("%s = -1 %s\n", label, ename(errno));
    else
        say("%s = %zd, value %llu\n", label, n, (unsigned long long)v);
}

static long w64(int fd, uint64_t v) { return write(fd, &v, sizeof v); }

static void eventfds(void)
{
    int e = eventfd(5, EFD_NONBLOCK | EFD_CLOEXEC);
    say("eventfd F_GETFL %#x, FD_CLOEXEC %d\n", fcntl(e, F_GETFL), fcntl(e, F_GETFD));
    say("revents %#x\n", revents(e, POLLIN | POLLOUT));
    show_read64("read", e);
    show_read64("read empty", e);
    say("revents %#x\n", revents(e, POLLIN | POLLOUT));
    SHOW("write 3", w64(e, 3));
    SHOW("write 4", w64(e, 4));
    show_read64("read sum", e);
    char small[4];
    SHOW("read 4 bytes", read(e, small, 4));
    SHOW("write 4 bytes", write(e, small, 4));
    SHOW("write ~0", w64(e, UINT64_MAX));
    SHOW("write max-1", w64(e, UINT64_MAX - 1));
    say("revents at max-1 %#x\n", revents(e, POLLIN | POLLOUT));
    SHOW("write 1 more (would overflow)", w64(e, 1));
    SHOW("write 0", w64(e, 0));
    show_read64("read max-1", e);
    char big[16] = {0};
    *(uint64_t *)big = 9;
    SHOW("write 16 bytes", write(e, big, 16));
    SHOW("read 16 bytes", read(e, big, 16));
    close(e);

    int s = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    show_read64("semaphore", s);
    show_read64("semaphore", s);
    show_read64("semaphore", s);
    show_read64("semaphore", s);
    close(s);
    SHOW("eventfd2 bad flags", syscall(SYS_eventfd2, 0, 0x40));
    SHOW("eventfd (old)", syscall(SYS_eventfd, 2) >= 0);

    /* blocking read woken by a child's write */
    int b = eventfd(0, 0);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(50000);
        w64(b, 42);
        _exit(0);
    }
    show_read64("blocking read", b);
    waitpid(pid, NULL, 0);
    /* in epoll, edge-triggered: every write is an event */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 1};
    epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev);
    SHOW("ET idle", epoll_wait(ep, &ev, 1, 0));
    w64(b, 1);
    SHOW("ET write 1", epoll_wait(ep, &ev, 1, 0));
    SHOW("ET again", epoll_wait(ep, &ev, 1, 0));
    w64(b, 1);
    SHOW("ET write 2", epoll_wait(ep, &ev, 1, 0));
    close(ep);
    close(b);
}

static long ms_between(struct timespec *a, struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000 + (b->tv_nsec - a->tv_nsec) / 1000000;
}

static void timerfds(void)
{
    SHOW("timerfd_create bad clock", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0));
    SHOW("timerfd_create bad flags", timerfd_create(CLOCK_MONOTONIC, 1));
    int t = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    say("timerfd F_GETFL %#x\n", fcntl(t, F_GETFL));
    struct itimerspec cur;
    timerfd_gettime(t, &cur);
    say("unarmed: value %ld.%09ld interval %ld.%09ld\n", (long)cur.it_value.tv_sec,
        cur.it_value.tv_nsec, (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    say("revents unarmed %#x\n", revents(t, POLLIN));
    struct itimerspec one = {.it_value = {0, 50000000}};
    SHOW("settime 50ms", timerfd_settime(t, 0, &one, NULL));
    timerfd_gettime(t, &cur);
    say("armed: 0 < value <= 50ms: %d\n", cur.it_value.tv_sec == 0 &&
        cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 50000000);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    show_read64("blocking read", t);
    clock_gettime(CLOCK_MONOTONIC, &b);
    say("waited >= 40ms: %d\n", ms_between(&a, &b) >= 40);
    timerfd_gettime(t, &cur);
    say("expired one-shot: value %ld.%09ld\n", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
    char small[4];
    SHOW("read 4 bytes", read(t, small, 4));

    struct itimerspec per = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
    timerfd_settime(t, 0, &per, NULL);
    usleep(110000);
    uint64_t n = 0;
    read(t, &n, 8);
    say("periodic 20ms after 110ms: between 4 and 6 expirations: %d\n", n >= 4 && n <= 6);
    struct itimerspec old;
    struct itimerspec ten = {.it_value = {10, 0}};
    timerfd_settime(t, 0, &ten, &old);
    say("old interval 20ms: %d, old value <= 20ms: %d\n", old.it_interval.tv_nsec == 20000000,
        old.it_value.tv_sec == 0 && old.it_value.tv_nsec <= 20000000);
    timerfd_settime(t, 0, &ten, &old);
    say("old value between 9s and 10s: %d\n", old.it_value.tv_sec == 9);
    struct itimerspec zero = {0};
    timerfd_settime(t, 0, &zero, &old);
    fcntl(t, F_SETFL, O_NONBLOCK);
    show_read64("disarmed, nonblocking", t);

    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    struct itimerspec past = {.it_value = {now.tv_sec - 1, now.tv_nsec}};
    SHOW("absolute time in the past", timerfd_settime(t, TFD_TIMER_ABSTIME, &past, NULL));
    show_read64("read", t);
    struct itimerspec bad = {.it_value = {0, 1000000000}};
    SHOW("settime nsec 1e9", timerfd_settime(t, 0, &bad, NULL));
    SHOW("settime bad flags", timerfd_settime(t, 4, &one, NULL));
    SHOW("settime closed fd", timerfd_settime(70, 0, &one, NULL));
    SHOW("settime on a pipe", timerfd_settime(0, 0, &one, NULL) < 0 ? -1 : 0);
    int e = eventfd(0, 0);
    SHOW("settime on an eventfd", timerfd_settime(e, 0, &one, NULL));
    SHOW("gettime on an eventfd", timerfd_gettime(e, &cur));
    close(e);

    /* CLOCK_REALTIME absolute, in epoll */
    int r = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    clock_gettime(CLOCK_REALTIME, &now);
    now.tv_nsec += 30000000;
    if (now.tv_nsec >= 1000000000) {
        now.tv_sec++;
        now.tv_nsec -= 1000000000;
    }
    struct itimerspec abs = {.it_value = now};
    timerfd_settime(r, TFD_TIMER_ABSTIME, &abs, NULL);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 3};
    epoll_ctl(ep, EPOLL_CTL_ADD, r, &ev);
    SHOW("epoll on a realtime timer", epoll_wait(ep, &ev, 1, 5000));
    show_read64("read", r);
    int bt = timerfd_create(CLOCK_BOOTTIME, 0);
    SHOW("CLOCK_BOOTTIME timer", bt >= 0);
    close(bt);
    close(ep);
    close(r);
    close(t);
}

static void show_siginfo(const char *label, int fd)
{
    struct signalfd_siginfo si;
    errno = 0;
    ssize_t n = read(fd, &si, sizeof si);
    if (n < 0) {
        say("%s = -1 %s\n", label, ename(errno));
        return;
    }
    say("%s = %zd: signo %u code %d pid is mine %d uid %u status %d\n", label, n,
        si.ssi_signo, si.ssi_code, si.ssi_pid == (uint32_t)getpid(), si.ssi_uid, si.ssi_status);
}

static void signalfds(void)
{
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGUSR2);
    sigaddset(&m, SIGCHLD);
    sigprocmask(SIG_BLOCK, &m, NULL);
    sigset_t only1;
    sigemptyset(&only1);
    sigaddset(&only1, SIGUSR1);
    int s = signalfd(-1, &only1, SFD_NONBLOCK);
    say("signalfd F_GETFL %#x\n", fcntl(s, F_GETFL));
    say("revents idle %#x\n", revents(s, POLLIN));
    show_siginfo("read idle", s);
    raise(SIGUSR1);
    say("revents after raise %#x\n", revents(s, POLLIN));
    show_siginfo("read", s);
    kill(getpid(), SIGUSR2);
    say("revents with SIGUSR2 pending %#x\n", revents(s, POLLIN));
    show_siginfo("read (SIGUSR2 not in the mask)", s);
    sigset_t only2;
    sigemptyset(&only2);
    sigaddset(&only2, SIGUSR2);
    SHOW("change the mask", signalfd(s, &only2, 0) == s);
    show_siginfo("read SIGUSR2", s);
    char small[64];
    SHOW("read 64 bytes", read(s, small, sizeof small));
    SHOW("signalfd bad size", syscall(SYS_signalfd4, -1, &only1, 4, 0));
    SHOW("signalfd4 bad flags", syscall(SYS_signalfd4, -1, &only1, 8, 1));
    int p[2];
    pipe(p);
    SHOW("signalfd on a pipe", signalfd(p[0], &only1, 0));
    SHOW("signalfd on a closed fd", signalfd(80, &only1, 0));
    close(p[0]);
    close(p[1]);

    /* two signals in one read; SIGKILL in the mask is ignored */
    sigset_t both = only1;
    sigaddset(&both, SIGUSR2);
    sigaddset(&both, SIGKILL);
    signalfd(s, &both, 0);
    raise(SIGUSR2);
    raise(SIGUSR1);
    struct signalfd_siginfo two[3];
    ssize_t n = read(s, two, sizeof two);
    say("two at once: %zd bytes, first %u, second %u\n", n, two[0].ssi_signo, two[1].ssi_signo);

    /* SIGCHLD through a signalfd (blocked, default-ignored: still queued) */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int c = signalfd(-1, &chld, 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    struct signalfd_siginfo si;
    read(c, &si, sizeof si);
    say("SIGCHLD: signo %u code %d (CLD_EXITED %d) status %d pid matches %d\n", si.ssi_signo,
        si.ssi_code, CLD_EXITED, si.ssi_status, si.ssi_pid == (uint32_t)pid);
    waitpid(pid, NULL, 0);

    /* blocking read woken by another process's kill, through epoll too */
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 9};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    pid_t parent = getpid();
    pid = fork();
    if (pid == 0) {
        usleep(50000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    SHOW("epoll_wait for a signal", epoll_wait(ep, &ev, 1, 5000));
    show_siginfo("read", s);
    waitpid(pid, NULL, 0);
    sigset_t pend;
    sigpending(&pend);
    say("nothing left pending: %d\n", !sigismember(&pend, SIGUSR1) && !sigismember(&pend, SIGUSR2));
    close(ep);
    close(c);
    close(s);
    sigprocmask(SIG_UNBLOCK, &m, NULL);
}

static void memfds(void)
{
    int m = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    say("memfd FD_CLOEXEC %d, F_GETFL %#x\n", fcntl(m, F_GETFD), fcntl(m, F_GETFL) & ~O_LARGEFILE);
    SHOW("write", write(m, "hello world", 11));
    struct stat st;
    fstat(m, &st);
    say("regular %d, mode %o, size %ld\n", S_ISREG(st.st_mode), st.st_mode & 07777, (long)st.st_size);
    char *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, m, 0);
    say("mmap reads: %.11s\n", p);
    munmap(p, 4096);
    char buf[32] = {0};
    SHOW("pread", pread(m, buf, 5, 6));
    say("read back: %s\n", buf);
    SHOW("F_GET_SEALS", fcntl(m, F_GET_SEALS));
    SHOW("F_ADD_SEALS GROW|SHRINK", fcntl(m, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK));
    SHOW("F_GET_SEALS", fcntl(m, F_GET_SEALS));
    SHOW("write past the end", pwrite(m, "xyz", 3, 10));
    SHOW("write inside", pwrite(m, "H", 1, 0));
    SHOW("ftruncate grow", ftruncate(m, 100));
    SHOW("ftruncate shrink", ftruncate(m, 5));
    SHOW("fallocate grow", fallocate(m, 0, 0, 4096));
    SHOW("F_ADD_SEALS WRITE", fcntl(m, F_ADD_SEALS, F_SEAL_WRITE));
    SHOW("write sealed", write(m, "x", 1));
    SHOW("F_ADD_SEALS SEAL", fcntl(m, F_ADD_SEALS, F_SEAL_SEAL));
    SHOW("F_ADD_SEALS after SEAL", fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK));
    SHOW("F_GET_SEALS", fcntl(m, F_GET_SEALS));
    SHOW("F_ADD_SEALS unknown bit", fcntl(memfd_create("x", MFD_ALLOW_SEALING), F_ADD_SEALS, 0x100));
    close(m);
    int n = memfd_create("nosealing", 0);
    SHOW("no MFD_ALLOW_SEALING: F_GET_SEALS", fcntl(n, F_GET_SEALS));
    SHOW("no MFD_ALLOW_SEALING: F_ADD_SEALS", fcntl(n, F_ADD_SEALS, F_SEAL_WRITE));
    SHOW("F_GET_SEALS on a pipe", fcntl(0, F_GET_SEALS) < 0 ? -1 : 0);
    char name[300];
    memset(name, 'n', sizeof name);
    name[249] = 0;
    SHOW("name of 249 bytes", memfd_create(name, 0) >= 0);
    name[249] = 'n';
    name[250] = 0;
    SHOW("name of 250 bytes", memfd_create(name, 0));
    SHOW("bad flags", memfd_create("x", 0x100));
    SHOW("bad name pointer", memfd_create((char *)8, 0));

    /* fallocate on a memfd (shmem rules) */
    SHOW("fallocate 0", fallocate(n, 0, 0, 8192));
    fstat(n, &st);
    say("size %ld\n", (long)st.st_size);
    SHOW("fallocate KEEP_SIZE", fallocate(n, FALLOC_FL_KEEP_SIZE, 0, 65536));
    fstat(n, &st);
    say("size %ld\n", (long)st.st_size);
    pwrite(n, "abcdef", 6, 0);
    SHOW("punch hole", fallocate(n, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1, 2));
    pread(n, buf, 6, 0);
    say("after punch: %c %d %d %c\n", buf[0], buf[1], buf[2], buf[3]);
    SHOW("punch without KEEP_SIZE", fallocate(n, FALLOC_FL_PUNCH_HOLE, 0, 1));
    SHOW("zero range (tmpfs)", fallocate(n, FALLOC_FL_ZERO_RANGE, 0, 1));
    SHOW("collapse (tmpfs)", fallocate(n, FALLOC_FL_COLLAPSE_RANGE, 0, 4096));
    SHOW("collapse + keep size", fallocate(n, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    SHOW("len 0", fallocate(n, 0, 0, 0));
    SHOW("offset -1", fallocate(n, 0, -1, 1));
    SHOW("unknown mode bit", fallocate(n, 0x1000, 0, 1));
    int pp[2];
    pipe(pp);
    SHOW("on a pipe", fallocate(pp[1], 0, 0, 1));
    SHOW("read-only fd", fallocate(open("/data/hello.txt", O_RDONLY), 0, 0, 1));
    SHOW("on a directory", fallocate(open("/data", O_RDONLY | O_DIRECTORY), 0, 0, 1));
    int ev = eventfd(0, 0);
    SHOW("on an eventfd", fallocate(ev, 0, 0, 1));
    int h = open("/tmp/falloc", O_RDWR | O_CREAT | O_TRUNC, 0644);
    SHOW("host file mode 0", fallocate(h, 0, 0, 10000));
    fstat(h, &st);
    say("host size %ld\n", (long)st.st_size);
    close(h);

    /* copy_file_range */
    int in = open("/data/hello.txt", O_RDONLY);
    int out = open("/tmp/copy", O_RDWR | O_CREAT | O_TRUNC, 0644);
    SHOW("copy whole file", copy_file_range(in, NULL, out, NULL, 1000, 0));
    say("positions %ld %ld\n", (long)lseek(in, 0, SEEK_CUR), (long)lseek(out, 0, SEEK_CUR));
    SHOW("at EOF", copy_file_range(in, NULL, out, NULL, 1000, 0));
    loff_t oi = 6, oo = 0;
    int m2 = memfd_create("dst", 0);
    SHOW("with offsets into a memfd", copy_file_range(in, &oi, m2, &oo, 4, 0));
    say("offsets now %ld %ld, file position still %ld\n", (long)oi, (long)oo,
        (long)lseek(in, 0, SEEK_CUR));
    memset(buf, 0, sizeof buf);
    pread(m2, buf, 10, 0);
    say("memfd got: %s\n", buf);
    SHOW("flags 1", copy_file_range(in, NULL, out, NULL, 10, 1));
    SHOW("from a pipe, no offset", copy_file_range(pp[0], NULL, out, NULL, 10, 0));
    oi = 0;
    SHOW("from a pipe, offset", copy_file_range(pp[0], &oi, out, NULL, 10, 0));
    SHOW("to an O_APPEND file", copy_file_range(in, &oi, open("/tmp/copy", O_WRONLY | O_APPEND), NULL, 10, 0));
    SHOW("from a write-only fd", copy_file_range(open("/tmp/copy", O_WRONLY), &oi, out, NULL, 10, 0));
    oi = 0;
    oo = 4;
    SHOW("overlapping in one file", copy_file_range(out, &oi, out, &oo, 8, 0));
    oo = 30;
    SHOW("same file, apart", copy_file_range(out, &oi, out, &oo, 8, 0));
    SHOW("from a directory", copy_file_range(open("/data", O_RDONLY | O_DIRECTORY), &oi, out, NULL, 1, 0));
    SHOW("closed fd", copy_file_range(90, NULL, out, NULL, 1, 0));

    /* xattrs: only what every filesystem agrees on */
    SHOW("getxattr missing path", getxattr("/nonexistent", "user.x", buf, sizeof buf));
    SHOW("lgetxattr missing path", lgetxattr("/nonexistent", "user.x", buf, sizeof buf));
    SHOW("getxattr empty name", getxattr("/data/hello.txt", "", buf, sizeof buf));
    SHOW("fgetxattr closed fd", fgetxattr(91, "user.x", buf, sizeof buf));
    SHOW("listxattr missing path", listxattr("/nonexistent", buf, sizeof buf));
    SHOW("setxattr missing path", setxattr("/nonexistent", "user.x", "v", 1, 0));
    SHOW("removexattr missing path", removexattr("/nonexistent", "user.x"));
}

int main(void)
{
    eventfds();
    timerfds();
    signalfds();
    memfds();
    return 0;
}
