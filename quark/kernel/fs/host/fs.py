"""hostfs: a host directory (the bundle rootfs, or a bind mount source) served to
the guest.

Confinement, the security-critical part:
- The filesystem holds one O_PATH fd on its host root. Every host access opens a
  path relative to it with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS): the VFS has already resolved symlinks and ``..`` itself,
  so a relative path here has neither, and a symlink or ``..`` a racing guest
  thread swaps in makes the host call fail (ELOOP/EXDEV) instead of escaping.
- Operations on the last component are *at calls on an O_PATH fd of its parent,
  with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW: the host never follows a symlink.
- Device nodes found in the rootfs are never opened on the host; opening one goes
  to the kernel's own device table (as Linux looks up the char device by rdev).
- A file opened on the host is checked with fstat afterwards: if a racing rename put
  something else than the expected kind there, the fd is closed unused.
Known limit: a Node is named by its path relative to the host root, so a directory
renamed on the host under a task's cwd leaves that cwd naming the old path.
"""

from __future__ import annotations

import contextlib
import os
import stat as _st
import struct
from collections.abc import Iterator
from typing import Any

from quark.kernel.abi.linux import (
    EACCES,
    EISDIR,
    ELOOP,
    ENXIO,
    EPERM,
    EROFS,
    O_ACCMODE,
    O_APPEND,
    O_PATH,
    O_RDONLY,
    O_TRUNC,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    UTIME_OMIT,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.host import host_ffi
from quark.kernel.vfs import perm
from quark.kernel.vfs.file import File, PathFile
from quark.kernel.vfs.inode import DirEntry, FileSystem, Node, SetAttr, dtype_of
from quark.kernel.vfs.path import Location, join
from quark.kernel.vfs.stat import Stat, StatFs

RESOLVE = (host_ffi.RESOLVE_BENEATH | host_ffi.RESOLVE_NO_SYMLINKS
           | host_ffi.RESOLVE_NO_MAGICLINKS)
_BASE = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY


@contextlib.contextmanager
def host_errors() -> Iterator[None]:
    """Turn host OSErrors into the same errno for the guest."""
    try:
        yield
    except OSError as e:
        raise LinuxError(e.errno or EACCES) from e


class HostFs(FileSystem):
    name = "hostfs"

    def __init__(self, host_path: str, readonly: bool = False) -> None:
        super().__init__()
        self.host_path = host_path
        self.readonly = readonly
        st = os.stat(host_path)  # a trusted host path from the bundle/config
        if _st.S_ISDIR(st.st_mode):
            self.dirfd = os.open(host_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            root_rel = ""
        else:
            # A bind-mounted file: serve its parent, rooted at that one name; the VFS
            # treats the node as a mount root, so ".." never reaches the siblings.
            parent, root_rel = os.path.split(os.path.abspath(host_path))
            self.dirfd = os.open(parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root = HostNode(self, root_rel, Stat.from_host(st))
        self.euid = os.geteuid()

    # ---- confined host access
    def open_rel(self, rel: str, flags: int, mode: int = 0) -> int:
        with host_errors():
            # openat2 rejects O_PATH combined with anything but these three.
            extra = os.O_CLOEXEC | os.O_NOFOLLOW if flags & os.O_PATH else _BASE
            return host_ffi.openat2(self.dirfd, rel or ".", flags | extra, mode, RESOLVE)

    @contextlib.contextmanager
    def parent_of(self, rel: str) -> Iterator[tuple[int, str]]:
        """(O_PATH fd of the directory holding ``rel``, last component)."""
        if "/" not in rel:
            yield self.dirfd, rel or "."
            return
        head, name = rel.rsplit("/", 1)
        pfd = self.open_rel(head, os.O_PATH | os.O_DIRECTORY)
        try:
            yield pfd, name
        finally:
            os.close(pfd)

    def stat_rel(self, rel: str) -> Stat:
        if not rel:
            with host_errors():
                return Stat.from_host(os.fstat(self.dirfd))
        fd = self.open_rel(rel, os.O_PATH)
        try:
            with host_errors():
                return Stat.from_host(os.fstat(fd))
        finally:
            os.close(fd)

    def statfs(self) -> StatFs:
        with host_errors():
            raw = host_ffi.fstatfs(self.dirfd)
        f = struct.unpack("<qqQQQQQiiqqq", raw[:88])
        return StatFs(type=f[0], bsize=f[1], blocks=f[2], bfree=f[3], bavail=f[4],
                      files=f[5], ffree=f[6], fsid=(f[7], f[8]), namelen=f[9],
                      frsize=f[10], flags=f[11] | (1 if self.readonly else 0))

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.dirfd)

    def give_to(self, t: Any, pfd: int, name: str) -> None:
        """New files belong to the caller's fsuid/fsgid, as on Linux; best effort
        when the sandbox itself may not chown."""
        uid, gid = perm.fsuid(t), perm.fsgid(t)
        if uid == self.euid and gid == os.getegid():
            return
        with contextlib.suppress(OSError):
            os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)

    def check_writable(self) -> None:
        if self.readonly:
            raise LinuxError(EROFS)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


class HostNode(Node):
    fs: HostFs

    def __init__(self, fs: HostFs, rel: str, st: Stat | None = None) -> None:
        self.fs = fs
        self.rel = rel
        self._st = st

    def key(self) -> str:
        return self.rel

    def stat(self) -> Stat:
        self._st = self.fs.stat_rel(self.rel)
        return self._st

    def mode(self) -> int:
        return (self._st or self.stat()).mode

    def parent(self) -> HostNode:
        if self.rel == self.fs.root.rel:
            return self
        return HostNode(self.fs, self.rel.rsplit("/", 1)[0] if "/" in self.rel else "")

    def lookup(self, t: Any, name: str) -> HostNode:
        rel = _join(self.rel, name)
        return HostNode(self.fs, rel, self.fs.stat_rel(rel))

    def readdir(self, t: Any) -> list[DirEntry]:
        fd = self.fs.open_rel(self.rel, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with host_errors(), os.scandir(fd) as it:
                out = []
                for e in it:
                    try:
                        if e.is_symlink():
                            mode = _st.S_IFLNK
                        elif e.is_dir(follow_symlinks=False):
                            mode = _st.S_IFDIR
                        elif e.is_file(follow_symlinks=False):
                            mode = _st.S_IFREG
                        else:  # d_type of a fifo/socket/device: one fstatat, no follow
                            mode = e.stat(follow_symlinks=False).st_mode
                    except OSError:
                        continue  # removed meanwhile
                    out.append(DirEntry(e.name, e.inode(), dtype_of(mode)))
                return out
        finally:
            os.close(fd)

    def readlink(self, t: Any) -> str:
        with self.fs.parent_of(self.rel) as (pfd, name), host_errors():
            return str(os.readlink(name, dir_fd=pfd))  # readlinkat: never follows

    # ---- open
    def open(self, t: Any, flags: int, loc: Location) -> File:
        from quark.kernel.fs.host.file import HostDirFile, HostFile
        if flags & O_PATH:
            return PathFile(flags, loc.path, loc)
        st = self.stat()
        kind = st.mode & S_IFMT
        if kind == _st.S_IFDIR:
            fd = self.fs.open_rel(self.rel, os.O_RDONLY | os.O_DIRECTORY)
            return HostDirFile(fd, flags, loc.path, loc, t)
        if kind == S_IFREG:
            acc = flags & O_ACCMODE
            host = acc | (flags & (O_APPEND | O_TRUNC)) | os.O_NONBLOCK
            if acc != O_RDONLY or flags & O_TRUNC:
                self.fs.check_writable()
            fd = self.fs.open_rel(self.rel, host)
            st_fd = _expect(fd, S_IFREG)
            return HostFile(fd, flags, loc.path, loc, ident=(st_fd.st_dev, st_fd.st_ino))
        if kind == S_IFIFO:
            # The pipe lives in the kernel, shared by the container's openers of this
            # inode: opening the host FIFO would let its open semantics block or fail
            # the sandbox instead of the task (and no one outside writes to it).
            from quark.kernel.fs.pipe.pipe import open_fifo
            return open_fifo(t, ("host", st.dev, st.ino), flags, loc)
        if kind == S_IFSOCK:
            raise LinuxError(ENXIO)
        if kind == _st.S_IFLNK:
            raise LinuxError(ELOOP)  # a link swapped in after the walk: never follow
        from quark.kernel.fs.dev.registry import open_device
        return open_device(t, st, flags, loc)

    # ---- directory operations (the VFS checked permissions and existence)
    def create(self, t: Any, name: str, mode: int, flags: int, dirloc: Location) -> File:
        from quark.kernel.fs.host.file import HostFile
        self.fs.check_writable()
        rel = _join(self.rel, name)
        with self.fs.parent_of(rel) as (pfd, n), host_errors():
            fd = os.open(n, os.O_CREAT | os.O_EXCL | (flags & (O_ACCMODE | O_APPEND))
                         | _BASE | os.O_NONBLOCK, mode & 0o7777, dir_fd=pfd)
            self.fs.give_to(t, pfd, n)
        path = join(dirloc.path, name)
        return HostFile(fd, flags, path, Location(dirloc.mount, HostNode(self.fs, rel), path))

    def _at(self, name: str) -> contextlib.AbstractContextManager[tuple[int, str]]:
        self.fs.check_writable()
        return self.fs.parent_of(_join(self.rel, name))

    def mkdir(self, t: Any, name: str, mode: int) -> None:
        with self._at(name) as (pfd, n), host_errors():
            os.mkdir(n, mode & 0o7777, dir_fd=pfd)
            self.fs.give_to(t, pfd, n)

    def mknod(self, t: Any, name: str, mode: int, rdev: tuple[int, int]) -> None:
        kind = mode & S_IFMT
        if kind not in (S_IFREG, S_IFIFO, S_IFSOCK, 0):
            raise LinuxError(EPERM)  # no device nodes on the host, ever
        with self._at(name) as (pfd, n), host_errors():
            os.mknod(n, (mode & 0o7777) | (kind or S_IFREG), dir_fd=pfd)
            self.fs.give_to(t, pfd, n)

    def symlink(self, t: Any, name: str, target: str) -> None:
        with self._at(name) as (pfd, n), host_errors():
            os.symlink(target, n, dir_fd=pfd)
            self.fs.give_to(t, pfd, n)

    def link(self, t: Any, name: str, target: Node) -> None:
        assert isinstance(target, HostNode)
        with self._at(name) as (pfd, n), self.fs.parent_of(target.rel) as (spfd, sn), \
                host_errors():
            os.link(sn, n, src_dir_fd=spfd, dst_dir_fd=pfd, follow_symlinks=False)

    def unlink(self, t: Any, name: str) -> None:
        with self._at(name) as (pfd, n), host_errors():
            os.unlink(n, dir_fd=pfd)

    def rmdir(self, t: Any, name: str) -> None:
        with self._at(name) as (pfd, n), host_errors():
            os.rmdir(n, dir_fd=pfd)

    def rename(self, t: Any, name: str, newdir: Node, newname: str, flags: int) -> None:
        assert isinstance(newdir, HostNode)
        with self._at(name) as (pfd, n), newdir._at(newname) as (npfd, nn), host_errors():
            if flags:
                host_ffi.renameat2(pfd, n, npfd, nn, flags)
            else:
                os.rename(n, nn, src_dir_fd=pfd, dst_dir_fd=npfd)

    def setattr(self, t: Any, attr: SetAttr) -> None:
        self.fs.check_writable()
        with self.fs.parent_of(self.rel) as (pfd, n), host_errors():
            if attr.uid is not None or attr.gid is not None:
                os.chown(n, -1 if attr.uid is None else attr.uid,
                         -1 if attr.gid is None else attr.gid, dir_fd=pfd,
                         follow_symlinks=False)
            if attr.mode is not None:
                host_ffi.fchmodat_nofollow(pfd, n, attr.mode & 0o7777)
            if attr.atime_ns is not None or attr.mtime_ns is not None:
                host_ffi.utimensat_nofollow(pfd, n, _ts(attr.atime_ns), _ts(attr.mtime_ns))
        if attr.size is not None:
            fd = self.fs.open_rel(self.rel, os.O_WRONLY | os.O_NONBLOCK)
            try:
                _expect(fd, S_IFREG, EISDIR)
                with host_errors():
                    os.ftruncate(fd, attr.size)
            finally:
                os.close(fd)


def _ts(ns: int | None) -> tuple[int, int]:
    if ns is None:
        return (0, UTIME_OMIT)
    return divmod(ns, 1_000_000_000)


def _expect(fd: int, kind: int, err: int = EACCES) -> os.stat_result:
    """Close ``fd`` and fail unless it is of file type ``kind`` (a racing rename
    may have swapped the name between our stat and our open); its stat."""
    st = os.fstat(fd)
    if st.st_mode & S_IFMT != kind:
        os.close(fd)
        raise LinuxError(err)
    return st

