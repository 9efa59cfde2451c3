"""fd table calls: close, dup*, fcntl, flock, pipe/pipe2, close_range."""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import (
    CLOSE_RANGE_CLOEXEC,
    CLOSE_RANGE_UNSHARE,
    EBADF,
    EINVAL,
    F_ADD_SEALS,
    F_DUPFD,
    F_DUPFD_CLOEXEC,
    F_GET_SEALS,
    F_GETFD,
    F_GETFL,
    F_GETLEASE,
    F_GETLK,
    F_GETOWN,
    F_GETOWN_EX,
    F_GETPIPE_SZ,
    F_GETSIG,
    F_OFD_GETLK,
    F_OFD_SETLK,
    F_OFD_SETLKW,
    F_RDLCK,
    F_SETFD,
    F_SETFL,
    F_SETLK,
    F_SETLKW,
    F_SETOWN,
    F_SETOWN_EX,
    F_SETPIPE_SZ,
    F_SETSIG,
    F_UNLCK,
    F_WRLCK,
    FD_CLOEXEC,
    LOCK_EX,
    LOCK_NB,
    LOCK_SH,
    LOCK_UN,
    O_CLOEXEC,
    O_DIRECT,
    O_NONBLOCK,
    O_PATH,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import install_pair, nofile_limit

Task = Any

# struct flock { short l_type; short l_whence; off_t l_start; off_t l_len; pid_t l_pid; }
_FLOCK = struct.Struct("<hh4xqqi4x")


@syscall(3, "close")
async def sys_close(t: Task, a: SyscallArgs) -> int:
    t.fds.close(a.int(0))
    return 0


@syscall(32, "dup")
async def sys_dup(t: Task, a: SyscallArgs) -> int:
    f = t.fds.get(a.int(0))
    return int(t.fds.install(f, False, limit=nofile_limit(t)))


@syscall(33, "dup2")
async def sys_dup2(t: Task, a: SyscallArgs) -> int:
    old, new = a.uint(0), a.uint(1)
    if old == new:
        t.fds.get(old)
        return new
    return int(t.fds.dup2(old, new, limit=nofile_limit(t)))


@syscall(292, "dup3")
async def sys_dup3(t: Task, a: SyscallArgs) -> int:
    old, new, flags = a.uint(0), a.uint(1), a.int(2)
    if flags & ~O_CLOEXEC:
        raise LinuxError(EINVAL)
    return int(t.fds.dup3(old, new, bool(flags & O_CLOEXEC), limit=nofile_limit(t)))


@syscall(436, "close_range", partial="CLOSE_RANGE_UNSHARE does not unshare a shared table")
async def sys_close_range(t: Task, a: SyscallArgs) -> int:
    first, last, flags = a.uint(0), a.uint(1), a.uint(2)
    if flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC) or first > last:
        raise LinuxError(EINVAL)
    t.fds.close_range(first, last, bool(flags & CLOSE_RANGE_CLOEXEC))
    return 0


@syscall(72, "fcntl", partial="record locks are checked, not enforced between processes")
async def sys_fcntl(t: Task, a: SyscallArgs) -> int:
    fd, cmd, arg = a.int(0), a.uint(1), a.ulong(2)
    f = t.fds.get(fd)
    if f.flags & O_PATH and cmd not in (F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL):
        raise LinuxError(EBADF)
    if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        limit = nofile_limit(t)
        if arg >= limit:
            raise LinuxError(EINVAL)
        return int(t.fds.install(f, cmd == F_DUPFD_CLOEXEC, min_fd=arg, limit=limit))
    if cmd == F_GETFD:
        return FD_CLOEXEC if t.fds.get_cloexec(fd) else 0
    if cmd == F_SETFD:
        t.fds.set_cloexec(fd, bool(arg & FD_CLOEXEC))
        return 0
    if cmd == F_GETFL:
        return int(f.flags)
    if cmd == F_SETFL:
        f.set_status_flags(arg & 0xFFFFFFFF)
        return 0
    if cmd in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        return _record_lock(t, f, cmd, arg)
    if cmd == F_GETOWN:
        return int(getattr(f, "owner", 0))
    if cmd == F_SETOWN:
        f.owner = a.int(2)
        return 0
    if cmd in (F_GETOWN_EX, F_SETOWN_EX):
        if cmd == F_GETOWN_EX:
            t.mm.write(arg, struct.pack("<ii", 0, int(getattr(f, "owner", 0))))
        else:
            f.owner = struct.unpack("<ii", t.mm.read(arg, 8))[1]
        return 0
    if cmd == F_GETSIG:
        return int(getattr(f, "sig", 0))
    if cmd == F_SETSIG:
        if arg > 64:
            raise LinuxError(EINVAL)
        f.sig = arg
        return 0
    if cmd == F_GETLEASE:
        return F_UNLCK
    if cmd in (F_GETPIPE_SZ, F_SETPIPE_SZ):
        if not hasattr(f, "pipe_size"):
            raise LinuxError(EBADF)
        if cmd == F_GETPIPE_SZ:
            return int(f.pipe_size())
        return int(f.set_pipe_size(t, arg & 0xFFFFFFFF))
    if cmd in (F_ADD_SEALS, F_GET_SEALS):
        if not hasattr(f, "get_seals"):     # memfds only (fs/anon/memfd.py)
            raise LinuxError(EINVAL)
        return int(f.get_seals() if cmd == F_GET_SEALS else f.add_seals(arg & 0xFFFFFFFF))
    raise LinuxError(EINVAL)


def _record_lock(t: Task, f: Any, cmd: int, arg: int) -> int:
    """Validate like Linux, then grant: with no lock table, nothing ever conflicts."""
    ltype, whence, start, length, pid = _FLOCK.unpack(t.mm.read(arg, _FLOCK.size))
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK) or whence not in (0, 1, 2):
        raise LinuxError(EINVAL)
    if cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW) and pid != 0:
        raise LinuxError(EINVAL)
    if cmd in (F_GETLK, F_OFD_GETLK):
        if ltype == F_UNLCK:
            raise LinuxError(EINVAL)
        t.mm.write(arg, _FLOCK.pack(F_UNLCK, whence, start, length, pid))
        return 0
    if ltype == F_RDLCK and not f.readable or ltype == F_WRLCK and not f.writable:
        raise LinuxError(EBADF)
    return 0


@syscall(73, "flock", partial="advisory locks always granted (no table across processes)")
async def sys_flock(t: Task, a: SyscallArgs) -> int:
    fd, op = a.int(0), a.uint(1)
    f = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    if op & ~LOCK_NB not in (LOCK_SH, LOCK_EX, LOCK_UN):
        raise LinuxError(EINVAL)
    return 0


def _pipe(t: Task, addr: int, flags: int) -> int:
    from quark.kernel.fs.pipe.pipe import make_pipe
    if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT):
        raise LinuxError(EINVAL)
    r, w = make_pipe(t, flags)
    install_pair(t, r, w, bool(flags & O_CLOEXEC), addr)
    return 0


@syscall(22, "pipe")
async def sys_pipe(t: Task, a: SyscallArgs) -> int:
    return _pipe(t, a.ptr(0), 0)


@syscall(293, "pipe2")
async def sys_pipe2(t: Task, a: SyscallArgs) -> int:
    return _pipe(t, a.ptr(0), a.int(1))
