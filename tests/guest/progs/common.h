/* Helpers shared by the guest test programs. Everything printed must be the same
 * natively (in a chroot of the same rootfs) and under quark: no addresses, inode
 * numbers, timestamps or host-dependent values, only facts about them. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

/* printf + flush: output stays ordered across fork and abrupt deaths. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
__attribute__((unused)) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

__attribute__((unused)) static const char *ename(int e)
{
    const char *n = e ? strerrorname_np(e) : "OK";
    return n ? n : "E?";
}

/* "name = value" or "name = -1 ENAME" for a call returning -1/errno. */
#define SHOW(label, expr) do { \
    errno = 0; \
    long _r = (long)(expr); \
    if (_r < 0) say("%s = %ld %s\n", label, _r, ename(errno)); \
    else say("%s = %ld\n", label, _r); \
} while (0)

/* Only whether the call failed and how. */
#define CHECK(label, expr) do { \
    errno = 0; \
    long _r = (long)(expr); \
    if (_r < 0) say("%s: %s\n", label, ename(errno)); \
    else say("%s: ok\n", label); \
} while (0)

/* How a child ended, as a shell would report it. */
__attribute__((unused)) static void show_status(const char *label, int st)
{
    if (WIFEXITED(st))
        say("%s: exited %d\n", label, WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        say("%s: killed by %s (shell: %d)\n", label, sigabbrev_np(WTERMSIG(st)),
            128 + WTERMSIG(st));
    else
        say("%s: status %#x\n", label, st);
}

__attribute__((unused)) static void die(const char *what)
{
    say("FATAL %s: %s\n", what, ename(errno));
    exit(99);
}

/* A child that sleeps `ms`, then writes one byte to `fd` (if >= 0) and sends `sig` to
 * the parent (if nonzero): something to wake a blocked call from outside. */
__attribute__((unused)) static pid_t later(int ms, int fd, int sig)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        usleep(ms * 1000);
        if (fd >= 0)
            write(fd, "x", 1);
        if (sig)
            kill(parent, sig);
        _exit(0);
    }
    return pid;
}

/* /tmp and /dev/shm exist (a bare rootfs has neither): the two filesystems the
 * programs run their file cases on, the host's rootfs and tmpfs. */
__attribute__((unused)) static void make_scratch_dirs(void)
{
    mkdir("/tmp", 01777);
    mkdir("/dev", 0755);
    mkdir("/dev/shm", 01777);
}
