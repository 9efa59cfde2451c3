/* A signal arriving while the parent blocks in read(2) on a pipe: with SA_RESTART the
 * read resumes and returns the data; without it, read fails with EINTR. nanosleep is
 * interrupted either way (EINTR, remaining time written). A child sends the signal
 * after a pause long enough for the parent to be asleep. */
#include "common.h"
#include <signal.h>
#include <time.h>

static volatile sig_atomic_t hits;
static void on_usr1(int sig) { (void)sig; hits++; }

static void trial(int flags, const char *label)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = flags;
    sigaction(SIGUSR1, &sa, NULL);
    int p[2];
    pipe(p);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300 * 1000);
        kill(parent, SIGUSR1);
        usleep(300 * 1000);
        write(p[1], "data", 4);
        _exit(0);
    }
    hits = 0;
    char buf[8];
    errno = 0;
    ssize_t n = read(p[0], buf, sizeof buf);
    say("%s: read returned %zd (%s), handler ran %d\n", label, n, n < 0 ? ename(errno) : "data",
        hits);
    int st;
    waitpid(pid, &st, 0);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    trial(SA_RESTART, "SA_RESTART");
    trial(0, "no SA_RESTART");

    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300 * 1000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    struct timespec req = {5, 0}, rem = {0, 0};
    errno = 0;
    int r = nanosleep(&req, &rem);
    say("nanosleep 5s interrupted: %d (%s), remaining between 3s and 5s: %d\n", r, ename(errno),
        rem.tv_sec >= 3 && rem.tv_sec < 5);
    waitpid(pid, NULL, 0);
    return 0;
}
