/* fork, vfork, wait4/waitpid statuses, exit codes, execve (argv, envp, errors).
 * "procs exec-child ARGS..." is the image the exec tests start. */
#include "common.h"
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>

extern char **environ;

static int exec_child(int argc, char **argv)
{
    say("exec-child: argc=%d", argc);
    for (int i = 0; i < argc; i++)
        say(" [%s]", argv[i]);
    say("\n");
    const char *v = getenv("QUARK_TEST");
    say("exec-child: QUARK_TEST=%s PATH=%s\n", v ? v : "(unset)", getenv("PATH") ? "set" : "unset");
    /* fd 5 was opened without O_CLOEXEC, fd 6 with it */
    say("exec-child: fd5 open %d, fd6 open %d\n", fcntl(5, F_GETFD) >= 0, fcntl(6, F_GETFD) >= 0);
    return argc > 2 ? atoi(argv[2]) : 0;
}

static pid_t spawn(int how)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0)
        return pid;
    switch (how) {
    case 0: exit(0);
    case 1: exit(3);
    case 2: _exit(255);
    case 3: _exit(256 + 7);           /* only the low 8 bits survive */
    case 4: kill(getpid(), SIGKILL); break;
    case 5: kill(getpid(), SIGTERM); break;
    case 6: raise(SIGUSR1); break;
    case 7: syscall(SYS_exit_group, 42); break;
    }
    _exit(100);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
        return exec_child(argc, argv);

    say("parent pid > 0: %d\n", getpid() > 0);
    for (int how = 0; how <= 7; how++) {
        pid_t pid = spawn(how);
        int st;
        pid_t got = waitpid(pid, &st, 0);
        char label[32];
        snprintf(label, sizeof label, "child %d", how);
        if (got != pid)
            say("%s: waitpid returned %d %s\n", label, got, ename(errno));
        else
            show_status(label, st);
    }

    /* the child sees its parent; wait4 with rusage; WNOHANG while it runs */
    pid_t me = getpid();
    int p[2];
    pipe(p);
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(p[1]);
        read(p[0], &c, 1);               /* wait for the parent's go */
        _exit(getppid() == me ? 11 : 12);
    }
    close(p[0]);
    int st = -1;
    SHOW("WNOHANG while running", waitpid(pid, &st, WNOHANG));
    write(p[1], "g", 1);
    struct rusage ru;
    say("wait4 -> the child: %d\n", wait4(pid, &st, 0, &ru) == pid);
    show_status("getppid child", st);
    SHOW("wait with no children", wait(&st));
    SHOW("waitpid(12345)", waitpid(12345, &st, 0));
    SHOW("waitpid bad options", waitpid(-1, &st, 0x12345678));

    /* many children, reaped in any order */
    int sum = 0;
    for (int i = 1; i <= 5; i++)
        if (fork() == 0)
            _exit(i);
    for (int i = 0; i < 5; i++) {
        if (wait(&st) < 0)
            die("wait");
        sum += WEXITSTATUS(st);
    }
    say("5 children, exit codes sum %d\n", sum);

    /* vfork + _exit; vfork + execve */
    volatile int touched = 0;
    pid = vfork();
    if (pid == 0) {
        touched = 1;     /* shares memory with the suspended parent */
        _exit(9);
    }
    waitpid(pid, &st, 0);
    say("vfork child ran first and shared memory: %d\n", touched);
    show_status("vfork child", st);

    /* execve: argv, envp, close-on-exec */
    int fd5 = open("/data/hello.txt", O_RDONLY);
    dup2(fd5, 5);
    int fd6 = open("/data/hello.txt", O_RDONLY | O_CLOEXEC);
    dup3(fd6, 6, O_CLOEXEC);
    pid = fork();
    if (pid == 0) {
        char *av[] = {"procs", "exec-child", "17", "with space", NULL};
        char *ev[] = {"QUARK_TEST=yes", NULL};
        execve("/bin/procs", av, ev);
        say("execve failed: %s\n", ename(errno));
        _exit(1);
    }
    waitpid(pid, &st, 0);
    show_status("exec child", st);
    pid = vfork();
    if (pid == 0) {
        char *av[] = {"procs", "exec-child", NULL};
        execve("/bin/procs", av, environ);
        _exit(1);
    }
    waitpid(pid, &st, 0);
    show_status("vfork+exec child", st);

    char *av[] = {"x", NULL};
    char *ev[] = {NULL};
    CHECK("execve missing", execve("/bin/no-such-program", av, ev));
    CHECK("execve a directory", execve("/data", av, ev));
    CHECK("execve a 0644 file", execve("/data/hello.txt", av, ev));
    int g = open("/tmp/garbage", O_CREAT | O_WRONLY | O_TRUNC, 0755);
    write(g, "\x7f" "ELF garbage garbage garbage", 28);
    close(g);
    CHECK("execve a broken ELF", execve("/tmp/garbage", av, ev));
    g = open("/tmp/script", O_CREAT | O_WRONLY | O_TRUNC, 0755);
    write(g, "#!/bin/sh\necho from a script \"$0\" \"$1\"\nexit 4\n", 46);
    close(g);
    pid = fork();
    if (pid == 0) {
        char *sv[] = {"/tmp/script", "arg1", NULL};
        execve("/tmp/script", sv, ev);
        _exit(1);
    }
    waitpid(pid, &st, 0);
    show_status("#! script", st);
    say("parent exits 0\n");
    return 0;
}
