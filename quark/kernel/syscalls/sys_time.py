"""Clocks and sleeping (kernel/time/posix-timers.c, hrtimer.c, time.c, sys.c:times).

Some facts this rests on:
- The guest's clocks are the host's: CLOCK_REALTIME, MONOTONIC, BOOTTIME ... read with
  the same clock id on the host, exactly what a runc container sees. The hot calls
  normally never get here (the vDSO reads a shared time page); these handlers are the
  syscall fallback and must agree with it.
- CPU-time clocks are approximations: the calling host thread's CPU time for
  CLOCK_THREAD_CPUTIME_ID (the vCPU thread runs the guest thread, so guest user time is
  charged to it), the sandbox process's for CLOCK_PROCESS_CPUTIME_ID.
- Negative clock ids name the CPU clock of another process or thread
  (``clock_getcpuclockid``): ``pid = ~(id >> 3)``, bit 2 = per thread, bits 0-1 = which
  (PROF, VIRT, SCHED; 3 is invalid).
- A sleep that a signal interrupts writes the time left to ``rem`` (relative sleeps
  only). When a handler runs the call fails with EINTR; otherwise (a stop and
  SIGCONT, an ignored signal) it goes on: a relative sleep through restart_syscall
  towards its first deadline (ERESTART_RESTARTBLOCK), an absolute one as it was.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from quark.kernel.abi.linux import (
    CLOCK_BOOTTIME,
    CLOCK_BOOTTIME_ALARM,
    CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_COARSE,
    CLOCK_MONOTONIC_RAW,
    CLOCK_PROCESS_CPUTIME_ID,
    CLOCK_REALTIME,
    CLOCK_REALTIME_ALARM,
    CLOCK_REALTIME_COARSE,
    CLOCK_TAI,
    CLOCK_THREAD_CPUTIME_ID,
    EINVAL,
    EOPNOTSUPP,
    TIMER_ABSTIME,
    USER_HZ,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.waiting import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTSYS

Task = Any  # quark.kernel.task.Task

NSEC = 1_000_000_000
_TIMESPEC = struct.Struct("<qq")  # struct __kernel_timespec {s64 tv_sec; long long tv_nsec;}
_TIMEVAL = struct.Struct("<qq")   # struct __kernel_old_timeval {long tv_sec; long tv_usec;}
_TIMEZONE = struct.Struct("<ii")  # struct timezone {int tz_minuteswest; int tz_dsttime;}
_TMS = struct.Struct("<qqqq")     # struct tms {clock_t utime, stime, cutime, cstime;}

# Guest clock id -> host clock id read for it.
_HOST_CLOCK = {
    CLOCK_REALTIME: CLOCK_REALTIME,
    CLOCK_MONOTONIC: CLOCK_MONOTONIC,
    CLOCK_PROCESS_CPUTIME_ID: CLOCK_PROCESS_CPUTIME_ID,
    CLOCK_THREAD_CPUTIME_ID: CLOCK_THREAD_CPUTIME_ID,
    CLOCK_MONOTONIC_RAW: CLOCK_MONOTONIC_RAW,
    CLOCK_REALTIME_COARSE: CLOCK_REALTIME_COARSE,
    CLOCK_MONOTONIC_COARSE: CLOCK_MONOTONIC_COARSE,
    CLOCK_BOOTTIME: CLOCK_BOOTTIME,
    CLOCK_REALTIME_ALARM: CLOCK_REALTIME,
    CLOCK_BOOTTIME_ALARM: CLOCK_BOOTTIME,
    CLOCK_TAI: CLOCK_TAI,
}
# Clocks clock_nanosleep accepts (those with an ``nsleep`` in Linux); the others that
# exist, CLOCK_THREAD_CPUTIME_ID included, are EOPNOTSUPP.
_SLEEP_CLOCKS = frozenset({
    CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, CLOCK_TAI, CLOCK_REALTIME_ALARM,
    CLOCK_BOOTTIME_ALARM, CLOCK_PROCESS_CPUTIME_ID,
})
_COARSE_RES_NS = 4_000_000  # one jiffy at HZ=250, the coarse clocks' resolution


def resolve_clock(t: Task, clockid: int) -> int:
    """The host clock id serving guest ``clockid``; EINVAL for an invalid id."""
    if clockid >= 0:
        host = _HOST_CLOCK.get(clockid)
        if host is None:
            raise LinuxError(EINVAL)
        return host
    which, perthread, pid = clockid & 3, bool(clockid & 4), ~(clockid >> 3)
    if which == 3:
        raise LinuxError(EINVAL)
    if pid == 0 or pid == (t.tid if perthread else t.pid):
        return CLOCK_THREAD_CPUTIME_ID if perthread else CLOCK_PROCESS_CPUTIME_ID
    other = t.kernel.find_task(pid)
    if other is None or (perthread and other.pid != t.pid):
        raise LinuxError(EINVAL)  # Linux: another process's thread clock is EINVAL too
    return CLOCK_PROCESS_CPUTIME_ID  # approximation: the sandbox's CPU time


def now_ns(host_clock: int) -> int:
    return time.clock_gettime_ns(host_clock)


def read_timespec(t: Task, addr: int) -> int:
    """A valid ``struct timespec`` as nanoseconds: EFAULT, or EINVAL for a negative
    tv_sec or a tv_nsec outside [0, 1e9) (``timespec64_valid``)."""
    sec, nsec = _TIMESPEC.unpack(t.mm.read(addr, _TIMESPEC.size))
    if sec < 0 or not 0 <= nsec < NSEC:
        raise LinuxError(EINVAL)
    return int(sec * NSEC + nsec)


def write_timespec(t: Task, addr: int, ns: int) -> None:
    t.mm.write(addr, _TIMESPEC.pack(*divmod(ns, NSEC)))


async def sleep_until(t: Task, host_clock: int, deadline_ns: int) -> None:
    """Sleep until ``host_clock`` reaches ``deadline_ns``. Wake-ups before the deadline
    (spurious or not) just sleep again; a pending signal raises ERESTARTSYS."""
    while True:
        left = deadline_ns - now_ns(host_clock)
        if left <= 0:
            return
        await t.block((), timeout=left / NSEC)


async def _sleep(t: Task, host_clock: int, deadline_ns: int, rem: int,
                 absolute: bool = False) -> int:
    try:
        await sleep_until(t, host_clock, deadline_ns)
    except LinuxError as e:
        if e.errno != ERESTARTSYS:
            raise
        if absolute:
            raise LinuxError(ERESTARTNOHAND) from None
        if rem:
            write_timespec(t, rem, max(0, deadline_ns - now_ns(host_clock)))

        async def resume(t: Task) -> int:
            return await _sleep(t, host_clock, deadline_ns, rem)
        t.restart_block = resume
        raise LinuxError(ERESTART_RESTARTBLOCK) from None
    return 0


@syscall(228, "clock_gettime")
async def sys_clock_gettime(t: Task, a: SyscallArgs) -> int:
    """clock_gettime(2)."""
    clockid, tp = a.int(0), a.ptr(1)
    write_timespec(t, tp, now_ns(resolve_clock(t, clockid)))
    return 0


@syscall(229, "clock_getres")
async def sys_clock_getres(t: Task, a: SyscallArgs) -> int:
    """clock_getres(2): 1 ns for high-resolution clocks, a jiffy for the coarse ones.
    A NULL ``res`` only validates the clock."""
    clockid, tp = a.int(0), a.ptr(1)
    resolve_clock(t, clockid)
    if tp:
        coarse = clockid in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE)
        write_timespec(t, tp, _COARSE_RES_NS if coarse else 1)
    return 0


@syscall(96, "gettimeofday")
async def sys_gettimeofday(t: Task, a: SyscallArgs) -> int:
    """gettimeofday(2); either pointer may be NULL. The timezone is always UTC (the
    kernel's ``sys_tz`` is never set inside the sandbox)."""
    tv, tz = a.ptr(0), a.ptr(1)
    if tv:
        sec, nsec = divmod(now_ns(CLOCK_REALTIME), NSEC)
        t.mm.write(tv, _TIMEVAL.pack(sec, nsec // 1000))
    if tz:
        t.mm.write(tz, _TIMEZONE.pack(0, 0))
    return 0


@syscall(201, "time")
async def sys_time(t: Task, a: SyscallArgs) -> int:
    """time(2); also stores the result at ``tloc`` when it is not NULL."""
    tloc = a.ptr(0)
    now = now_ns(CLOCK_REALTIME) // NSEC
    if tloc:
        t.mm.write_u64(tloc, now)
    return now


@syscall(100, "times", partial="CPU times are the sandbox process's, children's are 0")
async def sys_times(t: Task, a: SyscallArgs) -> int:
    """times(2): returns clock ticks since an arbitrary point (here: host uptime)."""
    buf = a.ptr(0)
    ts = os.times()
    if buf:
        t.mm.write(buf, _TMS.pack(int(ts.user * USER_HZ), int(ts.system * USER_HZ), 0, 0))
    return now_ns(CLOCK_BOOTTIME) * USER_HZ // NSEC


@syscall(35, "nanosleep")
async def sys_nanosleep(t: Task, a: SyscallArgs) -> int:
    """nanosleep(2): a relative sleep on CLOCK_MONOTONIC."""
    req, rem = a.ptr(0), a.ptr(1)
    dur = read_timespec(t, req)
    return await _sleep(t, CLOCK_MONOTONIC, now_ns(CLOCK_MONOTONIC) + dur, rem)


@syscall(230, "clock_nanosleep")
async def sys_clock_nanosleep(t: Task, a: SyscallArgs) -> int:
    """clock_nanosleep(2): relative, or until an absolute time with TIMER_ABSTIME
    (then ``rem`` is never written). Other flag bits are ignored, as in Linux."""
    clockid, flags, req, rem = a.int(0), a.int(1), a.ptr(2), a.ptr(3)
    host = resolve_clock(t, clockid)
    if clockid >= 0 and clockid not in _SLEEP_CLOCKS:
        raise LinuxError(EOPNOTSUPP)
    if clockid < 0 and clockid & 4:
        raise LinuxError(EINVAL)  # posix_cpu_nsleep: a thread's CPU clock cannot be slept on
    ns = read_timespec(t, req)
    if flags & TIMER_ABSTIME:
        return await _sleep(t, host, ns, 0, absolute=True)
    return await _sleep(t, host, now_ns(host) + ns, rem)
