"""The socket open file (struct socket + struct sock, the parts every family shares).

Some facts this follows (net/socket.c, net/core/sock.c):
- A socket is an fd whose file is O_RDWR; O_NONBLOCK lives in the file status flags
  (SOCK_NONBLOCK at creation, fcntl or FIONBIO later), MSG_DONTWAIT makes one call
  non-blocking.
- SO_RCVTIMEO/SO_SNDTIMEO bound a blocking call: when the time is up the call
  returns what it moved so far, else EAGAIN. A signal during a wait with such a
  timeout is EINTR (``sock_intr_errno``); without one it restarts per SA_RESTART.
  A timeval of {0, 0} means no timeout, a negative one an immediate one.
- Writing on a socket whose sending side is shut down (or whose peer is gone) is
  EPIPE, and SIGPIPE unless MSG_NOSIGNAL.
- ``fstat`` shows S_IFSOCK 0777 on sockfs; /proc/pid/fd shows ``socket:[ino]``.

Guest buffers: a sleeping call must not keep memoryviews of guest memory across the
sleep (another thread may unmap the pages meanwhile), so the data calls take an
:class:`IoVec`, which resolves guest ranges again after every wait.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable
from typing import Any

from quark.kernel.abi.linux import (
    EAGAIN,
    EDOM,
    EINTR,
    EINVAL,
    ENOPROTOOPT,
    EOPNOTSUPP,
    EPIPE,
    O_NONBLOCK,
    O_RDWR,
    S_IFSOCK,
)
from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.vfs.file import File, copy_out, skip_bytes
from quark.kernel.vfs.stat import Stat, StatFs, now_ns
from quark.kernel.waiting import ERESTARTSYS, WaitQueue

SOCKFS_MAGIC = 0x534F434B
_ino = itertools.count(20000)

# Accepted on any socket and only remembered (Linux stores them in struct sock;
# nothing here acts on them for in-kernel sockets).
_REMEMBERED = {N.SO_REUSEADDR, N.SO_REUSEPORT, N.SO_KEEPALIVE, N.SO_BROADCAST,
               N.SO_DONTROUTE, N.SO_OOBINLINE, N.SO_PRIORITY, N.SO_RCVLOWAT,
               N.SO_SNDLOWAT, N.SO_DEBUG, N.SO_TIMESTAMP_OLD, N.SO_MARK,
               N.SO_BUSY_POLL, N.SO_INCOMING_CPU, N.SO_NO_CHECK, N.SO_BSDCOMPAT}

_INT = struct.Struct("<i")


class IoVec:
    """Guest buffer ranges of one data call. :meth:`views` gives host memoryviews of
    them from byte ``skip`` on; call it again after any wait."""

    def __init__(self, t: Any, ranges: list[tuple[int, int]], write: bool,
                 fixed: list[memoryview] | None = None) -> None:
        self.t = t
        self.ranges = ranges
        self.write = write
        self.fixed = fixed
        self.total = sum(n for _, n in ranges) if fixed is None else sum(len(b) for b in fixed)

    @classmethod
    def of_views(cls, bufs: list[memoryview]) -> IoVec:
        """Views already resolved by the caller (read(2)/write(2) through File)."""
        return cls(None, [], False, bufs)

    def views(self, skip: int = 0) -> list[memoryview]:
        if self.fixed is not None:
            return skip_bytes(self.fixed, skip)
        out: list[memoryview] = []
        for base, n in self.ranges:
            if skip >= n:
                skip -= n
                continue
            out.extend(self.t.mm.iovecs(base + skip, n - skip, self.write))
            skip = 0
        return out

    def gather(self, skip: int, n: int) -> bytes:
        """A copy of ``n`` bytes from ``skip`` on (in-kernel queues keep copies)."""
        parts = []
        for v in self.views(skip):
            if n <= 0:
                break
            parts.append(bytes(v[:n]))
            n -= len(parts[-1])
        return b"".join(parts)

    def scatter(self, skip: int, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the buffers from byte ``skip`` on; returns bytes copied."""
        return copy_out(data, self.views(skip))


class Ancillary:
    """What a sendmsg carries besides data: SCM_RIGHTS files (each holding one
    reference while in flight), SCM_CREDENTIALS, and other (level, type, bytes)."""

    __slots__ = ("creds", "files", "other")

    def __init__(self) -> None:
        self.files: list[File] = []
        self.creds: tuple[int, int, int] | None = None
        self.other: list[tuple[int, int, bytes]] = []

    def drop(self) -> None:
        for f in self.files:
            f.decref()
        self.files = []


class Received:
    """The result of a receive: ``n`` is the return value (the full datagram length
    when MSG_TRUNC was asked), ``addr`` the sender's sockaddr bytes or None."""

    __slots__ = ("addr", "cmsgs", "creds", "files", "flags", "n")

    def __init__(self, n: int, addr: bytes | None = None, flags: int = 0) -> None:
        self.n = n
        self.addr = addr
        self.flags = flags                     # MSG_TRUNC, MSG_EOR ... for msg_flags
        self.files: list[File] = []            # SCM_RIGHTS, one reference each
        self.creds: tuple[int, int, int] | None = None   # SCM_CREDENTIALS
        self.cmsgs: list[tuple[int, int, bytes]] = []    # passed through (hostinet)


class Deadline:
    """The remaining time of one call with SO_RCVTIMEO/SO_SNDTIMEO (None: no limit)."""

    __slots__ = ("end",)

    def __init__(self, timeout: float | None) -> None:
        self.end = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


def sigpipe(t: Any, flags: int) -> None:
    """Queue SIGPIPE for the writer unless MSG_NOSIGNAL (then raise EPIPE yourself)."""
    if flags & N.MSG_NOSIGNAL:
        return
    from quark.kernel.task_signals import sigpipe as queue_sigpipe
    queue_sigpipe(t)


def epipe(t: Any, flags: int) -> LinuxError:
    sigpipe(t, flags)
    return LinuxError(EPIPE)


def int_opt(val: bytes) -> int:
    """An int option value: Linux wants at least sizeof(int) bytes."""
    if len(val) < 4:
        raise LinuxError(EINVAL)
    return int(_INT.unpack_from(val)[0])


def int_bytes(v: int) -> bytes:
    return _INT.pack(v)


def timeval_opt(val: bytes) -> float | None:
    if len(val) < N.TIMEVAL.size:
        raise LinuxError(EINVAL)
    sec, usec = (int(x) for x in N.TIMEVAL.unpack_from(val))
    if usec < 0 or usec >= 1_000_000:
        raise LinuxError(EDOM)
    if sec < 0:
        return 0.0
    if sec == 0 and usec == 0:
        return None
    return sec + usec / 1e6


def timeval_bytes(v: float | None) -> bytes:
    if v is None:
        return N.TIMEVAL.pack(0, 0)
    sec = int(v)
    return N.TIMEVAL.pack(sec, round((v - sec) * 1e6))


class SocketFile(File):
    """Base of every socket. Subclasses implement the protocol operations; the
    defaults fail as Linux's ``sock_no_*`` do (EOPNOTSUPP)."""

    def __init__(self, family: int, stype: int, protocol: int, flags: int) -> None:
        self.ino = next(_ino)
        super().__init__(O_RDWR | (flags & O_NONBLOCK), f"socket:[{self.ino}]")
        self.family = family
        self.stype = stype
        self.protocol = protocol
        self.rcvtimeo: float | None = None
        self.sndtimeo: float | None = None
        self.opts: dict[int, bytes] = {}       # remembered SOL_SOCKET options
        self.uid = self.gid = 0
        self.ctime = now_ns()

    # ---- blocking helpers
    def would_block(self, flags: int) -> bool:
        return self.nonblocking or bool(flags & N.MSG_DONTWAIT)

    async def wait(self, t: Any, deadline: Deadline, queues: tuple[WaitQueue, ...] = (),
                   host_fds: tuple[tuple[int, int], ...] = ()) -> None:
        """Sleep once; EAGAIN when the socket timeout expired, EINTR (timeout set) or
        ERESTARTSYS on a signal. The caller re-checks its condition afterwards."""
        left = deadline.left()
        if left is not None and left <= 0:
            raise LinuxError(EAGAIN)
        try:
            woken = await t.block(queues, left, host_fds)
        except LinuxError as e:
            if e.errno == ERESTARTSYS and deadline.end is not None:
                raise LinuxError(EINTR) from None
            raise
        if not woken and left is not None and deadline.left() == 0:
            raise LinuxError(EAGAIN)

    # ---- File interface: read/write are recv/send without flags
    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if not any(len(b) for b in bufs):
            return 0  # sock_read_iter: an empty read(2) never waits (recv(2) does)
        r = await self.recvmsg(t, IoVec.of_views(bufs), 0, 0)
        for f in r.files:
            f.decref()
        return r.n

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return await self.sendmsg(t, IoVec.of_views(bufs), 0, None, Ancillary())

    def stat(self) -> Stat:
        return Stat(mode=S_IFSOCK | 0o777, ino=self.ino, dev=(0, 8), nlink=1,
                    uid=self.uid, gid=self.gid, blksize=4096,
                    atime_ns=self.ctime, mtime_ns=self.ctime, ctime_ns=self.ctime)

    def statfs(self) -> StatFs:
        return StatFs(type=SOCKFS_MAGIC)

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        from quark.kernel.net import ifioctl
        if ifioctl.handles(req):
            return ifioctl.dev_ioctl(t, req, arg, self.host_poll_fd())
        return await super().ioctl(t, req, arg)

    # ---- protocol operations
    def bind(self, t: Any, addr: bytes) -> None:
        raise LinuxError(EOPNOTSUPP)

    def listen(self, t: Any, backlog: int) -> None:
        raise LinuxError(EOPNOTSUPP)

    async def accept(self, t: Any, flags: int) -> SocketFile:
        raise LinuxError(EOPNOTSUPP)

    async def connect(self, t: Any, addr: bytes) -> None:
        raise LinuxError(EOPNOTSUPP)

    def shutdown(self, t: Any, how: int) -> None:
        raise LinuxError(EOPNOTSUPP)

    def getsockname(self) -> bytes:
        raise LinuxError(EOPNOTSUPP)

    def getpeername(self) -> bytes:
        raise LinuxError(EOPNOTSUPP)

    async def sendmsg(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                      anc: Ancillary) -> int:
        """Send; takes over ``anc`` (its file references) whatever the outcome."""
        anc.drop()
        raise LinuxError(EOPNOTSUPP)

    async def recvmsg(self, t: Any, iov: IoVec, flags: int, controllen: int) -> Received:
        """Receive into ``iov``; ``controllen`` is the guest's msg_controllen (what
        ancillary data it can take)."""
        raise LinuxError(EOPNOTSUPP)

    # ---- options: SOL_SOCKET basics here, the rest in subclasses
    def setsockopt(self, t: Any, level: int, name: int, val: bytes) -> None:
        if level != N.SOL_SOCKET:
            raise LinuxError(EOPNOTSUPP)
        self.set_socket_opt(t, name, val)

    def set_socket_opt(self, t: Any, name: int, val: bytes) -> None:
        if name in (N.SO_RCVTIMEO_OLD, N.SO_RCVTIMEO_NEW):
            self.rcvtimeo = timeval_opt(val)
        elif name in (N.SO_SNDTIMEO_OLD, N.SO_SNDTIMEO_NEW):
            self.sndtimeo = timeval_opt(val)
        elif name in (N.SO_TYPE, N.SO_DOMAIN, N.SO_PROTOCOL, N.SO_ERROR, N.SO_ACCEPTCONN,
                      N.SO_PEERCRED):
            raise LinuxError(ENOPROTOOPT)
        elif name == N.SO_LINGER:
            if len(val) < N.LINGER.size:
                raise LinuxError(EINVAL)
            self.opts[name] = bytes(val[:N.LINGER.size])
        elif name in _REMEMBERED:
            self.opts[name] = int_bytes(int_opt(val))
        else:
            raise LinuxError(ENOPROTOOPT)

    def getsockopt(self, t: Any, level: int, name: int, optlen: int) -> bytes:
        if level != N.SOL_SOCKET:
            raise LinuxError(EOPNOTSUPP)
        return self.get_socket_opt(t, name, optlen)

    def get_socket_opt(self, t: Any, name: int, optlen: int) -> bytes:
        if name == N.SO_TYPE:
            return int_bytes(self.stype)
        if name == N.SO_DOMAIN:
            return int_bytes(self.family)
        if name == N.SO_PROTOCOL:
            return int_bytes(self.protocol)
        if name in (N.SO_RCVTIMEO_OLD, N.SO_RCVTIMEO_NEW):
            return timeval_bytes(self.rcvtimeo)
        if name in (N.SO_SNDTIMEO_OLD, N.SO_SNDTIMEO_NEW):
            return timeval_bytes(self.sndtimeo)
        if name == N.SO_LINGER:
            return self.opts.get(name, N.LINGER.pack(0, 0))
        if name in _REMEMBERED:
            return self.opts.get(name, int_bytes(0))
        raise LinuxError(ENOPROTOOPT)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} family={self.family} type={self.stype}>"


SocketFactory = Callable[..., SocketFile]
