"""What a filesystem provides to the VFS: a ``FileSystem`` and its ``Node``s.

A Node is a name-space object of one filesystem (gVisor's dentry+inode together).
The VFS walks paths with :meth:`Node.lookup`, resolves symlinks itself with
:meth:`Node.readlink` and asks the parent directory Node to create, remove and
rename children. Every method takes the calling task ``t`` (procfs needs its pid;
creations need its credentials) and fails with ``LinuxError``.

Permission checks (DAC) are done by the VFS before it calls these methods, so a
filesystem only enforces what is particular to it (EROFS of a read-only backing,
ENOTEMPTY, EXDEV ...).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from quark.kernel.abi.linux import (
    DT_BLK,
    DT_CHR,
    DT_DIR,
    DT_FIFO,
    DT_LNK,
    DT_REG,
    DT_SOCK,
    DT_UNKNOWN,
    EINVAL,
    ENOTDIR,
    EPERM,
    EROFS,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.stat import Stat, StatFs

if TYPE_CHECKING:
    from quark.kernel.vfs.file import File
    from quark.kernel.vfs.path import Location

_DT = {S_IFDIR: DT_DIR, S_IFREG: DT_REG, S_IFLNK: DT_LNK, S_IFCHR: DT_CHR,
       S_IFBLK: DT_BLK, S_IFIFO: DT_FIFO, S_IFSOCK: DT_SOCK}

# Anonymous device numbers (major 0) for synthetic filesystems, like get_anon_bdev.
_anon_minor = itertools.count(40)


def dtype_of(mode: int) -> int:
    return _DT.get(mode & S_IFMT, DT_UNKNOWN)


@dataclasses.dataclass(frozen=True)
class DirEntry:
    name: str
    ino: int
    dtype: int


@dataclasses.dataclass
class SetAttr:
    """chmod/chown/truncate/utimes in one request; None leaves a field alone."""

    mode: int | None = None       # permission bits only (07777)
    uid: int | None = None
    gid: int | None = None
    size: int | None = None
    atime_ns: int | None = None   # already resolved from UTIME_NOW
    mtime_ns: int | None = None


class FileSystem:
    """One superblock. ``name`` is the fstype shown in /proc/mounts."""

    name = "none"
    magic = 0

    def __init__(self) -> None:
        self.dev = (0, next(_anon_minor))

    def statfs(self) -> StatFs:
        return StatFs(type=self.magic, namelen=255)

    def release(self) -> None:
        """Free host resources (unmount)."""


class Node:
    """A file, directory or symlink of some filesystem. Subclasses override what
    their kind supports; defaults answer as Linux does for an unsupported op."""

    fs: FileSystem

    def key(self) -> Hashable:
        """Identity within its filesystem, stable while the file exists (mountpoints
        and ``..`` checks compare keys)."""
        return id(self)

    def mode(self) -> int:
        """st_mode; may come from a cache filled at lookup time."""
        return self.stat().mode

    def stat(self) -> Stat:
        raise NotImplementedError

    def is_dir(self) -> bool:
        return self.mode() & S_IFMT == S_IFDIR

    def is_symlink(self) -> bool:
        return self.mode() & S_IFMT == S_IFLNK

    # ---- directories
    def lookup(self, t: Any, name: str) -> Node:
        raise LinuxError(ENOTDIR)

    def parent(self) -> Node:
        """The directory holding this one (the root's parent is itself)."""
        return self

    def readdir(self, t: Any) -> list[DirEntry]:
        """Entries without "." and ".." (the VFS adds those)."""
        raise LinuxError(ENOTDIR)

    def create(self, t: Any, name: str, mode: int, flags: int, dirloc: Location) -> File:
        """Create the regular file ``name`` (it does not exist) in this directory,
        reached at ``dirloc``, and open it with ``flags`` (mode has umask applied)."""
        raise LinuxError(EPERM)

    def mkdir(self, t: Any, name: str, mode: int) -> None:
        raise LinuxError(EPERM)

    def mknod(self, t: Any, name: str, mode: int, rdev: tuple[int, int]) -> None:
        raise LinuxError(EPERM)

    def symlink(self, t: Any, name: str, target: str) -> None:
        raise LinuxError(EPERM)

    def link(self, t: Any, name: str, target: Node) -> None:
        raise LinuxError(EPERM)

    def unlink(self, t: Any, name: str) -> None:
        raise LinuxError(EPERM)

    def rmdir(self, t: Any, name: str) -> None:
        raise LinuxError(EPERM)

    def rename(self, t: Any, name: str, newdir: Node, newname: str, flags: int) -> None:
        raise LinuxError(EPERM)

    # ---- any node
    def readlink(self, t: Any) -> str:
        raise LinuxError(EINVAL)

    def magic_file(self, t: Any) -> File | None:
        """For procfs fd links: the open file a path walk through this link reaches
        (Linux "magic links"); None for ordinary symlinks."""
        return None

    def open(self, t: Any, flags: int, loc: Location) -> File:
        """Open this (existing, non-symlink) node; access checks are done."""
        raise LinuxError(EPERM)

    def setattr(self, t: Any, attr: SetAttr) -> None:
        raise LinuxError(EROFS)
