/* AF_UNIX: socketpair + SCM_RIGHTS passing a pipe fd, stream server/client across
 * fork, bind to a path (stat shows S_IFSOCK, EADDRINUSE), dgram, seqpacket,
 * abstract names, shutdown/EOF/EPIPE, SO_PEERCRED, poll readiness. */
#include "common.h"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static socklen_t mkaddr(struct sockaddr_un *a, const char *path, int abstract)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (abstract) {
        memcpy(a->sun_path + 1, path, n);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    }
    memcpy(a->sun_path, path, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static long send_fd(int s, int fd, const char *msg)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    memset(cbuf, 0, sizeof cbuf);
    struct iovec iov = { (void *)msg, strlen(msg) };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(s, &m, 0);
}

static int recv_fd(int s, char *buf, size_t len, int flags)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { buf, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf };
    ssize_t n = recvmsg(s, &m, flags);
    if (n < 0) { say("recvmsg: %s\n", ename(errno)); return -1; }
    buf[n] = 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    say("recvmsg = %zd '%s', msg_flags %#x, cmsg %s\n", n, buf, m.msg_flags,
        c ? (c->cmsg_type == SCM_RIGHTS ? "SCM_RIGHTS" : "other") : "none");
    if (!c)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void pair_and_rights(void)
{
    say("-- socketpair + SCM_RIGHTS\n");
    int sv[2], p[2];
    CHECK("socketpair stream", socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    SHOW("FD_CLOEXEC", fcntl(sv[0], F_GETFD));
    CHECK("pipe", pipe(p));
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(p[0]);
        close(p[1]);
        char buf[64];
        int fd = recv_fd(sv[1], buf, sizeof buf - 1, MSG_CMSG_CLOEXEC);
        if (fd >= 0) {
            say("child: received fd cloexec=%d\n", fcntl(fd, F_GETFD));
            SHOW("child: write through passed pipe", write(fd, "via-pipe", 8));
            close(fd);
        }
        _exit(0);
    }
    close(sv[1]);
    long sent = send_fd(sv[0], p[1], "take-this");
    close(p[1]);
    int st;
    waitpid(pid, &st, 0);
    show_status("child", st);
    say("sendmsg with SCM_RIGHTS = %ld\n", sent);
    char buf[32] = {0};
    SHOW("parent reads pipe", read(p[0], buf, sizeof buf - 1));
    say("pipe said '%s'\n", buf);
    SHOW("pipe EOF", read(p[0], buf, sizeof buf));
    close(p[0]);
    SHOW("recv after peer exit (EOF)", recv(sv[0], buf, sizeof buf, 0));
    SHOW("send after peer exit", send(sv[0], "x", 1, MSG_NOSIGNAL));
    pid = fork();
    if (pid == 0) {
        write(sv[0], "x", 1);   /* SIGPIPE kills */
        _exit(0);
    }
    waitpid(pid, &st, 0);
    show_status("writer to a closed socket", st);
    close(sv[0]);
}

static void stream_server(void)
{
    say("-- stream server/client on a path\n");
    struct sockaddr_un a;
    socklen_t alen = mkaddr(&a, "/tmp/srv.sock", 0);
    unlink("/tmp/srv.sock");
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK("bind path", bind(ls, (struct sockaddr *)&a, alen));
    struct stat st;
    CHECK("stat socket path", stat("/tmp/srv.sock", &st));
    say("S_ISSOCK = %d mode %o\n", S_ISSOCK(st.st_mode), st.st_mode & 0777);
    int ls2 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK("bind same path again", bind(ls2, (struct sockaddr *)&a, alen));
    close(ls2);
    int c0 = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK("connect before listen", connect(c0, (struct sockaddr *)&a, alen));
    close(c0);
    CHECK("listen", listen(ls, 4));
    struct sockaddr_un got;
    socklen_t glen = sizeof got;
    CHECK("getsockname", getsockname(ls, (struct sockaddr *)&got, &glen));
    say("getsockname len %u path %s\n", glen, got.sun_path);

    pid_t pid = fork();
    if (pid == 0) {
        /* silent: output order across processes is not deterministic */
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        if (connect(c, (struct sockaddr *)&a, alen) < 0)
            _exit(1);
        if (write(c, "hello server", 12) != 12)
            _exit(2);
        char buf[64] = {0};
        if (read(c, buf, sizeof buf - 1) != 12 || strcmp(buf, "hello client"))
            _exit(3);
        if (shutdown(c, SHUT_WR) < 0)
            _exit(4);
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            ;
        if (n != 0)
            _exit(5);
        _exit(0);
    }
    struct sockaddr_un peer;
    socklen_t plen = sizeof peer;
    int s = accept(ls, (struct sockaddr *)&peer, &plen);
    if (s < 0)
        die("accept");
    say("accepted, peer addrlen %u\n", plen);
    struct ucred uc;
    socklen_t ulen = sizeof uc;
    CHECK("SO_PEERCRED", getsockopt(s, SOL_SOCKET, SO_PEERCRED, &uc, &ulen));
    say("peer pid is child: %d, uid %u gid %u\n", uc.pid == pid, uc.uid, uc.gid);
    char buf[64] = {0};
    ssize_t n = read(s, buf, sizeof buf - 1);
    say("server got %zd '%s'\n", n, buf);
    SHOW("server write", write(s, "hello client", 12));
    SHOW("server read EOF after SHUT_WR", read(s, buf, sizeof buf));
    SHOW("server write after peer SHUT_WR", write(s, "more", 4));
    close(s);
    int w;
    waitpid(pid, &w, 0);
    show_status("client", w);
    close(ls);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK("connect after listener closed", connect(c, (struct sockaddr *)&a, alen));
    close(c);
    CHECK("unlink socket path", unlink("/tmp/srv.sock"));
    c = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK("connect to missing path", connect(c, (struct sockaddr *)&a, alen));
    close(c);
}

static void dgram(void)
{
    say("-- dgram\n");
    struct sockaddr_un a, b;
    socklen_t alen = mkaddr(&a, "/tmp/dg-a", 0), blen = mkaddr(&b, "/tmp/dg-b", 0);
    unlink("/tmp/dg-a");
    unlink("/tmp/dg-b");
    int x = socket(AF_UNIX, SOCK_DGRAM, 0), y = socket(AF_UNIX, SOCK_DGRAM, 0);
    CHECK("bind a", bind(x, (struct sockaddr *)&a, alen));
    CHECK("bind b", bind(y, (struct sockaddr *)&b, blen));
    SHOW("sendto b", sendto(x, "datagram-1", 10, 0, (struct sockaddr *)&b, blen));
    SHOW("sendto b", sendto(x, "dg2", 3, 0, (struct sockaddr *)&b, blen));
    char buf[64] = {0};
    struct sockaddr_un from;
    socklen_t flen = sizeof from;
    SHOW("recvfrom (short buffer)", recvfrom(y, buf, 4, 0, (struct sockaddr *)&from, &flen));
    say("from %s len %u data '%.4s'\n", from.sun_path, flen, buf);
    SHOW("recv MSG_TRUNC", recv(y, buf, 1, MSG_TRUNC));
    SHOW("recv empty nonblocking", recv(y, buf, sizeof buf, MSG_DONTWAIT));
    CHECK("connect x->b", connect(x, (struct sockaddr *)&b, blen));
    SHOW("send connected", send(x, "c", 1, 0));
    SHOW("recv", recv(y, buf, sizeof buf, 0));
    close(x);
    close(y);
    unlink("/tmp/dg-a");
    unlink("/tmp/dg-b");
    int sv[2];
    CHECK("socketpair dgram", socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
    SHOW("send", send(sv[0], "12345", 5, 0));
    SHOW("send", send(sv[0], "678", 3, 0));
    SHOW("recv keeps boundaries", recv(sv[1], buf, sizeof buf, 0));
    SHOW("recv keeps boundaries", recv(sv[1], buf, sizeof buf, 0));
    close(sv[0]);
    close(sv[1]);
}

static void seqpacket_and_abstract(void)
{
    say("-- seqpacket + abstract\n");
    struct sockaddr_un a;
    socklen_t alen = mkaddr(&a, "quark-test-abstract", 1);
    int ls = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK("bind abstract", bind(ls, (struct sockaddr *)&a, alen));
    int ls2 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK("bind abstract again", bind(ls2, (struct sockaddr *)&a, alen));
    close(ls2);
    CHECK("listen", listen(ls, 1));
    int c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    CHECK("connect abstract", connect(c, (struct sockaddr *)&a, alen));
    int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    say("accept4 ok: %d, O_NONBLOCK: %d\n", s >= 0, !!(fcntl(s, F_GETFL) & O_NONBLOCK));
    SHOW("send 5", send(c, "abcde", 5, 0));
    SHOW("send 2", send(c, "fg", 2, 0));
    char buf[16];
    SHOW("recv one packet", recv(s, buf, sizeof buf, 0));
    SHOW("recv one packet", recv(s, buf, sizeof buf, 0));
    SHOW("recv nonblocking empty", recv(s, buf, sizeof buf, 0));
    struct pollfd pf = { s, POLLIN | POLLOUT, 0 };
    SHOW("poll", poll(&pf, 1, 0));
    say("revents %#x\n", pf.revents);
    close(c);
    SHOW("recv after peer close", recv(s, buf, sizeof buf, 0));
    pf.revents = 0;
    SHOW("poll", poll(&pf, 1, 0));
    say("revents after close %#x\n", pf.revents);
    struct sockaddr_un got;
    socklen_t glen = sizeof got;
    CHECK("getsockname", getsockname(ls, (struct sockaddr *)&got, &glen));
    say("abstract name len %u matches %d\n", glen,
        glen == alen && memcmp(got.sun_path, a.sun_path, glen - 2) == 0);
    close(s);
    close(ls);
    /* autobind */
    int d = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un au = { .sun_family = AF_UNIX };
    CHECK("autobind", bind(d, (struct sockaddr *)&au, sizeof(sa_family_t)));
    glen = sizeof got;
    getsockname(d, (struct sockaddr *)&got, &glen);
    say("autobind name len %u, abstract %d\n", glen, got.sun_path[0] == 0);
    close(d);
}

static void errors(void)
{
    say("-- errors\n");
    int fd = open("/data/hello.txt", O_RDONLY);
    char buf[8];
    SHOW("recv on a file", recv(fd, buf, 1, 0));
    CHECK("listen on a file", listen(fd, 1));
    close(fd);
    SHOW("socket bad family", socket(9999, SOCK_STREAM, 0));
    SHOW("socket AF_UNIX proto 7", socket(AF_UNIX, SOCK_STREAM, 7));
    SHOW("socket AF_UNIX type 9", socket(AF_UNIX, 9, 0));
    SHOW("socket bad type flags", socket(AF_UNIX, SOCK_STREAM | 0x100000, 0));
    int sv[2];
    SHOW("socketpair AF_INET", socketpair(AF_INET, SOCK_STREAM, 0, sv));
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    SHOW("recv unconnected", recv(s, buf, 1, 0));
    SHOW("send unconnected", send(s, "x", 1, MSG_NOSIGNAL));
    CHECK("listen unbound", listen(s, 1));
    struct sockaddr_un a;
    CHECK("bind addrlen 200", bind(s, (struct sockaddr *)&a, 200));
    CHECK("bind bad pointer", bind(s, (struct sockaddr *)8, 20));
    a.sun_family = AF_INET;
    CHECK("bind wrong family", bind(s, (struct sockaddr *)&a, 10));
    struct sockaddr_un p;
    socklen_t pl = sizeof p;
    CHECK("getpeername unconnected", getpeername(s, (struct sockaddr *)&p, &pl));
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK("SO_TYPE", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl));
    say("SO_TYPE %d len %u\n", v, vl);
    CHECK("getsockopt bad option", getsockopt(s, SOL_SOCKET, 9999, &v, &vl));
    CHECK("shutdown bad how", shutdown(s, 7));
    close(s);
}

int main(void)
{
    pair_and_rights();
    stream_server();
    dgram();
    seqpacket_and_abstract();
    errors();
    return 0;
}
