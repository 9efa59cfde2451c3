"""poll, ppoll, select, pselect6 through the handlers, with a fake task."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from quark.kernel.abi.linux import POLLHUP, POLLIN, POLLNVAL, POLLOUT
from quark.kernel.signals import bit
from quark.kernel.waiting import ERESTARTNOHAND, Block
from tests.unit.kernel.fakes import call, resume, start
from tests.unit.kernel.fakes_events import EventTask, interrupt, make_task, pipe


@pytest.fixture
def t(tmp_path: Path) -> EventTask:
    return make_task(tmp_path)


def pollfds(t: EventTask, *entries: tuple[int, int]) -> int:
    return t.mm.put(b"".join(struct.pack("<ihh", fd, ev, 0) for fd, ev in entries))


def revents(t: EventTask, addr: int, n: int) -> list[int]:
    return [struct.unpack_from("<ihH", t.mm.read(addr + 8 * i, 8))[2] for i in range(n)]


def test_poll_readiness_nval_and_negative_fds(t: EventTask) -> None:
    r, w = pipe(t, call)
    a = pollfds(t, (r, POLLIN), (w, POLLOUT), (50, POLLIN), (-1, POLLIN))
    assert call(t, 7, a, 4, 0) == 2
    assert revents(t, a, 4) == [0, POLLOUT, POLLNVAL, 0]
    call(t, 1, w, t.mm.put(b"x"), 1)
    assert call(t, 7, a, 1, 0) == 1
    assert revents(t, a, 1) == [POLLIN]
    call(t, 3, w)
    assert call(t, 7, a, 1, 0) == 1
    assert revents(t, a, 1) == [POLLIN | POLLHUP]


def test_poll_nfds_above_rlimit_and_efault(t: EventTask) -> None:
    assert call(t, 7, t.mm.alloc(8 * 1025), 1025, 0) == -errno.EINVAL
    assert call(t, 7, 8, 1, 0) == -errno.EFAULT


def test_poll_blocks_on_the_pipe_queue_then_wakes(t: EventTask) -> None:
    r, w = pipe(t, call)
    a = pollfds(t, (r, POLLIN))
    coro, blk = start(t, 7, a, 1, -1)
    assert isinstance(blk, Block) and blk.timeout is None
    assert t.fds.get(r).wait_queue in blk.queues
    call(t, 1, w, t.mm.put(b"x"), 1)
    assert resume(coro) == ("done", 1)
    assert revents(t, a, 1) == [POLLIN]


def test_poll_interrupted_and_timed_out(t: EventTask) -> None:
    r, _ = pipe(t, call)
    a = pollfds(t, (r, POLLIN))
    coro, blk = start(t, 7, a, 1, -1)
    assert interrupt(coro) == ("done", -ERESTARTNOHAND)
    coro, blk = start(t, 7, a, 1, 10)
    assert isinstance(blk, Block) and 0 < blk.timeout <= 0.01
    import time
    time.sleep(0.02)
    assert resume(coro, False) == ("done", 0)


def test_select_sets_ebadf_and_timeout_write_back(t: EventTask) -> None:
    r, w = pipe(t, call)
    n = max(r, w) + 1
    rs = t.mm.put((1 << r).to_bytes(8, "little"))
    ws = t.mm.put((1 << w).to_bytes(8, "little"))
    tv = t.mm.put(struct.pack("<qq", 0, 0))
    assert call(t, 23, n, rs, ws, 0, tv) == 1
    assert int.from_bytes(t.mm.read(rs, 8), "little") == 0
    assert int.from_bytes(t.mm.read(ws, 8), "little") == 1 << w
    bad = t.mm.put((1 << 40).to_bytes(8, "little"))
    assert call(t, 23, 41, bad, 0, 0, tv) == -errno.EBADF
    assert call(t, 23, -1, 0, 0, 0, tv) == -errno.EINVAL
    t.mm.write(tv, struct.pack("<qq", 0, -1))
    assert call(t, 23, 0, 0, 0, 0, tv) == -errno.EINVAL
    # a wait that times out leaves 0 in the timeval
    t.mm.write(tv, struct.pack("<qq", 0, 1000))
    rs2 = t.mm.put((1 << r).to_bytes(8, "little"))
    coro, blk = start(t, 23, n, rs2, 0, 0, tv)
    assert isinstance(blk, Block)
    import time
    time.sleep(0.005)
    assert resume(coro, False) == ("done", 0)
    assert struct.unpack("<qq", t.mm.read(tv, 16)) == (0, 0)


def test_ppoll_sigmask_restored_or_kept_for_the_handler(t: EventTask) -> None:
    r, w = pipe(t, call)
    a = pollfds(t, (r, POLLIN))
    t.sigmask = bit(10)
    empty = t.mm.put(struct.pack("<Q", 0))
    coro, blk = start(t, 271, a, 1, 0, empty, 8)
    assert isinstance(blk, Block)
    assert t.sigmask == 0 and t.saved_sigmask == bit(10)
    assert interrupt(coro) == ("done", -ERESTARTNOHAND)
    assert t.sigmask == 0 and t.saved_sigmask == bit(10)   # deliver() restores it
    t.sigmask, t.saved_sigmask = bit(10), None
    call(t, 1, w, t.mm.put(b"x"), 1)
    assert call(t, 271, a, 1, 0, empty, 8) == 1
    assert t.sigmask == bit(10) and t.saved_sigmask is None
    assert call(t, 271, a, 1, 0, empty, 4) == -errno.EINVAL


def test_pselect6_argpack(t: EventTask) -> None:
    empty = t.mm.put(struct.pack("<Q", 0))
    ts = t.mm.put(struct.pack("<qq", 0, 0))
    pack = t.mm.put(struct.pack("<QQ", empty, 4))
    assert call(t, 270, 0, 0, 0, 0, ts, pack) == -errno.EINVAL
    pack = t.mm.put(struct.pack("<QQ", empty, 8))
    assert call(t, 270, 0, 0, 0, 0, ts, pack) == 0
    assert t.saved_sigmask is None
