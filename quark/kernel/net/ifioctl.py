"""Network device ioctls on any socket (net/core/dev_ioctl.c): the read-only
SIOCGIF* requests busybox ifconfig/ip and older programs use, answered by the host
for the sandbox's network namespace. Requests that change a device are EPERM (the
container configures nothing through the sandbox's host sockets)."""

from __future__ import annotations

import socket
from typing import Any

from quark.kernel.abi.linux import EINVAL, ENOTTY, EPERM
from quark.kernel.errors import LinuxError
from quark.kernel.net import net_ffi

SIOCGIFNAME = 0x8910
SIOCGIFCONF = 0x8912
SIOCGIFFLAGS = 0x8913
SIOCGIFADDR = 0x8915
SIOCGIFDSTADDR = 0x8917
SIOCGIFBRDADDR = 0x8919
SIOCGIFNETMASK = 0x891B
SIOCGIFMETRIC = 0x891D
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFINDEX = 0x8933
SIOCGIFTXQLEN = 0x8942
SIOCGIFMAP = 0x8970
_GET = {SIOCGIFNAME, SIOCGIFFLAGS, SIOCGIFADDR, SIOCGIFDSTADDR, SIOCGIFBRDADDR,
        SIOCGIFNETMASK, SIOCGIFMETRIC, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX,
        SIOCGIFTXQLEN, SIOCGIFMAP}
# Everything else in the device range 0x8910..0x89ff that sets something.
_DEV_FIRST, _DEV_LAST = 0x8910, 0x89FF
_IFCONF_MAX = 65536


def handles(req: int) -> bool:
    return _DEV_FIRST <= req <= _DEV_LAST


def dev_ioctl(t: Any, req: int, arg: int, host_fd: int | None) -> int:
    """Answer a device ioctl; ``host_fd`` is the socket's host fd if it has one."""
    if req not in _GET and req != SIOCGIFCONF:
        if req in (0x8914, 0x8916, 0x8918, 0x891A, 0x891C, 0x891E, 0x8922, 0x8924,
                   0x8930, 0x8931, 0x8934, 0x8935, 0x8943, 0x8971):
            raise LinuxError(EPERM)   # SIOCSIF*, SIOCADDMULTI ...: no device changes
        raise LinuxError(ENOTTY if req > 0x8950 else EINVAL)
    tmp = None
    try:
        if host_fd is None:
            tmp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            host_fd = tmp.fileno()
        try:
            if req == SIOCGIFCONF:
                return _ifconf(t, arg, host_fd)
            ifr = t.mm.read(arg, net_ffi.IFREQ_SIZE)
            out = net_ffi.ifreq_ioctl(host_fd, req, bytes(ifr))
        except OSError as e:
            raise LinuxError(e.errno or EINVAL) from None
        t.mm.write(arg, out)
        return 0
    finally:
        if tmp is not None:
            tmp.close()


def _ifconf(t: Any, arg: int, host_fd: int) -> int:
    raw = t.mm.read(arg, 16)
    length = int.from_bytes(raw[:4], "little", signed=True)
    buf = int.from_bytes(raw[8:16], "little")
    if not buf:
        length = 0
    length = max(0, min(length, _IFCONF_MAX))
    n, data = net_ffi.ifconf_ioctl(host_fd, SIOCGIFCONF, length)
    if data:
        t.mm.write(buf, data)
    t.mm.write(arg, n.to_bytes(4, "little", signed=True))
    return 0
