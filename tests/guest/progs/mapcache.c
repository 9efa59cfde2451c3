/* Read-only private file mappings, which quark shares between processes through its
 * text cache (quark/kernel/mm/textcache.py): a store after mprotect stays private,
 * and a file that changes is never shown from its old pages. Run with cwd "/". */
#include "common.h"
#include <fcntl.h>
#include <sys/mman.h>

#define LEN (64 * 4096)

static unsigned long sum(const unsigned char *p, long n)
{
    unsigned long s = 0;
    for (long i = 0; i < n; i++)
        s = s * 31 + p[i];
    return s;
}

static unsigned char *map_ro(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die("open");
    unsigned char *m = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        die("mmap");
    return m;
}

static void fill(const char *path, int tag)
{
    static unsigned char buf[LEN];
    for (int i = 0; i < LEN; i++)
        buf[i] = (unsigned char)(i * 7 + tag);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, LEN) != LEN)
        die("fill");
    close(fd);
}

int main(void)
{
    fill("/mc.dat", 1);
    unsigned char *a = map_ro("/mc.dat");
    say("first mapping: %lu\n", sum(a, LEN));

    /* a child maps the same pages (shared through the cache), writes into its copy */
    pid_t pid = fork();
    if (pid == 0) {
        unsigned char *c = map_ro("/mc.dat");
        if (mprotect(c, 4096, PROT_READ | PROT_WRITE))
            die("mprotect");
        memset(c, 0xAA, 100);
        _exit(c[0] == 0xAA && c[100] == a[100] ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    say("child's private store: exit %d\n", WEXITSTATUS(status));
    unsigned char *b = map_ro("/mc.dat");
    say("parent and a new mapping after it: %lu %lu\n", sum(a, LEN), sum(b, LEN));

    /* rewrite the file in place with the same size, right away */
    int fd = open("/mc.dat", O_WRONLY);
    unsigned char page[4096];
    memset(page, 0x55, sizeof page);
    if (pwrite(fd, page, sizeof page, 8192) != (ssize_t)sizeof page)
        die("pwrite");
    close(fd);
    unsigned char *n = map_ro("/mc.dat");
    say("new mapping after a rewrite: byte 8192 = %#x, sum %lu\n", n[8192], sum(n, LEN));

    /* truncate and regrow to the same size */
    if (truncate("/mc.dat", 4096) || truncate("/mc.dat", LEN))
        die("truncate");
    unsigned char *z = map_ro("/mc.dat");
    say("after truncate and regrow: byte 8192 = %#x, sum %lu\n", z[8192], sum(z, LEN));

    /* a fresh file reusing the name */
    unlink("/mc.dat");
    fill("/mc.dat", 9);
    unsigned char *r = map_ro("/mc.dat");
    say("recreated file: %lu\n", sum(r, LEN));
    unlink("/mc.dat");
    say("done\n");
    return 0;
}
