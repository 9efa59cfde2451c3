/* Advisory locks (fs/locks.c). flock(2): owned by the open file description (dup and
 * fork share it, another open() conflicts), released at its last close, a failed
 * conversion loses the old lock. fcntl record locks: owned by the process, ranges
 * split and merged, F_GETLK reports the first conflict, closing ANY fd of the file
 * drops them, fork does not inherit them, EDEADLK for a two-process cycle. OFD locks:
 * owned by the open file, l_pid -1. Waits end when the holder unlocks, closes or exits,
 * and on a signal (EINTR, or a restart under SA_RESTART). Run in /tmp (the rootfs)
 * and /dev/shm. Synchronised with pipes: a holder leaves a mark before it lets go, so
 * a waiter that finds the mark waited for it. */
#include "common.h"
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>

static char path[64];
static volatile sig_atomic_t hits;
static int alarm_pipe = -1;

static void on_alarm(int sig)
{
    (void)sig;
    hits++;
    if (alarm_pipe >= 0)
        write(alarm_pipe, "a", 1);
}

static int open_file(int flags)
{
    int fd = open(path, flags | O_CREAT, 0644);
    if (fd < 0)
        die("open");
    return fd;
}

static int setlk(int fd, int cmd, short type, short whence, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

static const char *tname(short type)
{
    return type == F_RDLCK ? "F_RDLCK" : type == F_WRLCK ? "F_WRLCK" :
           type == F_UNLCK ? "F_UNLCK" : "F_?";
}

/* F_GETLK/F_OFD_GETLK: the reported lock, its owner shown relative to `holder`. */
static void getlk(const char *label, int fd, int cmd, short type, short whence,
                  off_t start, off_t len, pid_t holder)
{
    struct flock fl = {.l_type = type, .l_whence = whence, .l_start = start, .l_len = len};
    errno = 0;
    if (fcntl(fd, cmd, &fl) < 0) {
        say("%s = -1 %s\n", label, ename(errno));
        return;
    }
    if (fl.l_type == F_UNLCK) {
        say("%s: F_UNLCK, whence %d start %lld len %lld kept\n", label, fl.l_whence,
            (long long)fl.l_start, (long long)fl.l_len);
        return;
    }
    say("%s: %s whence %d start %lld len %lld pid %s\n", label, tname(fl.l_type),
        fl.l_whence, (long long)fl.l_start, (long long)fl.l_len,
        fl.l_pid == -1 ? "-1" : fl.l_pid == holder ? "of the holder" : "other");
}

static int marked(int fd)
{
    char c;
    return read(fd, &c, 1) == 1;
}

static void wait_byte(int fd)
{
    char c;
    if (read(fd, &c, 1) != 1)
        die("read sync");
}

static void reap(const char *label, pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    show_status(label, st);
}

static void flock_basics(void)
{
    int a = open_file(O_RDWR), b = open_file(O_RDWR);
    SHOW("flock(a, EX)", flock(a, LOCK_EX));
    SHOW("flock(b, EX|NB), another open", flock(b, LOCK_EX | LOCK_NB));
    SHOW("flock(b, SH|NB)", flock(b, LOCK_SH | LOCK_NB));
    int d = dup(a);
    SHOW("flock(dup of a, EX|NB)", flock(d, LOCK_EX | LOCK_NB));
    SHOW("flock(dup of a, UN)", flock(d, LOCK_UN));
    SHOW("flock(b, EX|NB) after the dup unlocked", flock(b, LOCK_EX | LOCK_NB));
    SHOW("flock(b, UN)", flock(b, LOCK_UN));
    SHOW("flock(b, UN) again", flock(b, LOCK_UN));

    SHOW("flock(a, EX) before fork", flock(a, LOCK_EX));
    pid_t pid = fork();
    if (pid == 0) {
        SHOW("  child: flock(inherited a, EX|NB)", flock(a, LOCK_EX | LOCK_NB));
        SHOW("  child: flock(b, SH|NB)", flock(b, LOCK_SH | LOCK_NB));
        _exit(0);
    }
    reap("  child", pid);
    SHOW("flock(b, EX|NB) after the child left", flock(b, LOCK_EX | LOCK_NB));
    close(a);
    SHOW("flock(b, EX|NB) with the dup still open", flock(b, LOCK_EX | LOCK_NB));
    close(d);
    SHOW("flock(b, EX|NB) after the last close", flock(b, LOCK_EX | LOCK_NB));
    SHOW("flock(b, SH) converts", flock(b, LOCK_SH));
    a = open_file(O_RDONLY);
    SHOW("flock(a, SH|NB) O_RDONLY", flock(a, LOCK_SH | LOCK_NB));
    SHOW("flock(a, EX|NB) upgrade against b's SH", flock(a, LOCK_EX | LOCK_NB));
    SHOW("flock(b, EX|NB): a lost its SH", flock(b, LOCK_EX | LOCK_NB));
    close(a);
    close(b);

    SHOW("flock(fd, 0)", flock(0, 0));
    SHOW("flock(fd, SH|EX)", flock(0, LOCK_SH | LOCK_EX));
    SHOW("flock(fd, 64|SH)", flock(0, 64 | LOCK_SH));
    SHOW("flock(-1, SH)", flock(-1, LOCK_SH));
    SHOW("flock(-1, 16)", flock(-1, 16));
    int p = open(path, O_PATH);
    SHOW("flock(O_PATH fd, SH)", flock(p, LOCK_SH));
    close(p);
}

/* A holder locks, says so, waits a little, leaves a mark and lets go by `how`. */
enum { UNLOCK, CLOSE, EXIT };

static pid_t holder(int use_flock, int how, int ready_w, int mark_w)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open_file(O_RDWR);
        int other = open_file(O_RDONLY);
        if (use_flock ? flock(fd, LOCK_EX) : setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 0))
            _exit(90);
        write(ready_w, "r", 1);
        usleep(150 * 1000);
        write(mark_w, "m", 1);
        if (how == EXIT)
            _exit(0);
        if (how == UNLOCK)
            use_flock ? flock(fd, LOCK_UN) : setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 0);
        else if (use_flock)
            close(fd);
        else
            close(other);       /* POSIX: any fd of the file drops the locks */
        usleep(300 * 1000);     /* still alive: the waiter must not need the exit */
        _exit(0);
    }
    return pid;
}

static void blocking_waits(void)
{
    static const char *hows[] = {"unlock", "close", "exit"};
    for (int use_flock = 1; use_flock >= 0; use_flock--) {
        for (int how = UNLOCK; how <= EXIT; how++) {
            int ready[2], mark[2];
            pipe(ready);
            pipe2(mark, O_NONBLOCK);
            pid_t pid = holder(use_flock, how, ready[1], mark[1]);
            wait_byte(ready[0]);
            int fd = open_file(O_RDWR);
            errno = 0;
            int r = use_flock ? flock(fd, LOCK_EX) : setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 0);
            say("%s waits for the holder's %s: %s, waited %d\n",
                use_flock ? "flock(EX)" : "F_SETLKW", hows[how], r ? ename(errno) : "ok",
                marked(mark[0]));
            close(fd);
            reap("  holder", pid);
            close(ready[0]); close(ready[1]); close(mark[0]); close(mark[1]);
        }
    }
}

static void record_locks(void)
{
    int fd = open_file(O_RDWR);
    ftruncate(fd, 100);
    pid_t me = getpid();
    SHOW("F_SETLK W [0,10)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    SHOW("F_SETLK R [20,30)", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 20, 10));
    getlk("own F_GETLK W whole file", fd, F_GETLK, F_WRLCK, SEEK_SET, 0, 0, me);
    int sync[2];
    pipe(sync);
    pid_t pid = fork();
    if (pid == 0) {
        getlk("  child F_GETLK W whole file", fd, F_GETLK, F_WRLCK, SEEK_SET, 0, 0, me);
        getlk("  child F_GETLK R [5,6)", fd, F_GETLK, F_RDLCK, SEEK_SET, 5, 1, me);
        getlk("  child F_GETLK R [20,25)", fd, F_GETLK, F_RDLCK, SEEK_CUR, 20, 5, me);
        getlk("  child F_GETLK W [25,26)", fd, F_GETLK, F_WRLCK, SEEK_SET, 25, 1, me);
        getlk("  child F_GETLK W [10,20)", fd, F_GETLK, F_WRLCK, SEEK_SET, 10, 10, me);
        SHOW("  child F_SETLK R [0,1) (not inherited)", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
        SHOW("  child F_SETLK R [25,26)", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 25, 1));
        SHOW("  child F_SETLK W [12,15)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 12, 3));
        close(fd);      /* drops the child's locks, not the parent's */
        write(sync[1], "c", 1);
        usleep(300 * 1000);
        _exit(0);
    }
    wait_byte(sync[0]);
    getlk("F_GETLK W [0,50) after the child closed its fd", fd, F_GETLK, F_WRLCK, SEEK_SET, 0, 50, pid);
    reap("  child", pid);

    /* split, retype, merge: shown by a child's F_GETLK */
    SHOW("F_SETLK W [0,100)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 100));
    SHOW("F_SETLK UNLCK [40,60)", setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 40, 20));
    SHOW("F_SETLK R [60,70)", setlk(fd, F_SETLK, F_RDLCK, SEEK_SET, 60, 10));
    SHOW("F_SETLK W -5 bytes before 200", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 200, -5));
    lseek(fd, 300, SEEK_SET);
    SHOW("F_SETLK W SEEK_CUR -10, 5 bytes", setlk(fd, F_SETLK, F_WRLCK, SEEK_CUR, -10, 5));
    SHOW("F_SETLK R SEEK_END +400, to EOF", setlk(fd, F_SETLK, F_RDLCK, SEEK_END, 400, 0));
    pid = fork();
    if (pid == 0) {
        pid_t pp = getppid();
        getlk("  child F_GETLK W whole file", fd, F_GETLK, F_WRLCK, SEEK_SET, 0, 0, pp);
        getlk("  child F_GETLK W [40,60)", fd, F_GETLK, F_WRLCK, SEEK_SET, 40, 20, pp);
        getlk("  child F_GETLK W [50,EOF)", fd, F_GETLK, F_WRLCK, SEEK_SET, 50, 0, pp);
        getlk("  child F_GETLK R [60,100)", fd, F_GETLK, F_RDLCK, SEEK_SET, 60, 40, pp);
        getlk("  child F_GETLK R [100,EOF)", fd, F_GETLK, F_RDLCK, SEEK_SET, 100, 0, pp);
        getlk("  child F_GETLK W [200,EOF)", fd, F_GETLK, F_WRLCK, SEEK_SET, 200, 0, pp);
        getlk("  child F_GETLK W [480,EOF)", fd, F_GETLK, F_WRLCK, SEEK_SET, 480, 0, pp);
        _exit(0);
    }
    reap("  child", pid);
    SHOW("F_SETLK W [40,60)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 40, 20));
    SHOW("F_SETLK W [60,70)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 60, 10));
    SHOW("F_SETLK UNLCK [100,EOF)", setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 100, 0));
    pid = fork();
    if (pid == 0) {
        getlk("  child F_GETLK R whole file (merged)", fd, F_GETLK, F_RDLCK, SEEK_SET, 0, 0, getppid());
        getlk("  child F_GETLK R [100,EOF)", fd, F_GETLK, F_RDLCK, SEEK_SET, 100, 0, getppid());
        _exit(0);
    }
    reap("  child", pid);

    /* the POSIX rule: closing any fd of the file drops the process's locks */
    int other = open_file(O_RDONLY);
    close(other);
    pid = fork();
    if (pid == 0) {
        getlk("  child F_GETLK W after the parent closed another fd", fd, F_GETLK, F_WRLCK,
              SEEK_SET, 0, 0, getppid());
        _exit(0);
    }
    reap("  child", pid);
    SHOW("F_SETLK W [0,10)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    other = open_file(O_RDONLY);
    dup2(other, other + 1);
    dup2(0, other + 1);         /* dup2 over an fd of the file closes it: same rule */
    pid = fork();
    if (pid == 0) {
        getlk("  child F_GETLK W after a dup2 replaced an fd", fd, F_GETLK, F_WRLCK,
              SEEK_SET, 0, 0, getppid());
        _exit(0);
    }
    reap("  child", pid);
    close(other + 1);
    close(other);
    close(fd);
}

static void deadlock(void)
{
    int fd = open_file(O_RDWR);
    int ready[2];
    pipe(ready);
    SHOW("parent F_SETLK W [0,1)", setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open_file(O_RDWR);
        if (setlk(cfd, F_SETLK, F_WRLCK, SEEK_SET, 1, 1))
            _exit(90);
        write(ready[1], "r", 1);
        int r = setlk(cfd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 1);
        _exit(r == 0 ? 0 : errno == EDEADLK ? 1 : 2);
    }
    wait_byte(ready[0]);
    usleep(100 * 1000);
    errno = 0;
    int r = setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 1, 1);
    int parent_dead = r < 0 && errno == EDEADLK;
    int other_err = r < 0 && errno != EDEADLK;
    if (parent_dead)
        setlk(fd, F_SETLK, F_UNLCK, SEEK_SET, 0, 1);
    int st;
    waitpid(pid, &st, 0);
    int child_dead = WIFEXITED(st) && WEXITSTATUS(st) == 1;
    say("EDEADLK exactly once: %d, other errors %d, child status ok %d\n",
        parent_dead + child_dead == 1, other_err, WIFEXITED(st) && WEXITSTATUS(st) <= 1);
    close(fd);
    close(ready[0]); close(ready[1]);
}

static void ofd_locks(void)
{
    int a = open_file(O_RDWR), b = open_file(O_RDWR);
    SHOW("F_OFD_SETLK W [0,10) on a", setlk(a, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    SHOW("F_OFD_SETLK W [0,10) on b, same process", setlk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    getlk("F_OFD_GETLK W on b", b, F_OFD_GETLK, F_WRLCK, SEEK_SET, 0, 0, getpid());
    getlk("F_GETLK W on b", b, F_GETLK, F_WRLCK, SEEK_SET, 0, 0, getpid());
    getlk("F_OFD_GETLK W on a (own)", a, F_OFD_GETLK, F_WRLCK, SEEK_SET, 0, 0, getpid());
    SHOW("F_SETLK W [5,6) on b (POSIX vs OFD)", setlk(b, F_SETLK, F_WRLCK, SEEK_SET, 5, 1));
    SHOW("F_SETLK W [20,30) on b", setlk(b, F_SETLK, F_WRLCK, SEEK_SET, 20, 10));
    SHOW("F_OFD_SETLK R [25,26) on a (OFD vs POSIX)", setlk(a, F_OFD_SETLK, F_RDLCK, SEEK_SET, 25, 1));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_pid = 1};
    SHOW("F_OFD_SETLK l_pid 1", fcntl(a, F_OFD_SETLK, &fl));
    SHOW("F_OFD_GETLK l_pid 1", fcntl(a, F_OFD_GETLK, &fl));
    int d = dup(a);
    close(d);
    int c = open_file(O_RDONLY);
    close(c);
    getlk("F_OFD_GETLK on b after closing a dup and another fd", b, F_OFD_GETLK, F_WRLCK,
          SEEK_SET, 0, 10, getpid());
    pid_t pid = fork();
    if (pid == 0) {
        getlk("  child F_OFD_GETLK on inherited a", a, F_OFD_GETLK, F_WRLCK, SEEK_SET, 0, 0, 0);
        SHOW("  child F_OFD_SETLK R [0,5) on inherited a", setlk(a, F_OFD_SETLK, F_RDLCK, SEEK_SET, 0, 5));
        _exit(0);
    }
    reap("  child", pid);
    getlk("F_OFD_GETLK W on b", b, F_OFD_GETLK, F_WRLCK, SEEK_SET, 0, 0, getpid());
    close(a);
    SHOW("F_OFD_SETLK W [0,10) on b after a's last close", setlk(b, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 10));
    close(b);
}

static void mode_and_args(void)
{
    int r = open_file(O_RDONLY), w = open_file(O_WRONLY), rw = open_file(O_RDWR);
    SHOW("F_SETLK W on O_RDONLY", setlk(r, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    SHOW("F_SETLK R on O_RDONLY", setlk(r, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    SHOW("F_SETLK R on O_WRONLY", setlk(w, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    SHOW("F_OFD_SETLK W on O_RDONLY", setlk(r, F_OFD_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    SHOW("F_GETLK W on O_RDONLY", setlk(r, F_GETLK, F_WRLCK, SEEK_SET, 0, 1));
    SHOW("F_SETLK UNLCK on O_RDONLY", setlk(r, F_SETLK, F_UNLCK, SEEK_SET, 0, 0));
    SHOW("l_type 7", setlk(rw, F_SETLK, 7, SEEK_SET, 0, 1));
    SHOW("l_whence 5", setlk(rw, F_SETLK, F_WRLCK, 5, 0, 1));
    SHOW("F_GETLK F_UNLCK", setlk(rw, F_GETLK, F_UNLCK, SEEK_SET, 0, 1));
    SHOW("l_start -1", setlk(rw, F_SETLK, F_WRLCK, SEEK_SET, -1, 1));
    SHOW("l_len -5 from 2", setlk(rw, F_SETLK, F_WRLCK, SEEK_SET, 2, -5));
    SHOW("l_start max, len 2", setlk(rw, F_SETLK, F_WRLCK, SEEK_SET, LLONG_MAX, 2));
    lseek(rw, 10, SEEK_SET);
    SHOW("SEEK_CUR 10 + max", setlk(rw, F_SETLK, F_WRLCK, SEEK_CUR, LLONG_MAX, 1));
    SHOW("l_start max, to EOF", setlk(rw, F_SETLK, F_WRLCK, SEEK_SET, LLONG_MAX, 0));
    SHOW("F_SETLK bad pointer", fcntl(rw, F_SETLK, (void *)8));
    SHOW("F_GETLK bad pointer", fcntl(rw, F_GETLK, (void *)8));
    SHOW("F_SETLK fd -1", setlk(-1, F_SETLK, F_WRLCK, SEEK_SET, 0, 1));
    int p = open(path, O_PATH);
    SHOW("F_SETLK on O_PATH", setlk(p, F_SETLK, F_RDLCK, SEEK_SET, 0, 1));
    close(p);
    close(r); close(w); close(rw);
}

static void interrupted(void)
{
    for (int restart = 0; restart <= 1; restart++) {
        for (int use_flock = 1; use_flock >= 0; use_flock--) {
            int ready[2], go[2];
            pipe(ready);
            pipe(go);
            pid_t pid = fork();
            if (pid == 0) {
                int fd = open_file(O_RDWR);
                if (use_flock ? flock(fd, LOCK_EX) : setlk(fd, F_SETLK, F_WRLCK, SEEK_SET, 0, 0))
                    _exit(90);
                write(ready[1], "r", 1);
                wait_byte(go[0]);       /* the parent's handler ran (or it gave up) */
                _exit(0);
            }
            wait_byte(ready[0]);
            struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = restart ? SA_RESTART : 0};
            sigaction(SIGALRM, &sa, NULL);
            hits = 0;
            alarm_pipe = restart ? go[1] : -1;
            struct itimerval it = {.it_value = {.tv_usec = 100 * 1000}};
            setitimer(ITIMER_REAL, &it, NULL);
            int fd = open_file(O_RDWR);
            errno = 0;
            int r = use_flock ? flock(fd, LOCK_EX) : setlk(fd, F_SETLKW, F_WRLCK, SEEK_SET, 0, 0);
            say("%s, signal %s SA_RESTART: %s, handler ran %d\n",
                use_flock ? "flock(EX)" : "F_SETLKW", restart ? "with" : "without",
                r ? ename(errno) : "ok", hits);
            alarm_pipe = -1;
            if (!restart)
                write(go[1], "g", 1);
            close(fd);
            reap("  holder", pid);
            close(ready[0]); close(ready[1]); close(go[0]); close(go[1]);
        }
    }
    signal(SIGALRM, SIG_DFL);
}

int main(void)
{
    const char *dirs[] = {"/tmp", "/dev/shm"};
    make_scratch_dirs();
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/locks-%d", dirs[i], (int)getpid());
        say("== %s\n", dirs[i]);
        unlink(path);
        say("-- flock\n");
        flock_basics();
        say("-- blocking waits\n");
        blocking_waits();
        say("-- record locks\n");
        record_locks();
        say("-- deadlock\n");
        deadlock();
        say("-- OFD locks\n");
        ofd_locks();
        say("-- modes and arguments\n");
        mode_and_args();
        say("-- signals\n");
        interrupted();
        unlink(path);
    }
    return 0;
}
