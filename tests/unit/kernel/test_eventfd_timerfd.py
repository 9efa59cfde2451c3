"""eventfd, timerfd, signalfd and memfd through the handlers."""

from __future__ import annotations

import errno
import struct
import time
from pathlib import Path

import pytest

from quark.kernel.abi.linux import CLOCK_MONOTONIC, O_NONBLOCK, POLLIN, POLLOUT
from quark.kernel.signals import SigInfo, bit
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import call, resume, start
from tests.unit.kernel.fakes_events import EventTask, make_task

F_ADD_SEALS, F_GET_SEALS = 1033, 1034


@pytest.fixture
def t(tmp_path: Path) -> EventTask:
    return make_task(tmp_path)


def read64(t: EventTask, fd: int) -> int:
    buf = t.mm.alloc(8)
    n = call(t, 0, fd, buf, 8)
    return n if n < 0 else int(struct.unpack("<Q", t.mm.read(buf, 8))[0])


def write64(t: EventTask, fd: int, v: int) -> int:
    return call(t, 1, fd, t.mm.put(struct.pack("<Q", v)), 8)


def test_eventfd_counter_semaphore_and_limits(t: EventTask) -> None:
    e = call(t, 290, 5, O_NONBLOCK)
    f = t.fds.get(e)
    assert f.path == "anon_inode:[eventfd]"
    assert f.poll_events() & (POLLIN | POLLOUT) == POLLIN | POLLOUT
    assert read64(t, e) == 5
    assert read64(t, e) == -errno.EAGAIN
    assert write64(t, e, 3) == 8 and write64(t, e, 4) == 8
    assert read64(t, e) == 7
    assert call(t, 0, e, t.mm.alloc(4), 4) == -errno.EINVAL
    assert call(t, 1, e, t.mm.put(b"\0" * 16), 16) == -errno.EINVAL
    assert write64(t, e, (1 << 64) - 1) == -errno.EINVAL
    assert write64(t, e, (1 << 64) - 2) == 8
    assert not f.poll_events() & POLLOUT
    assert write64(t, e, 1) == -errno.EAGAIN
    s = call(t, 290, 2, 1 | O_NONBLOCK)
    assert [read64(t, s) for _ in range(3)] == [1, 1, -errno.EAGAIN]
    assert call(t, 290, 0, 0x40) == -errno.EINVAL


def test_eventfd_blocking_read(t: EventTask) -> None:
    e = call(t, 284, 0)
    buf = t.mm.alloc(8)
    coro, blk = start(t, 0, e, buf, 8)
    assert isinstance(blk, Block)
    write64(t, e, 42)
    assert resume(coro) == ("done", 8)
    assert struct.unpack("<Q", t.mm.read(buf, 8))[0] == 42


def itimerspec(interval_ns: int, value_ns: int) -> bytes:
    return struct.pack("<qqqq", *divmod(interval_ns, 10**9), *divmod(value_ns, 10**9))


def test_timerfd_arm_expire_and_gettime(t: EventTask) -> None:
    assert call(t, 283, 2, 0) == -errno.EINVAL            # CPU clocks are not allowed
    tf = call(t, 283, CLOCK_MONOTONIC, O_NONBLOCK)
    assert t.fds.get(tf).path == "anon_inode:[timerfd]"
    cur = t.mm.alloc(32)
    assert call(t, 287, tf, cur) == 0
    assert t.mm.read(cur, 32) == bytes(32)
    assert read64(t, tf) == -errno.EAGAIN
    assert call(t, 286, tf, 0, t.mm.put(itimerspec(0, 20_000_000)), 0) == 0
    call(t, 287, tf, cur)
    _, _, vs, vns = struct.unpack("<qqqq", t.mm.read(cur, 32))
    assert vs == 0 and 0 < vns <= 20_000_000
    time.sleep(0.03)
    assert t.fds.get(tf).poll_events() & POLLIN
    assert read64(t, tf) == 1
    call(t, 287, tf, cur)
    assert t.mm.read(cur, 32) == bytes(32)
    assert call(t, 286, tf, 0, t.mm.put(itimerspec(10_000_000, 10_000_000)), 0) == 0
    time.sleep(0.055)
    assert 4 <= read64(t, tf) <= 6
    old = t.mm.alloc(32)
    assert call(t, 286, tf, 0, t.mm.put(itimerspec(0, 0)), old) == 0
    assert struct.unpack("<qqqq", t.mm.read(old, 32))[:2] == (0, 10_000_000)
    assert call(t, 286, tf, 4, t.mm.put(itimerspec(0, 1)), 0) == -errno.EINVAL
    assert call(t, 286, tf, 0, t.mm.put(itimerspec(0, 10**9 + 0)), 0) == 0
    bad = struct.pack("<qqqq", 0, 0, 0, 10**9)
    assert call(t, 286, tf, 0, t.mm.put(bad), 0) == -errno.EINVAL
    e = call(t, 290, 0, 0)
    assert call(t, 286, e, 0, t.mm.put(itimerspec(0, 1)), 0) == -errno.EINVAL


def test_timerfd_host_timer_wakes_waiters(t: EventTask) -> None:
    tf = call(t, 283, CLOCK_MONOTONIC, 0)
    f = t.fds.get(tf)
    woken = []

    class W:
        def wake(self) -> None:
            woken.append(1)

    f.wait_queue.waiters.add(W())
    call(t, 286, tf, 0, t.mm.put(itimerspec(0, 10_000_000)), 0)
    deadline = time.monotonic() + 2
    while not woken and time.monotonic() < deadline:
        time.sleep(0.005)
    assert woken
    call(t, 3, tf)


def test_signalfd_reads_pending_signals_in_its_mask(t: EventTask) -> None:
    mask = t.mm.put(struct.pack("<Q", bit(10)))
    s = call(t, 289, -1, mask, 8, O_NONBLOCK)
    f = t.fds.get(s)
    assert f.path == "anon_inode:[signalfd]"
    assert f.poll_events_for(t) == 0
    t.pending.add(SigInfo(10, -6, pid=1))
    t.tg.shared_pending.add(SigInfo(12, 0, pid=7))
    assert f.poll_events_for(t) & POLLIN
    buf = t.mm.alloc(256)
    assert call(t, 0, s, buf, 256) == 128
    signo, _, code, pid = struct.unpack("<IiiI", t.mm.read(buf, 16))
    assert (signo, code, pid) == (10, -6, 1)
    assert call(t, 0, s, buf, 128) == -errno.EAGAIN         # SIGUSR2 is not in the mask
    mask2 = t.mm.put(struct.pack("<Q", bit(12) | bit(9)))
    assert call(t, 289, s, mask2, 8, 0) == s
    assert call(t, 0, s, buf, 128) == 128
    assert struct.unpack("<I", t.mm.read(buf, 4))[0] == 12
    assert call(t, 0, s, buf, 64) == -errno.EINVAL
    assert call(t, 289, -1, mask, 4, 0) == -errno.EINVAL
    assert call(t, 289, -1, mask, 8, 1) == -errno.EINVAL
    e = call(t, 290, 0, 0)
    assert call(t, 289, e, mask, 8, 0) == -errno.EINVAL


def test_memfd_seals_and_path(t: EventTask) -> None:
    m = call(t, 319, t.mm.cstr("buf"), 2)
    f = t.fds.get(m)
    assert f.path == "/memfd:buf (deleted)"
    assert call(t, 1, m, t.mm.put(b"hello"), 5) == 5
    assert call(t, 72, m, F_GET_SEALS) == 0
    assert call(t, 72, m, F_ADD_SEALS, 4 | 2) == 0             # GROW | SHRINK
    assert call(t, 18, m, t.mm.put(b"xyz"), 3, 4) == -errno.EPERM
    assert call(t, 77, m, 100) == -errno.EPERM
    assert call(t, 285, m, 0, 0, 4096) == -errno.EPERM
    assert call(t, 72, m, F_ADD_SEALS, 8 | 1) == 0             # WRITE | SEAL
    assert call(t, 1, m, t.mm.put(b"x"), 1) == -errno.EPERM
    assert call(t, 72, m, F_ADD_SEALS, 2) == -errno.EPERM
    n = call(t, 319, t.mm.cstr("plain"), 0)
    assert call(t, 72, n, F_GET_SEALS) == 1
    assert call(t, 319, t.mm.cstr("n" * 250), 0) == -errno.EINVAL
    assert call(t, 319, t.mm.cstr("x"), 0x100) == -errno.EINVAL
    assert call(t, 285, n, 0, 0, 8192) == 0
    assert f.stat().size == 5 and t.fds.get(n).stat().size == 8192
    assert call(t, 285, n, 2, 0, 1) == -errno.EOPNOTSUPP        # punch needs KEEP_SIZE


def test_xattrs_and_inotify(t: EventTask) -> None:
    name = t.mm.cstr("user.x")
    assert call(t, 191, t.mm.cstr("/missing"), name, 0, 0) == -errno.ENOENT
    assert call(t, 191, t.mm.cstr("/data/f"), name, 0, 0) == -errno.EOPNOTSUPP
    assert call(t, 191, t.mm.cstr("/data/f"), t.mm.cstr(""), 0, 0) == -errno.ERANGE
    assert call(t, 194, t.mm.cstr("/data/f"), 0, 0) == 0
    assert call(t, 188, t.mm.cstr("/data/f"), name, 0, 0, 4) == -errno.EINVAL
    from quark.kernel.syscalls.table import load
    assert load()[294].errno == errno.ENOSYS
