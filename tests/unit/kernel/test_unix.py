"""AF_UNIX sockets through the system calls, with the fake task and memory."""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

import pytest

from quark.kernel.net import abi as N
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call, resume, start

SYS_read, SYS_write, SYS_close, SYS_pipe2, SYS_fcntl = 0, 1, 3, 293, 72
SYS_socket, SYS_connect, SYS_accept, SYS_sendto, SYS_recvfrom = 41, 42, 43, 44, 45
SYS_sendmsg, SYS_recvmsg, SYS_shutdown, SYS_bind, SYS_listen = 46, 47, 48, 49, 50
SYS_getsockname, SYS_getpeername, SYS_socketpair = 51, 52, 53
SYS_setsockopt, SYS_getsockopt, SYS_accept4 = 54, 55, 288
SYS_stat, SYS_ioctl = 4, 16
FIONREAD = 0x541B


@pytest.fixture
def t(tmp_path: Path) -> FakeTask:
    r = tmp_path / "rootfs"
    (r / "tmp").mkdir(parents=True)
    return FakeKernel(str(r)).task()


def pair(t: FakeTask, stype: int = N.SOCK_STREAM) -> tuple[int, int]:
    sv = t.mm.alloc(8)
    assert call(t, SYS_socketpair, N.AF_UNIX, stype, 0, sv) == 0
    a, b = struct.unpack("<ii", t.mm.read(sv, 8))
    return a, b


def send(t: FakeTask, fd: int, data: bytes, flags: int = 0) -> int:
    return call(t, SYS_sendto, fd, t.mm.put(data), len(data), flags, 0, 0)


def recv(t: FakeTask, fd: int, n: int = 64, flags: int = 0) -> bytes | int:
    buf = t.mm.alloc(n)
    r = call(t, SYS_recvfrom, fd, buf, n, flags, 0, 0)
    return r if r < 0 else t.mm.read(buf, r)


def sun(path: bytes) -> bytes:
    return struct.pack("<H", N.AF_UNIX) + path


def test_socketpair_stream_roundtrip_and_eof(t: FakeTask) -> None:
    a, b = pair(t)
    assert send(t, a, b"hello") == 5
    assert send(t, a, b" world") == 6
    assert recv(t, b, 64) == b"hello world"
    assert recv(t, b, 4, N.MSG_DONTWAIT) == -errno.EAGAIN
    assert call(t, SYS_close, a) == 0
    assert recv(t, b) == b""                          # EOF
    assert send(t, b, b"x", N.MSG_NOSIGNAL) == -errno.EPIPE


def test_blocking_read_waits_on_the_socket_queue(t: FakeTask) -> None:
    a, b = pair(t)
    buf = t.mm.alloc(16)
    coro, blk = start(t, SYS_read, b, buf, 16)
    assert isinstance(blk, Block) and blk.timeout is None
    f = t.fds.get(b)
    assert f.wait_queue in blk.queues
    assert send(t, a, b"late") == 4
    assert resume(coro) == ("done", 4)
    assert t.mm.read(buf, 4) == b"late"


def test_rcvtimeo_times_out_with_eagain(t: FakeTask) -> None:
    _a, b = pair(t)
    tv = t.mm.put(struct.pack("<qq", 0, 250000))
    assert call(t, SYS_setsockopt, b, N.SOL_SOCKET, N.SO_RCVTIMEO_OLD, tv, 16) == 0
    coro, blk = start(t, SYS_recvfrom, b, t.mm.alloc(8), 8, 0, 0, 0)
    assert isinstance(blk, Block) and 0 < blk.timeout <= 0.25
    import time
    time.sleep(0.26)
    assert resume(coro, False) == ("done", -errno.EAGAIN)
    bad = t.mm.put(struct.pack("<qq", 0, 1_000_000))
    assert call(t, SYS_setsockopt, b, N.SOL_SOCKET, N.SO_RCVTIMEO_OLD, bad, 16) == -errno.EDOM


def _msghdr(t: FakeTask, data_ptr: int, n: int, control: int = 0, clen: int = 0,
            name: int = 0, namelen: int = 0) -> int:
    iov = t.mm.put(struct.pack("<QQ", data_ptr, n))
    return t.mm.put(N.MSGHDR.pack(name, namelen, iov, 1, control, clen, 0))


def test_scm_rights_passes_a_pipe(t: FakeTask) -> None:
    a, b = pair(t)
    pfd = t.mm.alloc(8)
    assert call(t, SYS_pipe2, pfd, 0) == 0
    _rd, wr = struct.unpack("<ii", t.mm.read(pfd, 8))
    pipe_w = t.fds.get(wr)
    ctl = t.mm.put(N.CMSGHDR.pack(N.cmsg_len(4), N.SOL_SOCKET, N.SCM_RIGHTS)
                   + struct.pack("<i", wr) + bytes(4))
    assert call(t, SYS_sendmsg, a, _msghdr(t, t.mm.put(b"fd!"), 3, ctl, 24), 0) == 3
    assert call(t, SYS_close, wr) == 0
    assert pipe_w.refs == 1                            # held by the message in flight
    data = t.mm.alloc(8)
    rctl = t.mm.alloc(64)
    hdr = _msghdr(t, data, 8, rctl, 64)
    assert call(t, SYS_recvmsg, b, hdr, N.MSG_CMSG_CLOEXEC) == 3
    clen, level, ctype = N.CMSGHDR.unpack(t.mm.read(rctl, 16))
    assert (clen, level, ctype) == (N.cmsg_len(4), N.SOL_SOCKET, N.SCM_RIGHTS)
    newfd = struct.unpack("<i", t.mm.read(rctl + 16, 4))[0]
    assert t.fds.get(newfd) is pipe_w and pipe_w.refs == 1
    assert t.fds.get_cloexec(newfd)
    _, _, _, _, _, used, mflags = N.MSGHDR.unpack(t.mm.read(hdr, N.MSGHDR.size))
    assert used == 24 and mflags == N.MSG_CMSG_CLOEXEC


def test_scm_rights_without_room_closes_and_sets_ctrunc(t: FakeTask) -> None:
    a, b = pair(t)
    pfd = t.mm.alloc(8)
    call(t, SYS_pipe2, pfd, 0)
    _rd, wr = struct.unpack("<ii", t.mm.read(pfd, 8))
    pipe_w = t.fds.get(wr)
    ctl = t.mm.put(N.CMSGHDR.pack(N.cmsg_len(4), N.SOL_SOCKET, N.SCM_RIGHTS)
                   + struct.pack("<i", wr) + bytes(4))
    call(t, SYS_sendmsg, a, _msghdr(t, t.mm.put(b"x"), 1, ctl, 24), 0)
    call(t, SYS_close, wr)
    hdr = _msghdr(t, t.mm.alloc(4), 4, t.mm.alloc(8), 8)
    assert call(t, SYS_recvmsg, b, hdr, 0) == 1
    *_, used, mflags = N.MSGHDR.unpack(t.mm.read(hdr, N.MSGHDR.size))
    assert mflags & N.MSG_CTRUNC and used == 0
    assert pipe_w.released


def test_bad_control_messages(t: FakeTask) -> None:
    a, _ = pair(t)
    bad_len = t.mm.put(N.CMSGHDR.pack(100, N.SOL_SOCKET, N.SCM_RIGHTS) + bytes(8))
    assert call(t, SYS_sendmsg, a, _msghdr(t, t.mm.put(b"x"), 1, bad_len, 24), 0) \
        == -errno.EINVAL
    bad_fd = t.mm.put(N.CMSGHDR.pack(20, N.SOL_SOCKET, N.SCM_RIGHTS) + struct.pack("<i", 77)
                      + bytes(4))
    assert call(t, SYS_sendmsg, a, _msghdr(t, t.mm.put(b"x"), 1, bad_fd, 24), 0) \
        == -errno.EBADF
    creds = t.mm.put(N.CMSGHDR.pack(28, N.SOL_SOCKET, N.SCM_CREDENTIALS)
                     + N.UCRED.pack(t.pid + 1, 0, 0) + bytes(4))
    # root may claim another pid (CAP_SYS_ADMIN)
    assert call(t, SYS_sendmsg, a, _msghdr(t, t.mm.put(b"x"), 1, creds, 32), 0) == 1


def test_bind_path_makes_a_socket_inode_and_connect_accept(t: FakeTask, tmp_path: Path) -> None:
    ls = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    addr = sun(b"/tmp/s.sock\0")
    ap = t.mm.put(addr)
    assert call(t, SYS_bind, ls, ap, len(addr)) == 0
    host = tmp_path / "rootfs/tmp/s.sock"
    assert stat.S_ISSOCK(os.lstat(host).st_mode)      # visible on the host too
    again = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    assert call(t, SYS_bind, again, ap, len(addr)) == -errno.EADDRINUSE
    c = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    assert call(t, SYS_connect, c, ap, len(addr)) == -errno.ECONNREFUSED  # not listening
    assert call(t, SYS_listen, ls, 1) == 0
    assert call(t, SYS_connect, c, ap, len(addr)) == 0
    assert send(t, c, b"early") == 5                  # connected before accept
    peer = t.mm.alloc(128)
    plen = t.mm.put(struct.pack("<i", 128))
    s = call(t, SYS_accept4, ls, peer, plen, N.SOCK_NONBLOCK)
    assert s >= 0 and struct.unpack("<i", t.mm.read(plen, 4))[0] == 2
    assert recv(t, s) == b"early"
    assert recv(t, s) == -errno.EAGAIN                 # SOCK_NONBLOCK from accept4
    name = t.mm.alloc(128)
    nlen = t.mm.put(struct.pack("<i", 128))
    assert call(t, SYS_getpeername, c, name, nlen) == 0
    n = struct.unpack("<i", t.mm.read(nlen, 4))[0]
    assert t.mm.read(name, n) == sun(b"/tmp/s.sock\0")
    cred = t.mm.alloc(12)
    clen = t.mm.put(struct.pack("<i", 12))
    assert call(t, SYS_getsockopt, s, N.SOL_SOCKET, N.SO_PEERCRED, cred, clen) == 0
    assert N.UCRED.unpack(t.mm.read(cred, 12)) == (t.pid, 0, 0)
    call(t, SYS_close, ls)
    c2 = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    assert call(t, SYS_connect, c2, ap, len(addr)) == -errno.ECONNREFUSED


def test_backlog_full_blocks_or_eagain(t: FakeTask) -> None:
    ls = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    addr = sun(b"\0abstract-q")
    ap = t.mm.put(addr)
    assert call(t, SYS_bind, ls, ap, len(addr)) == 0
    assert call(t, SYS_listen, ls, 0) == 0
    c1 = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    assert call(t, SYS_connect, c1, ap, len(addr)) == 0
    c2 = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM | N.SOCK_NONBLOCK, 0)
    assert call(t, SYS_connect, c2, ap, len(addr)) == -errno.EAGAIN
    c3 = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    coro, blk = start(t, SYS_connect, c3, ap, len(addr))
    assert isinstance(blk, Block)
    assert call(t, SYS_accept, ls, 0, 0) >= 0
    assert resume(coro) == ("done", 0)


def test_dgram_addresses_truncation_and_fionread(t: FakeTask) -> None:
    x = call(t, SYS_socket, N.AF_UNIX, N.SOCK_DGRAM, 0)
    y = call(t, SYS_socket, N.AF_UNIX, N.SOCK_DGRAM, 0)
    ax, ay = sun(b"\0x"), sun(b"\0y")
    assert call(t, SYS_bind, x, t.mm.put(ax), len(ax)) == 0
    assert call(t, SYS_bind, y, t.mm.put(ay), len(ay)) == 0
    yp = t.mm.put(ay)
    assert call(t, SYS_sendto, x, t.mm.put(b"0123456789"), 10, 0, yp, len(ay)) == 10
    n = t.mm.alloc(4)
    assert call(t, SYS_ioctl, y, FIONREAD, n) == 0 and t.mm.read_u32(n) == 10
    buf, frm, flen = t.mm.alloc(4), t.mm.alloc(128), t.mm.put(struct.pack("<i", 128))
    assert call(t, SYS_recvfrom, y, buf, 4, N.MSG_TRUNC, frm, flen) == 10
    ln = struct.unpack("<i", t.mm.read(flen, 4))[0]
    assert t.mm.read(frm, ln) == ax
    assert call(t, SYS_connect, x, yp, len(ay)) == 0
    z = call(t, SYS_socket, N.AF_UNIX, N.SOCK_DGRAM, 0)
    # y is not connected to z, so z may send; x is connected to y, so y's
    # connect to x... and a third party sending to a socket connected elsewhere: EPERM
    assert call(t, SYS_connect, y, t.mm.put(ax), len(ax)) == 0
    assert call(t, SYS_sendto, z, t.mm.put(b"q"), 1, 0, t.mm.put(ay), len(ay)) == -errno.EPERM


def test_poll_events(t: FakeTask) -> None:
    from quark.kernel.abi.linux import POLLHUP, POLLIN, POLLOUT, POLLRDHUP
    a, b = pair(t)
    fa, fb = t.fds.get(a), t.fds.get(b)
    assert fb.poll_events() & (POLLIN | POLLOUT) == POLLOUT
    send(t, a, b"x")
    assert fb.poll_events() & POLLIN
    assert call(t, SYS_shutdown, a, N.SHUT_WR) == 0
    assert fb.poll_events() & POLLRDHUP
    call(t, SYS_close, a)
    assert fb.poll_events() & POLLHUP
    _ = fa


def test_errors(t: FakeTask) -> None:
    assert call(t, SYS_socket, 99, N.SOCK_STREAM, 0) == -errno.EAFNOSUPPORT
    assert call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM | 0x80, 0) == -errno.EINVAL
    assert call(t, SYS_socket, N.AF_UNIX, 0, 0) == -errno.ESOCKTNOSUPPORT
    assert call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 5) == -errno.EPROTONOSUPPORT
    assert call(t, SYS_socketpair, N.AF_UNIX, N.SOCK_STREAM, 0, 8) == -errno.EFAULT
    assert len(t.fds) == 0                             # nothing leaked on EFAULT
    pfd = t.mm.alloc(8)
    call(t, SYS_pipe2, pfd, 0)
    rd = struct.unpack("<ii", t.mm.read(pfd, 8))[0]
    assert call(t, SYS_listen, rd, 1) == -errno.ENOTSOCK
    assert call(t, SYS_listen, 99, 1) == -errno.EBADF
    s = call(t, SYS_socket, N.AF_UNIX, N.SOCK_STREAM, 0)
    assert call(t, SYS_bind, s, t.mm.put(sun(b"/x")), 129) == -errno.EINVAL
    assert call(t, SYS_bind, s, t.mm.put(sun(b"/x")), -1) == -errno.EINVAL
    assert call(t, SYS_bind, s, 8, 10) == -errno.EFAULT
    assert call(t, SYS_shutdown, s, 3) == -errno.EINVAL
    v, vl = t.mm.alloc(4), t.mm.put(struct.pack("<i", -1))
    assert call(t, SYS_getsockopt, s, N.SOL_SOCKET, N.SO_TYPE, v, vl) == -errno.EINVAL
    assert call(t, SYS_setsockopt, s, N.SOL_TCP, 1, v, 4) == -errno.EOPNOTSUPP
    assert call(t, SYS_accept, s, 0, 0) == -errno.EINVAL
    assert call(t, SYS_accept4, s, 0, 0, 1) == -errno.EINVAL
    st = t.mm.alloc(144)
    assert call(t, 5, s, st) == 0                      # fstat
    assert stat.S_ISSOCK(struct.unpack_from("<I", t.mm.read(st + 24, 4))[0])
