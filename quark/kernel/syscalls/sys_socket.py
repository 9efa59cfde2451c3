"""The socket system calls (net/socket.c): argument decoding and checks, then the
socket's own operations (``net/socket.py`` and the families in ``net/``).

Order of checks follows Linux: flags (EINVAL), then the fd (EBADF, ENOTSOCK), then
the address argument (EINVAL, EFAULT), then the protocol.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from quark.kernel.abi.linux import (
    EAFNOSUPPORT,
    EINVAL,
    ENOBUFS,
    ENOTSOCK,
    EOPNOTSUPP,
)
from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.net.msg import (
    CONTROL_MAX,
    MsgHdr,
    build_control,
    build_control_none,
    parse_control,
    read_addr,
    single,
    write_addr,
)
from quark.kernel.net.socket import Ancillary, SocketFile
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import install_pair, nofile_limit

Task = Any
_TYPE_FLAGS = N.SOCK_NONBLOCK | N.SOCK_CLOEXEC
_TIMESPEC = struct.Struct("<qq")


def _sock(t: Task, fd: int) -> SocketFile:
    f = t.fds.get(fd)
    if not isinstance(f, SocketFile):
        raise LinuxError(ENOTSOCK)
    return f


def _install(t: Task, f: SocketFile, flags: int) -> int:
    return int(t.fds.install(f, bool(flags & N.SOCK_CLOEXEC), limit=nofile_limit(t)))


def _split_type(typ: int) -> tuple[int, int]:
    if typ & ~(N.SOCK_TYPE_MASK | _TYPE_FLAGS):
        raise LinuxError(EINVAL)
    return typ & N.SOCK_TYPE_MASK, typ & _TYPE_FLAGS


def _check_family(family: int, stype: int) -> None:
    if family < 0 or family >= N.AF_MAX:
        raise LinuxError(EAFNOSUPPORT)
    if stype >= N.SOCK_MAX:
        raise LinuxError(EINVAL)


def make_socket(t: Task, family: int, stype: int, protocol: int, flags: int) -> SocketFile:
    """A new socket of ``family`` (flags: SOCK_NONBLOCK)."""
    _check_family(family, stype)
    if family == N.AF_UNIX:
        from quark.kernel.net import unix
        return unix.new_socket(t, stype, protocol, flags)
    if family in (N.AF_INET, N.AF_INET6):
        from quark.kernel.net import hostinet
        return hostinet.new_socket(t, family, stype, protocol, flags)
    if family == N.AF_NETLINK:
        from quark.kernel.net import netlink
        return netlink.new_socket(t, stype, protocol, flags)
    raise LinuxError(EAFNOSUPPORT)


@syscall(41, "socket", partial="AF_UNIX, AF_INET/AF_INET6 (host sockets; no SOCK_RAW), "
                               "AF_NETLINK NETLINK_ROUTE read-only")
async def sys_socket(t: Task, a: SyscallArgs) -> int:
    family, typ, protocol = a.int(0), a.int(1), a.int(2)
    stype, flags = _split_type(typ)
    return _install(t, make_socket(t, family, stype, protocol, flags), flags)


@syscall(53, "socketpair")
async def sys_socketpair(t: Task, a: SyscallArgs) -> int:
    family, typ, protocol, sv = a.int(0), a.int(1), a.int(2), a.ptr(3)
    stype, flags = _split_type(typ)
    _check_family(family, stype)
    if family != N.AF_UNIX:
        s = make_socket(t, family, stype, protocol, flags)  # its own errors first
        s.released = True
        s.release()
        raise LinuxError(EOPNOTSUPP)
    from quark.kernel.net import unix
    x, y = unix.socketpair(t, stype, protocol, flags)
    install_pair(t, x, y, bool(flags & N.SOCK_CLOEXEC), sv)
    return 0


@syscall(49, "bind")
async def sys_bind(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    f.bind(t, read_addr(t, a.ptr(1), a.int(2)))
    return 0


@syscall(50, "listen")
async def sys_listen(t: Task, a: SyscallArgs) -> int:
    _sock(t, a.int(0)).listen(t, a.int(1))
    return 0


async def _accept(t: Task, fd: int, addr: int, lenp: int, flags: int) -> int:
    if flags & ~_TYPE_FLAGS:
        raise LinuxError(EINVAL)
    f = _sock(t, fd)
    new = await f.accept(t, flags & N.SOCK_NONBLOCK)
    try:
        if addr:
            write_addr(t, addr, lenp, new.getpeername())
    except LinuxError:
        new.released = True
        new.release()
        raise
    return _install(t, new, flags)


@syscall(43, "accept")
async def sys_accept(t: Task, a: SyscallArgs) -> int:
    return await _accept(t, a.int(0), a.ptr(1), a.ptr(2), 0)


@syscall(288, "accept4")
async def sys_accept4(t: Task, a: SyscallArgs) -> int:
    return await _accept(t, a.int(0), a.ptr(1), a.ptr(2), a.int(3))


@syscall(42, "connect", partial="AF_UNSPEC disconnect only for AF_UNIX datagram sockets")
async def sys_connect(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    await f.connect(t, read_addr(t, a.ptr(1), a.int(2)))
    return 0


@syscall(48, "shutdown")
async def sys_shutdown(t: Task, a: SyscallArgs) -> int:
    _sock(t, a.int(0)).shutdown(t, a.int(1))
    return 0


@syscall(51, "getsockname")
async def sys_getsockname(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    write_addr(t, a.ptr(1), a.ptr(2), f.getsockname())
    return 0


@syscall(52, "getpeername")
async def sys_getpeername(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    write_addr(t, a.ptr(1), a.ptr(2), f.getpeername())
    return 0


# ---- data
@syscall(44, "sendto")
async def sys_sendto(t: Task, a: SyscallArgs) -> int:
    fd, buf, length, flags, addr, alen = (a.int(0), a.ptr(1), a.size(2), a.uint(3),
                                          a.ptr(4), a.int(5))
    f = _sock(t, fd)
    raw = read_addr(t, addr, alen) if addr else b""
    return await f.sendmsg(t, single(t, buf, length, False), flags, raw or None, Ancillary())


@syscall(45, "recvfrom")
async def sys_recvfrom(t: Task, a: SyscallArgs) -> int:
    fd, buf, length, flags, addr, lenp = (a.int(0), a.ptr(1), a.size(2), a.uint(3),
                                          a.ptr(4), a.ptr(5))
    f = _sock(t, fd)
    r = await f.recvmsg(t, single(t, buf, length, True), flags, 0)
    build_control_none(r)
    if addr:
        write_addr(t, addr, lenp, r.addr)
    return r.n


async def _sendmsg(t: Task, f: SocketFile, hdr_addr: int, flags: int) -> int:
    m = MsgHdr(t, hdr_addr, False)
    raw = read_addr(t, m.name, m.namelen) if m.namelen else b""
    if m.controllen > CONTROL_MAX:
        raise LinuxError(ENOBUFS)
    anc = Ancillary()
    if m.controllen:
        ctl = t.mm.read(m.control, m.controllen)
        anc = parse_control(t, ctl, f.family == N.AF_UNIX)
    return await f.sendmsg(t, m.iov, flags, raw or None, anc)


async def _recvmsg(t: Task, f: SocketFile, hdr_addr: int, flags: int) -> int:
    m = MsgHdr(t, hdr_addr, True)
    r = await f.recvmsg(t, m.iov, flags & ~N.MSG_CMSG_CLOEXEC, m.controllen)
    if m.controllen:
        ctl, extra = build_control(t, r, m.controllen, bool(flags & N.MSG_CMSG_CLOEXEC))
        if ctl:
            t.mm.write(m.control, ctl)
    else:
        ctl, extra = b"", build_control_none(r)
    if m.name:
        write_addr(t, m.name, hdr_addr + 8, r.addr)
    t.mm.write_u64(hdr_addr + 40, len(ctl))
    # Linux starts msg_flags from the caller's MSG_CMSG_CLOEXEC (____sys_recvmsg).
    t.mm.write_u32(hdr_addr + 48, r.flags | extra | (flags & N.MSG_CMSG_CLOEXEC))
    return r.n


@syscall(46, "sendmsg")
async def sys_sendmsg(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    return await _sendmsg(t, f, a.ptr(1), a.uint(2))


@syscall(47, "recvmsg")
async def sys_recvmsg(t: Task, a: SyscallArgs) -> int:
    f = _sock(t, a.int(0))
    return await _recvmsg(t, f, a.ptr(1), a.uint(2))


@syscall(307, "sendmmsg")
async def sys_sendmmsg(t: Task, a: SyscallArgs) -> int:
    fd, vec, vlen, flags = a.int(0), a.ptr(1), a.uint(2), a.uint(3)
    f = _sock(t, fd)
    vlen = min(vlen, 1024)  # UIO_MAXIOV
    done = 0
    while done < vlen:
        hdr = vec + done * N.MMSGHDR_SIZE
        try:
            n = await _sendmsg(t, f, hdr, flags)
            t.mm.write_u32(hdr + N.MSG_LEN_OFFSET, n)
        except LinuxError:
            if done:
                return done
            raise
        done += 1
    return done


@syscall(299, "recvmmsg", partial="the timeout is checked after each datagram, as Linux does")
async def sys_recvmmsg(t: Task, a: SyscallArgs) -> int:
    fd, vec, vlen, flags, tsp = a.int(0), a.ptr(1), a.uint(2), a.uint(3), a.ptr(4)
    f = _sock(t, fd)
    end = None
    if tsp:
        sec, nsec = _TIMESPEC.unpack(t.mm.read(tsp, _TIMESPEC.size))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise LinuxError(EINVAL)
        end = time.monotonic() + sec + nsec / 1e9
    vlen = min(vlen, 1024)
    done = 0
    while done < vlen:
        hdr = vec + done * N.MMSGHDR_SIZE
        try:
            n = await _recvmsg(t, f, hdr, flags & ~N.MSG_WAITFORONE)
            t.mm.write_u32(hdr + N.MSG_LEN_OFFSET, n)
        except LinuxError:
            if done:
                break  # Linux keeps a real error for the next call (sk_err); dropped here
            raise
        done += 1
        if flags & N.MSG_WAITFORONE:
            flags |= N.MSG_DONTWAIT
        if end is not None and time.monotonic() >= end:
            break
    if tsp and end is not None:
        left = max(0.0, end - time.monotonic())
        t.mm.write(tsp, _TIMESPEC.pack(int(left), int((left - int(left)) * 1e9)))
    return done


# ---- options
@syscall(54, "setsockopt", partial="inet: a whitelist of common options passed to the host")
async def sys_setsockopt(t: Task, a: SyscallArgs) -> int:
    fd, level, name, val, optlen = a.int(0), a.int(1), a.int(2), a.ptr(3), a.int(4)
    f = _sock(t, fd)
    if optlen < 0:
        raise LinuxError(EINVAL)
    data = bytes(t.mm.read(val, min(optlen, 512))) if optlen else b""
    f.setsockopt(t, level, name, data)
    return 0


@syscall(55, "getsockopt", partial="inet: a whitelist of common options passed to the host")
async def sys_getsockopt(t: Task, a: SyscallArgs) -> int:
    fd, level, name, val, lenp = a.int(0), a.int(1), a.int(2), a.ptr(3), a.ptr(4)
    f = _sock(t, fd)
    optlen = t.mm.read_u32(lenp)
    if optlen & 0x80000000:
        raise LinuxError(EINVAL)
    data = f.getsockopt(t, level, name, optlen)[:optlen]
    if data:
        t.mm.write(val, data)
    t.mm.write_u32(lenp, len(data))
    return 0
