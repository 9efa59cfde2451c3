/* AF_INET/AF_INET6 host sockets over loopback: TCP echo across fork, UDP, non-blocking
 * connect + SO_ERROR, getsockname/getpeername, options, poll, errors. */
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>

static struct sockaddr_in lo(unsigned short port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static unsigned short port_of(int s)
{
    struct sockaddr_in a;
    socklen_t l = sizeof a;
    if (getsockname(s, (struct sockaddr *)&a, &l) < 0)
        die("getsockname");
    return ntohs(a.sin_port);
}

static void tcp_echo(void)
{
    say("-- TCP echo across fork\n");
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    CHECK("SO_REUSEADDR", setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one));
    struct sockaddr_in a = lo(0);
    CHECK("bind 127.0.0.1:0", bind(ls, (struct sockaddr *)&a, sizeof a));
    CHECK("listen", listen(ls, 8));
    unsigned short port = port_of(ls);
    say("ephemeral port > 0: %d\n", port > 0);
    struct sockaddr_in got;
    socklen_t gl = sizeof got;
    getsockname(ls, (struct sockaddr *)&got, &gl);
    say("getsockname len %u family %d addr %s\n", gl, got.sin_family, inet_ntoa(got.sin_addr));
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK("SO_ACCEPTCONN", getsockopt(ls, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl));
    say("SO_ACCEPTCONN %d\n", v);

    pid_t pid = fork();
    if (pid == 0) {     /* echo server, silent */
        int s = accept(ls, NULL, NULL);
        if (s < 0)
            _exit(1);
        char buf[8192];
        ssize_t n;
        long total = 0;
        while ((n = read(s, buf, sizeof buf)) > 0) {
            total += n;
            if (write(s, buf, n) != n)
                _exit(2);
        }
        _exit(n == 0 && total == 200000 + 5 ? 0 : 3);
    }
    close(ls);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    a = lo(port);
    CHECK("connect", connect(c, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in peer;
    socklen_t pl = sizeof peer;
    CHECK("getpeername", getpeername(c, (struct sockaddr *)&peer, &pl));
    say("peer is the server port: %d\n", ntohs(peer.sin_port) == port);
    CHECK("TCP_NODELAY", setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one));
    vl = sizeof v;
    CHECK("get TCP_NODELAY", getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &v, &vl));
    say("TCP_NODELAY %d\n", v != 0);
    struct iovec iov[2] = { { "hel", 3 }, { "lo", 2 } };
    SHOW("writev", writev(c, iov, 2));
    char buf[16] = {0};
    SHOW("recv MSG_WAITALL 5", recv(c, buf, 5, MSG_WAITALL));
    say("echo '%s'\n", buf);
    /* a big transfer: writer and reader interleave through poll */
    static char big[200000], back[200000];
    for (int i = 0; i < (int)sizeof big; i++)
        big[i] = (char)(i * 7);
    fcntl(c, F_SETFL, O_NONBLOCK);
    long sent = 0, got_back = 0;
    while (got_back < (long)sizeof big) {
        struct pollfd pf = { c, POLLIN | (sent < (long)sizeof big ? POLLOUT : 0), 0 };
        if (poll(&pf, 1, 5000) <= 0)
            die("poll");
        if (pf.revents & POLLOUT) {
            ssize_t n = send(c, big + sent, sizeof big - sent, 0);
            if (n > 0)
                sent += n;
        }
        if (pf.revents & POLLIN) {
            ssize_t n = recv(c, back + got_back, sizeof back - got_back, 0);
            if (n > 0)
                got_back += n;
        }
    }
    say("big echo: sent %ld got %ld equal %d\n", sent, got_back, memcmp(big, back, sizeof big) == 0);
    fcntl(c, F_SETFL, 0);
    CHECK("shutdown SHUT_WR", shutdown(c, SHUT_WR));
    SHOW("read EOF", read(c, buf, sizeof buf));
    int st;
    waitpid(pid, &st, 0);
    show_status("echo server", st);
    close(c);
}

static void udp(void)
{
    say("-- UDP\n");
    int x = socket(AF_INET, SOCK_DGRAM, 0), y = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = lo(0);
    CHECK("bind y", bind(y, (struct sockaddr *)&a, sizeof a));
    struct sockaddr_in ya = lo(port_of(y));
    SHOW("sendto", sendto(x, "ping-1", 6, 0, (struct sockaddr *)&ya, sizeof ya));
    SHOW("sendto", sendto(x, "pong", 4, 0, (struct sockaddr *)&ya, sizeof ya));
    char buf[64] = {0};
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    SHOW("recvfrom short buffer", recvfrom(y, buf, 3, 0, (struct sockaddr *)&from, &fl));
    say("from 127.0.0.1: %d, port is x's: %d, len %u\n",
        from.sin_addr.s_addr == htonl(INADDR_LOOPBACK), ntohs(from.sin_port) == port_of(x), fl);
    struct iovec iov = { buf, sizeof buf };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    SHOW("recvmsg", recvmsg(y, &m, 0));
    say("msg_flags %#x\n", m.msg_flags);
    SHOW("recv nonblocking empty", recv(y, buf, sizeof buf, MSG_DONTWAIT));
    struct timeval tv = { 0, 100000 };
    CHECK("SO_RCVTIMEO 100ms", setsockopt(y, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv));
    SHOW("recv times out", recv(y, buf, sizeof buf, 0));
    struct timeval tv2;
    socklen_t tl = sizeof tv2;
    CHECK("get SO_RCVTIMEO", getsockopt(y, SOL_SOCKET, SO_RCVTIMEO, &tv2, &tl));
    say("timeout %ld.%06ld\n", (long)tv2.tv_sec, (long)tv2.tv_usec);
    /* sendmmsg / recvmmsg */
    struct mmsghdr mm[3];
    struct iovec io[3] = { { "one", 3 }, { "two!", 4 }, { "three", 5 } };
    memset(mm, 0, sizeof mm);
    for (int i = 0; i < 3; i++) {
        mm[i].msg_hdr.msg_iov = &io[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &ya;
        mm[i].msg_hdr.msg_namelen = sizeof ya;
    }
    SHOW("sendmmsg", sendmmsg(x, mm, 3, 0));
    char rb[3][16];
    struct iovec ri[3];
    struct mmsghdr rm[3];
    memset(rm, 0, sizeof rm);
    for (int i = 0; i < 3; i++) {
        ri[i].iov_base = rb[i];
        ri[i].iov_len = sizeof rb[i];
        rm[i].msg_hdr.msg_iov = &ri[i];
        rm[i].msg_hdr.msg_iovlen = 1;
    }
    SHOW("recvmmsg", recvmmsg(y, rm, 3, MSG_WAITFORONE, NULL));
    say("lens %u %u %u\n", rm[0].msg_len, rm[1].msg_len, rm[2].msg_len);
    CHECK("connect udp", connect(x, (struct sockaddr *)&ya, sizeof ya));
    SHOW("send connected", send(x, "c", 1, 0));
    SHOW("recv", recv(y, buf, sizeof buf, 0));
    close(x);
    close(y);
}

static void nonblocking_connect(void)
{
    say("-- non-blocking connect\n");
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(0);
    bind(ls, (struct sockaddr *)&a, sizeof a);
    listen(ls, 1);
    a = lo(port_of(ls));
    int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    errno = 0;
    int r = connect(c, (struct sockaddr *)&a, sizeof a);
    say("connect: %s\n", r == 0 ? "ok at once" : (errno == EINPROGRESS ? "EINPROGRESS" : ename(errno)));
    struct pollfd pf = { c, POLLOUT, 0 };
    SHOW("poll POLLOUT", poll(&pf, 1, 5000));
    int err = -1;
    socklen_t el = sizeof err;
    CHECK("SO_ERROR", getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el));
    say("SO_ERROR %d\n", err);
    int s = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
    say("accepted: %d\n", s >= 0);
    char buf[8];
    SHOW("recv on empty nonblocking", recv(s, buf, sizeof buf, 0));
    close(s);
    close(c);
    SHOW("accept nonblocking listener with none", (fcntl(ls, F_SETFL, O_NONBLOCK), accept(ls, NULL, NULL)));
    close(ls);
    /* refused: nothing listens on the port we just closed */
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK("connect refused", connect(c, (struct sockaddr *)&a, sizeof a));
    close(c);
    c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    r = connect(c, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno == EINPROGRESS) {
        pf.fd = c;
        pf.events = POLLOUT;
        poll(&pf, 1, 5000);
        el = sizeof err;
        getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &el);
        say("non-blocking refused: SO_ERROR %s\n", ename(err));
    } else {
        say("non-blocking refused: %s\n", ename(errno));
    }
    close(c);
}

static void inet6(void)
{
    say("-- AF_INET6 loopback\n");
    int ls = socket(AF_INET6, SOCK_STREAM, 0);
    if (ls < 0) {
        say("no IPv6: %s\n", ename(errno));
        return;
    }
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) {
        say("bind ::1: %s\n", ename(errno));
        close(ls);
        return;
    }
    listen(ls, 1);
    socklen_t l = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &l);
    say("getsockname len %u family %d\n", l, a.sin6_family);
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK("connect ::1", connect(c, (struct sockaddr *)&a, sizeof a));
    int s = accept(ls, NULL, NULL);
    SHOW("send", send(s, "six", 3, 0));
    char buf[8] = {0};
    SHOW("recv", recv(c, buf, sizeof buf, 0));
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK("IPV6_V6ONLY", getsockopt(c, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl));
    struct sockaddr_in v4 = lo(1);
    CHECK("connect v6 socket to sockaddr_in", connect(socket(AF_INET6, SOCK_STREAM, 0),
                                                       (struct sockaddr *)&v4, sizeof v4));
    close(s);
    close(c);
    close(ls);
}

static void errors(void)
{
    say("-- errors\n");
    SHOW("socket AF_INET SOCK_SEQPACKET", socket(AF_INET, SOCK_SEQPACKET, 0));
    SHOW("socket AF_INET stream proto udp", socket(AF_INET, SOCK_STREAM, IPPROTO_UDP));
    SHOW("socket AF_PACKET-ish family 200", socket(200, SOCK_DGRAM, 0));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = lo(0);
    CHECK("bind short addrlen", bind(s, (struct sockaddr *)&a, 8));
    a.sin_family = AF_INET6;
    CHECK("bind wrong family", bind(s, (struct sockaddr *)&a, sizeof a));
    char buf[4];
    SHOW("recv unconnected tcp", recv(s, buf, sizeof buf, 0));
    SHOW("send unconnected tcp", send(s, "x", 1, MSG_NOSIGNAL));
    struct sockaddr_in p;
    socklen_t pl = sizeof p;
    CHECK("getpeername unconnected", getpeername(s, (struct sockaddr *)&p, &pl));
    CHECK("shutdown unconnected", shutdown(s, SHUT_RDWR));
    int v = 0;
    socklen_t vl = sizeof v;
    CHECK("getsockopt SO_TYPE", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, &vl));
    say("SO_TYPE %d SO_DOMAIN ", v);
    getsockopt(s, SOL_SOCKET, SO_DOMAIN, &v, &vl);
    say("%d\n", v);
    CHECK("getsockopt bad level", getsockopt(s, 12345, 1, &v, &vl));
    CHECK("getsockopt bad optlen ptr", getsockopt(s, SOL_SOCKET, SO_TYPE, &v, (socklen_t *)8));
    close(s);
}

int main(void)
{
    tcp_echo();
    udp();
    nonblocking_connect();
    inet6();
    errors();
    return 0;
}
