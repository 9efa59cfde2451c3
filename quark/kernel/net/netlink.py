"""AF_NETLINK: NETLINK_ROUTE sockets that can read, not change, the network
configuration — enough for ``ip addr``/``ip link``/``ip route`` (busybox or
iproute2) and for glibc's getifaddrs.

How: a host NETLINK_ROUTE socket of the sandbox process, which lives in the
container's network namespace, so the host kernel answers dumps about exactly the
container's interfaces. Requests are copied in (they are small), checked message by
message (length fields, and only RTM_GET* requests or netlink control messages:
anything that would change links, addresses or routes is EPERM), then relayed.
Replies move to guest memory without a copy, as for inet sockets. The host assigns
the port id (bind with nl_pid 0); getsockname shows it, as programs expect.
Other netlink protocols are EPROTONOSUPPORT.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from quark.kernel.abi.linux import (
    EINVAL,
    EMSGSIZE,
    ENOPROTOOPT,
    EOPNOTSUPP,
    EPERM,
    EPROTONOSUPPORT,
    ESOCKTNOSUPPORT,
)
from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.net.hostinet import InetSocket, host_errors
from quark.kernel.net.socket import Ancillary, IoVec, SocketFile

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_PKTINFO = 3
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
NLMSG_MIN_TYPE = 0x10
NLM_F_REQUEST = 0x1
# RTM_GETLINK, GETADDR, GETROUTE, GETNEIGH, GETRULE, GETQDISC, GETNETCONF ...:
# every RTM_GET* is (type & 3) == 2 in rtnetlink's numbering.
_NLMSGHDR = struct.Struct("<IHHII")
_SOCKADDR_NL = struct.Struct("<HHII")
_MAX_REQUEST = 65536

_PASS = {
    N.SOL_SOCKET: {N.SO_RCVBUF, N.SO_SNDBUF, N.SO_PASSCRED},
    SOL_NETLINK: {NETLINK_ADD_MEMBERSHIP, NETLINK_DROP_MEMBERSHIP, NETLINK_PKTINFO,
                  NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK},
}


def check_requests(data: bytes) -> None:
    """Every message is whole and a read-only request."""
    off = 0
    while off < len(data):
        if len(data) - off < _NLMSGHDR.size:
            raise LinuxError(EINVAL)
        ln, typ, flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if ln < _NLMSGHDR.size or ln > len(data) - off:
            raise LinuxError(EINVAL)
        if typ >= NLMSG_MIN_TYPE and (typ & 3 != 2 or not flags & NLM_F_REQUEST):
            raise LinuxError(EPERM)
        off += (ln + 3) & ~3


class NetlinkSocket(InetSocket):
    def __init__(self, stype: int, flags: int) -> None:
        with host_errors():
            sock = socket.socket(socket.AF_NETLINK, stype, socket.NETLINK_ROUTE)
        super().__init__(N.AF_NETLINK, stype, N.NETLINK_ROUTE, flags, sock)

    @property
    def stream(self) -> bool:
        return False

    def parse(self, raw: bytes, bind: bool = False) -> Any:
        if len(raw) < _SOCKADDR_NL.size:
            raise LinuxError(EINVAL)
        fam, _pad, pid, groups = _SOCKADDR_NL.unpack_from(raw)
        if fam != N.AF_NETLINK:
            raise LinuxError(EINVAL)
        return (pid, groups)

    def format(self, addr: Any) -> bytes:
        pid, groups = addr
        return _SOCKADDR_NL.pack(N.AF_NETLINK, 0, pid, groups)

    def bind(self, t: Any, raw: bytes) -> None:
        _pid, groups = self.parse(raw, bind=True)
        with host_errors():
            self.sock.bind((0, groups))  # the host picks the port id

    def listen(self, t: Any, backlog: int) -> None:
        raise LinuxError(EOPNOTSUPP)

    async def accept(self, t: Any, flags: int) -> SocketFile:
        raise LinuxError(EOPNOTSUPP)

    async def connect(self, t: Any, raw: bytes) -> None:
        pid, _groups = self.parse(raw)
        if pid != 0:
            raise LinuxError(EPERM)  # only the kernel is reachable

    def getpeername(self) -> bytes:
        return self.format((0, 0))

    async def sendmsg(self, t: Any, iov: IoVec, flags: int, addr: bytes | None,
                      anc: Ancillary) -> int:
        if addr is not None and self.parse(addr)[0] != 0:
            anc.drop()
            raise LinuxError(EPERM)
        if iov.total > _MAX_REQUEST:
            anc.drop()
            raise LinuxError(EMSGSIZE)
        data = iov.gather(0, iov.total)
        check_requests(data)
        return await super().sendmsg(t, IoVec.of_views([memoryview(data)]), flags, None, anc)

    def check_option(self, level: int, name: int) -> None:
        """Only the options in ``_PASS`` reach the host; any other, whatever its
        level, is ENOPROTOOPT (netlink_setsockopt's answer)."""
        if name not in _PASS.get(level, ()):
            raise LinuxError(ENOPROTOOPT)


def new_socket(t: Any, stype: int, protocol: int, flags: int) -> NetlinkSocket:
    if stype not in (N.SOCK_RAW, N.SOCK_DGRAM):
        raise LinuxError(ESOCKTNOSUPPORT)
    if protocol != N.NETLINK_ROUTE:
        raise LinuxError(EPROTONOSUPPORT)
    s = NetlinkSocket(stype, flags)
    s.uid, s.gid = t.creds.euid, t.creds.egid
    return s
