"""Host ioctls of the socket layer (the only raw ioctl calls of quark/kernel/net).

Each call takes a host socket fd the kernel owns and a buffer built here of exactly
the size the request's struct has (struct ifreq: 40 bytes; SIOCGIFCONF: a local
buffer whose address we put in our own struct ifconf), never a guest pointer.
"""

from __future__ import annotations

import ctypes
import fcntl
import struct

IFREQ_SIZE = 40
_IFCONF = struct.Struct("<i4xQ")   # struct ifconf { int ifc_len; union { char *ifc_buf; }; }


def ifreq_ioctl(fd: int, req: int, ifreq: bytes) -> bytes:
    """A SIOCGIF* request on a struct ifreq; returns the struct the host filled."""
    assert len(ifreq) == IFREQ_SIZE
    return bytes(fcntl.ioctl(fd, req, ifreq))


def ifconf_ioctl(fd: int, req: int, length: int) -> tuple[int, bytes]:
    """SIOCGIFCONF into a local buffer of ``length`` bytes (0: ask the size only).
    Returns (ifc_len, the bytes written)."""
    buf = ctypes.create_string_buffer(max(length, 1))
    addr = ctypes.addressof(buf) if length else 0
    out = fcntl.ioctl(fd, req, _IFCONF.pack(length, addr))
    n = _IFCONF.unpack(out)[0]
    return n, buf.raw[:min(n, length)] if length else b""


def int_ioctl(fd: int, req: int) -> int:
    """An ioctl storing one int (SIOCINQ, SIOCOUTQ)."""
    out = fcntl.ioctl(fd, req, bytes(4))
    return int.from_bytes(out, "little", signed=True)
