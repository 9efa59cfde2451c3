"""setns(2) and unshare(2) through libc: Python 3.11 has neither (3.12 adds them)."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000

# Not ctypes.util.find_library: it runs `ldconfig -p` (2-6 ms of every start).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
_libc.setns.restype = ctypes.c_int
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.unshare.restype = ctypes.c_int


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def setns(fd: int, nstype: int) -> None:
    """Move the calling thread into the namespace open at ``fd``."""
    _check(_libc.setns(fd, nstype), "setns")


def unshare(flags: int) -> None:
    """Give the calling thread new namespaces of the kinds in ``flags``."""
    _check(_libc.unshare(flags), "unshare")


SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = "16sH22x"       # struct ifreq: ifr_name[16], ifr_flags (short), union padding


def link_up(ifname: str) -> None:
    """Set IFF_UP on ``ifname`` in the calling thread's network namespace.

    A plain SIOCSIFFLAGS ioctl: bringing `lo` up is the one thing every new
    sandbox needs, and importing pyroute2 for it cost ~100 ms of start-up."""
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # The buffers are ours and sized as struct ifreq (40 bytes on x86-64).
        req = struct.pack(_IFREQ, ifname.encode(), 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack(_IFREQ, ifname.encode(), flags | IFF_UP))
