"""epoll_create, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait, epoll_pwait2.

Check order follows fs/eventpoll.c: epoll_ctl copies the event first (EFAULT), then
EBADF for either fd, EPERM for a target without poll, EINVAL for a non-epoll or the
epoll itself, the EPOLLEXCLUSIVE rules, ELOOP, then EEXIST/ENOENT. epoll_wait checks
maxevents (EINVAL), the buffer range (EFAULT), EBADF, EINVAL for a non-epoll.
A wait interrupted by a signal is EINTR, never restarted; ready events win over it.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from quark.kernel.abi.linux import (
    EBADF,
    EEXIST,
    EFAULT,
    EINTR,
    EINVAL,
    ELOOP,
    ENOENT,
    EPERM,
    O_CLOEXEC,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.epoll import (
    EP_MAX_NESTS,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLONESHOT,
    EPOLLWAKEUP,
    EVENT,
    EpollFile,
    pack_events,
)
from quark.kernel.polling import (
    Sources,
    can_poll,
    restore_sigmask_unless,
    set_user_sigmask,
)
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import nofile_limit
from quark.kernel.waiting import ERESTARTSYS

Task = Any

EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
EPOLL_CLOEXEC = O_CLOEXEC
EPOLLEXCLUSIVE_OK_BITS = POLLIN | POLLOUT | POLLERR | POLLHUP | EPOLLWAKEUP | EPOLLET \
    | EPOLLEXCLUSIVE
EP_MAX_EVENTS = 0x7FFFFFFF // EVENT.size
TASK_SIZE = (1 << 47) - 4096
NSEC = 1_000_000_000


def _new_epoll(t: Task, cloexec: bool) -> int:
    return int(t.fds.install(EpollFile(), cloexec, limit=nofile_limit(t)))


@syscall(213, "epoll_create")
async def sys_epoll_create(t: Task, a: SyscallArgs) -> int:
    if a.int(0) <= 0:
        raise LinuxError(EINVAL)
    return _new_epoll(t, False)


@syscall(291, "epoll_create1")
async def sys_epoll_create1(t: Task, a: SyscallArgs) -> int:
    flags = a.int(0)
    if flags & ~EPOLL_CLOEXEC:
        raise LinuxError(EINVAL)
    return _new_epoll(t, bool(flags & EPOLL_CLOEXEC))


@syscall(233, "epoll_ctl", partial="EPOLLEXCLUSIVE accepted, wakes every waiter")
async def sys_epoll_ctl(t: Task, a: SyscallArgs) -> int:
    epfd, op, fd, evp = a.int(0), a.int(1), a.int(2), a.ptr(3)
    has_event = op != EPOLL_CTL_DEL
    events = data = 0
    if has_event:
        events, data = EVENT.unpack(t.mm.read(evp, EVENT.size))
    ep = t.fds.get(epfd)
    tf = t.fds.get(fd)
    if not can_poll(tf):
        raise LinuxError(EPERM)
    events &= ~EPOLLWAKEUP             # needs CAP_BLOCK_SUSPEND; dropped silently
    if ep is tf or not isinstance(ep, EpollFile):
        raise LinuxError(EINVAL)
    if has_event and events & EPOLLEXCLUSIVE:
        if op == EPOLL_CTL_MOD:
            raise LinuxError(EINVAL)
        if op == EPOLL_CTL_ADD and (isinstance(tf, EpollFile)
                                    or events & ~EPOLLEXCLUSIVE_OK_BITS):
            raise LinuxError(EINVAL)
    ep.purge()
    if op == EPOLL_CTL_ADD and isinstance(tf, EpollFile):
        below = tf.depth_below(ep)
        if below is None or below + 1 + ep.depth_above() > EP_MAX_NESTS:
            raise LinuxError(ELOOP)
    it = ep.find(fd, tf)
    if op == EPOLL_CTL_ADD:
        if it is not None:
            raise LinuxError(EEXIST)
        ep.add(t, fd, tf, events | POLLERR | POLLHUP, data)
        return 0
    if op == EPOLL_CTL_DEL:
        if it is None:
            raise LinuxError(ENOENT)
        ep.remove(it)
        return 0
    if op == EPOLL_CTL_MOD:
        if it is None:
            raise LinuxError(ENOENT)
        if it.events & EPOLLEXCLUSIVE:
            raise LinuxError(EINVAL)
        ep.modify(t, it, events | POLLERR | POLLHUP, data)
        return 0
    raise LinuxError(EINVAL)


async def do_epoll_wait(t: Task, epfd: int, evp: int, maxevents: int,
                        deadline: int | None) -> int:
    """``deadline``: None waits forever, 0 not at all, else time.monotonic_ns()."""
    if maxevents <= 0 or maxevents > EP_MAX_EVENTS:
        raise LinuxError(EINVAL)
    if evp + maxevents * EVENT.size > TASK_SIZE:
        raise LinuxError(EFAULT)
    ep = t.fds.get(epfd)
    if not isinstance(ep, EpollFile):
        raise LinuxError(EINVAL)
    interrupted = False
    while True:
        got = ep.collect(t, maxevents)
        if got:
            t.mm.write(evp, pack_events(got))
            return len(got)
        if interrupted:
            raise LinuxError(EINTR)
        if deadline == 0:
            return 0
        src = Sources()
        src.queues[id(ep.wait_queue)] = ep.wait_queue
        for fd, ev in ep.poll_host_fds():
            src.host_fds[fd] = src.host_fds.get(fd, 0) | ev
        try:
            if not await src.sleep(t, deadline):
                deadline = 0
        except LinuxError as e:
            if e.errno != ERESTARTSYS:
                raise
            interrupted = True


def _ms_deadline(ms: int) -> int | None:
    if ms < 0:
        return None
    if ms == 0:
        return 0
    return time.monotonic_ns() + ms * 1_000_000


@syscall(232, "epoll_wait")
async def sys_epoll_wait(t: Task, a: SyscallArgs) -> int:
    return await do_epoll_wait(t, a.int(0), a.ptr(1), a.int(2), _ms_deadline(a.int(3)))


async def _pwait(t: Task, a: SyscallArgs, deadline: int | None) -> int:
    set_user_sigmask(t, a.ptr(4), a.size(5))
    try:
        ret = await do_epoll_wait(t, a.int(0), a.ptr(1), a.int(2), deadline)
    except LinuxError as e:
        restore_sigmask_unless(t, e.errno == EINTR)
        raise
    restore_sigmask_unless(t, False)
    return ret


@syscall(281, "epoll_pwait")
async def sys_epoll_pwait(t: Task, a: SyscallArgs) -> int:
    return await _pwait(t, a, _ms_deadline(a.int(3)))


@syscall(441, "epoll_pwait2")
async def sys_epoll_pwait2(t: Task, a: SyscallArgs) -> int:
    tsp = a.ptr(3)
    deadline: int | None = None
    if tsp:
        sec, nsec = struct.unpack("<qq", t.mm.read(tsp, 16))
        if sec < 0 or not 0 <= nsec < NSEC:
            raise LinuxError(EINVAL)
        deadline = 0 if sec == 0 and nsec == 0 else \
            min(time.monotonic_ns() + sec * NSEC + nsec, (1 << 63) - 1)
    return await _pwait(t, a, deadline)


_ = (EBADF, EPOLLONESHOT)
