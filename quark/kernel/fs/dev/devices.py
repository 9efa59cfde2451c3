"""The memory devices (1,3 null; 1,5 zero; 1,7 full; 1,8 random; 1,9 urandom) and
the controlling terminal (5,0 tty).

Reads fill the guest's memoryviews by slice assignment from a shared zero page or
from the host's random source; nothing loops per byte.
"""

from __future__ import annotations

import os
from typing import Any

from quark.kernel.abi.linux import ENOSPC, ENXIO
from quark.kernel.errors import LinuxError
from quark.kernel.fs.dev.registry import register_char
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location

_ZEROS = bytes(65536)


def fill_zero(bufs: list[memoryview]) -> int:
    n = 0
    for b in bufs:
        for i in range(0, len(b), len(_ZEROS)):
            k = min(len(_ZEROS), len(b) - i)
            b[i:i + k] = _ZEROS[:k]
        n += len(b)
    return n


class DeviceFile(File):
    """Memory devices: positional I/O allowed, seeking is a no-op returning 0."""

    seekable = True

    def lseek(self, off: int, whence: int) -> int:
        return 0


class NullFile(DeviceFile):
    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return 0

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return sum(len(b) for b in bufs)


class ZeroFile(DeviceFile):
    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return fill_zero(bufs)

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        return fill_zero(bufs)  # mmap of /dev/zero: the lead maps it anonymous anyway

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return sum(len(b) for b in bufs)


class FullFile(ZeroFile):
    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if not any(len(b) for b in bufs):
            return 0
        raise LinuxError(ENOSPC)


class RandomFile(DeviceFile):
    """random and urandom: both non-blocking since Linux 5.6 once seeded."""

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        n = 0
        for b in bufs:
            b[:] = os.urandom(len(b))
            n += len(b)
        return n

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
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
