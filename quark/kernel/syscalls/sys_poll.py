"""poll, ppoll, select, pselect6 (fs/select.c).

Some facts this follows:
- poll: ``nfds`` above RLIMIT_NOFILE is EINVAL; a negative fd is skipped (revents 0);
  a closed fd reports POLLNVAL and counts as ready; POLLERR and POLLHUP are reported
  whether asked for or not. Every revents is written back.
- select: ``n`` is clamped to the fd table's size; a set bit for a closed fd is EBADF.
  Readable means POLLIN|RDNORM|RDBAND|HUP|ERR, writable POLLOUT|WRNORM|WRBAND|ERR,
  exceptional POLLPRI. The result sets are written only when the call succeeds.
- The scan runs before any check for signals: ready fds win over a pending signal, and
  a zero timeout never sleeps. An interrupted wait is ERESTARTNOHAND (poll with a
  timeout: ERESTART_RESTARTBLOCK; restarted here with its original timeout).
- select, pselect6 and ppoll write the time left back (Linux-specific), on success and
  on interruption, unless the timeout was NULL or zero; an unwritable timeout turns an
  interruption into EINTR.
- ppoll and pselect6 install their signal mask for the wait; an interrupted call
  leaves the old one saved, so the handler runs with the temporary mask.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable
from typing import Any

from quark.kernel.abi.linux import (
    EBADF,
    EINTR,
    EINVAL,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)
from quark.kernel.errors import LinuxError
from quark.kernel.polling import (
    Sources,
    events_of,
    remaining_ns,
    restore_sigmask_unless,
    set_user_sigmask,
)
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import nofile_limit
from quark.kernel.waiting import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTSYS

Task = Any

NSEC = 1_000_000_000
_POLLFD = struct.Struct("<ihh")        # struct pollfd { int fd; short events, revents; }
_TIMESPEC = struct.Struct("<qq")
_TIMEVAL = struct.Struct("<qq")
_ARGPACK = struct.Struct("<QQ")        # pselect6's { const sigset_t *p; size_t size; }

POLLIN_SET = POLLRDNORM | POLLRDBAND | POLLIN | POLLHUP | POLLERR
POLLOUT_SET = POLLWRBAND | POLLWRNORM | POLLOUT | POLLERR
POLLEX_SET = POLLPRI


class Interrupted(Exception):
    """A signal ended the wait with nothing ready."""


def _deadline(sec: int, nsec: int) -> int | None:
    """poll_select_set_timeout: EINVAL for an invalid timespec; 0 means no waiting
    (and no write-back); else an absolute monotonic deadline in ns."""
    if sec < 0 or not 0 <= nsec < NSEC:
        raise LinuxError(EINVAL)
    if sec == 0 and nsec == 0:
        return 0
    return min(time.monotonic_ns() + sec * NSEC + nsec, (1 << 63) - 1)


def _c_divmod(a: int, b: int) -> tuple[int, int]:
    """C's truncating / and %."""
    q = abs(a) // b * (1 if a >= 0 else -1)
    return q, a - q * b


def _write_back(t: Task, addr: int, deadline: int | None, timeval: bool, ret: int) -> int:
    """poll_select_finish's timeout update; returns the (maybe changed) result."""
    if not addr or not deadline:
        return ret
    left = remaining_ns(deadline)
    sec, nsec = divmod(left, NSEC)
    try:
        t.mm.write(addr, _TIMEVAL.pack(sec, nsec // 1000) if timeval
                   else _TIMESPEC.pack(sec, nsec))
    except LinuxError:
        if ret == -ERESTARTNOHAND:
            return -EINTR
    return ret


def _file(t: Task, fd: int) -> Any:
    """The open file at ``fd``, or None."""
    try:
        return t.fds.get(fd)
    except LinuxError:
        return None


async def _sleep(t: Task, src: Sources, deadline: int | None) -> bool:
    """One sleep; False when the deadline passed. Interrupted when a signal came."""
    try:
        return await src.sleep(t, deadline)
    except LinuxError as e:
        if e.errno != ERESTARTSYS:
            raise
        raise Interrupted() from None


# ---- poll ---------------------------------------------------------------------

async def do_poll(t: Task, ufds: int, nfds: int, deadline: int | None) -> int:
    """do_sys_poll; ``deadline`` None waits forever, 0 not at all."""
    if nfds > nofile_limit(t):
        raise LinuxError(EINVAL)
    raw = bytearray(t.mm.read(ufds, nfds * _POLLFD.size)) if nfds else bytearray()
    entries = [_POLLFD.unpack_from(raw, i * _POLLFD.size)[:2] for i in range(nfds)]
    interrupted = False
    while True:
        count = 0
        src = Sources()
        for i, (fd, events) in enumerate(entries):
            revents = 0
            if fd >= 0:
                f = _file(t, fd)
                if f is None:
                    revents = POLLNVAL
                else:
                    want = (events & 0xFFFF) | POLLERR | POLLHUP
                    revents = events_of(f, t) & want
                    src.add(f, t, want)
            struct.pack_into("<H", raw, i * _POLLFD.size + 6, revents & 0xFFFF)
            if revents:
                count += 1
        if count or interrupted or deadline == 0:
            break
        try:
            if not await _sleep(t, src, deadline):
                deadline = 0            # timed out: one last scan, then 0
        except Interrupted:
            interrupted = True          # rescan: what is ready now still wins
    if nfds:
        t.mm.write(ufds, raw)
    if not count and interrupted:
        raise Interrupted()
    return count


@syscall(7, "poll", partial="a restarted poll starts its timeout over")
async def sys_poll(t: Task, a: SyscallArgs) -> int:
    ufds, nfds, timeout_ms = a.ptr(0), a.uint(1), a.int(2)
    deadline: int | None = None
    if timeout_ms >= 0:
        deadline = _deadline(timeout_ms // 1000, timeout_ms % 1000 * 1_000_000)
    try:
        return await do_poll(t, ufds, nfds, deadline)
    except Interrupted:
        raise LinuxError(ERESTART_RESTARTBLOCK if timeout_ms >= 0 else ERESTARTNOHAND) \
            from None


@syscall(271, "ppoll")
async def sys_ppoll(t: Task, a: SyscallArgs) -> int:
    ufds, nfds, tsp, sigp, sigsize = a.ptr(0), a.uint(1), a.ptr(2), a.ptr(3), a.size(4)
    deadline: int | None = None
    if tsp:
        deadline = _deadline(*_TIMESPEC.unpack(t.mm.read(tsp, 16)))
    set_user_sigmask(t, sigp, sigsize)
    ret = await _outcome(do_poll(t, ufds, nfds, deadline))
    return _finish(t, tsp, deadline, False, ret)


async def _outcome(wait: Awaitable[int]) -> int:
    """What ``wait`` (a do_poll or do_select) ends with, as poll_select_finish takes
    it: the count, or -errno (-ERESTARTNOHAND when a signal ended the wait)."""
    try:
        return await wait
    except Interrupted:
        return -ERESTARTNOHAND
    except LinuxError as e:
        return -e.errno


def _finish(t: Task, addr: int, deadline: int | None, timeval: bool, ret: int) -> int:
    """poll_select_finish: the saved mask, the time left, the result."""
    restore_sigmask_unless(t, ret == -ERESTARTNOHAND)
    ret = _write_back(t, addr, deadline, timeval, ret)
    if ret < 0:
        raise LinuxError(-ret)
    return ret


# ---- select -------------------------------------------------------------------

def _fdtable_size(t: Task) -> int:
    """max_fds of Linux's fdtable: 64, then 128 * a power of two (it grows as fds are
    allocated; here it follows the highest open fd)."""
    high = max((fd for fd, _ in t.fds), default=-1)
    if high < 64:
        return 64
    need = high // 128 + 1
    return 128 * (1 << (need - 1).bit_length())


async def do_select(t: Task, n: int, ptrs: tuple[int, int, int],
                    deadline: int | None) -> int:
    """core_sys_select."""
    if n < 0:
        raise LinuxError(EINVAL)
    n = min(n, _fdtable_size(t))
    nbytes = (n + 63) // 64 * 8
    mask = (1 << n) - 1
    sets = [int.from_bytes(t.mm.read(p, nbytes), "little") & mask if p and nbytes else 0
            for p in ptrs]
    rin, rout, rex = sets
    wanted = rin | rout | rex
    fds: list[tuple[int, Any, int]] = []
    fd = 0
    while wanted >> fd:
        if wanted >> fd & 1:
            f = _file(t, fd)
            if f is None:
                raise LinuxError(EBADF)
            ev = ((POLLIN_SET if rin >> fd & 1 else 0) | (POLLOUT_SET if rout >> fd & 1 else 0)
                  | (POLLEX_SET if rex >> fd & 1 else 0))
            fds.append((fd, f, ev))
        fd += 1
    interrupted = False
    while True:
        res = [0, 0, 0]
        count = 0
        src = Sources()
        for fd, f, ev in fds:
            got = events_of(f, t)
            bit = 1 << fd
            if rin & bit and got & POLLIN_SET:
                res[0] |= bit
                count += 1
            if rout & bit and got & POLLOUT_SET:
                res[1] |= bit
                count += 1
            if rex & bit and got & POLLEX_SET:
                res[2] |= bit
                count += 1
            src.add(f, t, ev)
        if count or interrupted or deadline == 0:
            break
        try:
            if not await _sleep(t, src, deadline):
                deadline = 0
        except Interrupted:
            interrupted = True
    if not count and interrupted:
        raise Interrupted()
    for p, r in zip(ptrs, res):
        if p and nbytes:
            t.mm.write(p, r.to_bytes(nbytes, "little"))
    return count


@syscall(23, "select")
async def sys_select(t: Task, a: SyscallArgs) -> int:
    n, tvp = a.int(0), a.ptr(4)
    deadline: int | None = None
    if tvp:
        sec, usec = _TIMEVAL.unpack(t.mm.read(tvp, 16))
        q, r = _c_divmod(usec, 1_000_000)
        deadline = _deadline(sec + q, r * 1000)
    ret = await _outcome(do_select(t, n, (a.ptr(1), a.ptr(2), a.ptr(3)), deadline))
    return _finish(t, tvp, deadline, True, ret)


@syscall(270, "pselect6")
async def sys_pselect6(t: Task, a: SyscallArgs) -> int:
    n, tsp, packp = a.int(0), a.ptr(4), a.ptr(5)
    sigp = sigsize = 0
    if packp:
        sigp, sigsize = _ARGPACK.unpack(t.mm.read(packp, 16))
    deadline: int | None = None
    if tsp:
        deadline = _deadline(*_TIMESPEC.unpack(t.mm.read(tsp, 16)))
    set_user_sigmask(t, sigp, sigsize)
    ret = await _outcome(do_select(t, n, (a.ptr(1), a.ptr(2), a.ptr(3)), deadline))
    return _finish(t, tsp, deadline, False, ret)

