/* Named pipes (fs/pipe.c fifo_open): a blocking open waits for the other end, a
 * non-blocking one does not (O_WRONLY: ENXIO without a reader), O_RDWR never waits;
 * every opener shares one buffer, which goes away with the last opener; a signal ends
 * a waiting open with EINTR, or restarts it under SA_RESTART. Run in two directories
 * (/tmp: the rootfs; /dev/shm: a tmpfs under quark when the spec mounts one). */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>

static volatile sig_atomic_t hits;
static void on_alarm(int sig) { (void)sig; hits++; }

/* A child that pauses, leaves a mark in an anonymous pipe, then opens the FIFO: the
 * parent, which was waiting in open, must find the mark once its open returns. */
static pid_t partner(const char *path, int flags, int mark_fd, const char *data)
{
    pid_t pid = fork();
    if (pid == 0) {
        usleep(200 * 1000);
        write(mark_fd, "m", 1);
        int fd = open(path, flags);
        if (fd < 0)
            _exit(90);
        if (data) {
            write(fd, data, strlen(data));
        } else {
            char buf[32] = {0};
            ssize_t n = read(fd, buf, sizeof buf - 1);
            say("  partner read %zd: %s\n", n, buf);
        }
        close(fd);
        _exit(0);
    }
    return pid;
}

static void reap(const char *label, pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    show_status(label, st);
}

static int marked(int fd)
{
    char c;
    return read(fd, &c, 1) == 1;
}

static void blocking_opens(const char *path)
{
    int mark[2];
    pipe2(mark, O_NONBLOCK);
    char buf[32] = {0};

    pid_t pid = partner(path, O_WRONLY, mark[1], "to the reader");
    int r = open(path, O_RDONLY);
    say("O_RDONLY open waited for the writer: %d\n", marked(mark[0]));
    ssize_t n = read(r, buf, sizeof buf - 1);
    say("read %zd: %s\n", n, buf);
    SHOW("read after the writer left (EOF)", read(r, buf, 1));
    close(r);
    reap("writer", pid);

    pid = partner(path, O_RDONLY, mark[1], NULL);
    int w = open(path, O_WRONLY);
    say("O_WRONLY open waited for the reader: %d\n", marked(mark[0]));
    ssize_t wrote = write(w, "to the partner", 14);
    close(w);
    reap("reader", pid);        /* prints what it read: our line comes after */
    say("wrote %zd\n", wrote);
    close(mark[0]);
    close(mark[1]);
}

static void nonblocking_opens(const char *path)
{
    char c;
    int r = open(path, O_RDONLY | O_NONBLOCK);
    say("O_RDONLY|O_NONBLOCK without a writer: %s\n", r >= 0 ? "ok" : ename(errno));
    SHOW("read with no writer yet", read(r, &c, 1));
    struct pollfd pf = {r, POLLIN, 0};
    SHOW("poll before any writer", poll(&pf, 1, 0));
    say("revents %#x\n", pf.revents);
    int w = open(path, O_WRONLY | O_NONBLOCK);
    say("O_WRONLY|O_NONBLOCK with a reader: %s\n", w >= 0 ? "ok" : ename(errno));
    SHOW("read with a writer, empty", read(r, &c, 1));
    SHOW("write", write(w, "xy", 2));
    SHOW("read", read(r, (char[4]){0}, 4));
    close(w);
    SHOW("poll after the writer left", poll(&pf, 1, 0));
    say("revents %#x\n", pf.revents);
    SHOW("read after the writer left", read(r, &c, 1));
    close(r);
    SHOW("O_WRONLY|O_NONBLOCK without a reader", open(path, O_WRONLY | O_NONBLOCK));
}

static void rdwr_and_lifetime(const char *path)
{
    int a = open(path, O_RDWR);
    say("O_RDWR alone: %s\n", a >= 0 ? "ok" : ename(errno));
    int w = open(path, O_WRONLY | O_NONBLOCK);
    say("O_WRONLY|O_NONBLOCK next to an O_RDWR opener: %s\n", w >= 0 ? "ok" : ename(errno));
    int r = open(path, O_RDONLY);
    say("O_RDONLY next to an O_RDWR opener: %s\n", r >= 0 ? "ok" : ename(errno));
    write(w, "one", 3);
    write(a, "two", 3);
    char buf[8] = {0};
    SHOW("one buffer for all openers", read(r, buf, sizeof buf - 1));
    say("read: %s\n", buf);
    write(a, "stale", 5);
    close(r);
    close(w);
    close(a);
    a = open(path, O_RDWR | O_NONBLOCK);
    SHOW("data left by closed openers", read(a, buf, sizeof buf));
    struct stat st, fst;
    stat(path, &st);
    fstat(a, &fst);
    say("fstat: fifo %d, same inode as the path %d\n", S_ISFIFO(fst.st_mode),
        st.st_ino == fst.st_ino && st.st_dev == fst.st_dev);
    SHOW("lseek", lseek(a, 0, SEEK_SET));
    close(a);
}

static void interrupted_open(const char *path)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, 0}, {0, 100 * 1000}};
    hits = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    SHOW("O_RDONLY open, signal without SA_RESTART", open(path, O_RDONLY));
    say("handler ran %d\n", hits);
    hits = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    SHOW("O_WRONLY open, signal without SA_RESTART", open(path, O_WRONLY));
    say("handler ran %d\n", hits);

    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    int mark[2];
    pipe(mark);
    hits = 0;
    setitimer(ITIMER_REAL, &it, NULL);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(400 * 1000);
        int fd = open(path, O_WRONLY);
        write(fd, "late", 4);
        _exit(fd < 0);
    }
    int r = open(path, O_RDONLY);
    say("O_RDONLY open, signal with SA_RESTART: %s, handler ran %d\n",
        r >= 0 ? "ok" : ename(errno), hits);
    char buf[8] = {0};
    read(r, buf, sizeof buf - 1);
    say("then read: %s\n", buf);
    close(r);
    reap("late writer", pid);
    close(mark[0]);
    close(mark[1]);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGALRM, &sa, NULL);
}

int main(void)
{
    const char *dirs[] = {"/tmp", "/dev/shm"};
    make_scratch_dirs();
    for (unsigned i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s/fifo", dirs[i]);
        unlink(path);
        say("== %s\n", dirs[i]);
        CHECK("mkfifo", mkfifo(path, 0600));
        SHOW("mkfifo again", mkfifo(path, 0600));
        blocking_opens(path);
        nonblocking_opens(path);
        rdwr_and_lifetime(path);
        interrupted_open(path);
        CHECK("unlink", unlink(path));
    }
    return 0;
}
