"""Path-based file operations with Linux's checks in Linux's order (fs/namei.c,
fs/open.c): the system call handlers decode arguments and call these.

Each function takes the calling task ``t`` (for creds, root, umask) and a base
location for relative paths (cwd or a dirfd's location).
"""

from __future__ import annotations

import os
from typing import Any

from quark.kernel.abi.linux import (
    EBUSY,
    EEXIST,
    EINVAL,
    EISDIR,
    ELOOP,
    ENOENT,
    ENOTDIR,
    EOPNOTSUPP,
    EPERM,
    EROFS,
    ETXTBSY,
    EXDEV,
    MAY_EXEC,
    MAY_READ,
    MAY_WRITE,
    O_ACCMODE,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_TMPFILE,
    O_TRUNC,
    O_WRONLY,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFMT,
    S_IFREG,
    S_IFSOCK,
    S_ISGID,
    S_ISUID,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs import perm
from quark.kernel.vfs.file import File, PathFile
from quark.kernel.vfs.inode import SetAttr
from quark.kernel.vfs.path import Location, Resolver
from quark.kernel.vfs.stat import Stat

_SPECIAL = ("", ".", "..")


def may_create(t: Any, d: Location) -> None:
    if d.mount.readonly:
        raise LinuxError(EROFS)
    perm.check(t, d.node.stat(), MAY_WRITE | MAY_EXEC)


def may_delete(t: Any, d: Location, victim: Location) -> None:
    if d.mount.readonly:
        raise LinuxError(EROFS)
    dst = d.node.stat()
    perm.check(t, dst, MAY_WRITE | MAY_EXEC)
    perm.may_delete(t, dst, victim.node.stat())


def _umask(t: Any) -> int:
    return int(t.fs.umask)


# ---- open
def open_path(t: Any, base: Location, path: str, flags: int, mode: int) -> File:
    """open(2)/openat(2) without the fd part."""
    if flags & O_TMPFILE == O_TMPFILE:
        raise LinuxError(EOPNOTSUPP)
    if flags & O_PATH:
        flags &= O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
    r = Resolver(t)
    follow = not flags & O_NOFOLLOW
    if not flags & O_CREAT:
        return open_loc(t, r.resolve(base, path, follow), flags)
    raced = 0
    while True:
        d, name, slash = r.resolve_parent(base, path)
        if name in _SPECIAL or slash:
            raise LinuxError(EISDIR)
        child = r.child_or_none(d, name)
        if child is None:
            may_create(t, d)
            try:
                return d.node.create(t, name, mode & 0o7777 & ~_umask(t), flags, d)
            except LinuxError as e:
                # Made by someone else since the lookup (a container sharing the
                # directory): without O_EXCL, Linux opens what is there.
                if e.errno != EEXIST or flags & O_EXCL or raced == 8:
                    raise
                raced += 1
                continue
        if flags & O_EXCL:
            raise LinuxError(EEXIST)
        if not child.node.is_symlink():
            try:
                return open_loc(t, child, flags & ~O_CREAT)
            except LinuxError as e:
                # Removed by someone else since the lookup: Linux creates it anew.
                if e.errno != ENOENT or raced == 8:
                    raise
                raced += 1
                continue
        if not follow:
            raise LinuxError(ELOOP)
        magic, target = r.link_target(child)
        if magic is not None:
            return open_loc(t, magic, flags & ~O_CREAT)
        base, path = d, target  # create through a dangling symlink, like Linux


def open_loc(t: Any, loc: Location, flags: int) -> File:
    """Open an existing location: type checks, DAC, EROFS, then the filesystem."""
    node = loc.node
    kind = node.mode() & S_IFMT
    if flags & O_PATH:
        if flags & O_DIRECTORY and kind != S_IFDIR:
            raise LinuxError(ENOTDIR)
        return PathFile(flags, loc.path, loc)
    if kind == S_IFLNK:
        raise LinuxError(ELOOP)  # only O_NOFOLLOW lands here on a link
    if flags & O_DIRECTORY and kind != S_IFDIR:
        raise LinuxError(ENOTDIR)
    acc = flags & O_ACCMODE
    want = 0
    if acc in (O_RDONLY, O_RDWR, O_ACCMODE):
        want |= MAY_READ
    if acc in (O_WRONLY, O_RDWR, O_ACCMODE) or flags & O_TRUNC:
        want |= MAY_WRITE
    if kind == S_IFDIR and want & MAY_WRITE:
        raise LinuxError(EISDIR)
    st = node.stat()
    perm.check(t, st, want)
    if want & MAY_WRITE and kind == S_IFREG:
        _not_running(t, st)
    if want & MAY_WRITE and loc.mount.readonly and kind in (S_IFREG, S_IFDIR):
        raise LinuxError(EROFS)
    return node.open(t, flags, loc)


# ---- creation
def _create_point(t: Any, r: Resolver, base: Location, path: str, *,
                  is_dir: bool = False) -> tuple[Location, str]:
    d, name, slash = r.resolve_parent(base, path)
    if name in _SPECIAL:
        raise LinuxError(EEXIST)
    if r.child_or_none(d, name) is not None:
        raise LinuxError(EEXIST)
    if slash and not is_dir:
        raise LinuxError(ENOENT)
    may_create(t, d)
    return d, name


def mkdir(t: Any, base: Location, path: str, mode: int) -> None:
    r = Resolver(t)
    d, name = _create_point(t, r, base, path, is_dir=True)
    d.node.mkdir(t, name, mode & 0o1777 & ~_umask(t))


def mknod(t: Any, base: Location, path: str, mode: int, rdev: tuple[int, int]) -> None:
    kind = mode & S_IFMT
    if kind == S_IFDIR:
        raise LinuxError(EPERM)
    if kind not in (0, S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK):
        raise LinuxError(EINVAL)
    if kind in (S_IFCHR, S_IFBLK) and not perm.capable(t, perm.CAP_MKNOD):
        raise LinuxError(EPERM)
    r = Resolver(t)
    d, name = _create_point(t, r, base, path)
    d.node.mknod(t, name, (kind or S_IFREG) | (mode & 0o7777 & ~_umask(t)), rdev)


def symlink(t: Any, target: str, base: Location, path: str) -> None:
    if not target:
        raise LinuxError(ENOENT)
    r = Resolver(t)
    d, name = _create_point(t, r, base, path)
    d.node.symlink(t, name, target)


def link(t: Any, src: Location, nbase: Location, npath: str) -> None:
    """A new name ``npath`` for the (already resolved) ``src``."""
    r = Resolver(t)
    d, name, slash = r.resolve_parent(nbase, npath)
    if name in _SPECIAL or r.child_or_none(d, name) is not None:
        raise LinuxError(EEXIST)
    if slash:
        raise LinuxError(ENOENT)
    if src.mount is not d.mount:
        raise LinuxError(EXDEV)
    may_create(t, d)
    if src.node.is_dir():
        raise LinuxError(EPERM)
    d.node.link(t, name, src.node)


# ---- removal and rename
def unlink(t: Any, base: Location, path: str) -> None:
    r = Resolver(t)
    d, name, slash = r.resolve_parent(base, path)
    if name in _SPECIAL:
        raise LinuxError(EISDIR)
    victim = r.child(d, name)
    is_dir = victim.node.is_dir()
    if slash:
        raise LinuxError(EISDIR if is_dir else ENOTDIR)
    if victim.is_mount_root():
        raise LinuxError(EBUSY)
    may_delete(t, d, victim)
    if is_dir:
        raise LinuxError(EISDIR)
    d.node.unlink(t, name)


def rmdir(t: Any, base: Location, path: str) -> None:
    r = Resolver(t)
    d, name, _ = r.resolve_parent(base, path)
    if name == ".":
        raise LinuxError(EINVAL)
    if name == "..":
        raise LinuxError(39)  # ENOTEMPTY
    if name == "":
        raise LinuxError(EBUSY)
    victim = r.child(d, name)
    if not victim.node.is_dir():
        raise LinuxError(ENOTDIR)
    if victim.is_mount_root():
        raise LinuxError(EBUSY)
    may_delete(t, d, victim)
    d.node.rmdir(t, name)


def rename(t: Any, obase: Location, opath: str, nbase: Location, npath: str,
           flags: int) -> None:
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE):
        raise LinuxError(EINVAL)
    if flags & RENAME_NOREPLACE and flags & RENAME_EXCHANGE:
        raise LinuxError(EINVAL)
    r = Resolver(t)
    od, oname, oslash = r.resolve_parent(obase, opath)
    nd, nname, nslash = r.resolve_parent(nbase, npath)
    if oname in _SPECIAL or nname in _SPECIAL:
        raise LinuxError(EBUSY)
    if od.mount is not nd.mount:
        raise LinuxError(EXDEV)
    src = r.child(od, oname)
    dst = r.child_or_none(nd, nname)
    if flags & RENAME_EXCHANGE and dst is None:
        raise LinuxError(ENOENT)
    if flags & RENAME_NOREPLACE and dst is not None:
        raise LinuxError(EEXIST)
    src_dir = src.node.is_dir()
    if (oslash or (nslash and not flags & RENAME_EXCHANGE)) and not src_dir:
        raise LinuxError(ENOTDIR)
    if dst is not None and not flags & RENAME_EXCHANGE:
        if src_dir and not dst.node.is_dir():
            raise LinuxError(ENOTDIR)
        if not src_dir and dst.node.is_dir():
            raise LinuxError(EISDIR)
    if src.is_mount_root() or (dst is not None and dst.is_mount_root()):
        raise LinuxError(EBUSY)
    may_delete(t, od, src)
    if dst is not None:
        may_delete(t, nd, dst)
    else:
        may_create(t, nd)
    od.node.rename(t, oname, nd.node, nname, flags)


# ---- attributes
def readlink(t: Any, loc: Location) -> str:
    if not loc.node.is_symlink():
        raise LinuxError(EINVAL)
    return loc.node.readlink(t)


def _writable_mount(loc: Location) -> None:
    if loc.mount.readonly:
        raise LinuxError(EROFS)


def chmod(t: Any, loc: Location, mode: int) -> None:
    st = loc.node.stat()
    _writable_mount(loc)
    perm.check_owner(t, st)
    mode &= 0o7777
    # Linux drops setgid when the caller is not in the file's group (and not root).
    if mode & S_ISGID and not perm.in_group(t, st.gid) and \
            not perm.capable(t, perm.CAP_FSETID):
        mode &= ~S_ISGID
    loc.node.setattr(t, SetAttr(mode=mode))


def chown(t: Any, loc: Location, uid: int, gid: int) -> None:
    st = loc.node.stat()
    _writable_mount(loc)
    new_uid = None if uid in (-1, 0xFFFFFFFF) else uid
    new_gid = None if gid in (-1, 0xFFFFFFFF) else gid
    if not perm.capable(t, perm.CAP_CHOWN):
        if new_uid is not None and new_uid != st.uid:
            raise LinuxError(EPERM)
        if new_gid is not None and new_gid != st.gid and (
                perm.fsuid(t) != st.uid or not perm.in_group(t, new_gid)):
            raise LinuxError(EPERM)
    attr = SetAttr(uid=new_uid, gid=new_gid)
    if (new_uid is not None or new_gid is not None) and st.mode & S_IFMT != S_IFDIR and \
            st.mode & (S_ISUID | S_ISGID):
        # chown clears set-id bits of non-directories (setgid only if group-exec).
        attr.mode = st.mode & 0o7777 & ~S_ISUID
        if st.mode & 0o010:
            attr.mode &= ~S_ISGID
    loc.node.setattr(t, attr)


def utimens(t: Any, loc: Location, atime_ns: int | None, mtime_ns: int | None,
            now: bool) -> None:
    """``now``: both times are "now" (times == NULL or both UTIME_NOW): owner or
    write permission suffices; explicit times need ownership."""
    st = loc.node.stat()
    _writable_mount(loc)
    if now:
        if perm.fsuid(t) != st.uid and not perm.capable(t, perm.CAP_FOWNER):
            perm.check(t, st, MAY_WRITE)
    else:
        perm.check_owner(t, st)
    loc.node.setattr(t, SetAttr(atime_ns=atime_ns, mtime_ns=mtime_ns))


def truncate(t: Any, loc: Location, size: int) -> None:
    if size < 0:
        raise LinuxError(EINVAL)
    kind = loc.node.mode() & S_IFMT
    if kind == S_IFDIR:
        raise LinuxError(EISDIR)
    if kind != S_IFREG:
        raise LinuxError(EINVAL)
    st = loc.node.stat()
    perm.check(t, st, MAY_WRITE)
    _writable_mount(loc)
    _not_running(t, st)
    loc.node.setattr(t, SetAttr(size=size))
    from quark.kernel.mm import textcache
    textcache.changed((os.makedev(*st.dev), st.ino))


def _not_running(t: Any, st: Any) -> None:
    """ETXTBSY for the executable of a live process (Linux: deny_write_access)."""
    busy = getattr(getattr(t, "kernel", None), "text_busy", None)
    if busy and (st.dev, st.ino) in busy:
        raise LinuxError(ETXTBSY)


def access(t: Any, loc: Location, mode: int, effective: bool) -> None:
    if mode == 0:
        return
    st = loc.node.stat()
    perm.check(t, st, mode & 7, real=not effective)
    if mode & MAY_WRITE and loc.mount.readonly and st.mode & S_IFMT in (
            S_IFREG, S_IFDIR, S_IFLNK):
        raise LinuxError(EROFS)


def stat(loc: Location) -> Stat:
    st = loc.node.stat()
    st.mnt_id = loc.mount.id
    return st
