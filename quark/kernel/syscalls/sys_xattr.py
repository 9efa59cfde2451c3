"""Extended attributes: the whole family answers like a filesystem without xattr
support (fs/xattr.c with no handlers): the path or fd is resolved and the name checked
first (ENOENT, EBADF, ERANGE ...), then get/set/remove fail with EOPNOTSUPP (ENOTSUP)
and list returns an empty list."""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import (
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    E2BIG,
    EBADF,
    EINVAL,
    ENAMETOOLONG,
    EOPNOTSUPP,
    ERANGE,
    O_PATH,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs import at

Task = Any

XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_CREATE, XATTR_REPLACE = 1, 2


def _path(t: Task, a: SyscallArgs, follow: bool) -> None:
    at.lookup_loc(t, AT_FDCWD, at.read_path(t, a.ptr(0)), 0 if follow else AT_SYMLINK_NOFOLLOW)


def _fd(t: Task, a: SyscallArgs) -> None:
    f = t.fds.get(a.int(0))
    if f.flags & O_PATH:
        raise LinuxError(EBADF)


def _name(t: Task, addr: int) -> None:
    """import_xattr_name: empty or longer than 255 bytes is ERANGE."""
    try:
        name = t.mm.read_cstr(addr, XATTR_NAME_MAX + 1)
    except LinuxError as e:
        if e.errno == ENAMETOOLONG:
            raise LinuxError(ERANGE) from None
        raise
    if not name:
        raise LinuxError(ERANGE)


def _set(t: Task, a: SyscallArgs) -> int:
    _name(t, a.ptr(1))
    size, flags = a.size(3), a.int(4)
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise LinuxError(EINVAL)
    if size > XATTR_SIZE_MAX:
        raise LinuxError(E2BIG)
    raise LinuxError(EOPNOTSUPP)


def _get(t: Task, a: SyscallArgs) -> int:
    _name(t, a.ptr(1))
    raise LinuxError(EOPNOTSUPP)


def _remove(t: Task, a: SyscallArgs) -> int:
    _name(t, a.ptr(1))
    raise LinuxError(EOPNOTSUPP)


_NOTE = "no filesystem supports xattrs: EOPNOTSUPP after the path checks"


@syscall(188, "setxattr", partial=_NOTE)
async def sys_setxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, True)
    return _set(t, a)


@syscall(189, "lsetxattr", partial=_NOTE)
async def sys_lsetxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, False)
    return _set(t, a)


@syscall(190, "fsetxattr", partial=_NOTE)
async def sys_fsetxattr(t: Task, a: SyscallArgs) -> int:
    _fd(t, a)
    return _set(t, a)


@syscall(191, "getxattr", partial=_NOTE)
async def sys_getxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, True)
    return _get(t, a)


@syscall(192, "lgetxattr", partial=_NOTE)
async def sys_lgetxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, False)
    return _get(t, a)


@syscall(193, "fgetxattr", partial=_NOTE)
async def sys_fgetxattr(t: Task, a: SyscallArgs) -> int:
    _fd(t, a)
    return _get(t, a)


@syscall(194, "listxattr", partial="always an empty list")
async def sys_listxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, True)
    return 0


@syscall(195, "llistxattr", partial="always an empty list")
async def sys_llistxattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, False)
    return 0


@syscall(196, "flistxattr", partial="always an empty list")
async def sys_flistxattr(t: Task, a: SyscallArgs) -> int:
    _fd(t, a)
    return 0


@syscall(197, "removexattr", partial=_NOTE)
async def sys_removexattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, True)
    return _remove(t, a)


@syscall(198, "lremovexattr", partial=_NOTE)
async def sys_lremovexattr(t: Task, a: SyscallArgs) -> int:
    _path(t, a, False)
    return _remove(t, a)


@syscall(199, "fremovexattr", partial=_NOTE)
async def sys_fremovexattr(t: Task, a: SyscallArgs) -> int:
    _fd(t, a)
    return _remove(t, a)
