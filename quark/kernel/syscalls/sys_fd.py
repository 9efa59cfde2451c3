"""fd table calls: close, dup*, fcntl, flock, pipe/pipe2, close_range."""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import (
    CLOSE_RANGE_CLOEXEC,
    CLOSE_RANGE_UNSHARE,
    EBADF,
    EINVAL,
    EOVERFLOW,
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
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import install_pair, nofile_limit
from quark.kernel.vfs.locks import OFD, OFFSET_MAX, POSIX, Lock, close_posix

Task = Any

LOCK_MAND = 32

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


@syscall(72, "fcntl", partial="no leases (F_SETLEASE) or F_NOTIFY; F_SETOWN/O_ASYNC send no SIGIO")
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
        return await _record_lock(t, fd, f, cmd, arg)
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


def _flock_to_lock(t: Task, f: Any, raw: bytes, kind: str, owner: Any) -> Lock:
    """flock64_to_posix_lock: the byte range [start, end] of a struct flock."""
    ltype, whence, start, length, _ = _FLOCK.unpack(raw)
    if whence == SEEK_SET:
        base = 0
    elif whence == SEEK_CUR:
        base = _position(f)
    elif whence == SEEK_END:
        base = _size(f)
    else:
        raise LinuxError(EINVAL)
    if start > OFFSET_MAX - base:
        raise LinuxError(EOVERFLOW)
    start += base
    if start < 0:
        raise LinuxError(EINVAL)
    if length > 0:
        if length - 1 > OFFSET_MAX - start:
            raise LinuxError(EOVERFLOW)
        end = start + length - 1
    elif length < 0:
        if start + length < 0:
            raise LinuxError(EINVAL)
        start, end = start + length, start - 1
    else:
        end = OFFSET_MAX
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK):
        raise LinuxError(EINVAL)
    return Lock(kind, ltype, start, end, owner, t.pid, f)


def _position(f: Any) -> int:
    """f_pos: host files keep it in the host fd; files without one are at 0."""
    try:
        return int(f.lseek(0, SEEK_CUR))
    except LinuxError:
        return int(f.pos)


def _size(f: Any) -> int:
    try:
        return int(f.stat().size)
    except LinuxError:
        return 0


async def _record_lock(t: Task, fd: int, f: Any, cmd: int, arg: int) -> int:
    """fcntl_getlk / fcntl_setlk, in Linux's order of checks."""
    raw = t.mm.read(arg, _FLOCK.size)
    ltype, _, _, _, pid = _FLOCK.unpack(raw)
    ofd = cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
    owner = f if ofd else t.fds
    locks = t.kernel.locks
    if cmd in (F_GETLK, F_OFD_GETLK):
        # F_OFD_GETLK takes F_UNLCK (Linux 6.6+): it then reports the caller's locks
        if cmd == F_GETLK and ltype not in (F_RDLCK, F_WRLCK):
            raise LinuxError(EINVAL)
        req = _flock_to_lock(t, f, raw, OFD if ofd else POSIX, owner)
        if ofd and pid != 0:
            raise LinuxError(EINVAL)
        found = locks.test(f, req)
        out = bytearray(raw)
        if found is None:
            struct.pack_into("<h", out, 0, F_UNLCK)
        else:
            length = 0 if found.end == OFFSET_MAX else found.end - found.start + 1
            struct.pack_into("<hh", out, 0, found.type, SEEK_SET)
            struct.pack_into("<qqi", out, 8, found.start, length,
                             -1 if found.kind == OFD else found.pid)
        t.mm.write(arg, bytes(out))
        return 0
    req = _flock_to_lock(t, f, raw, OFD if ofd else POSIX, owner)
    if req.type == F_RDLCK and not f.readable or req.type == F_WRLCK and not f.writable:
        raise LinuxError(EBADF)
    if ofd and pid != 0:
        raise LinuxError(EINVAL)
    await locks.setlk(t, f, req, cmd in (F_SETLKW, F_OFD_SETLKW))
    if req.type != F_UNLCK and not ofd and (fd not in t.fds or t.fds.get(fd) is not f):
        # closed by another thread while we waited: undo, as fcntl_setlk does
        close_posix(f, t.fds)
        raise LinuxError(EBADF)
    return 0


_FLOCK_TYPES = {LOCK_SH: F_RDLCK, LOCK_EX: F_WRLCK, LOCK_UN: F_UNLCK}


@syscall(73, "flock")
async def sys_flock(t: Task, a: SyscallArgs) -> int:
    fd, op = a.int(0), a.uint(1)
    if op & LOCK_MAND:
        return 0        # ignored since Linux 5.15 (they never worked)
    ltype = _FLOCK_TYPES.get(op & ~LOCK_NB)
    if ltype is None:
        raise LinuxError(EINVAL)
    f = t.fds.get(fd)
    if f.flags & O_PATH or ltype != F_UNLCK and not (f.readable or f.writable):
        raise LinuxError(EBADF)
    await t.kernel.locks.flock(t, f, ltype, not op & LOCK_NB)
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
