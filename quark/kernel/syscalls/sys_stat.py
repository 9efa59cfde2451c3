"""stat family, access, chmod/chown, utimensat, statfs, umask, readlink."""

from __future__ import annotations

import struct
import time
from typing import Any

from quark.kernel.abi.linux import (
    AT_EACCESS,
    AT_EMPTY_PATH,
    AT_FDCWD,
    AT_NO_AUTOMOUNT,
    AT_STATX_SYNC_TYPE,
    AT_SYMLINK_NOFOLLOW,
    EBADF,
    EINVAL,
    ENOENT,
    O_PATH,
    STATX__RESERVED,
    UTIME_NOW,
    UTIME_OMIT,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs import at, ops
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location
from quark.kernel.vfs.stat import Stat

Task = Any


def _stat_of(target: File | Location) -> Stat:
    if isinstance(target, Location):
        return ops.stat(target)
    st = target.stat()
    if target.loc is not None:
        st.mnt_id = target.loc.mount.id
    return st


def _stat_at(t: Task, dirfd: int, path: str, flags: int) -> Stat:
    return _stat_of(at.lookup(t, dirfd, path, flags))


@syscall(4, "stat")
async def sys_stat(t: Task, a: SyscallArgs) -> int:
    path, buf = at.read_path(t, a.ptr(0)), a.ptr(1)
    t.mm.write(buf, _stat_at(t, AT_FDCWD, path, 0).pack())
    return 0


@syscall(6, "lstat")
async def sys_lstat(t: Task, a: SyscallArgs) -> int:
    path, buf = at.read_path(t, a.ptr(0)), a.ptr(1)
    t.mm.write(buf, _stat_at(t, AT_FDCWD, path, AT_SYMLINK_NOFOLLOW).pack())
    return 0


@syscall(5, "fstat")
async def sys_fstat(t: Task, a: SyscallArgs) -> int:
    fd, buf = a.int(0), a.ptr(1)
    t.mm.write(buf, _stat_of(t.fds.get(fd)).pack())
    return 0


@syscall(262, "newfstatat")
async def sys_newfstatat(t: Task, a: SyscallArgs) -> int:
    dirfd, pathp, buf, flags = a.int(0), a.ptr(1), a.ptr(2), a.int(3)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH):
        raise LinuxError(EINVAL)
    path = at.read_path(t, pathp)
    t.mm.write(buf, _stat_at(t, dirfd, path, flags).pack())
    return 0


@syscall(332, "statx")
async def sys_statx(t: Task, a: SyscallArgs) -> int:
    dirfd, pathp, flags, mask, buf = a.int(0), a.ptr(1), a.int(2), a.uint(3), a.ptr(4)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE):
        raise LinuxError(EINVAL)
    if flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or mask & STATX__RESERVED:
        raise LinuxError(EINVAL)
    # Linux 6.11+: a NULL path with AT_EMPTY_PATH means the dirfd itself.
    path = "" if pathp == 0 and flags & AT_EMPTY_PATH else at.read_path(t, pathp)
    t.mm.write(buf, _stat_at(t, dirfd, path, flags).pack_statx(mask))
    return 0


# ---- access
def _access(t: Task, dirfd: int, path: str, mode: int, flags: int) -> int:
    if mode & ~7:
        raise LinuxError(EINVAL)
    if flags & ~(AT_EACCESS | AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise LinuxError(EINVAL)
    loc = at.lookup_loc(t, dirfd, path, flags)
    ops.access(t, loc, mode, effective=bool(flags & AT_EACCESS))
    return 0


@syscall(21, "access")
async def sys_access(t: Task, a: SyscallArgs) -> int:
    return _access(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.int(1), 0)


@syscall(269, "faccessat")
async def sys_faccessat(t: Task, a: SyscallArgs) -> int:
    return _access(t, a.int(0), at.read_path(t, a.ptr(1)), a.int(2), 0)


@syscall(439, "faccessat2")
async def sys_faccessat2(t: Task, a: SyscallArgs) -> int:
    return _access(t, a.int(0), at.read_path(t, a.ptr(1)), a.int(2), a.int(3))


# ---- chmod / chown
def _fd_loc(t: Task, fd: int) -> Location | None:
    f: File = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    return f.loc


@syscall(90, "chmod")
async def sys_chmod(t: Task, a: SyscallArgs) -> int:
    ops.chmod(t, at.lookup_loc(t, AT_FDCWD, at.read_path(t, a.ptr(0))), a.uint(1))
    return 0


@syscall(91, "fchmod")
async def sys_fchmod(t: Task, a: SyscallArgs) -> int:
    loc = _fd_loc(t, a.int(0))
    if loc is not None:  # pipes and sockets: their inode is not ours to show
        ops.chmod(t, loc, a.uint(1))
    return 0


@syscall(268, "fchmodat")
async def sys_fchmodat(t: Task, a: SyscallArgs) -> int:
    dirfd, path, mode = a.int(0), at.read_path(t, a.ptr(1)), a.uint(2)
    ops.chmod(t, at.lookup_loc(t, dirfd, path), mode)
    return 0


def _chown(t: Task, dirfd: int, path: str, uid: int, gid: int, flags: int) -> int:
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise LinuxError(EINVAL)
    ops.chown(t, at.lookup_loc(t, dirfd, path, flags), uid, gid)
    return 0


@syscall(92, "chown")
async def sys_chown(t: Task, a: SyscallArgs) -> int:
    return _chown(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.uint(1), a.uint(2), 0)


@syscall(94, "lchown")
async def sys_lchown(t: Task, a: SyscallArgs) -> int:
    return _chown(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.uint(1), a.uint(2),
                  AT_SYMLINK_NOFOLLOW)


@syscall(260, "fchownat")
async def sys_fchownat(t: Task, a: SyscallArgs) -> int:
    return _chown(t, a.int(0), at.read_path(t, a.ptr(1)), a.uint(2), a.uint(3), a.int(4))


@syscall(93, "fchown")
async def sys_fchown(t: Task, a: SyscallArgs) -> int:
    loc = _fd_loc(t, a.int(0))
    if loc is not None:
        ops.chown(t, loc, a.uint(1), a.uint(2))
    return 0


# ---- times
_TIMESPEC2 = struct.Struct("<qqqq")


@syscall(280, "utimensat")
async def sys_utimensat(t: Task, a: SyscallArgs) -> int:
    dirfd, pathp, times, flags = a.int(0), a.ptr(1), a.ptr(2), a.int(3)
    if flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH):
        raise LinuxError(EINVAL)
    now = time.time_ns()
    if times:
        asec, ansec, msec, mnsec = _TIMESPEC2.unpack(t.mm.read(times, 32))
        for ns in (ansec, mnsec):
            if ns not in (UTIME_NOW, UTIME_OMIT) and not 0 <= ns < 1_000_000_000:
                raise LinuxError(EINVAL)
        if ansec == UTIME_OMIT and mnsec == UTIME_OMIT:
            return 0
        atime = None if ansec == UTIME_OMIT else now if ansec == UTIME_NOW else \
            asec * 1_000_000_000 + ansec
        mtime = None if mnsec == UTIME_OMIT else now if mnsec == UTIME_NOW else \
            msec * 1_000_000_000 + mnsec
        all_now = ansec in (UTIME_NOW, UTIME_OMIT) and mnsec in (UTIME_NOW, UTIME_OMIT)
    else:
        atime = mtime = now
        all_now = True
    if pathp == 0:
        # futimens: the dirfd itself (a NULL path with AT_SYMLINK_NOFOLLOW is EINVAL)
        if flags & AT_SYMLINK_NOFOLLOW:
            raise LinuxError(EINVAL)
        target = at.fd_target(t, dirfd)
        loc = target if isinstance(target, Location) else target.loc
        if loc is None:
            return 0
    else:
        loc = at.lookup_loc(t, dirfd, at.read_path(t, pathp), flags)
    ops.utimens(t, loc, atime, mtime, all_now)
    return 0


# ---- statfs
@syscall(137, "statfs")
async def sys_statfs(t: Task, a: SyscallArgs) -> int:
    loc = at.lookup_loc(t, AT_FDCWD, at.read_path(t, a.ptr(0)))
    sf = loc.node.fs.statfs()
    if loc.mount.readonly:
        sf.flags |= 1  # ST_RDONLY
    t.mm.write(a.ptr(1), sf.pack())
    return 0


@syscall(138, "fstatfs")
async def sys_fstatfs(t: Task, a: SyscallArgs) -> int:
    f = t.fds.get(a.int(0))
    sf = f.statfs()
    if f.loc is not None and f.loc.mount.readonly:
        sf.flags |= 1
    t.mm.write(a.ptr(1), sf.pack())
    return 0


# ---- umask, readlink
@syscall(95, "umask")
async def sys_umask(t: Task, a: SyscallArgs) -> int:
    old = int(t.fs.umask)
    t.fs.umask = a.uint(0) & 0o777
    return old


def _readlink(t: Task, dirfd: int, path: str, buf: int, size: int) -> int:
    if size <= 0:
        raise LinuxError(EINVAL)
    if not path:
        # readlinkat(fd, "") reads the symlink an O_PATH|O_NOFOLLOW fd stands for.
        target = at.fd_target(t, dirfd)
        loc = target if isinstance(target, Location) else target.loc
        if loc is None or not loc.node.is_symlink():
            raise LinuxError(ENOENT)
    else:
        loc = at.lookup_loc(t, dirfd, path, AT_SYMLINK_NOFOLLOW)
    return at.write_str(t, buf, ops.readlink(t, loc), size)


@syscall(89, "readlink")
async def sys_readlink(t: Task, a: SyscallArgs) -> int:
    return _readlink(t, AT_FDCWD, at.read_path(t, a.ptr(0)), a.ptr(1), a.int(2))


@syscall(267, "readlinkat")
async def sys_readlinkat(t: Task, a: SyscallArgs) -> int:
    return _readlink(t, a.int(0), at.read_path(t, a.ptr(1)), a.ptr(2), a.int(3))
