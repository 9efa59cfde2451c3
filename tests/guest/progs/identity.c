/* Process identity and per-process settings: ids, uname, umask, rlimits, getrandom,
 * set_tid_address, arch_prctl (FS base), prctl names. */
#include "common.h"
#include <asm/prctl.h>
#include <stdint.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>

static __thread int tls_var = 7;

int main(void)
{
    pid_t pid = getpid();
    say("getpid > 0: %d\n", pid > 0);
    say("gettid == getpid: %d\n", (pid_t)syscall(SYS_gettid) == pid);
    say("getppid >= 0: %d\n", getppid() >= 0);
    say("uid=%d euid=%d gid=%d egid=%d\n", getuid(), geteuid(), getgid(), getegid());
    say("getpgid(0) > 0: %d, getsid(0) > 0: %d\n", getpgid(0) > 0, getsid(0) > 0);

    struct utsname u;
    CHECK("uname", uname(&u));
    say("sysname=%s machine=%s release starts with a digit: %d\n", u.sysname, u.machine,
        u.release[0] >= '0' && u.release[0] <= '9');

    umask(027);
    SHOW("umask(022) returns the old one (octal 27 = 23)", umask(022));
    SHOW("umask(07777) keeps only 0777", (umask(07777), umask(022)));

    /* resource limits */
    struct rlimit rl, old;
    CHECK("getrlimit NOFILE", getrlimit(RLIMIT_NOFILE, &rl));
    say("soft <= hard: %d\n", rl.rlim_cur <= rl.rlim_max);
    struct rlimit lower = {100, rl.rlim_max};
    CHECK("prlimit64 set soft 100", syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &lower, &old));
    say("old soft unchanged by the call: %d\n", old.rlim_cur == rl.rlim_cur);
    CHECK("getrlimit", getrlimit(RLIMIT_NOFILE, &rl));
    say("soft now %lu\n", (unsigned long)rl.rlim_cur);
    CHECK("dup2 to fd 150 (above soft limit)", dup2(1, 150));
    CHECK("dup2 to fd 50", dup2(1, 50));
    struct rlimit bad = {200, 100};
    CHECK("soft > hard", setrlimit(RLIMIT_NOFILE, &bad));
    CHECK("resource 99", syscall(SYS_prlimit64, 0, 99, NULL, &rl));
    CHECK("prlimit64 of a missing pid", syscall(SYS_prlimit64, 0x3fffffff, RLIMIT_NOFILE, NULL, &rl));
    CHECK("getrlimit STACK", getrlimit(RLIMIT_STACK, &rl));
    say("stack soft > 0: %d\n", rl.rlim_cur > 0);

    /* getrandom */
    unsigned char r1[32], r2[32];
    SHOW("getrandom 32", syscall(SYS_getrandom, r1, sizeof r1, 0));
    SHOW("getrandom 32 NONBLOCK", syscall(SYS_getrandom, r2, sizeof r2, 1));
    say("two draws differ: %d\n", memcmp(r1, r2, sizeof r1) != 0);
    SHOW("getrandom bad flags", syscall(SYS_getrandom, r1, 8, 0x100));
    SHOW("getrandom 0 bytes", syscall(SYS_getrandom, r1, 0, 0));

    /* set_tid_address returns the caller's tid */
    static int clear_me;
    say("set_tid_address == tid: %d\n", syscall(SYS_set_tid_address, &clear_me) == pid);

    /* arch_prctl: the FS base is the thread pointer, which TLS lives below */
    unsigned long fs = 0;
    CHECK("ARCH_GET_FS", syscall(SYS_arch_prctl, ARCH_GET_FS, &fs));
    unsigned long self;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(self));
    say("fs base == %%fs:0 self pointer: %d\n", fs != 0 && self == fs);
    say("TLS variable below the thread pointer: %d (value %d)\n",
        (uintptr_t)&tls_var < fs && fs - (uintptr_t)&tls_var < 4096, tls_var);
    CHECK("ARCH_SET_FS same value", syscall(SYS_arch_prctl, ARCH_SET_FS, fs));
    tls_var++;
    say("TLS still works: %d\n", tls_var);
    CHECK("arch_prctl bad code", syscall(SYS_arch_prctl, 0x9999, &fs));

    /* prctl name */
    char name[17] = {0};
    CHECK("PR_SET_NAME", prctl(PR_SET_NAME, "a-rather-long-name-here"));
    CHECK("PR_GET_NAME", prctl(PR_GET_NAME, name));
    say("name: %s\n", name);
    SHOW("PR_GET_DUMPABLE", prctl(PR_GET_DUMPABLE));
    SHOW("PR_GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    SHOW("PR_SET_NO_NEW_PRIVS", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    SHOW("PR_GET_NO_NEW_PRIVS", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
    SHOW("personality query", syscall(SYS_personality, 0xffffffff));
    SHOW("sched_yield", sched_yield());
    return 0;
}
