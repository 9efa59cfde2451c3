/* Runs of small sequential writes (what quark's write-behind gathers, see
 * quark/kernel/fs/host/writebehind.py) followed by every way a program can look at
 * the file: each must see exactly what Linux shows. Run with cwd "/"; the files are
 * on the rootfs. */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/uio.h>

static char blk[4096];

static void put(int fd, int tag, int n)
{
    for (int i = 0; i < n; i++) {
        memset(blk, tag + i, sizeof blk);
        if (write(fd, blk, sizeof blk) != (ssize_t)sizeof blk)
            die("write");
    }
}

static long fsize(int fd)
{
    struct stat st;
    return fstat(fd, &st) ? -1 : (long)st.st_size;
}

/* A checksum of the whole file, read through a fresh descriptor. */
static unsigned long sum(const char *path)
{
    int fd = open(path, O_RDONLY);
    unsigned long s = 0, pos = 0;
    ssize_t n;
    if (fd < 0)
        die("open for sum");
    while ((n = read(fd, blk, sizeof blk)) > 0)
        for (ssize_t i = 0; i < n; i++, pos++)
            s = s * 31 + (unsigned char)blk[i] + pos;
    close(fd);
    return s;
}

int main(void)
{
    int fd = open("/wb.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open");
    char b[16];

    put(fd, 0, 16);
    say("after 16 blocks: fstat %ld, position %ld\n", fsize(fd), (long)lseek(fd, 0, SEEK_CUR));
    put(fd, 16, 2);
    say("pread block 3: %d\n", pread(fd, b, 1, 3 * 4096) == 1 ? b[0] : -1);
    put(fd, 18, 2);
    int rd = open("/wb.dat", O_RDONLY);
    lseek(rd, 19 * 4096, SEEK_SET);
    say("another fd reads block 19: %d\n", read(rd, b, 1) == 1 ? b[0] : -1);
    put(fd, 20, 3);
    struct stat st;
    stat("/wb.dat", &st);
    say("stat by path: %ld\n", (long)st.st_size);

    /* /dev/zero reads between the writes (dd's loop). The native chroot has no
     * /dev (copying a rootfs cannot copy device nodes): there memset stands in. */
    int z = open("/dev/zero", O_RDONLY);
    for (int i = 0; i < 100; i++) {
        if (z >= 0 ? read(z, blk, sizeof blk) != (ssize_t)sizeof blk : !memset(blk, 0, sizeof blk))
            die("read /dev/zero");
        if (write(fd, blk, sizeof blk) != (ssize_t)sizeof blk)
            die("dd loop");
    }
    if (z >= 0)
        close(z);
    say("after the /dev/zero loop: fstat %ld\n", fsize(fd));

    /* a private mapping made right after writes */
    put(fd, 40, 2);
    long len = fsize(fd);
    unsigned char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, rd, 0);
    say("mmap sees the last block: %d\n", m == MAP_FAILED ? -1 : m[len - 1]);
    munmap(m, len);

    /* a child looks */
    put(fd, 50, 1);
    pid_t pid = fork();
    if (pid == 0) {
        int c = open("/wb.dat", O_RDONLY);
        _exit((int)(fsize(c) / 4096 % 256));
    }
    int status;
    waitpid(pid, &status, 0);
    say("child saw %d blocks\n", WEXITSTATUS(status));

    /* dup shares the position; O_APPEND through another description */
    int d = dup(fd);
    put(d, 60, 1);
    put(fd, 61, 1);
    int ap = open("/wb.dat", O_WRONLY | O_APPEND);
    put(ap, 70, 1);
    put(fd, 71, 1);
    put(ap, 72, 1);
    say("after dup and O_APPEND: fstat %ld, position %ld, sum %lu\n", fsize(fd),
        (long)lseek(fd, 0, SEEK_CUR), sum("/wb.dat"));
    close(ap);
    close(d);

    /* writev, pwrite and truncation after a run */
    put(fd, 80, 2);
    struct iovec iov[2] = {{blk, 100}, {blk, 200}};
    SHOW("writev", writev(fd, iov, 2));
    put(fd, 82, 1);
    SHOW("pwrite at 10", pwrite(fd, "xyz", 3, 10));
    put(fd, 83, 1);
    SHOW("ftruncate 5000", ftruncate(fd, 5000));
    say("after truncate: fstat %ld, position %ld\n", fsize(fd), (long)lseek(fd, 0, SEEK_CUR));
    put(fd, 84, 1);
    say("write past the end leaves a hole: fstat %ld, sum %lu\n", fsize(fd), sum("/wb.dat"));

    /* writes, then rename and unlink by path */
    put(fd, 90, 3);
    SHOW("rename", rename("/wb.dat", "/wb2.dat"));
    say("renamed file sum %lu\n", sum("/wb2.dat"));
    put(fd, 93, 1);
    SHOW("unlink", unlink("/wb2.dat"));
    put(fd, 94, 1);
    say("unlinked file still written: fstat %ld\n", fsize(fd));
    close(fd);
    close(rd);

    /* O_DSYNC and O_SYNC files, and a file closed right after its writes */
    int s1 = open("/wb.sync", O_WRONLY | O_CREAT | O_TRUNC | O_SYNC, 0644);
    put(s1, 1, 3);
    say("O_SYNC: fstat %ld\n", fsize(s1));
    close(s1);
    int c = open("/wb.closed", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    put(c, 5, 7);
    close(c);
    say("closed right after 7 blocks: sum %lu\n", sum("/wb.closed"));
    unlink("/wb.sync");
    unlink("/wb.closed");
    say("done\n");
    return 0;
}
