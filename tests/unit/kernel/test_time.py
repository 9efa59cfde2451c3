"""Clock and sleep syscalls."""

from __future__ import annotations

import struct
import time

import pytest

from quark.kernel.abi.linux import (
    CLOCK_BOOTTIME,
    CLOCK_MONOTONIC,
    CLOCK_MONOTONIC_COARSE,
    CLOCK_MONOTONIC_RAW,
    CLOCK_PROCESS_CPUTIME_ID,
    CLOCK_REALTIME,
    CLOCK_REALTIME_COARSE,
    CLOCK_TAI,
    CLOCK_THREAD_CPUTIME_ID,
    EFAULT,
    EINTR,
    EINVAL,
    EOPNOTSUPP,
    TIMER_ABSTIME,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls import sys_time as s
from quark.kernel.waiting import ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTSYS
from tests.unit.kernel.fakes_misc import BASE, FakeTask, call, errno_of, run

NSEC = 1_000_000_000
REQ, REM = BASE, BASE + 64


def ts_at(t: FakeTask, addr: int) -> int:
    sec, nsec = struct.unpack("<qq", t.mm.read(addr, 16))
    assert 0 <= nsec < NSEC
    return sec * NSEC + nsec


def put_ts(t: FakeTask, addr: int, sec: int, nsec: int) -> None:
    t.mm.write(addr, struct.pack("<qq", sec, nsec))


def cpuclock(pid: int, which: int, thread: bool) -> int:
    """``MAKE_PROCESS_CPUCLOCK`` / ``MAKE_THREAD_CPUCLOCK``."""
    return (~pid << 3) | (4 if thread else 0) | which


def test_clock_gettime_matches_host() -> None:
    t = FakeTask()
    for clk in (CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_MONOTONIC_RAW, CLOCK_BOOTTIME, CLOCK_TAI):
        before = time.clock_gettime_ns(clk)
        assert call(t, s.sys_clock_gettime, clk, BASE) == 0
        after = time.clock_gettime_ns(clk)
        assert before <= ts_at(t, BASE) <= after
    for clk in (CLOCK_REALTIME_COARSE, CLOCK_MONOTONIC_COARSE, CLOCK_PROCESS_CPUTIME_ID,
                CLOCK_THREAD_CPUTIME_ID, cpuclock(0, 2, False), cpuclock(1, 2, True)):
        assert call(t, s.sys_clock_gettime, clk, BASE) == 0
        assert ts_at(t, BASE) > 0


def test_monotonic_increases() -> None:
    t = FakeTask()
    call(t, s.sys_clock_gettime, CLOCK_MONOTONIC, BASE)
    call(t, s.sys_clock_gettime, CLOCK_MONOTONIC, BASE + 16)
    assert ts_at(t, BASE + 16) >= ts_at(t, BASE)


def test_clock_gettime_errors() -> None:
    t = FakeTask()
    for bad in (10, 12, 100, 0x7FFFFFFF, cpuclock(0, 3, False), cpuclock(999, 2, False)):
        assert errno_of(t, s.sys_clock_gettime, bad, BASE) == EINVAL, bad
    assert errno_of(t, s.sys_clock_gettime, CLOCK_REALTIME, 0) == EFAULT


def test_clock_getres() -> None:
    t = FakeTask()
    assert call(t, s.sys_clock_getres, CLOCK_MONOTONIC, BASE) == 0 and ts_at(t, BASE) == 1
    assert call(t, s.sys_clock_getres, CLOCK_MONOTONIC_COARSE, BASE) == 0
    assert ts_at(t, BASE) > 1
    assert call(t, s.sys_clock_getres, CLOCK_REALTIME, 0) == 0
    assert errno_of(t, s.sys_clock_getres, 42, 0) == EINVAL


def test_gettimeofday_and_time() -> None:
    t = FakeTask()
    assert call(t, s.sys_gettimeofday, BASE, BASE + 16) == 0
    sec, usec = struct.unpack("<qq", t.mm.read(BASE, 16))
    assert abs(sec - time.time()) < 5 and 0 <= usec < 1_000_000
    assert t.mm.read(BASE + 16, 8) == bytes(8)
    assert call(t, s.sys_gettimeofday, 0, 0) == 0
    assert errno_of(t, s.sys_gettimeofday, 8, 0) == EFAULT
    now = call(t, s.sys_time, 0)
    assert abs(now - time.time()) < 5
    assert call(t, s.sys_time, BASE) >= now and t.mm.read_u64(BASE) >= now
    assert errno_of(t, s.sys_time, 8) == EFAULT


def test_times() -> None:
    t = FakeTask()
    a = call(t, s.sys_times, BASE)
    assert a > 0 and call(t, s.sys_times, 0) >= a


def test_nanosleep_blocks_for_the_duration() -> None:
    t = FakeTask()
    put_ts(t, REQ, 0, 20_000_000)
    t.on_block = lambda b: (time.sleep(b.timeout or 0), False)[1]
    start = time.monotonic()
    assert call(t, s.sys_nanosleep, REQ, REM) == 0
    assert time.monotonic() - start >= 0.02
    assert t.blocks and 0 < (t.blocks[0].timeout or 0) <= 0.02
    assert t.blocks[0].queues == ()


def test_nanosleep_zero_does_not_block() -> None:
    t = FakeTask()
    put_ts(t, REQ, 0, 0)
    assert call(t, s.sys_nanosleep, REQ, 0) == 0 and not t.blocks


def test_nanosleep_spurious_wakeup_sleeps_again() -> None:
    t = FakeTask()
    put_ts(t, REQ, 0, 5_000_000)
    answers = iter([True, True])
    t.on_block = lambda b: next(answers, None) or (time.sleep(b.timeout or 0), False)[1]
    assert call(t, s.sys_nanosleep, REQ, 0) == 0
    assert len(t.blocks) >= 3


def test_nanosleep_interrupted_writes_rem() -> None:
    t = FakeTask()
    put_ts(t, REQ, 5, 0)
    t.on_block = lambda b: LinuxError(ERESTARTSYS)
    # EINTR once a handler ran; else restart_syscall resumes towards the same deadline
    assert errno_of(t, s.sys_nanosleep, REQ, REM) == ERESTART_RESTARTBLOCK
    left = ts_at(t, REM)
    assert 4 * NSEC < left <= 5 * NSEC
    timeouts: list[float] = []
    t.restart_block, resume = None, t.restart_block
    t.on_block = lambda b: (timeouts.append(b.timeout or 0), LinuxError(ERESTARTSYS))[1]
    with pytest.raises(LinuxError) as e:
        run(t, resume(t))
    assert e.value.errno == ERESTART_RESTARTBLOCK
    assert 4 * NSEC < timeouts[-1] * NSEC <= left   # towards the first deadline
    # a restart_syscall with nothing to restart (after a handler ran): EINTR
    from quark.kernel.syscalls.sys_signal import sys_restart_syscall
    t.restart_block = None
    assert errno_of(t, sys_restart_syscall) == EINTR


def test_nanosleep_invalid() -> None:
    t = FakeTask()
    for sec, nsec in ((-1, 0), (0, -1), (0, NSEC)):
        put_ts(t, REQ, sec, nsec)
        assert errno_of(t, s.sys_nanosleep, REQ, 0) == EINVAL
    assert errno_of(t, s.sys_nanosleep, 8, 0) == EFAULT
    assert not t.blocks


def test_clock_nanosleep_abstime() -> None:
    t = FakeTask()
    t.on_block = lambda b: (time.sleep(b.timeout or 0), False)[1]
    target = time.clock_gettime_ns(CLOCK_MONOTONIC) + 10_000_000
    put_ts(t, REQ, *divmod(target, NSEC))
    assert call(t, s.sys_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, REQ, REM) == 0
    assert time.clock_gettime_ns(CLOCK_MONOTONIC) >= target
    # a deadline in the past returns at once
    put_ts(t, REQ, 1, 0)
    n = len(t.blocks)
    assert call(t, s.sys_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, REQ, 0) == 0
    assert len(t.blocks) == n


def test_clock_nanosleep_abstime_interrupted_leaves_rem() -> None:
    t = FakeTask()
    t.on_block = lambda b: LinuxError(ERESTARTSYS)
    put_ts(t, REM, 7, 7)
    put_ts(t, REQ, *divmod(time.clock_gettime_ns(CLOCK_REALTIME) + 10 * NSEC, NSEC))
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_REALTIME, TIMER_ABSTIME, REQ,
                    REM) == ERESTARTNOHAND            # restarted as it was
    assert ts_at(t, REM) == 7 * NSEC + 7
    put_ts(t, REQ, 3, 0)
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_BOOTTIME, 0, REQ,
                    REM) == ERESTART_RESTARTBLOCK
    assert 2 * NSEC < ts_at(t, REM) <= 3 * NSEC


def test_clock_nanosleep_bad_clocks() -> None:
    t = FakeTask()
    put_ts(t, REQ, 0, 1)
    assert errno_of(t, s.sys_clock_nanosleep, 99, 0, REQ, 0) == EINVAL
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, REQ, 0) == EOPNOTSUPP
    assert errno_of(t, s.sys_clock_nanosleep, cpuclock(0, 2, True), 0, REQ, 0) == EINVAL
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_MONOTONIC_RAW, 0, REQ, 0) == EOPNOTSUPP
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_MONOTONIC_COARSE, 0, REQ, 0) == EOPNOTSUPP
    put_ts(t, REQ, 0, NSEC)
    assert errno_of(t, s.sys_clock_nanosleep, CLOCK_MONOTONIC, 0, REQ, 0) == EINVAL
