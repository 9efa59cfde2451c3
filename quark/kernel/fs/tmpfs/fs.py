"""tmpfs: files, directories, symlinks, FIFOs and device nodes kept in memory.

Regular file data is a ``bytearray`` per inode; reads and writes copy slices
between it and the guest's memoryviews. ``size=`` limits the total data bytes
(ENOSPC beyond), like tmpfs's block limit. Inode numbers are per filesystem,
starting at 1 for the root as Linux's tmpfs does for its first inode.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from typing import Any

from quark.kernel.abi.linux import (
    EEXIST,
    EFBIG,
    EINVAL,
    ENOENT,
    ENOSPC,
    ENOTDIR,
    ENOTEMPTY,
    ENXIO,
    O_ACCMODE,
    O_PATH,
    O_RDONLY,
    O_TRUNC,
    RENAME_EXCHANGE,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    TMPFS_MAGIC,
)
from quark.kernel.errors import LinuxError
from quark.kernel.mm import shared
from quark.kernel.vfs import perm
from quark.kernel.vfs.dirfile import DirFile
from quark.kernel.vfs.file import File, PathFile
from quark.kernel.vfs.inode import DirEntry, FileSystem, Node, SetAttr, dtype_of
from quark.kernel.vfs.path import Location, join
from quark.kernel.vfs.stat import Stat, StatFs, now_ns

MAX_FILE_SIZE = (1 << 63) - 1


def parse_size(v: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG%]?)", v)
    if not m:
        raise LinuxError(EINVAL)
    n, unit = int(m.group(1)), m.group(2).lower()
    if unit == "%":
        import os
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total * n // 100
    return n << {"": 0, "k": 10, "m": 20, "g": 30}[unit]


@functools.cache
def _default_limit() -> int:
    return parse_size("50%")


# Every tmpfs of the process (one sandbox) draws on one budget: the data lives in the
# sandbox's own memory, as tmpfs pages count against a container's memory cgroup.
# The kernel sets it to the guest's memory size; a size= option limits one mount.
_budget = {"limit": 0, "used": 0}


def set_memory_budget(limit: int) -> None:
    _budget["limit"] = limit


class TmpFs(FileSystem):
    name = "tmpfs"
    magic = TMPFS_MAGIC

    def __init__(self, size_limit: int | None = None, mode: int = 0o1777, uid: int = 0,
                 gid: int = 0, name: str = "tmpfs") -> None:
        super().__init__()
        self.name = name
        self.size_limit = size_limit
        self.used = 0
        self._ino = itertools.count(1)
        self.mount_options = ""
        self.root = TmpNode(self, S_IFDIR | (mode & 0o7777), uid, gid, None)
        self.root.nlink = 2

    @classmethod
    def from_options(cls, opts: Sequence[str], name: str = "tmpfs") -> TmpFs:
        kw: dict[str, Any] = {}
        shown = []
        for o in opts:
            k, _, v = o.partition("=")
            if k == "size":
                kw["size_limit"] = parse_size(v)
                shown.append(f"size={kw['size_limit'] >> 10}k")
            elif k == "mode":
                kw["mode"] = int(v, 8)
                shown.append(f"mode={kw['mode']:o}")
            elif k in ("uid", "gid"):
                kw[k] = int(v)
                shown.append(o)
        fs = cls(name=name, **kw)
        fs.mount_options = ",".join(shown)
        return fs

    def next_ino(self) -> int:
        return next(self._ino)

    def charge(self, delta: int) -> None:
        # Without size= the cap is Linux tmpfs's default, half of RAM: data here is
        # a bytearray, never sparse, so a guest's ftruncate(2**40) would otherwise
        # ask the host for a terabyte. All mounts together stay within the budget.
        limit = self.size_limit if self.size_limit is not None else _default_limit()
        total = _budget["limit"] or _default_limit()
        if delta > 0 and (self.used + delta > limit or _budget["used"] + delta > total):
            raise LinuxError(ENOSPC)
        self.used += delta
        _budget["used"] += delta

    def statfs(self) -> StatFs:
        bs = 4096
        total = (self.size_limit if self.size_limit is not None else 1 << 40) // bs
        free = max(0, total - (self.used + bs - 1) // bs)
        return StatFs(type=self.magic, bsize=bs, blocks=total, bfree=free, bavail=free,
                      files=1 << 20, ffree=(1 << 20) - 1, namelen=255, frsize=bs)


class TmpNode(Node):
    fs: TmpFs

    def __init__(self, fs: TmpFs, mode: int, uid: int, gid: int, parent: TmpNode | None,
                 rdev: tuple[int, int] = (0, 0)) -> None:
        self.fs = fs
        self.ino = fs.next_ino()
        self._mode = mode
        self.uid, self.gid = uid, gid
        self.nlink = 1
        self.rdev = rdev
        self.atime = self.mtime = self.ctime = self.btime = now_ns()
        self.up = parent if parent is not None else self
        self.children: dict[str, TmpNode] | None = {} if mode & S_IFMT == S_IFDIR else None
        self.data = bytearray()
        self.target = ""
        self.opens = 0          # open files: an unlinked file's data lives until 0
        self.unnamed = False    # never had a name (memfd): free at the last close

    def release_data(self) -> None:
        """Free the data once no name and no open file reaches the node."""
        if (self.nlink <= 0 or self.unnamed) and self.opens <= 0 and self.data:
            self.fs.charge(-len(self.data))
            self.data = bytearray()

    def key(self) -> int:
        return self.ino

    def mode(self) -> int:
        return self._mode

    def stat(self) -> Stat:
        size = len(self.data) if self._mode & S_IFMT == S_IFREG else \
            len(self.target.encode("utf-8", "surrogateescape")) if self.is_symlink() else \
            4096 if self.children is not None else 0
        return Stat(mode=self._mode, ino=self.ino, dev=self.fs.dev, nlink=self.nlink,
                    uid=self.uid, gid=self.gid, rdev=self.rdev, size=size,
                    blksize=4096, blocks=(len(self.data) + 511) // 512,
                    atime_ns=self.atime, mtime_ns=self.mtime, ctime_ns=self.ctime,
                    btime_ns=self.btime)

    def touch(self, *, m: bool = True) -> None:
        now = now_ns()
        self.ctime = now
        if m:
            self.mtime = now

    # ---- directory side
    def _kids(self) -> dict[str, TmpNode]:
        if self.children is None:
            raise LinuxError(ENOTDIR)
        return self.children

    def lookup(self, t: Any, name: str) -> TmpNode:
        n = self._kids().get(name)
        if n is None:
            raise LinuxError(ENOENT)
        return n

    def parent(self) -> TmpNode:
        return self.up

    def readdir(self, t: Any) -> list[DirEntry]:
        return [DirEntry(n, c.ino, dtype_of(c._mode)) for n, c in self._kids().items()]

    def _new(self, t: Any, name: str, mode: int, rdev: tuple[int, int] = (0, 0)) -> TmpNode:
        kids = self._kids()
        if name in kids:
            raise LinuxError(EEXIST)
        gid = perm.fsgid(t)
        if self._mode & S_ISGID:  # BSD group semantics of a setgid directory
            gid = self.gid
            if mode & S_IFMT == S_IFDIR:
                mode |= S_ISGID
        node = TmpNode(self.fs, mode, perm.fsuid(t), gid, self, rdev)
        kids[name] = node
        self.touch()
        return node

    def create(self, t: Any, name: str, mode: int, flags: int, dirloc: Location) -> File:
        node = self._new(t, name, S_IFREG | (mode & 0o7777))
        path = join(dirloc.path, name)
        return TmpFile(node, flags, path, Location(dirloc.mount, node, path))

    def mkdir(self, t: Any, name: str, mode: int) -> None:
        node = self._new(t, name, S_IFDIR | (mode & 0o7777))
        node.nlink = 2
        self.nlink += 1

    def mknod(self, t: Any, name: str, mode: int, rdev: tuple[int, int]) -> None:
        kind = mode & S_IFMT
        self._new(t, name, mode, rdev if kind in (S_IFCHR, S_IFBLK) else (0, 0))

    def symlink(self, t: Any, name: str, target: str) -> None:
        self._new(t, name, S_IFLNK | 0o777).target = target

    def link(self, t: Any, name: str, target: Node) -> None:
        assert isinstance(target, TmpNode)
        kids = self._kids()
        if name in kids:
            raise LinuxError(EEXIST)
        kids[name] = target
        target.nlink += 1
        target.touch(m=False)
        self.touch()

    def _drop(self, node: TmpNode) -> None:
        node.nlink -= 1
        node.touch(m=False)
        if node.nlink <= 0 or (node.children is not None and node.nlink <= 1):
            node.nlink = 0
            node.release_data()     # at once, or at the last close (Linux's iput)

    def unlink(self, t: Any, name: str) -> None:
        node = self.lookup(t, name)
        del self._kids()[name]
        self._drop(node)
        self.touch()

    def rmdir(self, t: Any, name: str) -> None:
        node = self.lookup(t, name)
        if node.children is None:
            raise LinuxError(ENOTDIR)
        if node.children:
            raise LinuxError(ENOTEMPTY)
        del self._kids()[name]
        node.nlink = 0
        self.nlink -= 1
        self.touch()

    def rename(self, t: Any, name: str, newdir: Node, newname: str, flags: int) -> None:
        assert isinstance(newdir, TmpNode)
        src = self.lookup(t, name)
        dkids = newdir._kids()
        dst = dkids.get(newname)
        if src.children is not None:
            up: TmpNode = newdir
            while True:  # a directory may not move below itself
                if up is src:
                    raise LinuxError(EINVAL)
                if up.up is up:
                    break
                up = up.up
        if dst is src:
            return
        if flags & RENAME_EXCHANGE:
            assert dst is not None
            self._kids()[name], dkids[newname] = dst, src
            for node, old, new in ((src, self, newdir), (dst, newdir, self)):
                if node.children is not None and old is not new:
                    node.up = new
                    old.nlink -= 1
                    new.nlink += 1
            self.touch()
            newdir.touch()
            return
        if dst is not None:
            if dst.children is not None:
                if dst.children:
                    raise LinuxError(ENOTEMPTY)
                newdir.nlink -= 1
                dst.nlink = 0
            else:
                newdir._drop(dst)
        del self._kids()[name]
        dkids[newname] = src
        if src.children is not None and newdir is not self:
            self.nlink -= 1
            newdir.nlink += 1
            src.up = newdir
        src.touch(m=False)
        self.touch()
        newdir.touch()

    # ---- any node
    def readlink(self, t: Any) -> str:
        if not self.is_symlink():
            raise LinuxError(EINVAL)
        self.atime = now_ns()
        return self.target

    def open(self, t: Any, flags: int, loc: Location) -> File:
        if flags & O_PATH:
            return PathFile(flags, loc.path, loc)
        kind = self._mode & S_IFMT
        if kind == S_IFDIR:
            return DirFile(flags, loc.path, loc, _lister(t, loc))
        if kind == S_IFREG:
            if flags & O_TRUNC and flags & O_ACCMODE != O_RDONLY and self.data:
                self.resize(0)
            return TmpFile(self, flags, loc.path, loc)
        if kind == S_IFIFO:
            from quark.kernel.fs.pipe.pipe import open_fifo
            return open_fifo(t, self, flags, loc)
        if kind in (S_IFCHR, S_IFBLK):
            from quark.kernel.fs.dev.registry import open_device
            return open_device(t, self.stat(), flags, loc)
        if kind == S_IFSOCK:
            raise LinuxError(ENXIO)
        raise LinuxError(EINVAL)

    def resize(self, size: int) -> None:
        if size > MAX_FILE_SIZE:
            raise LinuxError(EFBIG)
        delta = size - len(self.data)
        self.fs.charge(delta)
        if delta > 0:
            self.data.extend(bytes(delta))
        else:
            del self.data[size:]
        self.touch()

    def setattr(self, t: Any, attr: SetAttr) -> None:
        if attr.size is not None:
            self.resize(attr.size)
        if attr.mode is not None:
            self._mode = (self._mode & S_IFMT) | (attr.mode & 0o7777)
        if attr.uid is not None:
            self.uid = attr.uid
        if attr.gid is not None:
            self.gid = attr.gid
        if attr.atime_ns is not None:
            self.atime = attr.atime_ns
        if attr.mtime_ns is not None:
            self.mtime = attr.mtime_ns
        self.ctime = now_ns()


def _lister(t: Any, loc: Location) -> Any:
    from quark.kernel.vfs.mount import list_dir
    return lambda: list_dir(t, loc)


class TmpFile(File):
    seekable = True
    mmap_ok = True
    partial_writes = True

    def __init__(self, node: TmpNode, flags: int, path: str, loc: Location) -> None:
        super().__init__(flags, path, loc)
        self.node = node
        node.opens += 1

    def release(self) -> None:
        self.node.opens -= 1
        self.node.release_data()

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        data = self.node.data
        if offset >= len(data):
            return 0
        done = 0
        with memoryview(data) as src:
            for b in bufs:
                k = min(len(b), len(data) - offset - done)
                if k <= 0:
                    break
                b[:k] = src[offset + done:offset + done + k]
                done += k
        return done

    def write_at(self, bufs: list[memoryview], offset: int) -> int:
        """Write-back of MAP_SHARED pages (mm/shared.py): within the current size."""
        data = self.node.data
        done = 0
        for b in bufs:
            k = min(len(b), len(data) - offset - done)
            if k <= 0:
                break
            data[offset + done:offset + done + k] = b[:k]
            done += k
        return done

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if shared.live:                 # pages of this file mapped shared: see mm/shared.py
            shared.before_read(self, self.pos if offset is None else offset,
                               sum(len(b) for b in bufs))
        n = self.read_at(bufs, self.pos if offset is None else offset)
        if offset is None:
            self.pos += n
        return n

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        from quark.kernel.abi.linux import O_APPEND
        node = self.node
        pos = self.pos if offset is None else offset
        if self.flags & O_APPEND:
            pos = len(node.data)  # Linux appends even for pwrite on O_APPEND files
        total = sum(len(b) for b in bufs)
        if total == 0:
            return 0
        end = pos + total
        if shared.live:     # mapped stores first, as in HostFile.writev_now
            shared.before_read(self, pos, total)
        if end > len(node.data):
            node.resize(end)
        for b in bufs:
            node.data[pos:pos + len(b)] = b
            pos += len(b)
        node.touch()
        if shared.live:
            shared.after_write(self, pos - total, total)
        if offset is None:
            self.pos = pos
        return total

    def lseek(self, off: int, whence: int) -> int:
        from quark.kernel.vfs.file import seek_position
        self.pos = seek_position(self.pos, len(self.node.data), off, whence)
        return self.pos

    def truncate(self, size: int) -> None:
        self.node.resize(size)

    def stat(self) -> Stat:
        return self.node.stat()

    def statfs(self) -> StatFs:
        return self.node.fs.statfs()
