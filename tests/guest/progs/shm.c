/* MAP_SHARED memory: anonymous shared memory inherited by fork, shared file and memfd
 * mappings seen by other processes and reaching the file, process-shared semaphores
 * (futexes keyed by the shared page), and the errors Linux gives. */
#include "common.h"
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#define PG 4096

static int wait_child(pid_t pid)
{
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    return st;
}

static void anon_shared(void)
{
    volatile int *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    volatile int *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m[0] = 1;     /* page 0 present in the parent before fork, page 1 not */
    p[0] = 1;
    pid_t pid = fork();
    if (pid == 0) {
        m[0] = 42;
        m[PG / sizeof(int)] = 7;
        p[0] = 99;
        _exit(0);
    }
    show_status("anon child", wait_child(pid));
    say("anon shared page 0 = %d, page 1 = %d, private = %d\n", m[0], m[PG / sizeof(int)], p[0]);
    /* MADV_DONTNEED on shared memory drops this mapping's pages, not the data. */
    say("madvise DONTNEED = %d\n", madvise((void *)m, 2 * PG, MADV_DONTNEED));
    say("after DONTNEED: %d %d\n", m[0], m[PG / sizeof(int)]);
    /* The parent's later write is seen by a second child. */
    m[0] = 5;
    pid = fork();
    if (pid == 0)
        _exit(m[0]);
    show_status("second child sees", wait_child(pid));
    munmap((void *)m, 2 * PG);
    munmap((void *)p, PG);
}

static void semaphores(void)
{
    sem_t *s = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    sem_t *back = s + 1;
    sem_init(s, 1, 0);
    sem_init(back, 1, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* Blocks until the parent posts: a futex wait woken from another process. */
        if (sem_wait(s) != 0)
            _exit(10);
        sem_post(back);
        _exit(3);
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    say("sem_post = %d\n", sem_post(s));
    say("sem_wait for the child's reply = %d\n", sem_wait(back));
    show_status("sem child", wait_child(pid));
    munmap(s, PG);
}

static void file_shared(void)
{
    int fd = open("/tmp/shm-file", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 2 * PG) != 0)
        die("file");
    char *m = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    say("mmap shared file: %s\n", m == MAP_FAILED ? ename(errno) : "ok");
    pid_t pid = fork();
    if (pid == 0) {
        /* A mapping of its own, through a descriptor of its own, at an offset. */
        int fd2 = open("/tmp/shm-file", O_RDWR);
        char *c = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, PG);
        if (c == MAP_FAILED)
            _exit(1);
        strcpy(c, "from the child, page 1");
        _exit(0);
    }
    show_status("file child", wait_child(pid));
    say("parent sees: \"%s\"\n", m + PG);
    strcpy(m, "written through the mapping");
    say("msync = %d\n", msync(m, 2 * PG, MS_SYNC));
    char buf[64] = {0};
    pread(fd, buf, 27, 0);
    say("pread after msync: \"%s\"\n", buf);
    /* One page cache: read(2) sees mapped stores, the mapping sees write(2). */
    strcpy(m + 100, "stored, not synced");
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 18, 100);
    say("pread sees a store: \"%s\"\n", buf);
    pwrite(fd, "pwritten", 8, PG + 5);
    say("mapping sees pwrite: \"%.8s\"\n", m + PG + 5);
    lseek(fd, 200, SEEK_SET);
    write(fd, "via write", 9);
    say("mapping sees write: \"%.9s\"\n", m + 200);
    strcpy(m, "before munmap, no msync");
    munmap(m, 2 * PG);
    memset(buf, 0, sizeof buf);
    pread(fd, buf, 23, 0);
    say("pread after munmap: \"%s\"\n", buf);
    struct stat st;
    fstat(fd, &st);
    say("size unchanged: %lld\n", (long long)st.st_size);
    close(fd);

    /* Read-only descriptors: no writable shared mapping, now or by mprotect. */
    fd = open("/tmp/shm-file", O_RDONLY);
    errno = 0;
    void *r = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    say("MAP_SHARED|PROT_WRITE of O_RDONLY: %s\n", r == MAP_FAILED ? ename(errno) : "ok");
    r = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, 0);
    say("MAP_SHARED|PROT_READ of O_RDONLY: %s, reads \"%.6s\"\n",
        r == MAP_FAILED ? ename(errno) : "ok", (char *)r);
    errno = 0;
    say("mprotect it PROT_WRITE: %s\n", mprotect(r, PG, PROT_READ | PROT_WRITE) ? ename(errno) : "ok");
    void *w = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    say("MAP_PRIVATE|PROT_WRITE of O_RDONLY: %s\n", w == MAP_FAILED ? ename(errno) : "ok");
    close(fd);

    /* A shared mapping past the end of the file: SIGBUS, as for private ones. */
    pid = fork();
    if (pid == 0) {
        fd = open("/tmp/shm-file", O_RDWR);
        char *c = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        c[3 * PG] = 1;
        _exit(0);
    }
    show_status("touch past EOF", wait_child(pid));
    unlink("/tmp/shm-file");
}

static void memfd_shared(void)
{
    int fd = memfd_create("shm-test", 0);
    if (fd < 0 || ftruncate(fd, PG) != 0)
        die("memfd");
    char *a = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    char *b = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    strcpy(a, "alias");
    say("two mappings of one memfd alias: \"%s\"\n", b);
    pwrite(fd, "PW", 2, 0);
    say("memfd mapping sees pwrite: \"%s\"\n", b);
    strcpy(a + 10, "mapped");
    char rb[8] = {0};
    pread(fd, rb, 6, 10);
    say("memfd pread sees a store: \"%s\"\n", rb);
    pid_t pid = fork();
    if (pid == 0) {
        strcpy(b, "memfd child");
        _exit(0);
    }
    show_status("memfd child", wait_child(pid));
    say("parent sees \"%s\"\n", a);
    munmap(a, PG);
    munmap(b, PG);
    char buf[16] = {0};
    pread(fd, buf, 11, 0);
    say("memfd read after munmap: \"%s\"\n", buf);
    close(fd);
}

static void not_mappable(void)
{
    int p[2], sv[2];
    pipe(p);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    errno = 0;
    void *m = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, p[0], 0);
    say("mmap of a pipe: %s\n", m == MAP_FAILED ? ename(errno) : "ok");
    errno = 0;
    m = mmap(NULL, PG, PROT_READ, MAP_SHARED, sv[0], 0);
    say("mmap of a socket: %s\n", m == MAP_FAILED ? ename(errno) : "ok");
}

int main(void)
{
    anon_shared();
    semaphores();
    file_shared();
    memfd_shared();
    not_mappable();
    return 0;
}
