/* File I/O on the rootfs: open/read/write/pread/lseek, stat family, getdents64,
 * links, access, cwd, mkdir/unlink/rename, fcntl, dup. Run with cwd "/". */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/uio.h>

static const char *ftype(mode_t m)
{
    return S_ISREG(m) ? "reg" : S_ISDIR(m) ? "dir" : S_ISLNK(m) ? "lnk" : S_ISCHR(m) ? "chr"
         : S_ISFIFO(m) ? "fifo" : "other";
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* getdents64 through the raw syscall with a small buffer (forces several calls),
 * names sorted: the order is the file system's business. */
static void list_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        die("open dir");
    char buf[128];
    char *names[256];
    int n = 0, calls = 0;
    for (;;) {
        long r = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (r < 0)
            die("getdents64");
        if (r == 0)
            break;
        calls++;
        for (long off = 0; off < r;) {
            struct { unsigned long ino; long off; unsigned short reclen; unsigned char type;
                     char name[]; } *d = (void *)(buf + off);
            char *s = malloc(strlen(d->name) + 8);
            sprintf(s, "%s:%d", d->name, d->type);
            names[n++] = s;
            off += d->reclen;
        }
    }
    qsort(names, n, sizeof names[0], cmp);
    say("%s (%d entries, calls >= 1: %d):", path, n, calls >= 1);
    for (int i = 0; i < n; i++)
        say(" %s", names[i]);
    say("\n");
    /* a buffer too small for one entry is EINVAL */
    lseek(fd, 0, SEEK_SET);
    SHOW("getdents64(buf of 8)", syscall(SYS_getdents64, fd, buf, 8));
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--hold")) {
        write(100, "r", 1);             /* running: tell the parent, then wait */
        for (;;)
            pause();
    }
    char buf[256];
    struct stat st;

    /* read a rootfs file */
    int fd = openat(AT_FDCWD, "data/hello.txt", O_RDONLY);
    if (fd < 0)
        die("openat hello");
    ssize_t n = read(fd, buf, sizeof buf);
    say("read %zd: %.*s", n, (int)n, buf);
    SHOW("read at EOF", read(fd, buf, sizeof buf));
    SHOW("lseek SEEK_SET 6", lseek(fd, 6, SEEK_SET));
    n = read(fd, buf, 4);
    say("after seek: %.*s\n", (int)n, buf);
    SHOW("lseek SEEK_CUR -2", lseek(fd, -2, SEEK_CUR));
    SHOW("lseek SEEK_END 0", lseek(fd, 0, SEEK_END));
    SHOW("lseek SEEK_SET -1", lseek(fd, -1, SEEK_SET));
    SHOW("lseek whence 9", lseek(fd, 0, 9));
    n = pread(fd, buf, 4, 11);
    say("pread@11: %.*s\n", (int)n, buf);
    SHOW("offset unchanged by pread", lseek(fd, 0, SEEK_CUR));
    SHOW("write to O_RDONLY", write(fd, "x", 1));
    if (fstat(fd, &st) != 0)
        die("fstat");
    say("fstat: %s size=%lld mode=%o nlink=%lu uid=%u\n", ftype(st.st_mode),
        (long long)st.st_size, st.st_mode & 07777, (unsigned long)st.st_nlink, st.st_uid);
    close(fd);
    SHOW("read closed fd", read(fd, buf, 1));

    /* stat family */
    CHECK("stat /data/link", stat("/data/link", &st));
    say("  -> %s size=%lld\n", ftype(st.st_mode), (long long)st.st_size);
    CHECK("fstatat nofollow", fstatat(AT_FDCWD, "/data/link", &st, AT_SYMLINK_NOFOLLOW));
    say("  -> %s size=%lld\n", ftype(st.st_mode), (long long)st.st_size);
    CHECK("stat /data", stat("/data", &st));
    say("  -> %s mode=%o\n", ftype(st.st_mode), st.st_mode & 07777);
    CHECK("stat missing", stat("/data/missing", &st));
    CHECK("stat through a file", stat("/data/hello.txt/x", &st));
    CHECK("stat empty path", stat("", &st));
    struct statx sx;
    CHECK("statx", syscall(SYS_statx, AT_FDCWD, "/data/numbers.txt", 0, STATX_BASIC_STATS, &sx));
    say("  -> %s size=%llu mask has size: %d\n", ftype(sx.stx_mode),
        (unsigned long long)sx.stx_size, !!(sx.stx_mask & STATX_SIZE));
    int dfd = open("/data", O_RDONLY | O_DIRECTORY);
    CHECK("statx AT_EMPTY_PATH", syscall(SYS_statx, dfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &sx));
    say("  -> %s\n", ftype(sx.stx_mode));

    /* links and access */
    n = readlinkat(dfd, "link", buf, sizeof buf);
    say("readlinkat link: %.*s\n", (int)(n > 0 ? n : 0), buf);
    n = readlink("/data/abs-link", buf, 5);
    say("readlink truncated: %zd %.*s\n", n, (int)(n > 0 ? n : 0), buf);
    SHOW("readlink of a file", readlink("/data/hello.txt", buf, sizeof buf));
    CHECK("faccessat F_OK", faccessat(dfd, "hello.txt", F_OK, 0));
    CHECK("faccessat R_OK|W_OK", faccessat(dfd, "hello.txt", R_OK | W_OK, 0));
    CHECK("faccessat missing", faccessat(dfd, "nope", F_OK, 0));
    CHECK("access X_OK on a 0644 file", access("/data/hello.txt", X_OK));
    CHECK("access X_OK on busybox", access("/bin/busybox", X_OK));

    /* cwd */
    say("getcwd: %s\n", getcwd(buf, sizeof buf));
    CHECK("chdir /data/sub", chdir("/data/sub"));
    say("getcwd: %s\n", getcwd(buf, sizeof buf));
    fd = open("a.txt", O_RDONLY);
    n = read(fd, buf, sizeof buf);
    say("relative read: %.*s", (int)n, buf);
    close(fd);
    CHECK("chdir ../..", chdir("../.."));
    say("getcwd: %s\n", getcwd(buf, sizeof buf));
    CHECK("chdir to a file", chdir("/data/hello.txt"));
    say("getcwd size 1: %s\n", getcwd(buf, 1) ? "ok" : ename(errno));
    CHECK("fchdir", fchdir(dfd));
    say("getcwd: %s\n", getcwd(buf, sizeof buf));
    chdir("/");

    /* create, write, rename, unlink */
    CHECK("mkdirat /tmp/work", mkdirat(AT_FDCWD, "/tmp/work", 0755));
    CHECK("mkdirat again", mkdirat(AT_FDCWD, "/tmp/work", 0755));
    CHECK("mkdir under a missing dir", mkdir("/tmp/nope/x", 0755));
    fd = open("/tmp/work/f", O_CREAT | O_EXCL | O_WRONLY | O_TRUNC, 0600);
    if (fd < 0)
        die("create");
    CHECK("O_EXCL again", open("/tmp/work/f", O_CREAT | O_EXCL | O_WRONLY, 0600));
    struct iovec iov[3] = {{"one ", 4}, {"two ", 4}, {"three\n", 6}};
    SHOW("writev", writev(fd, iov, 3));
    SHOW("pwrite@0", pwrite(fd, "ONE", 3, 0));
    SHOW("read on O_WRONLY", read(fd, buf, 1));
    fstat(fd, &st);
    say("new file: %s size=%lld mode=%o\n", ftype(st.st_mode), (long long)st.st_size,
        st.st_mode & 07777);
    CHECK("ftruncate 7", ftruncate(fd, 7));
    close(fd);
    fd = open("/tmp/work/f", O_RDWR | O_APPEND);
    SHOW("append write", write(fd, "+tail\n", 6));
    SHOW("lseek SEEK_SET 0", lseek(fd, 0, SEEK_SET));
    n = read(fd, buf, sizeof buf);
    say("content: %.*s", (int)n, buf);
    char a[4] = {0}, b[8] = {0};
    struct iovec riov[2] = {{a, 3}, {b, 7}};
    lseek(fd, 0, SEEK_SET);
    n = readv(fd, riov, 2);
    say("readv %zd: [%s] [%s]\n", n, a, b);
    close(fd);
    CHECK("O_DIRECTORY on a file", open("/tmp/work/f", O_RDONLY | O_DIRECTORY));
    CHECK("O_WRONLY on a dir", open("/tmp/work", O_WRONLY));
    CHECK("renameat2", syscall(SYS_renameat2, AT_FDCWD, "/tmp/work/f", AT_FDCWD, "/tmp/work/g", 0));
    CHECK("old name gone", access("/tmp/work/f", F_OK));
    fd = open("/tmp/work/h", O_CREAT | O_WRONLY, 0644);
    close(fd);
    CHECK("RENAME_NOREPLACE onto existing",
          syscall(SYS_renameat2, AT_FDCWD, "/tmp/work/g", AT_FDCWD, "/tmp/work/h", 1));
    CHECK("rename over existing", rename("/tmp/work/g", "/tmp/work/h"));
    CHECK("symlinkat", symlinkat("h", AT_FDCWD, "/tmp/work/l"));
    CHECK("linkat", linkat(AT_FDCWD, "/tmp/work/h", AT_FDCWD, "/tmp/work/hard", 0));
    stat("/tmp/work/h", &st);
    say("nlink after link: %lu\n", (unsigned long)st.st_nlink);
    list_dir("/tmp/work");
    CHECK("rmdir non-empty", rmdir("/tmp/work"));
    CHECK("unlinkat a dir without AT_REMOVEDIR", unlinkat(AT_FDCWD, "/tmp/work", 0));
    CHECK("unlink h", unlinkat(AT_FDCWD, "/tmp/work/h", 0));
    CHECK("unlink hard", unlink("/tmp/work/hard"));
    CHECK("unlink l", unlink("/tmp/work/l"));
    CHECK("unlink missing", unlink("/tmp/work/l"));
    CHECK("rmdir", unlinkat(AT_FDCWD, "/tmp/work", AT_REMOVEDIR));
    list_dir("/data");

    /* fcntl and dup */
    fd = open("/data/numbers.txt", O_RDONLY | O_CLOEXEC);
    SHOW("F_GETFD", fcntl(fd, F_GETFD));
    SHOW("F_SETFD 0", fcntl(fd, F_SETFD, 0));
    SHOW("F_GETFD", fcntl(fd, F_GETFD));
    SHOW("F_GETFL & ACCMODE", fcntl(fd, F_GETFL) & O_ACCMODE);
    SHOW("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, O_NONBLOCK));
    SHOW("F_GETFL has O_NONBLOCK", !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
    int d = fcntl(fd, F_DUPFD, 40);
    say("F_DUPFD 40 -> %d\n", d);
    SHOW("F_DUPFD_CLOEXEC 40", fcntl(fd, F_DUPFD_CLOEXEC, 40));
    SHOW("F_GETFD of it", fcntl(41, F_GETFD));
    int d2 = dup(fd);
    say("dup -> %d (lowest free)\n", d2);
    lseek(fd, 10, SEEK_SET);
    SHOW("dup shares the offset", lseek(d2, 0, SEEK_CUR));
    SHOW("dup3 to 50", dup3(fd, 50, O_CLOEXEC));
    SHOW("F_GETFD 50", fcntl(50, F_GETFD));
    SHOW("dup3 same fd", dup3(fd, fd, 0));
    SHOW("dup3 bad flags", dup3(fd, 51, 1));
    SHOW("dup2 same fd", dup2(fd, fd));
    SHOW("dup of a bad fd", dup(77));
    SHOW("fcntl bad cmd", fcntl(fd, 9999));
    SHOW("close bad fd", close(-1));

    /* The running executable cannot be written (ETXTBSY), nor can a copy of it
     * while a child runs it; once that child is gone it can. */
    SHOW("open own binary O_RDWR", open("/bin/fileio", O_RDWR));
    SHOW("truncate own binary", truncate("/bin/fileio", 0));
    SHOW("open own binary O_RDONLY", open("/bin/fileio", O_RDONLY));
    int src = open("/bin/fileio", O_RDONLY), dst = open("/tmp/fileio-copy",
                                                           O_WRONLY | O_CREAT | O_TRUNC, 0755);
    char cp[65536];
    ssize_t k;
    while ((k = read(src, cp, sizeof cp)) > 0)
        write(dst, cp, k);
    close(src);
    close(dst);
    int sync_pipe[2];
    pipe(sync_pipe);
    pid_t runner = fork();
    if (runner == 0) {
        close(sync_pipe[0]);
        dup2(sync_pipe[1], 100);
        execl("/tmp/fileio-copy", "fileio-copy", "--hold", (char *)NULL);
        _exit(127);
    }
    close(sync_pipe[1]);
    char c;
    read(sync_pipe[0], &c, 1);          /* the copy runs */
    SHOW("open a binary a child runs O_WRONLY", open("/tmp/fileio-copy", O_WRONLY));
    kill(runner, SIGKILL);
    waitpid(runner, NULL, 0);
    SHOW("after the child is gone", open("/tmp/fileio-copy", O_WRONLY) >= 0);
    unlink("/tmp/fileio-copy");

    /* An unlinked file keeps its data while open (on tmpfs under quark). */
    mkdir("/dev/shm", 01777);           /* a plain directory in a bare chroot */
    int w = open("/dev/shm/unlinked", O_RDWR | O_CREAT | O_TRUNC, 0600);
    write(w, "still here", 10);
    SHOW("unlink it", unlink("/dev/shm/unlinked"));
    char ub[16] = {0};
    SHOW("pread after unlink", pread(w, ub, sizeof ub - 1, 0));
    say("  -> \"%s\"\n", ub);
    close(w);
    return 0;
}
