"""Extended attributes: the whole family answers like a filesystem without xattr
support (fs/xattr.c with no handlers): the path or fd is resolved and the name checked
first (ENOENT, EBADF, ERANGE ...), then get/set/remove fail with EOPNOTSUPP (ENOTSUP)
and list returns an empty list."""

from __future__ import annotations

from collections.abc import Callable
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


def _list(t: Task, a: SyscallArgs) -> int:
    return 0


_NOTE = "no filesystem supports xattrs: EOPNOTSUPP after the path checks"

# Each operation comes in three forms that differ only in what names the file:
# a path followed through symlinks, a path not followed (l*), or an fd (f*).
_FORMS = (
    ("", lambda t, a: _path(t, a, True)),
    ("l", lambda t, a: _path(t, a, False)),
    ("f", _fd),
)
_OPS = (
    (188, "setxattr", _set, _NOTE),
    (191, "getxattr", _get, _NOTE),
    (194, "listxattr", _list, "always an empty list"),
    (197, "removexattr", _remove, _NOTE),
)


def _declare(nr: int, name: str, target: Callable[[Task, SyscallArgs], None],
             op: Callable[[Task, SyscallArgs], int], note: str) -> None:
    async def handler(t: Task, a: SyscallArgs) -> int:
        target(t, a)
        return op(t, a)

    handler.__name__ = handler.__qualname__ = f"sys_{name}"
    handler.__doc__ = f"{name}(2)."
    syscall(nr, name, partial=note)(handler)


for _first, _base, _op, _note in _OPS:
    for _i, (_prefix, _target) in enumerate(_FORMS):
        _declare(_first + _i, _prefix + _base, _target, _op, _note)
