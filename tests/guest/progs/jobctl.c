/* Job control without a terminal: process groups as kill and wait targets, stopped
 * and continued children reported once to WUNTRACED / WCONTINUED, SIGSTOP really
 * stopping until SIGCONT (even inside a blocking read, which then resumes), and the
 * errors of setpgid. Every fact is printed relative to pids, never a pid itself. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>

static void status(const char *label, int st)
{
    if (WIFSTOPPED(st))
        say("%s: stopped by %s\n", label, sigabbrev_np(WSTOPSIG(st)));
    else if (WIFCONTINUED(st))
        say("%s: continued (%#x)\n", label, st);
    else
        show_status(label, st);
}

/* A child that pauses until killed, in process group ``pg`` (0: its own, -1: ours). */
static pid_t sleeper(pid_t pg)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (pg >= 0)
            setpgid(0, pg);
        for (;;)
            pause();
    }
    if (pg >= 0)
        setpgid(pid, pg ? pg : pid);    /* both sides, as shells do: no race */
    return pid;
}

static void groups_as_targets(void)
{
    pid_t a1 = sleeper(0);
    pid_t a2 = sleeper(a1);
    pid_t b = sleeper(-1);
    say("a2 joined a1's group: %d, b in ours: %d\n", getpgid(a2) == a1, getpgid(b) == getpgrp());
    SHOW("kill(-a1, 0)", kill(-a1, 0));
    SHOW("kill(-(unused group), 0)", kill(-(a1 + 100000 > 4000000 ? 3999999 : a1 + 100000), 0));
    SHOW("waitpid(-a1, WNOHANG) while alive", waitpid(-a1, NULL, WNOHANG));
    SHOW("kill(-a1, SIGTERM)", kill(-a1, SIGTERM));
    int st;
    for (int i = 0; i < 2; i++) {
        pid_t got = waitpid(-a1, &st, 0);
        say("waitpid(-a1) got a member: %d\n", got == a1 || got == a2);
        status("  member", st);
    }
    SHOW("waitpid(-a1) again", waitpid(-a1, &st, 0));
    pid_t got = waitpid(0, &st, WNOHANG);
    say("waitpid(0, WNOHANG) with b alive: %d\n", got);
    kill(b, SIGKILL);
    got = waitpid(0, &st, 0);
    say("waitpid(0) got b: %d\n", got == b);
    status("  b", st);

    /* kill(0, sig): everyone in the sender's group, the sender included */
    pid_t leader = fork();
    if (leader == 0) {
        setpgid(0, 0);
        pid_t c1 = sleeper(-1), c2 = sleeper(-1);
        signal(SIGUSR1, SIG_IGN);
        SHOW("kill(0, SIGUSR1) from a group leader", kill(0, SIGUSR1));
        int s1, s2;
        waitpid(c1, &s1, 0);
        waitpid(c2, &s2, 0);
        status("  group member 1", s1);
        status("  group member 2", s2);
        _exit(0);
    }
    waitpid(leader, &st, 0);
    status("leader", st);
}

static void stop_and_continue(void)
{
    int st;
    pid_t c = sleeper(-1);
    kill(c, SIGSTOP);
    pid_t got = waitpid(c, &st, WUNTRACED);
    say("WUNTRACED reports the stop: %d\n", got == c);
    status("  child", st);
    SHOW("reported once (WUNTRACED|WNOHANG)", waitpid(c, &st, WUNTRACED | WNOHANG));
    SHOW("a stop is not an exit (WNOHANG)", waitpid(c, &st, WNOHANG));
    kill(c, SIGCONT);
    got = waitpid(c, &st, WCONTINUED);
    say("WCONTINUED reports it: %d\n", got == c);
    status("  child", st);
    SHOW("reported once (WCONTINUED|WNOHANG)", waitpid(c, &st, WCONTINUED | WNOHANG));
    /* our group is orphaned (no member's parent is in another group of our
     * session): the terminal stop signals do nothing there, SIGSTOP still works */
    kill(c, SIGTSTP);
    usleep(200 * 1000);
    say("SIGTSTP stopped a child in an orphaned group: %d\n",
        waitpid(c, &st, WUNTRACED | WNOHANG) == c);
    pid_t own = sleeper(0);
    kill(own, SIGTSTP);
    waitpid(own, &st, WUNTRACED);
    status("SIGTSTP in a child's own group", st);
    kill(own, SIGKILL);
    waitpid(own, &st, 0);
    siginfo_t si = {0};
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    kill(c, SIGCONT);
    waitid(P_PID, c, &si, WCONTINUED);
    say("waitid WCONTINUED: code CLD_CONTINUED %d, status %s\n", si.si_code == CLD_CONTINUED,
        sigabbrev_np(si.si_status));
    kill(c, SIGSTOP);
    memset(&si, 0, sizeof si);
    waitid(P_PID, c, &si, WSTOPPED | WNOWAIT);
    say("waitid WSTOPPED|WNOWAIT: code CLD_STOPPED %d, status %s\n", si.si_code == CLD_STOPPED,
        sigabbrev_np(si.si_status));
    got = waitpid(c, &st, WUNTRACED | WNOHANG);
    say("still reportable after WNOWAIT: %d\n", got == c);
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    status("stopped child sent SIGKILL", st);
}

/* A child writes a byte every 10 ms: none may come while it is stopped. */
static void stop_really_stops(void)
{
    int p[2];
    pipe(p);
    pid_t c = fork();
    if (c == 0) {
        close(p[0]);
        for (;;) {
            write(p[1], "t", 1);
            usleep(10 * 1000);
        }
    }
    close(p[1]);
    char buf[4096];
    read(p[0], buf, 1);
    int st;
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    while (read(p[0], buf, sizeof buf) > 0)
        ;
    usleep(300 * 1000);
    SHOW("read while the writer is stopped", read(p[0], buf, sizeof buf));
    kill(c, SIGCONT);
    fcntl(p[0], F_SETFL, 0);
    SHOW("read after SIGCONT", read(p[0], buf, 1));
    kill(c, SIGKILL);
    waitpid(c, &st, 0);
    close(p[0]);

    /* stopped in the middle of a blocking read: it resumes, no EINTR */
    int q[2];
    pipe(q);
    c = fork();
    if (c == 0) {
        close(q[1]);
        char ch;
        ssize_t n = read(q[0], &ch, 1);
        _exit(n == 1 ? ch - '0' : 100 + errno);
    }
    close(q[0]);
    usleep(100 * 1000);
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    status("reader", st);
    kill(c, SIGCONT);
    waitpid(c, &st, WCONTINUED);
    write(q[1], "7", 1);
    waitpid(c, &st, 0);
    status("reader after SIGCONT and a byte", st);
    close(q[1]);

    /* a sleep stopped and continued goes on to its end: no EINTR */
    c = fork();
    if (c == 0) {
        struct timespec ts = {0, 400 * 1000 * 1000};
        int r = nanosleep(&ts, NULL);
        _exit(r == 0 ? 0 : 100 + errno);
    }
    usleep(100 * 1000);
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    kill(c, SIGCONT);
    waitpid(c, &st, 0);
    status("nanosleep stopped and continued", st);
}

/* A thread of a stopped process, asleep in read, must not take data that comes
 * while the process is stopped: the whole process stops, its calls resume later. */
static int tq[2];
static void *reader_thread(void *arg)
{
    (void)arg;
    char ch;
    ssize_t n = read(tq[0], &ch, 1);
    _exit(n == 1 ? ch - '0' : 100 + errno);
}

static void threads_stop_too(void)
{
    pipe(tq);
    pid_t c = fork();
    if (c == 0) {
        pthread_t th;
        pthread_create(&th, NULL, reader_thread, NULL);
        for (;;)
            pause();
    }
    usleep(200 * 1000);
    int st;
    kill(c, SIGSTOP);
    waitpid(c, &st, WUNTRACED);
    status("two-thread process", st);
    write(tq[1], "5", 1);
    usleep(300 * 1000);
    int left = -1;
    ioctl(tq[0], FIONREAD, &left);
    say("bytes left in the pipe while it is stopped: %d\n", left);
    kill(c, SIGCONT);
    waitpid(c, &st, 0);
    status("two-thread process after SIGCONT", st);
    close(tq[0]);
    close(tq[1]);
}

static void group_stop_and_continue(void)
{
    pid_t a = sleeper(0), b = sleeper(a);
    int st, n = 0;
    kill(-a, SIGSTOP);
    for (int i = 0; i < 2; i++)
        if (waitpid(-a, &st, WUNTRACED) > 0 && WIFSTOPPED(st))
            n++;
    say("group stopped: %d of 2\n", n);
    kill(-a, SIGCONT);
    n = 0;
    for (int i = 0; i < 2; i++)
        if (waitpid(-a, &st, WCONTINUED) > 0 && WIFCONTINUED(st))
            n++;
    say("group continued: %d of 2\n", n);
    kill(-a, SIGKILL);
    waitpid(a, &st, 0);
    waitpid(b, &st, 0);
    status("group killed", st);
}

/* A "shell" (a session leader) leaves a stopped job behind: its group is orphaned,
 * so the kernel sends it SIGHUP then SIGCONT. We are the subreaper that inherits it
 * (natively by prctl; under quark we are init). */
static void orphaned_stopped_job(void)
{
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    int p[2];
    pipe(p);
    pid_t shell = fork();
    if (shell == 0) {
        setsid();
        pid_t job = sleeper(0);
        int st;
        kill(job, SIGSTOP);
        waitpid(job, &st, WUNTRACED);
        write(p[1], &job, sizeof job);
        _exit(0);
    }
    pid_t job;
    read(p[0], &job, sizeof job);
    int st;
    waitpid(shell, &st, 0);
    status("shell", st);
    pid_t got = 0;
    for (int i = 0; i < 300 && got == 0; i++) {
        got = waitpid(job, &st, WNOHANG);
        if (got == 0)
            usleep(10 * 1000);
    }
    if (got == job) {
        status("orphaned stopped job", st);
    } else {
        say("orphaned stopped job: still there\n");
        kill(job, SIGKILL);
        waitpid(job, &st, 0);
    }
    close(p[0]);
    close(p[1]);
}

static void setpgid_errors(const char *self)
{
    SHOW("setpgid(-1, 0)", setpgid(-1, 0));
    SHOW("setpgid(0, -1)", setpgid(0, -1));
    SHOW("setpgid(no such pid)", setpgid(3999999, 0));
    SHOW("getpgid(no such pid)", getpgid(3999999));
    SHOW("kill(no such pid, 0)", kill(3999999, 0));

    int go[2], ready[2];
    pipe(go);
    pipe(ready);
    pid_t c = fork();
    if (c == 0) {
        setsid();
        write(ready[1], "s", 1);
        char ch;
        read(go[0], &ch, 1);
        _exit(0);
    }
    char ch;
    read(ready[0], &ch, 1);
    SHOW("setpgid(child in another session)", setpgid(c, c));
    SHOW("setpgid(0, the other session's group)", setpgid(0, c));
    write(go[1], "g", 1);
    int st;
    waitpid(c, &st, 0);

    /* a child that exec'd: EACCES */
    c = fork();
    if (c == 0) {
        dup2(ready[1], 3);
        execl(self, self, "exec-child", (char *)NULL);
        _exit(127);
    }
    read(ready[0], &ch, 1);
    SHOW("setpgid(child after exec)", setpgid(c, c));
    kill(c, SIGKILL);
    waitpid(c, &st, 0);

    /* not our child: ESRCH, from a process that is no session leader */
    pid_t me = getpid();
    c = fork();
    if (c == 0) {
        SHOW("child: setpgid(parent, 0)", setpgid(me, 0));
        SHOW("child: setpgid(0, parent's group)", setpgid(0, getpgid(me)));
        SHOW("child: setpgid(0, no such group)", setpgid(0, 3999999));
        SHOW("child: setpgid(0, 0)", setpgid(0, 0));
        say("child: leads its group: %d\n", getpgrp() == getpid());
        SHOW("child: setsid as a group leader", setsid());
        _exit(0);
    }
    waitpid(c, &st, 0);
    SHOW("setpgid(0, 0) as a session leader", setpgid(0, 0));
    close(go[0]); close(go[1]); close(ready[0]); close(ready[1]);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0) {
        write(3, "e", 1);
        for (;;)
            pause();
    }
    say("session leader: %d, group leader: %d\n", getsid(0) == getpid(), getpgrp() == getpid());
    groups_as_targets();
    stop_and_continue();
    stop_really_stops();
    threads_stop_too();
    group_stop_and_continue();
    orphaned_stopped_job();
    setpgid_errors(argv[0]);
    return 0;
}
