"""The base of anonymous-inode files (fs/anon_inodes.c).

Linux backs every eventfd, timerfd, signalfd and epoll file with one shared inode of
the anon_inodefs pseudo filesystem: fstat shows the same inode number for all of them,
mode 0600, and /proc/PID/fd shows ``anon_inode:[eventfd]`` and the like.
"""

from __future__ import annotations

from quark.kernel.vfs.file import File
from quark.kernel.vfs.stat import Stat, StatFs

ANON_INODE_FS_MAGIC = 0x09041934
ANON_INODE_INO = 1
ANON_INODE_DEV = (0, 14)


class AnonFile(File):
    """An open file with no location; ``kind`` is the bracketed name ("[eventfd]")."""

    def __init__(self, flags: int, kind: str) -> None:
        super().__init__(flags, f"anon_inode:{kind}")

    def stat(self) -> Stat:
        return Stat(mode=0o600, ino=ANON_INODE_INO, dev=ANON_INODE_DEV, nlink=1,
                    blksize=4096)

    def statfs(self) -> StatFs:
        return StatFs(type=ANON_INODE_FS_MAGIC, bsize=4096, namelen=255, frsize=4096)


def first_bytes(bufs: list[memoryview], n: int) -> bytes:
    """The first ``n`` bytes of a write's buffers."""
    out = bytearray()
    for b in bufs:
        out += b[:n - len(out)]
        if len(out) >= n:
            break
    return bytes(out)
