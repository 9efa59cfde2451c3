/* poll, ppoll, select, pselect6: readiness, POLLNVAL/EBADF, timeouts written back,
 * signal interruption and the temporary signal mask. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <time.h>

static volatile int hits;
static void on_usr1(int s) { (void)s; hits++; }

static long ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static void reap(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
}

int main(void)
{
    int p[2];
    pipe(p);
    struct pollfd fds[4];
    struct timespec t0;

    /* ---- poll basics */
    fds[0] = (struct pollfd){.fd = p[0], .events = POLLIN};
    fds[1] = (struct pollfd){.fd = p[1], .events = POLLIN | POLLOUT};
    fds[2] = (struct pollfd){.fd = 50, .events = POLLIN};
    fds[3] = (struct pollfd){.fd = -1, .events = POLLIN, .revents = 77};
    SHOW("poll empty pipe", poll(fds, 4, 0));
    say("revents: %#x %#x %#x %#x\n", fds[0].revents, fds[1].revents, fds[2].revents,
        fds[3].revents);
    write(p[1], "ab", 2);
    SHOW("poll after write", poll(fds, 2, 0));
    say("revents: %#x %#x\n", fds[0].revents, fds[1].revents);
    fds[0].events = 0;
    SHOW("poll with events 0", poll(fds, 1, 0));
    say("revents: %#x\n", fds[0].revents);

    int f = open("/data/hello.txt", O_RDONLY);
    struct pollfd rf = {.fd = f, .events = POLLIN | POLLOUT | POLLPRI};
    SHOW("poll regular file", poll(&rf, 1, 0));
    say("revents: %#x\n", rf.revents);
    close(f);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd none = {.fd = p[0], .events = POLLOUT};
    int q[2];
    pipe(q);
    none.fd = q[0];
    none.events = POLLIN;
    SHOW("poll 60ms timeout", poll(&none, 1, 60));
    long el = ms_since(&t0);
    say("waited >= 50ms: %d, < 2s: %d\n", el >= 50, el < 2000);

    pid_t c = later(50, q[1], 0);
    SHOW("poll woken by a writer", poll(&none, 1, 5000));
    say("revents: %#x\n", none.revents);
    reap(c);
    char buf[16];
    read(q[0], buf, sizeof buf);

    /* hang-ups */
    close(q[1]);
    SHOW("poll after writer closed", poll(&none, 1, 0));
    say("revents: %#x\n", none.revents);
    close(q[0]);
    struct pollfd w = {.fd = p[1], .events = POLLOUT};
    int r[2];
    pipe(r);
    w.fd = r[1];
    close(r[0]);
    SHOW("poll write end, reader gone", poll(&w, 1, 0));
    say("revents: %#x\n", w.revents);
    close(r[1]);

    /* nfds over RLIMIT_NOFILE */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    struct rlimit low = {64, rl.rlim_max};
    setrlimit(RLIMIT_NOFILE, &low);
    static struct pollfd many[65];
    for (int i = 0; i < 65; i++)
        many[i] = (struct pollfd){.fd = -1};
    SHOW("poll 64 fds at limit 64", poll(many, 64, 0));
    SHOW("poll 65 fds at limit 64", poll(many, 65, 0));
    setrlimit(RLIMIT_NOFILE, &rl);
    SHOW("poll bad pointer", syscall(SYS_poll, 8, 1, 0));

    /* ---- select */
    fd_set rs, ws, es;
    FD_ZERO(&rs); FD_ZERO(&ws); FD_ZERO(&es);
    FD_SET(p[0], &rs);
    FD_SET(p[1], &ws);
    FD_SET(p[0], &es);
    struct timeval tv = {0, 0};
    SHOW("select ready", select(p[1] + 1, &rs, &ws, &es, &tv));
    say("read set has p0: %d, write set has p1: %d, except set has p0: %d\n",
        FD_ISSET(p[0], &rs), FD_ISSET(p[1], &ws), FD_ISSET(p[0], &es));
    read(p[0], buf, sizeof buf);
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv = (struct timeval){0, 80000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    SHOW("select 80ms on an empty pipe", select(p[0] + 1, &rs, NULL, NULL, &tv));
    el = ms_since(&t0);
    say("waited >= 70ms: %d; timeout left %ld.%06ld; read set has p0: %d\n", el >= 70,
        (long)tv.tv_sec, (long)tv.tv_usec, FD_ISSET(p[0], &rs));
    FD_SET(p[0], &rs);
    tv = (struct timeval){5, 0};
    c = later(30, p[1], 0);
    SHOW("select woken by a writer", select(p[0] + 1, &rs, NULL, NULL, &tv));
    say("time left between 3s and 5s: %d\n", tv.tv_sec >= 3 && tv.tv_sec < 5);
    reap(c);
    read(p[0], buf, sizeof buf);
    FD_ZERO(&rs);
    FD_SET(40, &rs);
    tv = (struct timeval){0, 0};
    SHOW("select closed fd", select(41, &rs, NULL, NULL, &tv));
    SHOW("select n = -1", select(-1, NULL, NULL, NULL, &tv));
    tv = (struct timeval){0, -1};
    SHOW("select usec -1", select(0, NULL, NULL, NULL, &tv));
    tv = (struct timeval){-1, 0};
    SHOW("select sec -1", select(0, NULL, NULL, NULL, &tv));
    tv = (struct timeval){0, 1000000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    SHOW("select usec 1000000 (normalised to 1s)", select(0, NULL, NULL, NULL, &tv));
    el = ms_since(&t0);
    say("waited >= 900ms: %d; left %ld.%06ld\n", el >= 900, (long)tv.tv_sec, (long)tv.tv_usec);
    SHOW("select bad set pointer", select(1, (fd_set *)8, NULL, NULL, NULL));

    /* ---- signals: handler without and with SA_RESTART, temporary masks */
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    c = later(50, -1, SIGUSR1);
    SHOW("poll interrupted by a handler", poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, -1));
    say("hits %d\n", hits);
    reap(c);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    c = later(50, -1, SIGUSR1);
    SHOW("poll interrupted, SA_RESTART", poll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, 5000));
    say("hits %d\n", hits);
    reap(c);
    c = later(50, -1, SIGUSR1);
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    tv = (struct timeval){5, 0};
    SHOW("select interrupted, SA_RESTART", select(p[0] + 1, &rs, NULL, NULL, &tv));
    say("hits %d, time left between 3s and 5s: %d, read set kept p0: %d\n", hits,
        tv.tv_sec >= 3 && tv.tv_sec < 5, FD_ISSET(p[0], &rs));
    reap(c);

    sigset_t block, empty, now;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigemptyset(&empty);
    sigprocmask(SIG_BLOCK, &block, NULL);
    c = later(50, -1, SIGUSR1);
    struct timespec ts = {5, 0};
    SHOW("ppoll with SIGUSR1 unblocked", ppoll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, &ts, &empty));
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("hits %d, SIGUSR1 blocked again: %d, time left between 3s and 5s: %d\n", hits,
        sigismember(&now, SIGUSR1), ts.tv_sec >= 3 && ts.tv_sec < 5);
    reap(c);
    c = later(50, -1, SIGUSR1);
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    ts = (struct timespec){5, 0};
    SHOW("pselect with SIGUSR1 unblocked", pselect(p[0] + 1, &rs, NULL, NULL, &ts, &empty));
    sigprocmask(SIG_BLOCK, NULL, &now);
    say("hits %d, SIGUSR1 blocked again: %d\n", hits, sigismember(&now, SIGUSR1));
    reap(c);
    /* a signal that stays blocked does not interrupt */
    kill(getpid(), SIGUSR1);
    ts = (struct timespec){0, 30000000};
    SHOW("ppoll, SIGUSR1 pending but blocked", ppoll(&(struct pollfd){.fd = p[0], .events = POLLIN}, 1, &ts, &block));
    say("hits %d\n", hits);
    SHOW("ppoll bad sigset size", syscall(SYS_ppoll, NULL, 0, &ts, &empty, 4));
    ts = (struct timespec){0, 1000000000};
    SHOW("ppoll nsec 1e9", ppoll(NULL, 0, &ts, NULL));
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    say("hits after unblock %d\n", hits);
    /* pselect6's sixth argument: {sigset pointer, size} */
    struct { const sigset_t *ss; size_t len; } pack = {&empty, 4};
    ts = (struct timespec){0, 0};
    SHOW("pselect6 sigset size 4", syscall(SYS_pselect6, 0, NULL, NULL, NULL, &ts, &pack));
    pack.ss = NULL;
    SHOW("pselect6 NULL sigset, size 4", syscall(SYS_pselect6, 0, NULL, NULL, NULL, &ts, &pack));
    return 0;
}
