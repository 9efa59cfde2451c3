"""Host system calls Python's ``os`` module lacks: openat2, renameat2, fchmodat2,
utimensat with UTIME_OMIT, fstatfs, and the tty ioctls.

Each wrapper raises ``OSError`` with the host errno, like ``os`` functions do.
All pointers handed to the kernel here point at ctypes objects or bytes buffers
owned by the call frame, sized by the struct they stand for.
"""

from __future__ import annotations

import ctypes
import fcntl
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

SYS_renameat2 = 316
SYS_openat2 = 437
SYS_fchmodat2 = 452

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

AT_SYMLINK_NOFOLLOW = 0x100


class OpenHow(ctypes.Structure):
    """struct open_how { __u64 flags; __u64 mode; __u64 resolve; };"""

    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


class Timespec(ctypes.Structure):
    """struct timespec { time_t tv_sec; long tv_nsec; };"""

    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _fail(what: str, path: str | bytes = "") -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}", path or None)


def openat2(dirfd: int, path: str, flags: int, mode: int, resolve: int) -> int:
    """openat2(2). ``path`` is relative to ``dirfd``; "" means "." is not allowed by
    the kernel, so callers pass "." for the directory itself."""
    how = OpenHow(flags, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    p = os.fsencode(path)
    while True:
        fd = _syscall(SYS_openat2, dirfd, p, ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        if ctypes.get_errno() != 4:  # EINTR: retry, as glibc wrappers do not
            raise _fail("openat2", path)


def renameat2(olddirfd: int, old: str, newdirfd: int, new: str, flags: int) -> None:
    r = _syscall(SYS_renameat2, olddirfd, os.fsencode(old), newdirfd, os.fsencode(new),
                 ctypes.c_uint(flags))
    if r < 0:
        raise _fail("renameat2", old)


def fchmodat_nofollow(dirfd: int, name: str, mode: int) -> None:
    """chmod of ``name`` in ``dirfd`` that never follows a symlink (fchmodat2,
    Linux 6.6; older hosts: glibc's O_PATH emulation through os.chmod)."""
    r = _syscall(SYS_fchmodat2, dirfd, os.fsencode(name), ctypes.c_uint(mode),
                 AT_SYMLINK_NOFOLLOW)
    if r >= 0:
        return
    if ctypes.get_errno() != 38:  # ENOSYS
        raise _fail("fchmodat2", name)
    os.chmod(name, mode, dir_fd=dirfd, follow_symlinks=False)


_utimensat = _libc.utimensat
_utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]


def utimensat_nofollow(dirfd: int, name: str, atime: tuple[int, int],
                       mtime: tuple[int, int]) -> None:
    """utimensat(dirfd, name, times, AT_SYMLINK_NOFOLLOW); each time is (sec, nsec)
    where nsec may be UTIME_NOW or UTIME_OMIT."""
    ts = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if _utimensat(dirfd, os.fsencode(name), ts, AT_SYMLINK_NOFOLLOW) < 0:
        raise _fail("utimensat", name)


def fstatfs(fd: int) -> bytes:
    """The host's 120-byte x86-64 ``struct statfs`` for ``fd`` (an O_PATH fd works)."""
    buf = ctypes.create_string_buffer(120)
    if _libc.fstatfs(fd, buf) < 0:
        raise _fail("fstatfs")
    return buf.raw


def tty_ioctl_get(fd: int, req: int, size: int) -> bytes:
    """An ioctl that fills a ``size``-byte struct (TCGETS: struct termios, 36 bytes;
    TIOCGWINSZ: struct winsize, 8). ``fd`` is our own dup of a host tty."""
    return bytes(fcntl.ioctl(fd, req, bytes(size)))


def tty_ioctl_set(fd: int, req: int, data: bytes) -> None:
    """An ioctl that reads a struct (TCSETS*, TIOCSWINSZ) from ``data``."""
    fcntl.ioctl(fd, req, data)


def tty_ioctl_int(fd: int, req: int, value: int | None = None) -> int:
    """An ioctl taking a pointer to int (TIOCGPGRP/FIONREAD get, TIOCSPGRP set)."""
    buf = (value or 0).to_bytes(4, "little", signed=True)
    out = fcntl.ioctl(fd, req, buf)
    return int.from_bytes(out, "little", signed=True)


def get_status_flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def set_status_flags(fd: int, flags: int) -> None:
    """F_SETFL on an fd the kernel owns alone (never on shared stdio fds)."""
    fcntl.fcntl(fd, fcntl.F_SETFL, flags)
