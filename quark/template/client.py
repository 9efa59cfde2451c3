"""The caller's side of the template: hand a command to it, relay signals, exit as
the run exits.

Imported by bin/quark before anything else of quark, so it imports only what an
interpreter started with -S has at hand cheaply: no json (with re and enum, 12 ms
here), no typing, no argparse, no config; and the C halves of socket and signal,
whose Python halves import enum and selectors (8 ms of a ~20 ms client here). Not
even struct, math or __future__ (0.2-0.35 ms each): annotations here are valid at
run time on Python 3.10.

The wire is a SOCK_SEQPACKET socket; a message is NUL-separated words (NUL cannot
occur in an argument or environment string), the first saying what it is:
- request: run ARGV0 UMASK T0 N ARGV... M ENV... RLIMIT_X=SOFT,HARD..., with the
  caller's fds 0, 1, 2 and its working directory (O_PATH) attached; or `status`;
- first reply: `pid N` with a pidfd of the run attached, or `refused REASON` (then
  the caller runs the command itself: nothing has happened yet);
- last reply: `status N` from the run itself just before it exits, or
  `wait_status W` from the template when the run died without saying so.
"""

import _signal
import _socket
import os
import sys

DEFAULT_SOCKET = "/run/quark/template.sock"
ENV = "QUARK_TEMPLATE"          # a socket path, or "off"
MAX_MESSAGE = 1 << 20

# The signals a foreground `quark run` forwards to the container (sandbox.process).
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT,
             _signal.SIGUSR1, _signal.SIGUSR2, _signal.SIGWINCH, _signal.SIGCONT)

# The global options that take a value (quark.cli skips them the same way).
GLOBAL_VALUED = ("--root", "--log", "--log-format")
_RUN_VALUED = ("--bundle", "-b", "--console-socket")
# Leave a sandbox that a client must be the ancestor of, or name this process to
# someone: never served.
_RUN_NOT_SERVED = ("--detach", "--pid-file", "--preserve-fds", "--help")


def socket_path() -> str | None:
    """Where the template listens; None when $QUARK_TEMPLATE is "off"."""
    value = os.environ.get(ENV, "")
    if value == "off":
        return None
    return value or DEFAULT_SOCKET


def served(argv: list[str]) -> bool:
    """Whether the template may run this command line: a foreground `run` whose
    flags it knows. Anything unusual (short-flag clusters such as -d) is left to the
    calling process."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        if argv[i] in ("-h", "--help", "-v", "--version"):
            return False
        i += 2 if argv[i] in GLOBAL_VALUED else 1
    if i >= len(argv) or argv[i] != "run":
        return False
    args = argv[i + 1:]
    j = 0
    while j < len(args):
        a = args[j]
        name = a.split("=", 1)[0]
        if name in _RUN_NOT_SERVED or (a.startswith("-") and not a.startswith("--")
                                       and a != "-b"):
            return False
        j += 2 if a in _RUN_VALUED else 1
    return True


def _rlimits() -> list[str]:
    import resource

    return [f"{name}={','.join(map(str, resource.getrlimit(getattr(resource, name))))}"
            for name in dir(resource) if name.startswith("RLIMIT_")]


def _same_user(sock: _socket.socket) -> bool:
    """Whether the listener runs as this caller's user (SO_PEERCRED): the caller's
    fds, environment, and the signals it relays to the pidfd it gets back are for
    no one else (a template serves only callers identical to itself anyway)."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(cred[4:8], sys.byteorder) == os.geteuid()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def encode(words: list[str]) -> bytes:
    return "\0".join(words).encode("utf-8", "surrogateescape")


def rights(fds: list[int]) -> list[tuple[int, int, bytes]]:
    """The ancillary data that passes ``fds`` (SCM_RIGHTS)."""
    return [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
             b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds))
            ] if fds else []


def fds_of(anc: list[tuple[int, int, bytes]]) -> list[int]:
    """The fds a recvmsg's ancillary data carried."""
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(payload[i:i + 4], sys.byteorder, signed=True)
                    for i in range(0, len(payload) // 4 * 4, 4)]
    return fds


def send(sock: _socket.socket, words: list[str], fds: list[int] | None = None) -> None:
    sock.sendmsg([encode(words)], rights(fds or []))


def receive(sock: _socket.socket, maxfds: int = 4) -> tuple[list[str] | None, list[int]]:
    """One message's words and the fds it carried; (None, fds) at EOF."""
    try:
        data, anc, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _socket.CMSG_LEN(maxfds * 4))
    except OSError:
        return None, []
    fds = fds_of(anc)
    if not data:
        return None, fds
    return data.decode("utf-8", "surrogateescape").split("\0"), fds


def run_request(argv0: str, argv: list[str], env: dict[str, str], umask: int, t0: float,
                rlimits: list[str]) -> list[str]:
    return ["run", argv0, str(umask), repr(t0), str(len(argv)), *argv, str(len(env)),
            *(f"{k}={v}" for k, v in env.items()), *rlimits]


def parse_run(words: list[str]) -> dict[str, object]:
    """The fields of a `run` request; ValueError if it is not one (the template's
    check: anything the caller sends is untrusted)."""
    if len(words) < 6 or words[0] != "run":
        raise ValueError("not a run request")
    argv0, umask, t0 = words[1], int(words[2]), float(words[3])
    n = int(words[4])
    if not 0 <= n <= len(words) - 6:
        raise ValueError("bad argument count")
    argv = words[5:5 + n]
    m = int(words[5 + n])
    if not 0 <= m <= len(words) - 6 - n:
        raise ValueError("bad environment count")
    env = {}
    for item in words[6 + n:6 + n + m]:
        k, eq, v = item.partition("=")
        if not k or not eq:
            raise ValueError(f"bad environment string {item[:40]!r}")
        env[k] = v
    rlimits = {}
    for item in words[6 + n + m:]:
        name, eq, values = item.partition("=")
        soft, comma, hard = values.partition(",")
        if not name.startswith("RLIMIT_") or not eq or not comma:
            raise ValueError(f"bad rlimit {item[:40]!r}")
        rlimits[name] = (int(soft), int(hard))
    if not 0 <= umask <= 0o777 or not abs(t0) < float("inf"):     # also NaN
        raise ValueError("bad umask or start time")
    return {"argv0": argv0, "umask": umask, "t0": t0, "argv": argv, "env": env,
            "rlimits": rlimits}


def request(argv0: str, argv: list[str], t0: float) -> int | None:
    """Run `argv` in the template; its exit status, or None when the caller must run
    it itself (no template, not served, refused: nothing has started)."""
    path = socket_path()
    if path is None or not served(argv):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        if not _same_user(sock):
            sock.close()
            return None
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        sock.close()
        return None
    try:
        send(sock, run_request(argv0, argv, dict(os.environ), _umask(), t0, _rlimits()),
             [0, 1, 2, cwd])
    except OSError:             # e.g. one of fds 0-2 closed: the template needs all
        sock.close()
        return None
    finally:
        os.close(cwd)
    reply, fds = receive(sock)
    if reply is not None and reply[0] in ("status", "wait_status"):
        # The run ended before the template could send its pid: it ran, this is
        # its end (running it again here would run the container twice).
        for fd in fds:
            os.close(fd)
        status = _outcome(reply)
        return status if status is not None else 1
    if reply is None or reply[0] != "pid" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        sock.close()
        return None
    return _wait(sock, fds[0])


def _outcome(final: list[str] | None) -> int | None:
    """The exit status a run's last word (``status N`` from the run, ``wait_status W``
    from the template) calls for; dies of the run's signal; None if it is neither."""
    kind, value = (final + [""])[:2] if final else ("", "")
    if kind == "status" and value.isdigit():
        return int(value)
    if kind == "wait_status" and value.isdigit():
        ws = int(value)
        if os.WIFSIGNALED(ws):
            # Die the same way, as the run's own process would have.
            sig = os.WTERMSIG(ws)
            for s in FORWARDED:
                _signal.signal(s, _signal.SIG_DFL)
            os.kill(os.getpid(), sig)
            return 128 + sig
        return os.waitstatus_to_exitcode(ws) & 0xFF
    return None


def _wait(sock: _socket.socket, pidfd: int) -> int:
    def forward(sig: int, _frame: object) -> None:
        try:
            _signal.pidfd_send_signal(pidfd, sig)
        except OSError:
            pass                # it has exited: its status is on the way

    for sig in FORWARDED:
        _signal.signal(sig, forward)
    final, fds = receive(sock)
    for fd in fds:
        os.close(fd)
    status = _outcome(final)
    if status is not None:
        return status
    # Both the run and the template are gone without a word: make sure of the first.
    try:
        _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
    except OSError:
        pass
    os.write(2, b"quark: the template process went away during the run\n")
    return 1
