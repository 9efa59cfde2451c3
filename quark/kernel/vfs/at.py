"""Decoding of the path arguments of system calls: guest strings, dirfds, AT_* flags.

Linux rules kept here: a path is at most PATH_MAX-1 bytes before its NUL
(ENAMETOOLONG), an empty path is ENOENT unless AT_EMPTY_PATH, a dirfd is only
consulted for a relative path, and a dirfd that is not a directory is ENOTDIR.
"""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    EBADF,
    ENOENT,
    ENOTDIR,
    PATH_MAX,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location, Resolver, fsdecode, fsencode


def read_path(t: Any, addr: int) -> str:
    """A path argument (EFAULT, ENAMETOOLONG from the memory accessor)."""
    return fsdecode(t.mm.read_cstr(addr, PATH_MAX))


def dir_location(t: Any, dirfd: int) -> Location:
    """The location a relative path starts from."""
    if dirfd == AT_FDCWD:
        return t.fs.cwd  # type: ignore[no-any-return]
    f: File = t.fds.get(dirfd)
    if f.loc is None or not f.loc.node.is_dir():
        raise LinuxError(ENOTDIR)
    return f.loc


def base_for(t: Any, dirfd: int, path: str) -> Location:
    if path.startswith("/"):
        return t.fs.root  # type: ignore[no-any-return]
    return dir_location(t, dirfd)


def fd_target(t: Any, dirfd: int) -> File | Location:
    """What AT_EMPTY_PATH with an empty path names: the dirfd's file itself."""
    if dirfd == AT_FDCWD:
        return t.fs.cwd  # type: ignore[no-any-return]
    f: File = t.fds.get(dirfd)
    return f


def lookup(t: Any, dirfd: int, path: str, flags: int = 0) -> File | Location:
    """Resolve (dirfd, path, AT_* flags) to a Location, or to the dirfd's File for
    an empty path with AT_EMPTY_PATH (it may have no location: a pipe)."""
    if not path:
        if flags & AT_EMPTY_PATH:
            return fd_target(t, dirfd)
        raise LinuxError(ENOENT)
    base = base_for(t, dirfd, path)
    return Resolver(t).resolve(base, path, follow=not flags & AT_SYMLINK_NOFOLLOW)


def lookup_loc(t: Any, dirfd: int, path: str, flags: int = 0) -> Location:
    """Like :func:`lookup` for calls that need a location (chmod, utimes ...)."""
    r = lookup(t, dirfd, path, flags)
    if isinstance(r, Location):
        return r
    if r.loc is None:
        raise LinuxError(EBADF)
    return r.loc


def write_str(t: Any, addr: int, s: str, limit: int) -> int:
    """readlink-style: copy at most ``limit`` bytes, no NUL; returns the count."""
    b = fsencode(s)[:limit]
    t.mm.write(addr, b)
    return len(b)
