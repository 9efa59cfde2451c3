"""The few rtnetlink requests the bridge needs, on a plain AF_NETLINK socket.

pyroute2 did this before, but importing it took ~90 ms and ~10 MiB of every
networked sandbox's start (its package imports NDB, IPDB, conntrack ...), longer than
the container's whole run. What is used here is small and stable ABI:
- a request is ``struct nlmsghdr`` + a family header (``ifinfomsg``, ``ifaddrmsg``,
  ``rtmsg``) + attributes (``struct rtattr`` {len, type} and the value, each padded
  to 4 bytes; a nested attribute's value is more attributes);
- with NLM_F_ACK the kernel answers every request with NLMSG_ERROR, whose ``error``
  is 0 or -errno; a dump (NLM_F_DUMP) ends with NLMSG_DONE;
- a socket works in the network namespace its creator thread was in when it was
  created, so one is made per namespace, after the setns.
Constants and layouts are from <linux/netlink.h>, <linux/rtnetlink.h>,
<linux/if_link.h>, <linux/if_addr.h> and <linux/veth.h>.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR, RTM_NEWROUTE = 20, 22, 24
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")      # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")    # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")     # family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")     # family, dst_len, src_len, tos, table,
#                                          protocol, scope, type, flags
_RTATTR = struct.Struct("=HH")           # len, type


def _attr(kind: int, value: bytes) -> bytes:
    data = _RTATTR.pack(_RTATTR.size + len(value), kind) + value
    return data + b"\0" * (-len(data) % 4)


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, off)
        if length < _RTATTR.size:
            return
        yield kind & 0x3FFF, data[off + _RTATTR.size:off + length]
        off += (length + 3) & ~3


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


class Rtnl:
    """One NETLINK_ROUTE socket in the calling thread's network namespace.
    Failures raise OSError with the kernel's errno."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request; return the payloads of the answers (a dump's
        entries), after the ACK or NLMSG_DONE."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind,
                                      flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, mtype, _f, mseq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size:
                    raise OSError(errno.EPROTO, "short netlink message")
                payload = data[off + _NLMSGHDR.size:off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    return out
                out.append(payload)

    # ---- links

    def link_index(self, name: str) -> int | None:
        """The index of link ``name``, None if there is none."""
        try:
            reply = self._request(RTM_GETLINK, 0, _ifinfo() + _attr(IFLA_IFNAME, _name(name)))
        except OSError as e:
            if e.errno in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        return int(_IFINFOMSG.unpack_from(reply[0])[2]) if reply else None

    def link_mac(self, index: int) -> str:
        """The link's hardware address as ``aa:bb:cc:dd:ee:ff``."""
        for payload in self._request(RTM_GETLINK, 0, _ifinfo(index)):
            for kind, value in _attrs(payload[_IFINFOMSG.size:]):
                if kind == IFLA_ADDRESS:
                    return ":".join(f"{b:02x}" for b in value)
        return ""

    def link_add(self, name: str, kind: str, peer: str | None = None, *,
                 peer_netns_fd: int | None = None, mtu: int | None = None) -> None:
        """``ip link add NAME [mtu MTU] type KIND [peer name PEER [mtu MTU] [netns FD]]``
        (bridge, veth). Making the peer in its namespace saves moving it there:
        a move waits for RCU grace periods, 15-35 ms here."""
        mtu_attr = _attr(IFLA_MTU, struct.pack("=I", mtu)) if mtu is not None else b""
        info = _attr(IFLA_INFO_KIND, _name(kind))
        if peer is not None:
            peer_attrs = _ifinfo() + _attr(IFLA_IFNAME, _name(peer)) + mtu_attr
            if peer_netns_fd is not None:
                peer_attrs += _attr(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
            info += _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_attrs))
        self._request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                      _ifinfo() + _attr(IFLA_IFNAME, _name(name)) + mtu_attr
                      + _attr(IFLA_LINKINFO, info))

    def link_set(self, index: int, *, up: bool = False, mtu: int | None = None,
                 master: int | None = None, netns_fd: int | None = None,
                 ifname: str | None = None) -> None:
        """``ip link set``: bring it up, set the MTU, the bridge, the namespace, the name."""
        body = _ifinfo(index, IFF_UP if up else 0, IFF_UP if up else 0)
        if ifname is not None:
            body += _attr(IFLA_IFNAME, _name(ifname))
        if mtu is not None:
            body += _attr(IFLA_MTU, struct.pack("=I", mtu))
        if master is not None:
            body += _attr(IFLA_MASTER, struct.pack("=I", master))
        if netns_fd is not None:
            body += _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd))
        self._request(RTM_NEWLINK, 0, body)

    def link_del(self, index: int) -> None:
        self._request(RTM_DELLINK, 0, _ifinfo(index))

    # ---- addresses and routes (IPv4)

    def addresses(self, index: int) -> set[str]:
        """The IPv4 addresses on link ``index``."""
        out = set()
        for payload in self._request(RTM_GETADDR, NLM_F_DUMP,
                                     _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)):
            if _IFADDRMSG.unpack_from(payload)[4] != index:
                continue
            for kind, value in _attrs(payload[_IFADDRMSG.size:]):
                if kind == IFA_ADDRESS and len(value) == 4:
                    out.add(socket.inet_ntoa(value))
        return out

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        """``ip addr add ADDRESS/PREFIXLEN dev INDEX``."""
        raw = ipaddress.IPv4Address(address).packed
        self._request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                      _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
                      + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw))

    def default_route(self, gateway: str) -> None:
        """``ip route add default via GATEWAY``."""
        self._request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                                  RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
                      + _attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed))
