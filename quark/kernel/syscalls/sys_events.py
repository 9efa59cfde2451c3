"""eventfd, eventfd2, timerfd_create/settime/gettime, signalfd, signalfd4."""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import EINVAL, EPERM, O_CLOEXEC, O_NONBLOCK
from quark.kernel.creds import CAP_WAKE_ALARM
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.eventfd import EFD_SEMAPHORE, EventFd
from quark.kernel.fs.anon.signalfd import SignalFd
from quark.kernel.fs.anon.timerfd import (
    ALARM_CLOCKS,
    HOST_CLOCK,
    TFD_TIMER_ABSTIME,
    TFD_TIMER_CANCEL_ON_SET,
    TimerFd,
)
from quark.kernel.polling import SIGSET_SIZE
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs import perm
from quark.kernel.vfs.fdtable import nofile_limit
from quark.kernel.vfs.file import File

Task = Any

NSEC = 1_000_000_000
_ITIMERSPEC = struct.Struct("<qqqq")   # struct itimerspec { it_interval; it_value; }


def _install(t: Task, f: File, flags: int) -> int:
    return int(t.fds.install(f, bool(flags & O_CLOEXEC), limit=nofile_limit(t)))


# ---- eventfd -------------------------------------------------------------------------

def _eventfd(t: Task, initval: int, flags: int) -> int:
    if flags & ~(EFD_SEMAPHORE | O_CLOEXEC | O_NONBLOCK):
        raise LinuxError(EINVAL)
    return _install(t, EventFd(initval, flags), flags)


@syscall(284, "eventfd")
async def sys_eventfd(t: Task, a: SyscallArgs) -> int:
    return _eventfd(t, a.uint(0), 0)


@syscall(290, "eventfd2")
async def sys_eventfd2(t: Task, a: SyscallArgs) -> int:
    return _eventfd(t, a.uint(0), a.int(1))


# ---- timerfd -------------------------------------------------------------------------

@syscall(283, "timerfd_create", partial="*_ALARM clocks behave like their base clock")
async def sys_timerfd_create(t: Task, a: SyscallArgs) -> int:
    clock, flags = a.int(0), a.int(1)
    if flags & ~(O_CLOEXEC | O_NONBLOCK) or clock not in HOST_CLOCK:
        raise LinuxError(EINVAL)
    if clock in ALARM_CLOCKS and not perm.capable(t, CAP_WAKE_ALARM):
        raise LinuxError(EPERM)
    return _install(t, TimerFd(t.kernel.lock, clock, flags), flags)


def _timer(t: Task, fd: int) -> TimerFd:
    f = t.fds.get(fd)
    if not isinstance(f, TimerFd):
        raise LinuxError(EINVAL)
    return f


def _ns(sec: int, nsec: int) -> int:
    return sec * NSEC + nsec


def _pack(value: int, interval: int) -> bytes:
    return _ITIMERSPEC.pack(*divmod(interval, NSEC), *divmod(value, NSEC))


@syscall(286, "timerfd_settime")
async def sys_timerfd_settime(t: Task, a: SyscallArgs) -> int:
    fd, flags, new_p, old_p = a.int(0), a.int(1), a.ptr(2), a.ptr(3)
    isec, insec, vsec, vnsec = _ITIMERSPEC.unpack(t.mm.read(new_p, _ITIMERSPEC.size))
    if flags & ~(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET):
        raise LinuxError(EINVAL)
    for sec, nsec in ((isec, insec), (vsec, vnsec)):
        if sec < 0 or not 0 <= nsec < NSEC:
            raise LinuxError(EINVAL)
    tf = _timer(t, fd)
    old = tf.set(flags, _ns(vsec, vnsec), _ns(isec, insec))
    if old_p:
        t.mm.write(old_p, _pack(*old))
    return 0


@syscall(287, "timerfd_gettime")
async def sys_timerfd_gettime(t: Task, a: SyscallArgs) -> int:
    tf = _timer(t, a.int(0))
    t.mm.write(a.ptr(1), _pack(*tf.get()))
    return 0


# ---- signalfd ------------------------------------------------------------------------

def _signalfd(t: Task, fd: int, mask_p: int, size: int, flags: int) -> int:
    if size != SIGSET_SIZE:
        raise LinuxError(EINVAL)
    mask = t.mm.read_u64(mask_p)
    if flags & ~(O_CLOEXEC | O_NONBLOCK):
        raise LinuxError(EINVAL)
    if fd == -1:
        return _install(t, SignalFd(mask, flags), flags)
    f = t.fds.get(fd)
    if not isinstance(f, SignalFd):
        raise LinuxError(EINVAL)
    f.set_mask(mask)
    return fd


@syscall(282, "signalfd")
async def sys_signalfd(t: Task, a: SyscallArgs) -> int:
    return _signalfd(t, a.int(0), a.ptr(1), a.size(2), 0)


@syscall(289, "signalfd4")
async def sys_signalfd4(t: Task, a: SyscallArgs) -> int:
    return _signalfd(t, a.int(0), a.ptr(1), a.size(2), a.int(3))
