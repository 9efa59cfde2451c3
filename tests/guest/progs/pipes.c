/* pipe2: parent writes, child reads; a two-child pipeline; EOF, EAGAIN, big transfers. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>

#define BIG (300 * 1024)   /* more than a pipe holds: the writer must block */

int main(void)
{
    int p[2];
    CHECK("pipe2 O_CLOEXEC", pipe2(p, O_CLOEXEC));
    SHOW("read end FD_CLOEXEC", fcntl(p[0], F_GETFD));
    say("fds are the lowest free: %d %d\n", p[0], p[1]);
    SHOW("write on the read end", write(p[0], "x", 1));
    SHOW("read on the write end", read(p[1], (char[1]){0}, 1));

    /* parent writes BIG bytes, child reads and checksums them */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        static char buf[65536];
        long total = 0;
        unsigned sum = 0;
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++)
                sum = sum * 31 + (unsigned char)buf[i];
            total += n;
        }
        say("child read %ld bytes, sum %u, last read %zd\n", total, sum, n);
        _exit(0);
    }
    close(p[0]);
    static char big[BIG];
    for (int i = 0; i < BIG; i++)
        big[i] = (char)(i % 251);
    long off = 0;
    while (off < BIG) {
        ssize_t n = write(p[1], big + off, BIG - off);
        if (n <= 0)
            die("write");
        off += n;
    }
    close(p[1]);
    int st;
    waitpid(pid, &st, 0);
    show_status("reader", st);

    /* pipeline: producer | consumer, both children, parent closes its ends */
    int q[2];
    pipe(q);
    pid_t prod = fork();
    if (prod == 0) {
        dup2(q[1], 1);
        close(q[0]);
        close(q[1]);
        for (int i = 1; i <= 100; i++)
            printf("%d\n", i);
        return 0;
    }
    pid_t cons = fork();
    if (cons == 0) {
        dup2(q[0], 0);
        close(q[0]);
        close(q[1]);
        char line[32];
        int count = 0, sevens = 0;
        while (fgets(line, sizeof line, stdin)) {
            count++;
            sevens += strchr(line, '7') != NULL;
        }
        say("consumer: %d lines, %d with a 7\n", count, sevens);
        return 0;
    }
    close(q[0]);
    close(q[1]);
    int st2;
    waitpid(prod, &st, 0);
    waitpid(cons, &st2, 0);
    show_status("producer", st);
    show_status("consumer", st2);

    /* nonblocking, EOF, poll */
    int r[2];
    pipe2(r, O_NONBLOCK);
    char c;
    SHOW("nonblocking read of an empty pipe", read(r[0], &c, 1));
    struct pollfd pf[2] = {{r[0], POLLIN, 0}, {r[1], POLLOUT, 0}};
    SHOW("poll empty pipe", poll(pf, 2, 0));
    say("revents: read %#x write %#x\n", pf[0].revents, pf[1].revents);
    write(r[1], "ab", 2);
    SHOW("poll with data", poll(pf, 1, 0));
    say("revents: read %#x\n", pf[0].revents);
    SHOW("read 5 of 2", read(r[0], (char[5]){0}, 5));
    close(r[1]);
    SHOW("read after writer closed (EOF)", read(r[0], &c, 1));
    pf[0].revents = 0;
    poll(pf, 1, 0);
    say("revents at EOF: %#x\n", pf[0].revents);
    long filled = 0;
    int w[2];
    pipe2(w, O_NONBLOCK);
    for (;;) {
        ssize_t n = write(w[1], big, 4096);
        if (n < 0) {
            say("filled a pipe: %ld bytes, then %s\n", filled, ename(errno));
            break;
        }
        filled += n;
    }
    SHOW("F_GETPIPE_SZ", fcntl(w[1], F_GETPIPE_SZ));
    SHOW("pipe2 bad flags", pipe2(w, 0x1));
    return 0;
}
