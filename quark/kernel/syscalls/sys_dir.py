"""Directory calls: getdents64, getcwd, chdir/fchdir, mkdir, mknod, rmdir, unlink,
rename, link, symlink (and their *at forms)."""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import (
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_REMOVEDIR,
    AT_SYMLINK_FOLLOW,
    AT_SYMLINK_NOFOLLOW,
    EBADF,
    EINVAL,
    ENOENT,
    ENOTDIR,
    ERANGE,
    MAY_EXEC,
    O_PATH,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs import at, ops, perm
from quark.kernel.vfs.path import Location, fsencode

Task = Any


@syscall(217, "getdents64")
async def sys_getdents64(t: Task, a: SyscallArgs) -> int:
    fd, buf, count = a.int(0), a.ptr(1), a.uint(2)
    f = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    data = f.getdents64(count)
    if data:
        t.mm.write(buf, data)
    return len(data)


@syscall(79, "getcwd")
async def sys_getcwd(t: Task, a: SyscallArgs) -> int:
    buf, size = a.ptr(0), a.size(1)
    b = fsencode(t.fs.cwd_path()) + b"\0"
    if len(b) > size:
        raise LinuxError(ERANGE)
    t.mm.write(buf, b)
    return len(b)


def _enter(t: Task, loc: Location) -> int:
    if not loc.node.is_dir():
        raise LinuxError(ENOTDIR)
    perm.check(t, loc.node.stat(), MAY_EXEC)
    t.fs.cwd = loc
    return 0


@syscall(80, "chdir")
async def sys_chdir(t: Task, a: SyscallArgs) -> int:
    return _enter(t, at.lookup_loc(t, AT_FDCWD, at.read_path(t, a.ptr(0))))


@syscall(81, "fchdir")
async def sys_fchdir(t: Task, a: SyscallArgs) -> int:
    f = t.fds.get(a.int(0))
    if f.loc is None:
        raise LinuxError(ENOTDIR)
    return _enter(t, f.loc)


# ---- creation
def _mkdir(t: Task, dirfd: int, path: str, mode: int) -> int:
    ops.mkdir(t, at.base_for(t, dirfd, path), path, mode)
    return 0


@syscall(83, "mkdir")
async def sys_mkdir(t: Task, a: SyscallArgs) -> int:
    return _mkdir(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.uint(1))


@syscall(258, "mkdirat")
async def sys_mkdirat(t: Task, a: SyscallArgs) -> int:
    return _mkdir(t, a.int(0), at.read_path(t, a.ptr(1)), a.uint(2))


def decode_dev(dev: int) -> tuple[int, int]:
    """new_decode_dev of a 32-bit dev_t."""
    return (dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)


def _mknod(t: Task, dirfd: int, path: str, mode: int, dev: int) -> int:
    ops.mknod(t, at.base_for(t, dirfd, path), path, mode, decode_dev(dev))
    return 0


@syscall(133, "mknod")
async def sys_mknod(t: Task, a: SyscallArgs) -> int:
    return _mknod(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.uint(1), a.uint(2))


@syscall(259, "mknodat")
async def sys_mknodat(t: Task, a: SyscallArgs) -> int:
    return _mknod(t, a.int(0), at.read_path(t, a.ptr(1)), a.uint(2), a.uint(3))


def _symlink(t: Task, target: str, dirfd: int, path: str) -> int:
    ops.symlink(t, target, at.base_for(t, dirfd, path), path)
    return 0


@syscall(88, "symlink")
async def sys_symlink(t: Task, a: SyscallArgs) -> int:
    return _symlink(t, at.read_path(t, a.ptr(0)), AT_FDCWD, at.read_path(t, a.ptr(1)))


@syscall(266, "symlinkat")
async def sys_symlinkat(t: Task, a: SyscallArgs) -> int:
    return _symlink(t, at.read_path(t, a.ptr(0)), a.int(1), at.read_path(t, a.ptr(2)))


def _link(t: Task, odir: int, opath: str, ndir: int, npath: str, flags: int) -> int:
    if flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        raise LinuxError(EINVAL)
    if not opath and flags & AT_EMPTY_PATH and not perm.capable(t, perm.CAP_DAC_READ_SEARCH):
        raise LinuxError(ENOENT)  # linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH
    lflags = (flags & AT_EMPTY_PATH) | (0 if flags & AT_SYMLINK_FOLLOW else AT_SYMLINK_NOFOLLOW)
    src = at.lookup_loc(t, odir, opath, lflags)
    ops.link(t, src, at.base_for(t, ndir, npath), npath)
    return 0


@syscall(86, "link")
async def sys_link(t: Task, a: SyscallArgs) -> int:
    return _link(t, AT_FDCWD, at.read_path(t, a.ptr(0)), AT_FDCWD,
                 at.read_path(t, a.ptr(1)), 0)


@syscall(265, "linkat")
async def sys_linkat(t: Task, a: SyscallArgs) -> int:
    return _link(t, a.int(0), at.read_path(t, a.ptr(1)), a.int(2),
                 at.read_path(t, a.ptr(3)), a.int(4))


# ---- removal
@syscall(87, "unlink")
async def sys_unlink(t: Task, a: SyscallArgs) -> int:
    path = at.read_path(t, a.ptr(0))
    ops.unlink(t, at.base_for(t, AT_FDCWD, path), path)
    return 0


@syscall(84, "rmdir")
async def sys_rmdir(t: Task, a: SyscallArgs) -> int:
    path = at.read_path(t, a.ptr(0))
    ops.rmdir(t, at.base_for(t, AT_FDCWD, path), path)
    return 0


@syscall(263, "unlinkat")
async def sys_unlinkat(t: Task, a: SyscallArgs) -> int:
    dirfd, path, flags = a.int(0), at.read_path(t, a.ptr(1)), a.int(2)
    if flags & ~AT_REMOVEDIR:
        raise LinuxError(EINVAL)
    base = at.base_for(t, dirfd, path)
    (ops.rmdir if flags & AT_REMOVEDIR else ops.unlink)(t, base, path)
    return 0


# ---- rename
def _rename(t: Task, odir: int, opath: str, ndir: int, npath: str, flags: int) -> int:
    ops.rename(t, at.base_for(t, odir, opath), opath, at.base_for(t, ndir, npath), npath,
               flags)
    return 0


@syscall(82, "rename")
async def sys_rename(t: Task, a: SyscallArgs) -> int:
    return _rename(t, AT_FDCWD, at.read_path(t, a.ptr(0)), AT_FDCWD,
                   at.read_path(t, a.ptr(1)), 0)


@syscall(264, "renameat")
async def sys_renameat(t: Task, a: SyscallArgs) -> int:
    return _rename(t, a.int(0), at.read_path(t, a.ptr(1)), a.int(2),
                   at.read_path(t, a.ptr(3)), 0)


@syscall(316, "renameat2")
async def sys_renameat2(t: Task, a: SyscallArgs) -> int:
    return _rename(t, a.int(0), at.read_path(t, a.ptr(1)), a.int(2),
                   at.read_path(t, a.ptr(3)), a.uint(4))
