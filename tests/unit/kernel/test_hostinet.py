"""Host AF_INET sockets and the NETLINK_ROUTE relay, with the fake task and memory
(loopback only)."""

from __future__ import annotations

import errno
import select
import socket
import struct
from pathlib import Path

import pytest

from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.net.hostinet import format_addr, parse_addr
from quark.kernel.net.msg import build_control
from quark.kernel.net.netlink import check_requests
from quark.kernel.net.socket import Received
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call, resume, start

SYS_close = 3
SYS_socket, SYS_connect, SYS_accept, SYS_sendto, SYS_recvfrom = 41, 42, 43, 44, 45
SYS_sendmsg, SYS_recvmsg, SYS_bind, SYS_listen, SYS_getsockname = 46, 47, 49, 50, 51
SYS_setsockopt, SYS_getsockopt = 54, 55


@pytest.fixture
def t(tmp_path: Path) -> FakeTask:
    (tmp_path / "rootfs").mkdir()
    return FakeKernel(str(tmp_path / "rootfs")).task()


def lo(port: int = 0) -> bytes:
    return struct.pack("<HH4s8x", N.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))


def name_of(t: FakeTask, fd: int) -> bytes:
    buf, ln = t.mm.alloc(128), t.mm.put(struct.pack("<i", 128))
    assert call(t, SYS_getsockname, fd, buf, ln) == 0
    return t.mm.read(buf, struct.unpack("<i", t.mm.read(ln, 4))[0])


def listener(t: FakeTask) -> tuple[int, bytes]:
    ls = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM, 0)
    a = lo()
    assert call(t, SYS_bind, ls, t.mm.put(a), len(a)) == 0
    assert call(t, SYS_listen, ls, 4) == 0
    return ls, name_of(t, ls)


def test_addresses_round_trip() -> None:
    raw = lo(8080)
    assert parse_addr(N.AF_INET, raw) == ("127.0.0.1", 8080)
    assert format_addr(N.AF_INET, ("127.0.0.1", 8080)) == raw
    with pytest.raises(LinuxError) as e:
        parse_addr(N.AF_INET, raw[:8])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(LinuxError) as e:
        parse_addr(N.AF_INET6, raw + bytes(12))
    assert e.value.errno == errno.EAFNOSUPPORT
    six = struct.pack("<HHI16sI", N.AF_INET6, socket.htons(5), 0,
                      socket.inet_pton(socket.AF_INET6, "::1"), 0)
    assert parse_addr(N.AF_INET6, six) == ("::1", 5, 0, 0)
    assert format_addr(N.AF_INET6, ("::1", 5, 0, 0)) == six


def test_tcp_connect_accept_send_recv(t: FakeTask) -> None:
    ls, addr = listener(t)
    assert len(addr) == 16 and struct.unpack_from(">H", addr, 2)[0] > 0
    c = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM, 0)
    assert call(t, SYS_connect, c, t.mm.put(addr), len(addr)) == 0
    s = call(t, SYS_accept, ls, 0, 0)
    assert s >= 0
    assert call(t, SYS_sendto, c, t.mm.put(b"ping"), 4, 0, 0, 0) == 4
    buf = t.mm.alloc(16)
    r = call(t, SYS_recvfrom, s, buf, 16, 0, 0, 0)
    if r == -errno.EAGAIN:  # pragma: no cover - loopback is immediate in practice
        select.select([t.fds.get(s).fd], [], [], 1)
        r = call(t, SYS_recvfrom, s, buf, 16, 0, 0, 0)
    assert r == 4 and t.mm.read(buf, 4) == b"ping"


def test_blocking_recv_waits_on_host_fd_then_reads(t: FakeTask) -> None:
    ls, addr = listener(t)
    c = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM, 0)
    call(t, SYS_connect, c, t.mm.put(addr), len(addr))
    s = call(t, SYS_accept, ls, 0, 0)
    buf = t.mm.alloc(8)
    coro, blk = start(t, SYS_recvfrom, s, buf, 8, 0, 0, 0)
    assert isinstance(blk, Block)
    f = t.fds.get(s)
    assert blk.host_fds == ((f.fd, select.POLLIN | select.POLLPRI),)
    assert f.host_poll_fd() == f.fd
    call(t, SYS_sendto, c, t.mm.put(b"later"), 5, 0, 0, 0)
    select.select([f.fd], [], [], 1)
    assert resume(coro) == ("done", 5)
    assert t.mm.read(buf, 5) == b"later"


def test_nonblocking_accept_and_connect(t: FakeTask) -> None:
    ls = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM | N.SOCK_NONBLOCK, 0)
    a = lo()
    call(t, SYS_bind, ls, t.mm.put(a), len(a))
    call(t, SYS_listen, ls, 1)
    assert call(t, SYS_accept, ls, 0, 0) == -errno.EAGAIN
    addr = name_of(t, ls)
    c = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM | N.SOCK_NONBLOCK, 0)
    r = call(t, SYS_connect, c, t.mm.put(addr), len(addr))
    assert r in (0, -errno.EINPROGRESS)
    select.select([], [t.fds.get(c).fd], [], 1)
    v, vl = t.mm.alloc(4), t.mm.put(struct.pack("<i", 4))
    assert call(t, SYS_getsockopt, c, N.SOL_SOCKET, N.SO_ERROR, v, vl) == 0
    assert t.mm.read_u32(v) == 0


def test_udp_sendmsg_recvmsg_with_name(t: FakeTask) -> None:
    x = call(t, SYS_socket, N.AF_INET, N.SOCK_DGRAM, 0)
    y = call(t, SYS_socket, N.AF_INET, N.SOCK_DGRAM, 0)
    a = lo()
    call(t, SYS_bind, y, t.mm.put(a), len(a))
    ya = name_of(t, y)
    iov = t.mm.put(struct.pack("<QQQQ", t.mm.put(b"ab"), 2, t.mm.put(b"cde"), 3))
    hdr = t.mm.put(N.MSGHDR.pack(t.mm.put(ya), 16, iov, 2, 0, 0, 0))
    assert call(t, SYS_sendmsg, x, hdr, 0) == 5
    select.select([t.fds.get(y).fd], [], [], 1)
    data, name = t.mm.alloc(4), t.mm.alloc(32)
    riov = t.mm.put(struct.pack("<QQ", data, 4))
    rhdr = t.mm.put(N.MSGHDR.pack(name, 32, riov, 1, 0, 0, 0))
    assert call(t, SYS_recvmsg, y, rhdr, 0) == 4
    _, namelen, _, _, _, _, mflags = N.MSGHDR.unpack(t.mm.read(rhdr, N.MSGHDR.size))
    assert t.mm.read(data, 4) == b"abcd" and mflags & N.MSG_TRUNC and namelen == 16
    got = t.mm.read(name, 16)
    assert got[4:8] == socket.inet_aton("127.0.0.1") and got[2:4] == name_of(t, x)[2:4]


def test_options_whitelist_and_policy(t: FakeTask) -> None:
    s = call(t, SYS_socket, N.AF_INET, N.SOCK_STREAM, 0)
    one = t.mm.put(struct.pack("<i", 1))
    assert call(t, SYS_setsockopt, s, N.SOL_TCP, N.TCP_NODELAY, one, 4) == 0
    assert call(t, SYS_setsockopt, s, N.SOL_SOCKET, N.SO_KEEPALIVE, one, 4) == 0
    assert call(t, SYS_setsockopt, s, N.SOL_SOCKET, N.SO_MARK, one, 4) == -errno.ENOPROTOOPT
    assert call(t, SYS_setsockopt, s, 999, 1, one, 4) == -errno.EOPNOTSUPP
    assert call(t, SYS_setsockopt, s, N.SOL_SOCKET, N.SO_KEEPALIVE, one, -1) == -errno.EINVAL
    v, vl = t.mm.alloc(4), t.mm.put(struct.pack("<i", 4))
    assert call(t, SYS_getsockopt, s, N.SOL_SOCKET, N.SO_PROTOCOL, v, vl) == 0
    assert t.mm.read_u32(v) == N.IPPROTO_TCP
    assert call(t, SYS_socket, N.AF_INET, N.SOCK_RAW, N.IPPROTO_ICMP) == -errno.EPERM
    assert call(t, SYS_socket, N.AF_INET, N.SOCK_SEQPACKET, 0) == -errno.ESOCKTNOSUPPORT
    assert call(t, SYS_socket, N.AF_INET, N.SOCK_DGRAM, N.IPPROTO_TCP) == -errno.EPROTONOSUPPORT


def test_privileged_port_needs_cap(t: FakeTask) -> None:
    from quark.kernel.creds import Creds
    user = t.kernel.task(pid=2, creds=Creds.for_user(1000, 1000))
    s = call(user, SYS_socket, N.AF_INET, N.SOCK_STREAM, 0)
    a = lo(80)
    assert call(user, SYS_bind, s, user.mm.put(a), len(a)) == -errno.EACCES


def test_netlink_requests_are_checked() -> None:
    def nlmsg(typ: int, flags: int, body: bytes = b"") -> bytes:
        return struct.pack("<IHHII", 16 + len(body), typ, flags, 1, 0) + body
    check_requests(nlmsg(18, 0x301, bytes(16)))          # RTM_GETLINK dump
    check_requests(nlmsg(22, 0x301) + nlmsg(26, 0x301))  # GETADDR + GETROUTE
    for bad, err in ((nlmsg(16, 0x1), errno.EPERM),      # RTM_NEWLINK
                     (nlmsg(20, 0x1), errno.EPERM),      # RTM_NEWADDR
                     (nlmsg(18, 0x1)[:12], errno.EINVAL),
                     (struct.pack("<IHHII", 200, 18, 1, 0, 0), errno.EINVAL)):
        with pytest.raises(LinuxError) as e:
            check_requests(bad)
        assert e.value.errno == err


def test_netlink_dump_links(t: FakeTask) -> None:
    s = call(t, SYS_socket, N.AF_NETLINK, N.SOCK_RAW, N.NETLINK_ROUTE)
    assert s >= 0
    assert call(t, SYS_socket, N.AF_NETLINK, N.SOCK_RAW, 9) == -errno.EPROTONOSUPPORT
    req = struct.pack("<IHHII", 32, 18, 0x301, 7, 0) + bytes(16)
    assert call(t, SYS_sendto, s, t.mm.put(req), len(req), 0, 0, 0) == 32
    select.select([t.fds.get(s).fd], [], [], 1)
    buf = t.mm.alloc(65536)
    n = call(t, SYS_recvfrom, s, buf, 65536, 0, 0, 0)
    assert n > 16
    _ln, typ, _, seq, _ = struct.unpack("<IHHII", t.mm.read(buf, 16))
    assert typ == 16 and seq == 7                       # RTM_NEWLINK answers
    new = struct.pack("<IHHII", 32, 16, 0x5, 8, 0) + bytes(16)
    assert call(t, SYS_sendto, s, t.mm.put(new), len(new), 0, 0, 0) == -errno.EPERM


def test_build_control_truncates_like_put_cmsg(t: FakeTask) -> None:
    r = Received(1)
    r.cmsgs = [(N.SOL_IP, 8, bytes(12))]             # IP_PKTINFO
    data, flags = build_control(t, r, 64, False)
    assert len(data) == N.cmsg_space(12) and flags == 0
    data, flags = build_control(t, r, 20, False)
    assert flags & N.MSG_CTRUNC and len(data) == 20
    assert N.CMSGHDR.unpack_from(data)[0] == 20
    data, flags = build_control(t, r, 8, False)
    assert data == b"" and flags & N.MSG_CTRUNC
