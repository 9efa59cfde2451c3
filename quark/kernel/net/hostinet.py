"""AF_INET/AF_INET6 sockets as host sockets (gVisor's hostinet).

Some facts this rests on:
- The sandbox process already lives in the container's network namespace (the
  net_bridge plugin or config.json put it there), so a guest socket is simply a
  ``socket.socket`` of the sandbox process. It is always non-blocking on the host;
  the guest's blocking semantics come from waiting on the fd's readiness with
  ``t.block(host_fds=...)`` (the kernel lock is released meanwhile), bounded by
  SO_RCVTIMEO/SO_SNDTIMEO kept here, never on the host.
- Payloads move between the host socket and guest memory with ``recvmsg_into`` and
  ``sendmsg`` on memoryviews of guest memory: no Python copy of the data. The host
  takes at most UIO_MAXIOV (1024) vectors; longer stream transfers go in chunks,
  and only a datagram over more than 1024 guest pieces is staged in a buffer.
- Guest pointers never reach the host: addresses and option values are decoded
  here and handed over as Python values or bytes. Options are passed through only
  from a whitelist; others are ENOPROTOOPT.
- SOCK_RAW (and SOCK_PACKET) is EPERM for everyone: the container never gets
  CAP_NET_RAW on the sandbox's own host sockets. Unprivileged ICMP echo sockets
  (SOCK_DGRAM, IPPROTO_ICMP) are passed to the host, which applies
  net.ipv4.ping_group_range.
- Ports below 1024 need CAP_NET_BIND_SERVICE in the container's credentials.
- A blocking connect waits for writability then reports SO_ERROR; a non-blocking
  one is EINPROGRESS and the guest reads SO_ERROR itself.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator
from typing import Any

from quark.kernel.abi.linux import (
    EACCES,
    EAFNOSUPPORT,
    EAGAIN,
    EALREADY,
    EINPROGRESS,
    EINVAL,
    ENOPROTOOPT,
    EOPNOTSUPP,
    EPERM,
    EPIPE,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
    IOV_MAX,
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
)

_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT
_POLLALL = select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDHUP

# (level, option) pairs handed to the host as they are.
_PASS = {
    N.SOL_SOCKET: {N.SO_REUSEADDR, N.SO_REUSEPORT, N.SO_KEEPALIVE, N.SO_RCVBUF,
                   N.SO_SNDBUF, N.SO_LINGER, N.SO_BROADCAST, N.SO_OOBINLINE,
                   N.SO_PRIORITY, N.SO_RCVLOWAT, N.SO_DONTROUTE, N.SO_ERROR,
                   N.SO_ACCEPTCONN, N.SO_TIMESTAMP_OLD, N.SO_BINDTODEVICE},
    N.SOL_TCP: {N.TCP_NODELAY, N.TCP_MAXSEG, N.TCP_CORK, N.TCP_KEEPIDLE,
                N.TCP_KEEPINTVL, N.TCP_KEEPCNT, N.TCP_SYNCNT, N.TCP_LINGER2,
                N.TCP_DEFER_ACCEPT, N.TCP_WINDOW_CLAMP, N.TCP_INFO, N.TCP_QUICKACK,
                N.TCP_CONGESTION, N.TCP_USER_TIMEOUT, N.TCP_NOTSENT_LOWAT,
                N.TCP_FASTOPEN},
    N.SOL_IP: {N.IP_TOS, N.IP_TTL, N.IP_MTU_DISCOVER, N.IP_MTU, N.IP_RECVERR,
               N.IP_PKTINFO, N.IP_RECVTTL, N.IP_RECVTOS, N.IP_MULTICAST_IF,
               N.IP_MULTICAST_TTL, N.IP_MULTICAST_LOOP, N.IP_ADD_MEMBERSHIP,
               N.IP_DROP_MEMBERSHIP, N.IP_FREEBIND, N.IP_BIND_ADDRESS_NO_PORT},
    N.SOL_IPV6: {N.IPV6_V6ONLY, N.IPV6_UNICAST_HOPS, N.IPV6_MULTICAST_IF,
                 N.IPV6_MULTICAST_HOPS, N.IPV6_MULTICAST_LOOP, N.IPV6_JOIN_GROUP,
                 N.IPV6_LEAVE_GROUP, N.IPV6_RECVPKTINFO, N.IPV6_PKTINFO, N.IPV6_TCLASS,
                 N.IPV6_MTU_DISCOVER, N.IPV6_MTU, N.IPV6_RECVERR},
    N.SOL_UDP: set(),
}
# Ancillary data a sender may pass to the host (IP_PKTINFO, IP_TOS, IPV6_PKTINFO ...).
_CMSG_LEVELS = {N.SOL_IP, N.SOL_IPV6, N.SOL_UDP}
# Host getsockopt answers at most this much (Python's own limit is 1024).
_OPT_MAX = 1024
_RECV_FLAGS = N.MSG_OOB | N.MSG_PEEK | N.MSG_TRUNC | N.MSG_ERRQUEUE
_SEND_FLAGS = N.MSG_OOB | N.MSG_DONTROUTE | N.MSG_EOR | N.MSG_MORE | N.MSG_CONFIRM


@contextlib.contextmanager
def host_errors() -> Iterator[None]:
    """Host OSError -> LinuxError with the same errno (host and guest are x86-64 Linux)."""
    try:
        yield
    except OSError as e:
        raise LinuxError(e.errno or EINVAL) from None


# ---- addresses ------------------------------------------------------------

def parse_addr(family: int, raw: bytes, *, bind: bool = False) -> tuple[Any, ...]:
    """A guest sockaddr_in/sockaddr_in6 as a Python address for ``family``
    (inet_bind/inet_stream_connect/inet6_bind checks and errnos)."""
    if len(raw) < 2:
        raise LinuxError(EINVAL)
    fam = int.from_bytes(raw[:2], "little")
    if family == N.AF_INET:
        if len(raw) < 16:
            raise LinuxError(EINVAL)
        port = int.from_bytes(raw[2:4], "big")
        host = socket.inet_ntop(socket.AF_INET, raw[4:8])
        # bind() tolerates AF_UNSPEC with INADDR_ANY for old programs.
        if fam != N.AF_INET and not (bind and fam == N.AF_UNSPEC and host == "0.0.0.0"):
            raise LinuxError(EAFNOSUPPORT)
        return (host, port)
    if len(raw) < 24:                      # SIN6_LEN_RFC2133
        raise LinuxError(EINVAL)
    if fam != N.AF_INET6:
        raise LinuxError(EAFNOSUPPORT)
    port = int.from_bytes(raw[2:4], "big")
    # Only the 20-bit flow label is ever used (and only with IPV6_FLOWINFO_SEND);
    # Linux ignores the rest, Python refuses it (OverflowError).
    flow = int.from_bytes(raw[4:8], "big") & 0xFFFFF
    host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
    scope = int.from_bytes(raw[24:28], "little") if len(raw) >= 28 else 0
    return (host, port, flow, scope)


def format_addr(family: int, addr: Any) -> bytes:
    """A host socket address as the guest's sockaddr bytes."""
    if family == N.AF_INET:
        host, port = addr[0], addr[1]
        return (N.AF_INET.to_bytes(2, "little") + int(port).to_bytes(2, "big")
                + socket.inet_pton(socket.AF_INET, host) + bytes(8))
    host, port, flow, scope = addr
    return (N.AF_INET6.to_bytes(2, "little") + int(port).to_bytes(2, "big")
            + int(flow).to_bytes(4, "big") + socket.inet_pton(socket.AF_INET6, host.split("%")[0])
            + int(scope).to_bytes(4, "little"))


def _whitelisted(level: int, name: int) -> None:
    """EOPNOTSUPP for a level no protocol here knows (ip_getsockopt's answer),
    ENOPROTOOPT for an option not passed through."""
    if level not in _PASS:
        raise LinuxError(EOPNOTSUPP)
    if name not in _PASS[level]:
        raise LinuxError(ENOPROTOOPT)


def _port(addr: tuple[Any, ...]) -> int:
    return int(addr[1])


# ---- the socket -------------------------------------------------------------

class InetSocket(SocketFile):
    def __init__(self, family: int, stype: int, protocol: int, flags: int,
                 sock: socket.socket | None = None) -> None:
        super().__init__(family, stype, protocol, flags)
        if sock is None:
            with host_errors():
                sock = socket.socket(family, stype, protocol)
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()

    @property
    def stream(self) -> bool:
        return self.stype == N.SOCK_STREAM

    def release(self) -> None:
        self.sock.close()

    def _ready(self, events: int) -> int:
        p = select.poll()
        p.register(self.fd, events)
        r = p.poll(0)
        return r[0][1] if r else 0

    def poll_events(self) -> int:
        return self._ready(_POLLALL)

    def host_poll_fd(self) -> int | None:
        return self.fd

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        from quark.kernel.abi.linux import FIONREAD, TIOCOUTQ
        if req in (FIONREAD, TIOCOUTQ):  # SIOCINQ, SIOCOUTQ
            from quark.kernel.net import net_ffi
            with host_errors():
                n = net_ffi.int_ioctl(self.fd, req)
            t.mm.write_u32(arg, n)
            return 0
        return await super().ioctl(t, req, arg)

    # ---- names and connections
    # ---- addresses (overridden by netlink)
    def parse(self, raw: bytes, bind: bool = False) -> Any:
        return parse_addr(self.family, raw, bind=bind)

    def format(self, addr: Any) -> bytes:
        return format_addr(self.family, addr)

    def bind(self, t: Any, raw: bytes) -> None:
        addr = parse_addr(self.family, raw, bind=True)
        port = _port(addr)
        if 0 < port < 1024:
            from quark.kernel.creds import CAP_NET_BIND_SERVICE
            if not t.creds.capable(CAP_NET_BIND_SERVICE):
                raise LinuxError(EACCES)
        with host_errors():
            self.sock.bind(addr)

    def listen(self, t: Any, backlog: int) -> None:
        if not self.stream:
            raise LinuxError(EOPNOTSUPP)
        if backlog < 0 or backlog > N.SOMAXCONN:
            backlog = N.SOMAXCONN
        with host_errors():
            self.sock.listen(backlog)

    async def accept(self, t: Any, flags: int) -> SocketFile:
        if not self.stream:
            raise LinuxError(EOPNOTSUPP)
        deadline = Deadline(self.rcvtimeo)
        while True:
            try:
                conn, _ = self.sock.accept()
                break
            except BlockingIOError:
                pass
            except OSError as e:
                raise LinuxError(e.errno or EINVAL) from None
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await self.wait(t, deadline, host_fds=((self.fd, _POLLIN),))
        new = InetSocket(self.family, self.stype, self.protocol, flags, conn)
        new.uid, new.gid = self.uid, self.gid
        return new

    async def connect(self, t: Any, raw: bytes) -> None:
        if len(raw) >= 2 and int.from_bytes(raw[:2], "little") == N.AF_UNSPEC:
            raise LinuxError(EAFNOSUPPORT)  # dissolving an association: not supported
        addr = parse_addr(self.family, raw)
        with host_errors():
            err = self.sock.connect_ex(addr)
        if err == 0:
            return
        if err not in (EINPROGRESS, EALREADY) or not self.stream:
            raise LinuxError(err)
        if self.nonblocking:
            raise LinuxError(err)
        deadline = Deadline(self.sndtimeo)
        while not self._ready(_POLLOUT | select.POLLERR | select.POLLHUP):
            try:
                await self.wait(t, deadline, host_fds=((self.fd, _POLLOUT),))
            except LinuxError as e:
                if e.errno == EAGAIN:
                    raise LinuxError(EINPROGRESS) from None
                raise
        with host_errors():
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise LinuxError(err)

    def shutdown(self, t: Any, how: int) -> None:
        if how not in (N.SHUT_RD, N.SHUT_WR, N.SHUT_RDWR):
            raise LinuxError(EINVAL)
        with host_errors():
            self.sock.shutdown(how)

    def getsockname(self) -> bytes:
        with host_errors():
            return self.format(self.sock.getsockname())

    def getpeername(self) -> bytes:
        with host_errors():
            return self.format(self.sock.getpeername())

    # ---- data
    async def sendmsg(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                      anc: Ancillary) -> int:
        if anc.files:
            anc.drop()
            raise LinuxError(EINVAL)  # SCM_RIGHTS on a non-unix socket
        dest = self.parse(addr) if addr is not None else None
        if dest is not None and self.stream:
            dest = None  # TCP ignores the address (unless fast open, not offered)
        cmsgs = [c for c in anc.other if c[0] in _CMSG_LEVELS]
        hflags = (flags & _SEND_FLAGS) | N.MSG_DONTWAIT | N.MSG_NOSIGNAL
        total = iov.total
        done = 0
        deadline = Deadline(self.sndtimeo)
        while True:
            try:
                n = self._send_once(iov, done, total, hflags, cmsgs, dest)
                done += n
                if done >= total or not self.stream:
                    return done
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                if done:
                    return done
                if e.errno == EPIPE:
                    raise epipe(t, flags) from None
                raise LinuxError(e.errno or EINVAL) from None
            if self.would_block(flags):
                if done:
                    return done
                raise LinuxError(EAGAIN)
            try:
                await self.wait(t, deadline, host_fds=((self.fd, _POLLOUT),))
            except LinuxError:
                if done:
                    return done
                raise

    def _send_once(self, iov: IoVec, done: int, total: int, hflags: int,
                   cmsgs: list[tuple[int, int, bytes]], dest: tuple[Any, ...] | None) -> int:
        views = iov.views(done)
        if len(views) > IOV_MAX:
            if self.stream:
                views = views[:IOV_MAX]
            else:
                views = [memoryview(iov.gather(0, total))]  # rare: a very scattered datagram
        if dest is None:
            return int(self.sock.sendmsg(views, cmsgs, hflags))
        return int(self.sock.sendmsg(views, cmsgs, hflags, dest))

    async def recvmsg(self, t: Any, iov: IoVec, flags: int, controllen: int) -> Received:
        hflags = (flags & _RECV_FLAGS) | N.MSG_DONTWAIT
        waitall = bool(flags & N.MSG_WAITALL) and self.stream and not flags & N.MSG_PEEK
        ancsize = min(max(controllen, 0), 65536)
        total = iov.total
        done = 0
        r = Received(0)
        deadline = Deadline(self.rcvtimeo)
        while True:
            try:
                n, anc, mflags, addr = self._recv_once(iov, done, total, hflags, ancsize)
            except BlockingIOError:
                n = -1
            except OSError as e:
                if done:
                    break
                raise LinuxError(e.errno or EINVAL) from None
            if n >= 0:
                if done == 0:
                    r.flags = mflags & (N.MSG_TRUNC | N.MSG_CTRUNC | N.MSG_EOR | N.MSG_OOB
                                        | N.MSG_ERRQUEUE)
                    r.cmsgs = [(lv, ty, bytes(d)) for lv, ty, d in anc]
                    if addr is not None and not self.stream:
                        r.addr = self.format(addr)
                done += n
                if not waitall or n == 0 or done >= total:
                    break
            if self.would_block(flags) or (done and not waitall):
                if done:
                    break
                raise LinuxError(EAGAIN)
            try:
                await self.wait(t, deadline, host_fds=((self.fd, _POLLIN),))
            except LinuxError:
                if done:
                    break
                raise
        r.n = done
        return r

    def _recv_once(self, iov: IoVec, done: int, total: int, hflags: int,
                   ancsize: int) -> tuple[int, list[Any], int, Any]:
        views = iov.views(done)
        if len(views) <= IOV_MAX or self.stream:
            return self.sock.recvmsg_into(views[:IOV_MAX], ancsize, hflags)
        staging = bytearray(total)
        n, anc, mflags, addr = self.sock.recvmsg_into([staging], ancsize, hflags)
        iov.scatter(0, memoryview(staging)[:min(n, total)])
        return n, anc, mflags, addr

    # ---- options
    def check_option(self, level: int, name: int) -> None:
        """Raise unless the host socket may see this option (overridden by netlink)."""
        _whitelisted(level, name)

    def setsockopt(self, t: Any, level: int, name: int, val: bytes) -> None:
        if level == N.SOL_SOCKET and name in (N.SO_RCVTIMEO_OLD, N.SO_RCVTIMEO_NEW,
                                              N.SO_SNDTIMEO_OLD, N.SO_SNDTIMEO_NEW):
            return self.set_socket_opt(t, name, val)
        self.check_option(level, name)
        if level == N.SOL_SOCKET and name in (N.SO_ERROR, N.SO_ACCEPTCONN):
            raise LinuxError(ENOPROTOOPT)
        with host_errors():
            self.sock.setsockopt(level, name, val)

    def getsockopt(self, t: Any, level: int, name: int, optlen: int) -> bytes:
        if level == N.SOL_SOCKET and name in (N.SO_TYPE, N.SO_DOMAIN, N.SO_PROTOCOL,
                                              N.SO_RCVTIMEO_OLD, N.SO_RCVTIMEO_NEW,
                                              N.SO_SNDTIMEO_OLD, N.SO_SNDTIMEO_NEW):
            return self.get_socket_opt(t, name, optlen)
        self.check_option(level, name)
        with host_errors():
            return bytes(self.sock.getsockopt(level, name, min(max(optlen, 4), _OPT_MAX)))


def new_socket(t: Any, family: int, stype: int, protocol: int, flags: int) -> InetSocket:
    """socket(AF_INET/AF_INET6, ...) with inet_create's errnos."""
    if stype in (N.SOCK_RAW, N.SOCK_PACKET):
        raise LinuxError(EPERM)
    if stype == N.SOCK_STREAM:
        if protocol not in (0, N.IPPROTO_TCP):
            raise LinuxError(EPROTONOSUPPORT)
        protocol = N.IPPROTO_TCP
    elif stype == N.SOCK_DGRAM:
        icmp = N.IPPROTO_ICMP if family == N.AF_INET else N.IPPROTO_ICMPV6
        if protocol not in (0, N.IPPROTO_UDP, icmp):
            raise LinuxError(EPROTONOSUPPORT)
        protocol = protocol or N.IPPROTO_UDP
    else:
        raise LinuxError(ESOCKTNOSUPPORT)
    s = InetSocket(family, stype, protocol, flags)
    s.uid, s.gid = t.creds.euid, t.creds.egid
    return s

