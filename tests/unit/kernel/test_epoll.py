"""epoll through the handlers: ctl rules, level/edge/oneshot, order, nesting, keying."""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from quark.kernel.abi.linux import O_RDONLY, POLLHUP, POLLIN, POLLOUT
from quark.kernel.fs.anon.epoll import EPOLLET, EPOLLEXCLUSIVE, EPOLLONESHOT
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import call, resume, start
from tests.unit.kernel.fakes_events import EventTask, interrupt, make_task, pipe

ADD, DEL, MOD = 1, 2, 3


@pytest.fixture
def t(tmp_path: Path) -> EventTask:
    return make_task(tmp_path)


def ctl(t: EventTask, ep: int, op: int, fd: int, events: int = POLLIN, data: int = 0) -> int:
    return call(t, 233, ep, op, fd, t.mm.put(struct.pack("<IQ", events, data)))


def wait(t: EventTask, ep: int, maxevents: int = 8) -> list[tuple[int, int]]:
    buf = t.mm.alloc(12 * maxevents)
    n = call(t, 232, ep, buf, maxevents, 0)
    assert n >= 0, n
    return [struct.unpack_from("<IQ", t.mm.read(buf + 12 * i, 12)) for i in range(n)]


def write(t: EventTask, fd: int, data: bytes = b"x") -> None:
    assert call(t, 1, fd, t.mm.put(data), len(data)) == len(data)


def read(t: EventTask, fd: int, n: int) -> None:
    assert call(t, 0, fd, t.mm.alloc(n), n) > 0


def test_create_and_ctl_errors(t: EventTask) -> None:
    assert call(t, 213, 0) == -errno.EINVAL
    assert call(t, 291, 1) == -errno.EINVAL
    ep = call(t, 291, 0)
    assert t.fds.get(ep).path == "anon_inode:[eventpoll]"
    r, w = pipe(t, call)
    assert ctl(t, ep, ADD, r) == 0
    assert ctl(t, ep, ADD, r) == -errno.EEXIST
    assert ctl(t, ep, MOD, w) == -errno.ENOENT
    assert ctl(t, ep, DEL, w) == -errno.ENOENT
    assert ctl(t, ep, ADD, ep) == -errno.EINVAL
    assert ctl(t, r, ADD, w) == -errno.EINVAL
    assert ctl(t, ep, 9, w) == -errno.EINVAL
    assert ctl(t, ep, ADD, 77) == -errno.EBADF
    f = call(t, 2, t.mm.cstr("/data/f"), O_RDONLY)
    assert ctl(t, ep, ADD, f) == -errno.EPERM
    assert ctl(t, ep, ADD, w, POLLOUT | EPOLLEXCLUSIVE | EPOLLONESHOT) == -errno.EINVAL
    assert ctl(t, ep, ADD, w, POLLOUT | EPOLLEXCLUSIVE) == 0
    assert ctl(t, ep, MOD, w, POLLOUT) == -errno.EINVAL
    assert call(t, 232, ep, t.mm.alloc(12), 0, 0) == -errno.EINVAL
    assert call(t, 232, r, t.mm.alloc(12), 1, 0) == -errno.EINVAL


def test_level_edge_oneshot(t: EventTask) -> None:
    ep = call(t, 291, 0)
    r, w = pipe(t, call)
    r2, w2 = pipe(t, call)
    ctl(t, ep, ADD, r, POLLIN, 1)
    ctl(t, ep, ADD, r2, POLLIN | EPOLLET, 2)
    assert wait(t, ep) == []
    write(t, w, b"ab")
    write(t, w2, b"ab")
    assert wait(t, ep) == [(POLLIN, 1), (POLLIN, 2)]
    assert wait(t, ep) == [(POLLIN, 1)]                 # edge reported once
    read(t, r2, 1)
    assert wait(t, ep) == [(POLLIN, 1)]                 # a read is no edge for EPOLLIN
    write(t, w2)
    assert wait(t, ep) == [(POLLIN, 1), (POLLIN, 2)]
    ctl(t, ep, MOD, r2, POLLIN | EPOLLONESHOT, 3)
    assert wait(t, ep) == [(POLLIN, 1), (POLLIN, 3)]
    assert wait(t, ep) == [(POLLIN, 1)]
    ctl(t, ep, MOD, r2, POLLIN | EPOLLONESHOT, 4)
    assert wait(t, ep) == [(POLLIN, 1), (POLLIN, 4)]
    call(t, 3, w)
    read(t, r, 2)
    assert wait(t, ep) == [(POLLHUP, 1)]


def test_ready_list_order_and_maxevents(t: EventTask) -> None:
    ep = call(t, 291, 0)
    pipes = [pipe(t, call) for _ in range(3)]
    for i, (r, _) in enumerate(pipes):
        ctl(t, ep, ADD, r, POLLIN, 100 * (i + 1))
    for i in (2, 0, 1):
        write(t, pipes[i][1])
    assert [d for _, d in wait(t, ep)] == [300, 100, 200]
    assert [[d for _, d in wait(t, ep, 1)] for _ in range(4)] == [[300], [100], [200], [300]]


def test_nesting_and_loops(t: EventTask) -> None:
    inner, outer = call(t, 291, 0), call(t, 291, 0)
    r, w = pipe(t, call)
    ctl(t, inner, ADD, r, POLLIN, 11)
    assert ctl(t, outer, ADD, inner, POLLIN, 22) == 0
    assert ctl(t, inner, ADD, outer) == -errno.ELOOP
    assert wait(t, outer) == []
    write(t, w)
    assert wait(t, outer) == [(POLLIN, 22)]
    chain = [call(t, 291, 0)]
    results = []
    for i in range(1, 7):
        chain.append(call(t, 291, 0))
        results.append(ctl(t, chain[i], ADD, chain[i - 1]))
    assert results == [0, 0, 0, 0, -errno.ELOOP, 0]


def test_keyed_by_fd_and_file(t: EventTask) -> None:
    ep = call(t, 291, 0)
    r, w = pipe(t, call)
    ctl(t, ep, ADD, r, POLLIN, 44)
    d = call(t, 32, r)
    call(t, 3, r)
    write(t, w)
    assert wait(t, ep) == [(POLLIN, 44)]
    assert ctl(t, ep, DEL, r) == -errno.EBADF
    assert ctl(t, ep, DEL, d) == -errno.ENOENT
    assert ctl(t, ep, ADD, d, POLLIN, 46) == 0
    call(t, 3, d)
    assert wait(t, ep) == []


def test_blocking_wait_woken_and_interrupted(t: EventTask) -> None:
    ep = call(t, 291, 0)
    r, w = pipe(t, call)
    ctl(t, ep, ADD, r, POLLIN | EPOLLET, 5)
    buf = t.mm.alloc(12)
    coro, blk = start(t, 232, ep, buf, 1, -1)
    assert isinstance(blk, Block) and t.fds.get(ep).wait_queue in blk.queues
    write(t, w)
    assert resume(coro) == ("done", 1)
    coro, blk = start(t, 232, ep, buf, 1, -1)
    assert interrupt(coro) == ("done", -errno.EINTR)
    t.sigmask = 1 << 9
    empty = t.mm.put(struct.pack("<Q", 0))
    coro, blk = start(t, 281, ep, buf, 1, -1, empty, 8)
    assert t.sigmask == 0
    assert interrupt(coro) == ("done", -errno.EINTR)
    assert t.saved_sigmask == 1 << 9
