"""AF_UNIX sockets: stream, datagram and seqpacket, entirely inside the kernel
(net/unix/af_unix.c semantics).

Some facts this follows:
- Names: a path in the container's file system (bind creates an S_IFSOCK inode
  there, 0777 minus umask; EADDRINUSE if the name exists), an abstract name (the
  sun_path starts with NUL; its length is addrlen), or an autobind name ("\\0" and
  five hex digits) for bind with only sun_family. Connecting to a path needs write
  permission on the inode; a path with no socket bound behind it is ECONNREFUSED.
  Path sockets are found through a per-kernel registry keyed by the inode's
  (st_dev, st_ino), so renames keep working and a hostfs placeholder is just the
  inode ``mknod`` made on the host.
- connect on a stream/seqpacket socket creates the server side at once and queues
  it on the listener: the client is connected (and may write) before accept. A
  full backlog (more than ``backlog`` waiting) blocks the client, EAGAIN when
  non-blocking.
- Stream data may be split and merged, except that a receive stops after a
  segment that carried SCM_RIGHTS. Datagrams and seqpackets keep their bounds;
  a short buffer truncates the message (MSG_TRUNC in msg_flags; with the MSG_TRUNC
  flag the call returns the full length).
- Closing one end: the peer sees EOF after the queued data, writes get EPIPE
  (SIGPIPE), and ECONNRESET if the closing end left unread data.
  shutdown(SHUT_WR) on one end is SHUT_RD on the other.
- SO_PEERCRED is the creds of the other end at connect/listen/socketpair time;
  SCM_CREDENTIALS is sent with each message and delivered with SO_PASSCRED.
- File references in flight are counted; a socket that passes itself is never
  freed (Linux has a garbage collector for those cycles; we do not).
"""

from __future__ import annotations

import collections
from typing import Any

from quark.kernel.abi.linux import (
    EADDRINUSE,
    EAGAIN,
    ECONNREFUSED,
    ECONNRESET,
    EEXIST,
    EINVAL,
    EISCONN,
    EMSGSIZE,
    ENOTCONN,
    EOPNOTSUPP,
    EPERM,
    EPROTOTYPE,
    FIONREAD,
    MAY_WRITE,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDHUP,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
    S_IFREG,
    S_IFSOCK,
    TIOCOUTQ,
)
from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.net.socket import (
    Ancillary,
    Deadline,
    IoVec,
    Received,
    SocketFile,
    epipe,
    int_bytes,
    int_opt,
)
from quark.kernel.vfs.file import File

RCV_SHUTDOWN, SEND_SHUTDOWN, SHUTDOWN_MASK = 1, 2, 3
UNCONNECTED, LISTENING, CONNECTED = 0, 1, 2

# net.core.wmem_default / wmem_max and net.unix.max_dgram_qlen
DEFAULT_BUF = 212992
MAX_BUF = 212992
MIN_BUF = 4608
MAX_DGRAM_QLEN = 512


class Segment:
    """One sendmsg's worth of queued data."""

    __slots__ = ("addr", "creds", "data", "files", "pos", "sender")

    def __init__(self, data: bytes, addr: bytes | None, files: list[File],
                 creds: tuple[int, int, int], sender: UnixSocket) -> None:
        self.data = data
        self.pos = 0                # bytes already read (stream)
        self.addr = addr            # sender's name (sockaddr_un bytes) or None
        self.files = files
        self.creds = creds
        self.sender = sender

    def left(self) -> int:
        return len(self.data) - self.pos


class UnixNamespace:
    """The names of one kernel's AF_UNIX sockets (one network namespace)."""

    def __init__(self) -> None:
        self.abstract: dict[bytes, UnixSocket] = {}
        self.paths: dict[tuple[Any, int], UnixSocket] = {}
        self.next_auto = 1

    def autobind_name(self) -> bytes:
        for _ in range(0x100000):
            name = b"\0" + b"%05x" % self.next_auto
            self.next_auto = (self.next_auto + 1) & 0xFFFFF
            if name not in self.abstract:
                return name
        raise LinuxError(EADDRINUSE)


def namespace(t: Any) -> UnixNamespace:
    k = t.kernel
    ns = getattr(k, "unix_ns", None)
    if ns is None:
        ns = UnixNamespace()
        k.unix_ns = ns
    return ns


def task_creds(t: Any) -> tuple[int, int, int]:
    """(tgid, real uid, real gid): what SCM_CREDENTIALS carries by default."""
    return (t.pid, t.creds.uid, t.creds.gid)


def peer_creds(t: Any) -> tuple[int, int, int]:
    """(tgid, euid, egid): what SO_PEERCRED reports."""
    return (t.pid, t.creds.euid, t.creds.egid)


def sockaddr(name: bytes | None) -> bytes:
    """struct sockaddr_un of a name; a path gets its NUL, as getsockname shows it."""
    fam = N.AF_UNIX.to_bytes(2, "little")
    if name is None:
        return fam
    if name.startswith(b"\0"):
        return fam + name
    return fam + name + b"\0"


def parse_addr(raw: bytes) -> bytes | None:
    """The name in a guest sockaddr_un (None: only sun_family, i.e. autobind).
    EINVAL for a bad length or family (unix_validate_addr)."""
    if len(raw) < N.SUN_PATH_OFFSET or len(raw) > N.SUN_PATH_OFFSET + N.SUN_PATH_MAX:
        raise LinuxError(EINVAL)
    if int.from_bytes(raw[:2], "little") != N.AF_UNIX:
        raise LinuxError(EINVAL)
    path = raw[2:]
    if not path:
        return None
    if path[0] == 0:
        return bytes(path)
    end = path.find(b"\0")
    return bytes(path if end < 0 else path[:end])


def _path_key(loc: Any) -> tuple[Any, int]:
    st = loc.node.stat()
    return (st.dev, st.ino)


class UnixSocket(SocketFile):
    def __init__(self, ns: UnixNamespace, stype: int, flags: int,
                 creds: tuple[int, int, int]) -> None:
        super().__init__(N.AF_UNIX, stype, 0, flags)
        self.ns = ns
        self.state = UNCONNECTED
        self.peer: UnixSocket | None = None
        self.name: bytes | None = None
        self.path_key: tuple[Any, int] | None = None
        self.rq: collections.deque[Segment] = collections.deque()
        self.rq_bytes = 0
        self.backlog: collections.deque[UnixSocket] = collections.deque()
        self.max_backlog = 0
        self.shut = 0
        self.err = 0
        self.dead = False
        self.passcred = False
        self.peercred: tuple[int, int, int] | None = None
        self.creds = creds           # of the creator: SO_PEERCRED of the other end
        self.sndbuf = DEFAULT_BUF
        self.rcvbuf = DEFAULT_BUF
        self.uid, self.gid = creds[1], creds[2]

    @property
    def connection_based(self) -> bool:
        return self.stype in (N.SOCK_STREAM, N.SOCK_SEQPACKET)

    def notify(self) -> None:
        self.wait_queue.notify()
        if self.peer is not None:
            self.peer.wait_queue.notify()

    # ---- names
    def bind(self, t: Any, raw: bytes) -> None:
        name = parse_addr(raw)
        if self.name is not None:
            raise LinuxError(EINVAL)
        if name is None:
            name = self.ns.autobind_name()
        if name.startswith(b"\0"):
            if name in self.ns.abstract:
                raise LinuxError(EADDRINUSE)
            self.ns.abstract[name] = self
        else:
            self.path_key = _make_socket_inode(t, name)
            self.ns.paths[self.path_key] = self
        self.name = name

    def _unbind(self) -> None:
        if self.name is None:
            return
        if self.name.startswith(b"\0"):
            if self.ns.abstract.get(self.name) is self:
                del self.ns.abstract[self.name]
        elif self.path_key is not None and self.ns.paths.get(self.path_key) is self:
            del self.ns.paths[self.path_key]

    def _autobind(self) -> None:
        if self.name is None:
            self.name = self.ns.autobind_name()
            self.ns.abstract[self.name] = self

    def _find(self, t: Any, raw: bytes) -> UnixSocket:
        name = parse_addr(raw)
        if name is None:
            raise LinuxError(EINVAL)
        if name.startswith(b"\0"):
            other = self.ns.abstract.get(name)
        else:
            from quark.kernel.vfs import at, perm
            from quark.kernel.vfs.path import fsdecode, resolve
            path = fsdecode(name)
            loc = resolve(t, at.base_for(t, -100, path), path)
            st = loc.node.stat()
            perm.check(t, st, MAY_WRITE)
            other = self.ns.paths.get((st.dev, st.ino))
        if other is None or other.dead:
            raise LinuxError(ECONNREFUSED)
        if other.stype != self.stype:
            raise LinuxError(EPROTOTYPE)
        return other

    def getsockname(self) -> bytes:
        return sockaddr(self.name)

    def getpeername(self) -> bytes:
        if self.peer is None or (self.connection_based and self.state != CONNECTED):
            raise LinuxError(ENOTCONN)
        return sockaddr(self.peer.name)

    # ---- connections
    def listen(self, t: Any, backlog: int) -> None:
        if not self.connection_based:
            raise LinuxError(EOPNOTSUPP)
        if self.name is None or self.state == CONNECTED:
            raise LinuxError(EINVAL)
        if backlog < 0 or backlog > N.SOMAXCONN:
            backlog = N.SOMAXCONN
        self.max_backlog = backlog
        if self.state != LISTENING:
            self.state = LISTENING
            self.creds = peer_creds(t)
        self.notify()

    async def connect(self, t: Any, raw: bytes) -> None:
        if len(raw) >= 2 and int.from_bytes(raw[:2], "little") == N.AF_UNSPEC \
                and not self.connection_based:
            self._disconnect_dgram()
            return
        if not self.connection_based:
            other = self._find(t, raw)
            if other.peer is not None and other.peer is not self:
                raise LinuxError(EPERM)
            self._disconnect_dgram()
            self.peer = other
            self.state = CONNECTED
            self.peercred = other.creds
            return
        if self.state == CONNECTED:
            raise LinuxError(EISCONN)
        if self.state == LISTENING:
            raise LinuxError(EINVAL)
        deadline = Deadline(self.sndtimeo)
        while True:
            other = self._find(t, raw)
            if other.state != LISTENING:
                raise LinuxError(ECONNREFUSED)
            if len(other.backlog) <= other.max_backlog:
                break
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await self.wait(t, deadline, (other.wait_queue,))
            if self.state == CONNECTED:
                raise LinuxError(EISCONN)
        me = peer_creds(t)
        srv = UnixSocket(self.ns, self.stype, 0, other.creds)
        srv.name = other.name
        srv.state = self.state = CONNECTED
        srv.peer, self.peer = self, srv
        srv.peercred, self.peercred = me, other.creds
        srv.passcred = other.passcred
        srv.sndbuf, srv.rcvbuf = other.sndbuf, other.rcvbuf
        other.backlog.append(srv)
        other.wait_queue.notify()
        self.notify()

    def _disconnect_dgram(self) -> None:
        self.peer = None
        self.state = UNCONNECTED
        self.peercred = None

    async def accept(self, t: Any, flags: int) -> SocketFile:
        if not self.connection_based:
            raise LinuxError(EOPNOTSUPP)
        if self.state != LISTENING:
            raise LinuxError(EINVAL)
        deadline = Deadline(self.rcvtimeo)
        while not self.backlog:
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await self.wait(t, deadline, (self.wait_queue,))
            if self.state != LISTENING:
                raise LinuxError(EINVAL)
        srv = self.backlog.popleft()
        srv.flags = (srv.flags & ~N.SOCK_NONBLOCK) | (flags & N.SOCK_NONBLOCK)
        self.notify()  # a connecting client may fit into the backlog now
        return srv

    def shutdown(self, t: Any, how: int) -> None:
        if how not in (N.SHUT_RD, N.SHUT_WR, N.SHUT_RDWR):
            raise LinuxError(EINVAL)
        mode = how + 1
        self.shut |= mode
        p = self.peer
        if p is not None and self.connection_based:
            pm = (SEND_SHUTDOWN if mode & RCV_SHUTDOWN else 0) | \
                 (RCV_SHUTDOWN if mode & SEND_SHUTDOWN else 0)
            p.shut |= pm
        self.notify()

    def release(self) -> None:
        self._unbind()
        self.dead = True
        embryos, self.backlog = list(self.backlog), collections.deque()
        for s in embryos:
            s.embryo_release()
        p = self.peer
        unread = bool(self.rq)
        self._drop_queue()
        if p is not None and self.connection_based:
            p.shut = SHUTDOWN_MASK
            if unread:
                p.err = ECONNRESET
        self.shut = SHUTDOWN_MASK
        self.wait_queue.notify()
        if p is not None:
            p.wait_queue.notify()

    def embryo_release(self) -> None:
        """A connection the listener never accepted: the client is reset."""
        if not self.released:
            self.released = True
            self.release()
            if self.peer is not None:
                self.peer.err = ECONNRESET

    def _drop_queue(self) -> None:
        for seg in self.rq:
            for f in seg.files:
                f.decref()
        self.rq.clear()
        self.rq_bytes = 0

    # ---- data
    def _room(self, target: UnixSocket) -> int:
        return max(0, self.sndbuf - target.rq_bytes)

    def _sender_addr(self) -> bytes | None:
        return sockaddr(self.name) if self.name is not None else None

    def _enqueue(self, target: UnixSocket, data: bytes, anc: Ancillary,
                 creds: tuple[int, int, int]) -> None:
        seg = Segment(data, self._sender_addr(), anc.files, anc.creds or creds, self)
        anc.files = []
        target.rq.append(seg)
        target.rq_bytes += len(data)
        target.wait_queue.notify()

    async def sendmsg(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                      anc: Ancillary) -> int:
        try:
            if flags & N.MSG_OOB:
                raise LinuxError(EOPNOTSUPP)
            if self.stype == N.SOCK_STREAM:
                return await self._send_stream(t, iov, flags, addr, anc)
            return await self._send_dgram(t, iov, flags, addr, anc)
        finally:
            anc.drop()

    async def _send_stream(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                           anc: Ancillary) -> int:
        if addr is not None:
            raise LinuxError(EISCONN if self.state == CONNECTED else EOPNOTSUPP)
        if self.err:
            e, self.err = self.err, 0
            raise LinuxError(e)
        if self.state != CONNECTED or self.peer is None:
            raise LinuxError(ENOTCONN)
        creds = task_creds(t)
        total = iov.total
        done = 0
        deadline = Deadline(self.sndtimeo)
        while True:
            p = self.peer
            if self.shut & SEND_SHUTDOWN or p.dead or p.shut & RCV_SHUTDOWN:
                if done:
                    return done
                raise epipe(t, flags)
            if total == 0:
                return 0
            room = self._room(p)
            if room > 0:
                k = min(room, total - done)
                self._enqueue(p, iov.gather(done, k), anc, creds)
                done += k
                if done >= total:
                    self.notify()
                    return done
            if self.would_block(flags):
                if done:
                    return done
                raise LinuxError(EAGAIN)
            try:
                await self.wait(t, deadline, (p.wait_queue, self.wait_queue))
            except LinuxError:
                if done:
                    return done
                raise

    async def _send_dgram(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                          anc: Ancillary) -> int:
        seqpacket = self.stype == N.SOCK_SEQPACKET
        if seqpacket:
            if self.err:
                e, self.err = self.err, 0
                raise LinuxError(e)
            if addr is not None and self.state != CONNECTED:
                raise LinuxError(ENOTCONN)
            addr = None
            if self.state != CONNECTED:
                raise LinuxError(ENOTCONN)
        total = iov.total
        if total > self.sndbuf - 32:
            raise LinuxError(EMSGSIZE)
        creds = task_creds(t)
        deadline = Deadline(self.sndtimeo)
        data: bytes | None = None
        if self.passcred and not seqpacket:
            self._autobind()
        while True:
            if addr is not None:
                target = self._find(t, addr)
            else:
                target = self.peer  # type: ignore[assignment]
                if target is None:
                    raise LinuxError(ENOTCONN)
                if target.dead:
                    if seqpacket:
                        raise epipe(t, flags)
                    self._disconnect_dgram()
                    raise LinuxError(ECONNREFUSED)
            if not seqpacket and target.peer is not None and target.peer is not self:
                raise LinuxError(EPERM)  # unix_may_send
            if self.shut & SEND_SHUTDOWN or (seqpacket and target.shut & RCV_SHUTDOWN):
                raise epipe(t, flags)
            full = (len(target.rq) >= MAX_DGRAM_QLEN if not seqpacket
                    else target.rq_bytes + total > self.sndbuf and bool(target.rq))
            if not full:
                if data is None:
                    data = iov.gather(0, total)
                self._enqueue(target, data, anc, creds)
                self.notify()
                return total
            if self.would_block(flags):
                raise LinuxError(EAGAIN)
            if data is None:
                data = iov.gather(0, total)  # guest buffers are not kept across sleeps
            await self.wait(t, deadline, (target.wait_queue, self.wait_queue))

    async def recvmsg(self, t: Any, iov: IoVec, flags: int, controllen: int) -> Received:
        if flags & N.MSG_OOB:
            raise LinuxError(EOPNOTSUPP)
        if self.stype == N.SOCK_STREAM:
            if self.state != CONNECTED:
                raise LinuxError(EINVAL)
            r = await self._recv_stream(t, iov, flags)
        else:
            if self.stype == N.SOCK_SEQPACKET and self.state != CONNECTED:
                raise LinuxError(ENOTCONN)
            r = await self._recv_dgram(t, iov, flags)
        if not self.passcred:
            r.creds = None
        return r

    async def _wait_data(self, t: Any, flags: int, deadline: Deadline) -> bool:
        """Until the queue has data: False at EOF (read side shut down)."""
        while not self.rq:
            if self.err:
                e, self.err = self.err, 0
                raise LinuxError(e)
            if self.shut & RCV_SHUTDOWN:
                return False
            if self.would_block(flags):
                raise LinuxError(EAGAIN)
            await self.wait(t, deadline, (self.wait_queue,))
        return True

    async def _recv_stream(self, t: Any, iov: IoVec, flags: int) -> Received:
        want = iov.total
        peek = bool(flags & N.MSG_PEEK)
        waitall = bool(flags & N.MSG_WAITALL) and not peek
        deadline = Deadline(self.rcvtimeo)
        r = Received(0)
        copied = 0
        while True:
            try:
                more = await self._wait_data(
                    t, flags | (N.MSG_DONTWAIT if copied and not waitall else 0), deadline)
            except LinuxError:
                if copied:
                    break
                raise
            if not more or want == 0:
                break
            stop = False
            i = 0
            while i < len(self.rq) and copied < want:
                seg = self.rq[i]
                if copied and self.passcred and seg.creds != r.creds:
                    stop = True  # never glue messages from different writers
                    break
                if not copied:
                    r.addr = seg.addr
                r.creds = seg.creds
                k = min(seg.left(), want - copied)
                copied += iov.scatter(copied, memoryview(seg.data)[seg.pos:seg.pos + k])
                if seg.files:
                    if peek:
                        for f in seg.files:
                            f.incref()
                        r.files.extend(seg.files)
                    else:
                        r.files.extend(seg.files)
                        seg.files = []
                    stop = True  # a receive ends after the segment that carried fds
                if peek:
                    i += 1
                else:
                    seg.pos += k
                    self.rq_bytes -= k
                    if seg.left() == 0:
                        self.rq.popleft()
                if stop:
                    break
            if not peek:
                self.notify()
            if stop or copied >= want or not waitall:
                break
        r.n = copied
        return r

    async def _recv_dgram(self, t: Any, iov: IoVec, flags: int) -> Received:
        deadline = Deadline(self.rcvtimeo)
        if not await self._wait_data(t, flags, deadline):
            return Received(0)
        seg = self.rq[0]
        n = iov.scatter(0, seg.data)
        r = Received(len(seg.data) if flags & N.MSG_TRUNC else n, seg.addr)
        if n < len(seg.data):
            r.flags |= N.MSG_TRUNC
        r.creds = seg.creds
        if flags & N.MSG_PEEK:
            for f in seg.files:
                f.incref()
            r.files = list(seg.files)
        else:
            self.rq.popleft()
            self.rq_bytes -= len(seg.data)
            r.files, seg.files = seg.files, []
            self.notify()
            seg.sender.wait_queue.notify()
        return r

    # ---- readiness
    def poll_events(self) -> int:
        ev = 0
        if self.err:
            ev |= POLLERR
        if self.shut == SHUTDOWN_MASK:
            ev |= POLLHUP
        if self.shut & RCV_SHUTDOWN:
            ev |= POLLRDHUP | POLLIN | POLLRDNORM
        if self.state == LISTENING:
            if self.backlog:
                ev |= POLLIN | POLLRDNORM
            return ev
        if self.rq:
            ev |= POLLIN | POLLRDNORM
        if self.connection_based and self.state != CONNECTED:
            ev |= POLLHUP
        p = self.peer
        if p is None or p.dead:
            writable = True
        elif self.stype == N.SOCK_DGRAM:
            writable = len(p.rq) < MAX_DGRAM_QLEN
        else:
            writable = self._room(p) > 0
        if writable:
            ev |= POLLOUT | POLLWRNORM | POLLWRBAND
        return ev

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        if req == FIONREAD:  # SIOCINQ
            if self.state == LISTENING:
                raise LinuxError(EINVAL)
            if self.stype == N.SOCK_STREAM:
                n = self.rq_bytes
            else:
                n = len(self.rq[0].data) if self.rq else 0
            t.mm.write_u32(arg, n)
            return 0
        if req == TIOCOUTQ:  # SIOCOUTQ: what the peer has not read yet
            p = self.peer
            n = sum(s.left() for s in p.rq if s.sender is self) if p is not None else 0
            t.mm.write_u32(arg, n)
            return 0
        return await super().ioctl(t, req, arg)

    # ---- options
    def set_socket_opt(self, t: Any, name: int, val: bytes) -> None:
        if name == N.SO_PASSCRED:
            self.passcred = bool(int_opt(val))
        elif name in (N.SO_SNDBUF, N.SO_RCVBUF):
            v = min(max(int_opt(val), 0), MAX_BUF) * 2
            v = max(v, MIN_BUF)
            if name == N.SO_SNDBUF:
                self.sndbuf = v
            else:
                self.rcvbuf = v
            self.notify()
        else:
            super().set_socket_opt(t, name, val)

    def get_socket_opt(self, t: Any, name: int, optlen: int) -> bytes:
        if name == N.SO_PASSCRED:
            return int_bytes(int(self.passcred))
        if name == N.SO_SNDBUF:
            return int_bytes(self.sndbuf)
        if name == N.SO_RCVBUF:
            return int_bytes(self.rcvbuf)
        if name == N.SO_ERROR:
            e, self.err = self.err, 0
            return int_bytes(e)
        if name == N.SO_ACCEPTCONN:
            return int_bytes(int(self.state == LISTENING))
        if name == N.SO_PEERCRED:
            if self.peercred is None:
                # Linux: pid 0 and the overflow ids for a socket without a peer.
                return N.UCRED.pack(0, 65534, 65534)
            return N.UCRED.pack(*self.peercred)
        return super().get_socket_opt(t, name, optlen)

    def setsockopt(self, t: Any, level: int, name: int, val: bytes) -> None:
        if level != N.SOL_SOCKET:
            raise LinuxError(EOPNOTSUPP)
        self.set_socket_opt(t, name, val)


def _make_socket_inode(t: Any, name: bytes) -> tuple[Any, int]:
    """Create the S_IFSOCK inode ``name`` for bind; its registry key."""
    from quark.kernel.vfs import at, ops
    from quark.kernel.vfs.path import fsdecode, resolve
    path = fsdecode(name)
    base = at.base_for(t, -100, path)
    try:
        try:
            ops.mknod(t, base, path, S_IFSOCK | 0o777, (0, 0))
        except LinuxError as e:
            if e.errno != EPERM:
                raise
            # A host that refuses socket inodes: an empty regular file holds the name.
            ops.mknod(t, base, path, S_IFREG | 0o777, (0, 0))
    except LinuxError as e:
        if e.errno == EEXIST:
            raise LinuxError(EADDRINUSE) from None
        raise
    return _path_key(resolve(t, base, path, follow=False))


def new_socket(t: Any, stype: int, protocol: int, flags: int) -> UnixSocket:
    """socket(AF_UNIX, ...): EPROTONOSUPPORT for a protocol other than 0/PF_UNIX;
    SOCK_RAW is a datagram socket, as in Linux."""
    from quark.kernel.abi.linux import EPROTONOSUPPORT, ESOCKTNOSUPPORT
    if protocol not in (0, N.AF_UNIX):
        raise LinuxError(EPROTONOSUPPORT)
    if stype == N.SOCK_RAW:
        stype = N.SOCK_DGRAM
    if stype not in (N.SOCK_STREAM, N.SOCK_DGRAM, N.SOCK_SEQPACKET):
        raise LinuxError(ESOCKTNOSUPPORT)
    return UnixSocket(namespace(t), stype, flags, peer_creds(t))


def socketpair(t: Any, stype: int, protocol: int, flags: int) -> tuple[UnixSocket, UnixSocket]:
    a = new_socket(t, stype, protocol, flags)
    b = new_socket(t, stype, protocol, flags)
    a.peer, b.peer = b, a
    a.state = b.state = CONNECTED
    a.peercred = b.peercred = peer_creds(t)
    return a, b

