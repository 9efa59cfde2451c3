/* epoll: ctl rules, level/edge/oneshot, ready-list order, nesting, dup/close keying,
 * timeouts, blocking wake-ups and signals. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

static volatile int hits;
static void on_usr1(int s) { (void)s; hits++; }

static void show_wait(const char *label, int ep, int max, int timeout)
{
    struct epoll_event ev[8];
    errno = 0;
    int n = epoll_wait(ep, ev, max, timeout);
    if (n < 0) {
        say("%s = -1 %s\n", label, ename(errno));
        return;
    }
    say("%s = %d", label, n);
    for (int i = 0; i < n; i++)
        say(" [data %llu events %#x]", (unsigned long long)ev[i].data.u64, ev[i].events);
    say("\n");
}

static int ctl(int ep, int op, int fd, unsigned events, unsigned long long data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    return epoll_ctl(ep, op, fd, &ev);
}

int main(void)
{
    char buf[64];
    int p[2], q[2];
    pipe(p);
    pipe(q);

    /* ---- creation and ctl errors */
    SHOW("epoll_create(0)", epoll_create(0));
    SHOW("epoll_create1(1)", epoll_create1(1));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    say("epoll fd is the lowest free: %d, FD_CLOEXEC %d\n", ep, fcntl(ep, F_GETFD));
    SHOW("add pipe", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    SHOW("add again", ctl(ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1));
    SHOW("mod unregistered", ctl(ep, EPOLL_CTL_MOD, q[0], EPOLLIN, 1));
    SHOW("del unregistered", ctl(ep, EPOLL_CTL_DEL, q[0], 0, 0));
    SHOW("add itself", ctl(ep, EPOLL_CTL_ADD, ep, EPOLLIN, 1));
    int f = open("/data/hello.txt", O_RDONLY);
    SHOW("add regular file", ctl(ep, EPOLL_CTL_ADD, f, EPOLLIN, 1));
    SHOW("add directory", ctl(ep, EPOLL_CTL_ADD, open("/data", O_RDONLY | O_DIRECTORY), EPOLLIN, 1));
    SHOW("bad op", ctl(ep, 7, q[0], EPOLLIN, 1));
    SHOW("closed fd", ctl(ep, EPOLL_CTL_ADD, 60, EPOLLIN, 1));
    SHOW("closed epfd", ctl(61, EPOLL_CTL_ADD, q[0], EPOLLIN, 1));
    SHOW("epfd not an epoll", ctl(p[1], EPOLL_CTL_ADD, q[0], EPOLLIN, 1));
    SHOW("bad event pointer", epoll_ctl(ep, EPOLL_CTL_ADD, q[0], (struct epoll_event *)8));
    SHOW("del with NULL event", epoll_ctl(ep, EPOLL_CTL_DEL, q[0], NULL));
    SHOW("exclusive add", ctl(ep, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLEXCLUSIVE, 2));
    SHOW("exclusive mod", ctl(ep, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLEXCLUSIVE, 2));
    SHOW("mod of an exclusive entry", ctl(ep, EPOLL_CTL_MOD, q[0], EPOLLIN, 2));
    SHOW("del exclusive", ctl(ep, EPOLL_CTL_DEL, q[0], 0, 0));
    SHOW("exclusive + oneshot", ctl(ep, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 2));
    SHOW("wait maxevents 0", epoll_wait(ep, (struct epoll_event *)buf, 0, 0));
    SHOW("wait on a pipe", epoll_wait(p[0], (struct epoll_event *)buf, 1, 0));
    SHOW("wait on a closed fd", epoll_wait(62, (struct epoll_event *)buf, 1, 0));

    /* ---- level-triggered */
    show_wait("LT nothing yet", ep, 8, 0);
    write(p[1], "ab", 2);
    show_wait("LT after write", ep, 8, 0);
    show_wait("LT again", ep, 8, 0);
    read(p[0], buf, 2);
    show_wait("LT drained", ep, 8, 0);

    /* ---- edge-triggered */
    int et = epoll_create1(0);
    ctl(et, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLET, 7);
    show_wait("ET nothing", et, 8, 0);
    write(q[1], "ab", 2);
    show_wait("ET after write", et, 8, 0);
    show_wait("ET again", et, 8, 0);
    read(q[0], buf, 1);
    show_wait("ET after partial read", et, 8, 0);
    write(q[1], "c", 1);
    show_wait("ET after another write", et, 8, 0);
    ctl(et, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLET, 8);
    show_wait("ET after MOD (still readable)", et, 8, 0);
    read(q[0], buf, sizeof buf);

    /* ---- oneshot */
    ctl(et, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLONESHOT, 9);
    write(q[1], "d", 1);
    show_wait("ONESHOT first", et, 8, 0);
    show_wait("ONESHOT second", et, 8, 0);
    write(q[1], "e", 1);
    show_wait("ONESHOT after another write", et, 8, 0);
    ctl(et, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLONESHOT, 10);
    show_wait("ONESHOT re-armed", et, 8, 0);
    read(q[0], buf, sizeof buf);

    /* ---- ready-list order and maxevents */
    int order = epoll_create1(0);
    int a[2], b[2], c[2];
    pipe(a); pipe(b); pipe(c);
    ctl(order, EPOLL_CTL_ADD, a[0], EPOLLIN, 100);
    ctl(order, EPOLL_CTL_ADD, b[0], EPOLLIN, 200);
    ctl(order, EPOLL_CTL_ADD, c[0], EPOLLIN, 300);
    write(c[1], "x", 1);
    write(a[1], "x", 1);
    write(b[1], "x", 1);
    show_wait("three ready", order, 8, 0);
    show_wait("one at a time", order, 1, 0);
    show_wait("one at a time", order, 1, 0);
    show_wait("one at a time", order, 1, 0);
    show_wait("one at a time", order, 1, 0);

    /* ---- hang-ups and EPOLLOUT */
    int h[2];
    pipe(h);
    int he = epoll_create1(0);
    ctl(he, EPOLL_CTL_ADD, h[0], EPOLLIN, 1);
    ctl(he, EPOLL_CTL_ADD, h[1], EPOLLOUT, 2);
    show_wait("write end writable", he, 8, 0);
    fcntl(h[1], F_SETFL, O_NONBLOCK);
    static char big[65536];
    long total = 0;
    ssize_t n;
    while ((n = write(h[1], big, sizeof big)) > 0)
        total += n;
    say("pipe took %ld bytes\n", total);
    show_wait("pipe full", he, 8, 0);
    while (read(h[0], big, sizeof big) == sizeof big && total > 65536)
        total -= 65536;
    show_wait("drained", he, 8, 0);
    ctl(he, EPOLL_CTL_DEL, h[1], 0, 0);
    close(h[1]);
    show_wait("writer closed", he, 8, 0);

    /* ---- nesting */
    int inner = epoll_create1(0), outer = epoll_create1(0);
    int d[2];
    pipe(d);
    ctl(inner, EPOLL_CTL_ADD, d[0], EPOLLIN, 11);
    SHOW("add inner to outer", ctl(outer, EPOLL_CTL_ADD, inner, EPOLLIN, 22));
    SHOW("add outer to inner (loop)", ctl(inner, EPOLL_CTL_ADD, outer, EPOLLIN, 33));
    SHOW("exclusive on an epoll", ctl(order, EPOLL_CTL_ADD, inner, EPOLLIN | EPOLLEXCLUSIVE, 1));
    show_wait("outer idle", outer, 8, 0);
    write(d[1], "x", 1);
    show_wait("outer", outer, 8, 0);
    show_wait("inner", inner, 8, 0);
    struct pollfd pf = {.fd = inner, .events = POLLIN};
    SHOW("poll on the inner epoll", poll(&pf, 1, 0));
    say("revents %#x\n", pf.revents);
    int chain[7];
    chain[0] = epoll_create1(0);
    for (int i = 1; i < 7; i++) {
        chain[i] = epoll_create1(0);
        errno = 0;
        int r = ctl(chain[i], EPOLL_CTL_ADD, chain[i - 1], EPOLLIN, i);
        say("nest level %d: %s\n", i, r ? ename(errno) : "ok");
    }

    /* ---- keyed by (fd, file): a dup keeps the entry after close */
    int k[2];
    pipe(k);
    int ke = epoll_create1(0);
    ctl(ke, EPOLL_CTL_ADD, k[0], EPOLLIN, 44);
    int dupfd = dup(k[0]);
    close(k[0]);
    write(k[1], "x", 1);
    show_wait("after closing the registered fd (dup alive)", ke, 8, 0);
    SHOW("del via the closed fd", ctl(ke, EPOLL_CTL_DEL, k[0], 0, 0));
    SHOW("del via the dup", ctl(ke, EPOLL_CTL_DEL, dupfd, 0, 0));
    int again = dup2(dupfd, k[0]);
    SHOW("same fd number, re-added", ctl(ke, EPOLL_CTL_ADD, again, EPOLLIN, 45));
    SHOW("the dup can be added too", ctl(ke, EPOLL_CTL_ADD, dupfd, EPOLLIN, 46));
    show_wait("both", ke, 8, 0);
    close(dupfd);
    close(again);
    show_wait("all closed", ke, 8, 0);

    /* ---- blocking */
    struct timespec t0, t1;
    int e[2];
    pipe(e);
    int be = epoll_create1(0);
    ctl(be, EPOLL_CTL_ADD, e[0], EPOLLIN, 55);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    show_wait("60ms timeout", be, 8, 60);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    say("waited >= 50ms: %d\n", ms >= 50);
    pid_t pid = later(50, e[1], 0);
    show_wait("woken by a writer", be, 8, 5000);
    waitpid(pid, NULL, 0);
    read(e[0], buf, sizeof buf);
    pid = later(50, e[1], 0);
    show_wait("ET woken by a writer", et, 8, 0);
    ctl(et, EPOLL_CTL_ADD, e[0], EPOLLIN | EPOLLET, 56);
    show_wait("ET blocking", et, 8, 5000);
    waitpid(pid, NULL, 0);
    read(e[0], buf, sizeof buf);

    struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
    sigaction(SIGUSR1, &sa, NULL);
    pid = later(50, -1, SIGUSR1);
    show_wait("interrupted (SA_RESTART does not restart epoll_wait)", be, 8, -1);
    say("hits %d\n", hits);
    waitpid(pid, NULL, 0);
    sigset_t blk, empty, now;
    sigemptyset(&blk);
    sigaddset(&blk, SIGUSR1);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &blk, NULL);
    pid = later(50, -1, SIGUSR1);
    struct epoll_event ev;
    SHOW("epoll_pwait with SIGUSR1 unblocked", epoll_pwait(be, &ev, 1, 5000, &empty));
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("hits %d, blocked again %d\n", hits, sigismember(&now, SIGUSR1));
    waitpid(pid, NULL, 0);
    struct timespec ts = {0, 20000000};
    SHOW("epoll_pwait2 20ms", syscall(SYS_epoll_pwait2, be, &ev, 1, &ts, NULL, 8));
    ts.tv_nsec = 1000000000;
    SHOW("epoll_pwait2 bad timespec", syscall(SYS_epoll_pwait2, be, &ev, 1, &ts, NULL, 8));
    SHOW("epoll_pwait bad sigset size", syscall(SYS_epoll_pwait, be, &ev, 1, 0, &empty, 4));
    write(e[1], "x", 1);
    SHOW("events win over a pending signal", epoll_pwait(be, &ev, 1, 0, &empty));
    say("hits %d\n", hits);
    return 0;
}
