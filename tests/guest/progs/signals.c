/* Signals: SA_SIGINFO handlers on the user stack (and the alternate stack), masks,
 * pending sets, kill/tgkill to self, SIGCHLD, SIGPIPE default and ignored, restarts. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>

static volatile sig_atomic_t got_signo, got_code, got_pid_ok, hits;
static volatile uintptr_t handler_sp;
static volatile int chld_status = -1, chld_code;

static void on_info(int sig, siginfo_t *si, void *uc)
{
    char local;
    (void)uc;
    got_signo = si->si_signo;
    got_code = si->si_code;
    got_pid_ok = si->si_pid == getpid();
    handler_sp = (uintptr_t)&local;
    hits++;
    (void)sig;
}

static void on_chld(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    chld_code = si->si_code;
    chld_status = si->si_status;
}

static void on_plain(int sig) { (void)sig; hits++; }

static void install(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        die("sigaction");
}

static const char *code_name(int c)
{
    switch (c) {
    case SI_USER: return "SI_USER";
    case SI_TKILL: return "SI_TKILL";
    case SI_QUEUE: return "SI_QUEUE";
    case SI_KERNEL: return "SI_KERNEL";
    default: return "other";
    }
}

int main(void)
{
    char main_local;
    uintptr_t main_sp = (uintptr_t)&main_local;

    install(SIGUSR1, on_info, 0);
    SHOW("raise SIGUSR1", raise(SIGUSR1));
    say("handler ran: %d, si_signo %d, si_code %s, on the main stack: %d\n", hits == 1,
        got_signo, code_name(got_code), main_sp - handler_sp < 65536);
    SHOW("kill self SIGUSR1", kill(getpid(), SIGUSR1));
    say("si_code %s, si_pid is me: %d\n", code_name(got_code), got_pid_ok);
    SHOW("tgkill self", syscall(SYS_tgkill, getpid(), getpid(), SIGUSR1));
    say("si_code %s, hits %d\n", code_name(got_code), hits);
    SHOW("kill(pid, 0) probes", kill(getpid(), 0));
    SHOW("kill bad signal", kill(getpid(), 65));
    SHOW("kill missing pid", kill(0x3fffffff, SIGUSR1));
    SHOW("sigaction SIGKILL", sigaction(SIGKILL, &(struct sigaction){.sa_handler = on_plain}, NULL));
    SHOW("sigaction SIGSTOP", sigaction(SIGSTOP, &(struct sigaction){.sa_handler = on_plain}, NULL));
    SHOW("sigaction 0", syscall(SYS_rt_sigaction, 0, NULL, NULL, 8));
    SHOW("rt_sigaction bad sigsetsize", syscall(SYS_rt_sigaction, SIGUSR1, NULL, NULL, 4));
    struct sigaction cur;
    sigaction(SIGUSR1, NULL, &cur);
    say("old action reads back: SA_SIGINFO %d, handler same %d\n",
        !!(cur.sa_flags & SA_SIGINFO), cur.sa_sigaction == on_info);

    /* blocking: stays pending until unblocked, then delivered before sigprocmask returns */
    sigset_t set, old, pend;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    hits = 0;
    CHECK("block SIGUSR1", sigprocmask(SIG_BLOCK, &set, &old));
    raise(SIGUSR1);
    raise(SIGUSR1);   /* standard signals do not queue */
    sigpending(&pend);
    say("while blocked: hits %d, pending %d\n", hits, sigismember(&pend, SIGUSR1));
    CHECK("unblock", sigprocmask(SIG_SETMASK, &old, NULL));
    say("after unblock: hits %d\n", hits);
    sigprocmask(SIG_BLOCK, NULL, &old);
    say("mask now has SIGUSR1: %d\n", sigismember(&old, SIGUSR1));
    sigset_t killstop;
    sigemptyset(&killstop);
    sigaddset(&killstop, SIGKILL);
    sigaddset(&killstop, SIGSTOP);
    sigprocmask(SIG_BLOCK, &killstop, NULL);
    sigprocmask(SIG_BLOCK, NULL, &old);
    say("SIGKILL/SIGSTOP cannot be blocked: %d\n",
        !sigismember(&old, SIGKILL) && !sigismember(&old, SIGSTOP));
    SHOW("sigprocmask bad how", syscall(SYS_rt_sigprocmask, 99, &set, NULL, 8));

    /* real-time signals queue */
    struct sigaction rt = {0};
    rt.sa_handler = on_plain;
    sigaction(SIGRTMIN, &rt, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    hits = 0;
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGRTMIN);
    kill(getpid(), SIGRTMIN);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    say("3 queued SIGRTMIN delivered: %d\n", hits);

    /* sigsuspend with a pending signal */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    install(SIGUSR2, on_info, 0);
    hits = 0;
    kill(getpid(), SIGUSR2);
    sigset_t none;
    sigemptyset(&none);
    SHOW("sigsuspend", sigsuspend(&none));
    say("sigsuspend woke for the handler: %d, signo %d\n", hits, got_signo);
    sigprocmask(SIG_UNBLOCK, &set, NULL);

    /* the alternate signal stack */
    static char altstack[65536];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
    CHECK("sigaltstack", sigaltstack(&ss, NULL));
    install(SIGUSR1, on_info, SA_ONSTACK);
    raise(SIGUSR1);
    say("SA_ONSTACK handler on the alternate stack: %d\n",
        handler_sp >= (uintptr_t)altstack && handler_sp < (uintptr_t)altstack + sizeof altstack);
    install(SIGUSR1, on_info, 0);

    /* SA_RESETHAND: the second signal takes the default action (in a child) */
    pid_t pid = fork();
    if (pid == 0) {
        install(SIGUSR1, on_info, SA_RESETHAND);
        raise(SIGUSR1);
        say("child: first SIGUSR1 handled: %d\n", got_signo == SIGUSR1);
        raise(SIGUSR1);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    show_status("SA_RESETHAND child", st);

    /* SIGCHLD handler */
    install(SIGCHLD, on_chld, 0);
    pid = fork();
    if (pid == 0)
        _exit(5);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    while (chld_status < 0)
        sigsuspend(&old);
    sigprocmask(SIG_SETMASK, &old, NULL);
    say("SIGCHLD: si_code %s, si_status %d\n", chld_code == CLD_EXITED ? "CLD_EXITED" : "other",
        chld_status);
    waitpid(pid, &st, 0);
    show_status("SIGCHLD child", st);
    signal(SIGCHLD, SIG_DFL);

    /* SIGPIPE: default kills the writer; ignored gives EPIPE */
    int p[2];
    pipe(p);
    close(p[0]);
    pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        write(p[1], "x", 1);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    show_status("write to a closed pipe", st);
    signal(SIGPIPE, SIG_IGN);
    SHOW("with SIGPIPE ignored", write(p[1], "x", 1));
    close(p[1]);

    /* ignored and default-ignored signals do nothing */
    signal(SIGUSR2, SIG_IGN);
    SHOW("SIG_IGN SIGUSR2", raise(SIGUSR2));
    signal(SIGUSR2, SIG_DFL);
    SHOW("default SIGWINCH is ignored", raise(SIGWINCH));
    SHOW("default SIGURG is ignored", raise(SIGURG));

    /* the handler can change a variable the main flow then sees, and registers survive */
    volatile double d = 1.5;
    raise(SIGUSR1);
    say("floating point survives a handler: %.2f\n", d * 2);
    return 0;
}
