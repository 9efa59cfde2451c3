/* Bad user pointers make system calls fail with EFAULT; nothing crashes. Raw syscalls
 * are used where libc would check or touch the pointer itself. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>

int main(void)
{
    /* an address that was mapped and no longer is */
    char *gone = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(gone, 8192);
    char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    /* half good: the second page is unmapped */
    char *half = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(half + 4096, 4096);
    void *kernel = (void *)0xffffffff81000000UL;
    int fd = open("/data/hello.txt", O_RDONLY);

    SHOW("write(1, 1, 10)", syscall(SYS_write, 1, (void *)1, 10));
    SHOW("write(1, kernel address, 10)", syscall(SYS_write, 1, kernel, 10));
    SHOW("write(1, unmapped, 10)", syscall(SYS_write, 1, gone, 10));
    SHOW("write(1, NULL, 0)", syscall(SYS_write, 1, NULL, 0));
    SHOW("open((char *)1)", syscall(SYS_open, (char *)1, O_RDONLY));
    SHOW("openat(NULL path)", syscall(SYS_openat, AT_FDCWD, NULL, O_RDONLY));
    SHOW("open(unmapped)", syscall(SYS_open, gone, O_RDONLY));
    SHOW("read into unmapped", syscall(SYS_read, fd, gone, 10));
    SHOW("read into read-only memory", syscall(SYS_read, fd, ro, 10));
    SHOW("read into a kernel address", syscall(SYS_read, fd, kernel, 10));
    SHOW("offset after failed reads", lseek(fd, 0, SEEK_CUR));
    /* a read that crosses into the unmapped page copies what fits */
    lseek(fd, 0, SEEK_SET);
    SHOW("read across the end of a mapping", syscall(SYS_read, fd, half + 4096 - 5, 10));
    say("  got: %.5s\n", half + 4096 - 5);
    SHOW("pread into unmapped", syscall(SYS_pread64, fd, gone, 10, 0));
    /* A regular file keeps what came before the bad page (generic_perform_write);
     * a pipe takes nothing; /dev/null never reads the buffer at all. */
    int wf = open("/badptr.out", O_RDWR | O_CREAT | O_TRUNC, 0644);
    memset(half, 'h', 4096);
    SHOW("write to a file across the end of a mapping",
         syscall(SYS_write, wf, half + 4096 - 5, 10));
    SHOW("  file size", lseek(wf, 0, SEEK_END));
    SHOW("pwrite to a file across the end of a mapping",
         syscall(SYS_pwrite64, wf, half + 4096 - 3, 10, 100));
    int pp[2];
    if (pipe(pp) == 0)
        SHOW("write to a pipe across the end of a mapping",
             syscall(SYS_write, pp[1], half + 4096 - 5, 10));
    mkdir("/dev", 0755);            /* natively a chroot of a copied rootfs has no nodes */
    mknod("/dev/null", S_IFCHR | 0666, makedev(1, 3));
    int dn = open("/dev/null", O_WRONLY);
    SHOW("write(/dev/null, unmapped, 10)", syscall(SYS_write, dn, gone, 10));
    SHOW("write(/dev/null, kernel address, 10)", syscall(SYS_write, dn, kernel, 10));
    SHOW("pwrite(/dev/null, NULL, 10)", syscall(SYS_pwrite64, dn, NULL, 10, 0));
    struct iovec wv[2] = {{"ok", 2}, {gone, 10}};
    SHOW("writev to a file, bad second iovec", syscall(SYS_writev, wf, wv, 2));
    SHOW("writev to a pipe, bad second iovec", syscall(SYS_writev, pp[1], wv, 2));
    SHOW("fstat(fd, 1)", syscall(SYS_fstat, fd, (void *)1));
    SHOW("stat(path, unmapped)", syscall(SYS_stat, "/data/hello.txt", gone));
    SHOW("stat(unmapped, buf)", syscall(SYS_stat, gone, gone));
    SHOW("newfstatat bad buf", syscall(SYS_newfstatat, AT_FDCWD, "/data", (void *)8, 0));
    SHOW("statx bad buf", syscall(SYS_statx, AT_FDCWD, "/data", 0, 0x7ff, (void *)8));
    SHOW("getdents64 into unmapped", syscall(SYS_getdents64, open("/data", O_RDONLY), gone, 4096));
    SHOW("readlink into unmapped", syscall(SYS_readlink, "/data/link", gone, 100));
    SHOW("getcwd into unmapped", syscall(SYS_getcwd, gone, 100));
    SHOW("uname(1)", syscall(SYS_uname, (void *)1));
    SHOW("clock_gettime bad tp", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)1));
    SHOW("gettimeofday bad tv", syscall(SYS_gettimeofday, (void *)1, NULL));
    SHOW("nanosleep bad req", syscall(SYS_nanosleep, (void *)1, NULL));
    SHOW("pipe2 bad fds", syscall(SYS_pipe2, (void *)1, 0));
    SHOW("getrandom unmapped", syscall(SYS_getrandom, gone, 16, 0));
    SHOW("getrandom read-only", syscall(SYS_getrandom, ro, 16, 0));
    SHOW("rt_sigaction bad act", syscall(SYS_rt_sigaction, SIGUSR1, (void *)1, NULL, 8));
    SHOW("rt_sigprocmask bad set", syscall(SYS_rt_sigprocmask, SIG_BLOCK, (void *)1, NULL, 8));
    SHOW("wait4 bad status", ({ pid_t p = fork(); if (p == 0) _exit(0);
                                syscall(SYS_wait4, p, (void *)1, 0, NULL); }));
    while (wait(NULL) > 0) {}
    struct iovec bad_iov[2] = {{"ok", 2}, {(void *)1, 5}};
    SHOW("writev with a bad second iovec", syscall(SYS_writev, 1, bad_iov, 2));
    say("\n");
    SHOW("writev bad iovec array", syscall(SYS_writev, 1, (void *)1, 2));
    SHOW("execve bad path", syscall(SYS_execve, (char *)1, NULL, NULL));
    char *bad_argv[] = {"x", (char *)1, NULL};
    SHOW("execve bad argv entry", syscall(SYS_execve, "/bin/hello", bad_argv, NULL));
    /* The file is opened before the arrays are read: missing beats bad. */
    SHOW("execve bad argv, no such file", syscall(SYS_execve, "/nonexistent", (void *)8, NULL));
    SHOW("execve bad envp, no such file", syscall(SYS_execve, "/nonexistent", bad_argv, (void *)8));
    SHOW("execve bad argv array", syscall(SYS_execve, "/bin/hello", (void *)8, NULL));
    SHOW("chdir bad path", syscall(SYS_chdir, (char *)1));
    SHOW("mkdir bad path", syscall(SYS_mkdir, (char *)1, 0755));
    SHOW("unlink bad path", syscall(SYS_unlink, (char *)1));
    SHOW("prlimit64 bad new", syscall(SYS_prlimit64, 0, 7, (void *)1, NULL));
    SHOW("sysinfo bad", syscall(SYS_sysinfo, (void *)1));
    SHOW("set_tid_address bad (allowed)", syscall(SYS_set_tid_address, (void *)1) > 0);
    SHOW("arch_prctl GET_FS bad", syscall(SYS_arch_prctl, 0x1003, (void *)1));
    SHOW("long path", ({ static char p[8192]; memset(p, 'a', sizeof p - 1);
                         syscall(SYS_open, p, O_RDONLY); }));
    SHOW("long name", ({ static char p[300]; p[0] = '/'; memset(p + 1, 'a', 298);
                         syscall(SYS_open, p, O_RDONLY); }));
    say("survived\n");
    return 0;
}
