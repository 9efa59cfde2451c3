"""``struct stat`` / ``struct statx`` as x86-64 Linux lays them out, and ``struct statfs``.

Device numbers are kept as (major, minor) and encoded the way the kernel's
``cp_new_stat`` does (``new_encode_dev``), which for 64-bit ``st_dev`` equals glibc's
``makedev`` for every number below 2**32.
"""

from __future__ import annotations

import dataclasses
import os
import stat as _st
import struct

from quark.kernel.abi.linux import (
    S_IFMT,
    STATX_BASIC_STATS,
    STATX_BTIME,
    STATX_MNT_ID,
)

_STAT = struct.Struct("<QQQIIIiQqqqqqqqqq24x")          # 144 bytes
_STATX = struct.Struct("<IIQIIIHHQQQQ"                    # mask .. attributes_mask
                       "qIi" "qIi" "qIi" "qIi"              # atime btime ctime mtime
                       "IIIIQII96x")                        # rdev dev mnt_id dio, spare
assert _STAT.size == 144 and _STATX.size == 256
_STATFS = struct.Struct("<qqQQQQQiiqqq32x")              # 120 bytes
assert _STATFS.size == 120


def encode_dev(major: int, minor: int) -> int:
    """The kernel's new_encode_dev: 12-bit major, 20-bit minor interleaved."""
    return (minor & 0xFF) | ((major & 0xFFF) << 8) | ((minor & ~0xFF) << 12)


@dataclasses.dataclass
class Stat:
    """Every field of x86-64 ``struct stat`` (times split into seconds + nanoseconds)."""

    mode: int
    ino: int = 0
    dev: tuple[int, int] = (0, 0)
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    rdev: tuple[int, int] = (0, 0)
    size: int = 0
    blksize: int = 4096
    blocks: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    btime_ns: int | None = None   # birth time, when the filesystem knows it
    mnt_id: int = 0

    @property
    def type(self) -> int:
        return self.mode & S_IFMT

    def is_dir(self) -> bool:
        return _st.S_ISDIR(self.mode)

    def is_lnk(self) -> bool:
        return _st.S_ISLNK(self.mode)

    def is_reg(self) -> bool:
        return _st.S_ISREG(self.mode)

    @classmethod
    def from_host(cls, st: os.stat_result) -> Stat:
        return cls(
            mode=st.st_mode, ino=st.st_ino,
            dev=(os.major(st.st_dev), os.minor(st.st_dev)), nlink=st.st_nlink,
            uid=st.st_uid, gid=st.st_gid,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)), size=st.st_size,
            blksize=st.st_blksize, blocks=st.st_blocks,
            atime_ns=st.st_atime_ns, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns)

    def pack(self) -> bytes:
        """The 144-byte ``struct stat`` of fstat(2) on x86-64."""
        return _STAT.pack(
            encode_dev(*self.dev), self.ino, self.nlink, self.mode, self.uid, self.gid, 0,
            encode_dev(*self.rdev), self.size, self.blksize, self.blocks,
            *_split(self.atime_ns), *_split(self.mtime_ns), *_split(self.ctime_ns))

    def pack_statx(self, mask: int) -> bytes:
        """The 256-byte ``struct statx``. Like Linux we may return more than asked
        for; ``stx_mask`` says which fields hold values."""
        got = STATX_BASIC_STATS | STATX_MNT_ID
        if self.btime_ns is not None:
            got |= STATX_BTIME
        bt = _split(self.btime_ns or 0)
        return _STATX.pack(
            got, self.blksize, 0, self.nlink, self.uid, self.gid, self.mode & 0xFFFF, 0,
            self.ino, self.size, self.blocks, 0,
            *_split(self.atime_ns), 0, bt[0], bt[1], 0,
            *_split(self.ctime_ns), 0, *_split(self.mtime_ns), 0,
            self.rdev[0], self.rdev[1], self.dev[0], self.dev[1], self.mnt_id, 0, 0)


def _split(ns: int) -> tuple[int, int]:
    s, n = divmod(ns, 1_000_000_000)
    return s, n


@dataclasses.dataclass
class StatFs:
    """x86-64 ``struct statfs`` (statfs(2))."""

    type: int
    bsize: int = 4096
    blocks: int = 0
    bfree: int = 0
    bavail: int = 0
    files: int = 0
    ffree: int = 0
    fsid: tuple[int, int] = (0, 0)
    namelen: int = 255
    frsize: int = 4096
    flags: int = 0  # ST_RDONLY (1), ST_NOSUID (2), ...

    def pack(self) -> bytes:
        return _STATFS.pack(self.type, self.bsize, self.blocks, self.bfree, self.bavail,
                            self.files, self.ffree, self.fsid[0], self.fsid[1],
                            self.namelen, self.frsize, self.flags)


def now_ns() -> int:
    import time
    return time.time_ns()
