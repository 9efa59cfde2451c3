"""Open directories: getdents64 over a snapshot of the entries.

The snapshot is taken at the first getdents64 and again after a seek to 0
(rewinddir), so entries created or removed meanwhile show up the way most Linux
filesystems show them to a reader that restarts. The position is the index of the
next entry; d_off of an entry is the position after it, a cookie telldir/seekdir
can give back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from quark.kernel.abi.linux import EINVAL, EISDIR, SEEK_CUR, SEEK_SET
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.file import File
from quark.kernel.vfs.inode import DirEntry
from quark.kernel.vfs.path import Location, fsencode

_HDR = struct.Struct("<QqHB")  # d_ino, d_off, d_reclen, d_type; then d_name


def pack_dirent64(ino: int, off: int, dtype: int, name: str) -> bytes:
    n = fsencode(name)
    reclen = (_HDR.size + len(n) + 1 + 7) & ~7
    return _HDR.pack(ino, off, reclen, dtype) + n + b"\0" * (reclen - _HDR.size - len(n))


class DirFile(File):
    seekable = True

    def __init__(self, flags: int, path: str, loc: Location,
                 lister: Callable[[], list[DirEntry]]) -> None:
        super().__init__(flags, path, loc)
        self._lister = lister
        self._ents: list[DirEntry] | None = None

    def getdents64(self, count: int) -> bytes:
        if self._ents is None:
            self._ents = self._lister()
        out: list[bytes] = []
        used = 0
        while self.pos < len(self._ents):
            e = self._ents[self.pos]
            rec = pack_dirent64(e.ino, self.pos + 1, e.dtype, e.name)
            if used + len(rec) > count:
                if not out:
                    raise LinuxError(EINVAL)  # buffer too small for one entry
                break
            out.append(rec)
            used += len(rec)
            self.pos += 1
        return b"".join(out)

    def lseek(self, off: int, whence: int) -> int:
        if whence == SEEK_SET:
            new = off
        elif whence == SEEK_CUR:
            new = self.pos + off
        else:
            raise LinuxError(EINVAL)
        if new < 0:
            raise LinuxError(EINVAL)
        if new == 0:
            self._ents = None
        self.pos = new
        return new

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        raise LinuxError(EISDIR)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        raise LinuxError(EISDIR)
