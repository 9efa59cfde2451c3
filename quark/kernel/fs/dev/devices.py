"""The memory devices (1,3 null; 1,5 zero; 1,7 full; 1,8 random; 1,9 urandom) and
the controlling terminal (5,0 tty).

Reads fill the guest's memoryviews by slice assignment from a shared zero page or
from the host's random source; nothing loops per byte.
"""

from __future__ import annotations

import os
from typing import Any

from quark.core.guest.layout import K_READ_EOF, K_READ_ZERO, K_WRITE_DISCARD
from quark.kernel.abi.linux import ENOSPC, ENXIO
from quark.kernel.errors import LinuxError
from quark.kernel.fs.dev.registry import register_char
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location

_ZEROS = memoryview(bytes(65536))   # a view: slicing it copies nothing


def fill_zero(bufs: list[memoryview]) -> int:
    n = 0
    for b in bufs:
        ln = len(b)
        if ln <= len(_ZEROS):
            b[:] = _ZEROS[:ln]
        else:
            for i in range(0, ln, len(_ZEROS)):
                k = min(len(_ZEROS), ln - i)
                b[i:i + k] = _ZEROS[:k]
        n += ln
    return n


class DeviceFile(File):
    """Memory devices: positional I/O allowed, seeking is a no-op returning 0.
    Nothing here ever waits, so the I/O is the plain ``*_now`` calls."""

    seekable = True
    sync_io = True
    read_observes = False

    def lseek(self, off: int, whence: int) -> int:
        return 0

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return self.readv_now(bufs, offset)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return self.writev_now(bufs, offset)


class NullFile(DeviceFile):
    gate_kinds = (K_READ_EOF, K_WRITE_DISCARD)
    discards_writes = True

    def readv_now(self, bufs: list[memoryview], offset: int | None) -> int:
        return 0

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        return sum(len(b) for b in bufs)


class ZeroFile(DeviceFile):
    mmap_ok = True
    gate_kinds = (K_READ_ZERO, K_WRITE_DISCARD)
    discards_writes = True

    def readv_now(self, bufs: list[memoryview], offset: int | None) -> int:
        return fill_zero(bufs)

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        return fill_zero(bufs)  # mmap of /dev/zero: the lead maps it anonymous anyway

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        return sum(len(b) for b in bufs)


class FullFile(ZeroFile):
    mmap_ok = False     # Linux's full_fops has no mmap
    gate_kinds = (K_READ_ZERO, 0)
    discards_writes = False

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        if not any(len(b) for b in bufs):
            return 0
        raise LinuxError(ENOSPC)


class RandomFile(DeviceFile):
    """random and urandom: both non-blocking since Linux 5.6 once seeded. A write
    reads its buffer (it mixes it in), so the gate may not answer one."""

    def readv_now(self, bufs: list[memoryview], offset: int | None) -> int:
        n = 0
        for b in bufs:
            b[:] = os.urandom(len(b))
            n += len(b)
        return n

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        return sum(len(b) for b in bufs)  # "adds entropy": accepted and dropped


def _simple(cls: type[File]) -> Any:
    def opener(t: Any, flags: int, loc: Location) -> File:
        return cls(flags, loc.path, loc)
    return opener


def open_tty(t: Any, flags: int, loc: Location) -> File:
    """/dev/tty: the sandbox's terminal when it has one (``VFS.tty_fd``)."""
    from quark.kernel.fs.host.file import HostStreamFile
    fd = getattr(loc.mount.vfs, "tty_fd", None)
    if fd is None:
        raise LinuxError(ENXIO)
    return HostStreamFile(fd, flags, "/dev/tty", loc, owned=False)


register_char(1, 3, _simple(NullFile))
register_char(1, 5, _simple(ZeroFile))
register_char(1, 7, _simple(FullFile))
register_char(1, 8, _simple(RandomFile))
register_char(1, 9, _simple(RandomFile))
register_char(5, 0, open_tty)
