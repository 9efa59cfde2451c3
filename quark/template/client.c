/*
 * quark-client: the caller's side of the template (quark/template/client.py) without
 * starting Python, which is ~8 ms of every served run here (~10 ms with the Python
 * client's own imports). bin/quark runs it when it is built beside it; it speaks the
 * same wire (NUL-separated words over SOCK_SEQPACKET, fds by SCM_RIGHTS), and for
 * anything it does not hand to the template it runs bin/quark again with
 * QUARK_LAUNCHER_NO_CLIENT set, which goes on in Python as before.
 *
 *   quark-client LAUNCHER [ARG...]      LAUNCHER: bin/quark's $0
 *
 * Exit status: the run's, or the same signal death; 1 if the template went away
 * during the run. Built by setup.py (build_scripts) and scripts/setup-debian.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/quark/template.sock"
#define MAX_MESSAGE (1 << 20)           /* the template's limit too */
#define NO_CLIENT "QUARK_LAUNCHER_NO_CLIENT"

extern char **environ;

static const char *const global_valued[] = {"--root", "--log", "--log-format", NULL};
static const char *const run_valued[] = {"--bundle", "-b", "--console-socket", NULL};
static const char *const run_not_served[] = {"--detach", "--pid-file", "--preserve-fds",
                                             "--help", NULL};
/* What a foreground `quark run` forwards to the container (sandbox.process). */
static const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
                                SIGWINCH, SIGCONT};
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

/* Python's resource module names, in dir() order: the Python client sends these. */
static const struct { const char *name; int which; } rlimits[] = {
    {"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA}, {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE}, {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_OFILE", RLIMIT_NOFILE},
    {"RLIMIT_RSS", RLIMIT_RSS}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

static int pidfd = -1;

static int in(const char *s, const char *const *list) {
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* client.served(): a foreground `run` whose flags the template knows. */
static int served(int argc, char **argv) {
    int i = 0;
    while (i < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-v")
            || !strcmp(argv[i], "--version"))
            return 0;
        i += in(argv[i], global_valued) ? 2 : 1;
    }
    if (i >= argc || strcmp(argv[i], "run") != 0)
        return 0;
    for (int j = i + 1; j < argc;) {
        const char *a = argv[j];
        size_t n = strcspn(a, "=");
        char name[64];
        if (n < sizeof(name)) {
            memcpy(name, a, n);
            name[n] = 0;
            if (in(name, run_not_served))
                return 0;
        }
        if (a[0] == '-' && a[1] != '-' && strcmp(a, "-b") != 0)
            return 0;               /* short-flag clusters: left to the caller */
        j += in(a, run_valued) ? 2 : 1;
    }
    return 1;
}

struct msg { char *p; size_t n; int words; };

static int word(struct msg *m, const char *s, size_t len) {
    if (m->n + len + 1 > MAX_MESSAGE)
        return -1;
    if (m->words++)
        m->p[m->n++] = 0;
    memcpy(m->p + m->n, s, len);
    m->n += len;
    return 0;
}

static int fword(struct msg *m, const char *fmt, long long a, long long b) {
    char tmp[96];
    int len = snprintf(tmp, sizeof(tmp), fmt, a, b);
    return len < 0 || (size_t)len >= sizeof(tmp) ? -1 : word(m, tmp, (size_t)len);
}

/* os.environ's view of the environment: entries with '=', the first of a name. */
static int keep_env(char **e) {
    const char *eq = strchr(*e, '=');
    if (!eq)
        return 0;
    size_t k = (size_t)(eq - *e) + 1;
    for (char **o = environ; o < e; o++)
        if (strncmp(*o, *e, k) == 0)
            return 0;
    return 1;
}

static int build(struct msg *m, const char *argv0, int argc, char **argv) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    mode_t mask = umask(022);
    umask(mask);
    int nenv = 0;
    for (char **e = environ; *e; e++)
        nenv += keep_env(e);
    char t0[48];
    snprintf(t0, sizeof(t0), "%lld.%09ld", (long long)ts.tv_sec, ts.tv_nsec);
    if (word(m, "run", 3) || word(m, argv0, strlen(argv0)) || fword(m, "%lld", mask, 0)
        || word(m, t0, strlen(t0)) || fword(m, "%lld", argc, 0))
        return -1;
    for (int i = 0; i < argc; i++)
        if (word(m, argv[i], strlen(argv[i])))
            return -1;
    if (fword(m, "%lld", nenv, 0))
        return -1;
    for (char **e = environ; *e; e++)
        if (keep_env(e) && word(m, *e, strlen(*e)))
            return -1;
    for (size_t i = 0; i < sizeof(rlimits) / sizeof(rlimits[0]); i++) {
        struct rlimit rl;
        if (getrlimit(rlimits[i].which, &rl))
            return -1;
        char fmt[64];
        snprintf(fmt, sizeof(fmt), "%s=%%lld,%%lld", rlimits[i].name);
        if (fword(m, fmt, rl.rlim_cur == RLIM_INFINITY ? -1 : (long long)rl.rlim_cur,
                  rl.rlim_max == RLIM_INFINITY ? -1 : (long long)rl.rlim_max))
            return -1;
    }
    return 0;
}

static int send_fds(int sock, const struct msg *m, const int *fds, int nfds) {
    char control[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {m->p, m->n};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    memset(control, 0, sizeof(control));
    struct cmsghdr *c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    return sendmsg(sock, &h, MSG_NOSIGNAL) == (ssize_t)m->n ? 0 : -1;
}

/* One message: its length (0 at EOF, -1 on error), and the fd it carried, if any. */
static ssize_t receive(int sock, char *buf, size_t size, int *fd) {
    char control[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {buf, size - 1};
    struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof(control)};
    ssize_t n;
    do
        n = recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int got[4];
        memcpy(got, CMSG_DATA(c), sizeof(int) * (size_t)(k > 4 ? 4 : k));
        for (int i = 0; i < k && i < 4; i++) {
            if (*fd < 0)
                *fd = got[i];
            else
                close(got[i]);
        }
    }
    if (n >= 0)
        buf[n] = 0;
    return n;
}

static void forward(int sig) {
    int saved = errno;
    syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
    errno = saved;
}

/* The exit status a run's last word calls for (`status N` from the run, `wait_status W`
 * from the template); dies of the run's signal; -1 if it is neither. */
static int outcome(const char *reply, ssize_t n) {
    if (n <= 0)
        return -1;
    const char *value = reply + strlen(reply) + 1;
    if (value >= reply + n + 1 || !*value)
        return -1;
    char *end;
    long v = strtol(value, &end, 10);
    if (*end || v < 0 || value[0] == '+' || value[0] == ' ')
        return -1;
    if (!strcmp(reply, "status"))
        return (int)(v & 0xFF);
    if (strcmp(reply, "wait_status") != 0)
        return -1;
    int ws = (int)v;
    if (WIFSIGNALED(ws)) {
        /* Die the same way, as the run's own process would have. */
        int sig = WTERMSIG(ws);
        for (size_t i = 0; i < NFORWARDED; i++)
            signal(forwarded[i], SIG_DFL);
        signal(sig, SIG_DFL);
        kill(getpid(), sig);
        return 128 + sig;
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 1;
}

/* The rest of bin/quark, in Python: the command is not the template's to run. */
static void fallback(char **argv, const char *why) {
    setenv(NO_CLIENT, why, 1);
    argv[0] = "sh";                 /* argv[1] is bin/quark, then its arguments */
    execv("/bin/sh", argv);
    perror("quark: /bin/sh");
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: quark-client LAUNCHER [ARG...] (bin/quark runs it)\n", stderr);
        return 2;
    }
    const char *launcher = argv[1];
    int nargs = argc - 2;
    char **args = argv + 2;
    const char *path = getenv("QUARK_TEMPLATE");
    if ((path && !strcmp(path, "off")) || !served(nargs, args))
        fallback(argv, "1");
    if (!path || !*path)
        path = DEFAULT_SOCKET;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        fallback(argv, "1");
    strcpy(addr.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)))
        fallback(argv, "1");
    /* Only a listener of this caller's user gets its fds and environment, and the
     * pidfd its signals go to (a template serves only callers identical to it). */
    struct ucred peer;
    socklen_t len = sizeof(peer);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &len) || peer.uid != geteuid())
        fallback(argv, "1");
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct msg m = {malloc(MAX_MESSAGE), 0, 0};
    if (cwd < 0 || !m.p || build(&m, launcher, nargs, args))
        fallback(argv, "1");
    int fds[4] = {0, 1, 2, cwd};
    if (send_fds(sock, &m, fds, 4))
        fallback(argv, "1");        /* e.g. one of fds 0-2 closed: the template needs all */
    close(cwd);
    free(m.p);

    char reply[4096];
    int fd;
    ssize_t n = receive(sock, reply, sizeof(reply), &fd);
    if (n > 0 && (!strcmp(reply, "status") || !strcmp(reply, "wait_status"))) {
        /* The run ended before the template could send its pid: it ran, this is its
         * end (running it again in Python would run the container twice). */
        if (fd >= 0)
            close(fd);
        int early = outcome(reply, n);
        return early >= 0 ? early : 1;
    }
    if (n <= 4 || memcmp(reply, "pid", 4) != 0 || fd < 0) {
        if (fd >= 0)
            close(fd);
        /* Refused, or no answer: nothing has started. */
        fallback(argv, n > 8 && !memcmp(reply, "refused", 8) ? "refused" : "1");
    }
    pidfd = fd;
    struct sigaction sa = {.sa_handler = forward, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &sa, NULL);

    n = receive(sock, reply, sizeof(reply), &fd);
    if (fd >= 0)
        close(fd);
    int status = outcome(reply, n);
    if (status >= 0)
        return status;
    /* Both the run and the template are gone without a word: make sure of the first. */
    syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
    static const char gone[] = "quark: the template process went away during the run\n";
    if (write(2, gone, sizeof(gone) - 1) < 0)
        return 1;
    return 1;
}
