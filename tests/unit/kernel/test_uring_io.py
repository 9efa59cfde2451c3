"""quark/kernel/fs/host/uring_io.py: blocking stream transfers through io_uring, the
cancel on a signal, and the fallback when the host has no io_uring."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from quark.kernel.errors import LinuxError
from quark.kernel.fs.host import uring_io
from quark.kernel.waiting import ERESTARTSYS, Block


class _Kernel:
    pass


class _Task:
    """What transfer() needs: a kernel, no vCPU (so no move to another thread), and
    a block() that yields a Block."""

    def __init__(self) -> None:
        self.kernel = _Kernel()
        self.vcpu = None

    def block(self, queues: Any = (), timeout: float | None = None, host_fds: Any = (),
              interruptible: bool = True) -> Block:
        return Block(tuple(queues), timeout, tuple(host_fds), interruptible)


@pytest.fixture
def u(monkeypatch: pytest.MonkeyPatch) -> Iterator[uring_io.UringIO]:
    monkeypatch.setenv("QUARK_IO_URING", "auto")
    k = _Kernel()
    got = uring_io.for_kernel(k)
    if got is None:
        pytest.skip("io_uring unavailable here")
    yield got
    got.close()


def _run(coro: Any, on_block: Any = None) -> Any:
    """Drive a coroutine; at each Block call on_block(n) (which may return an
    exception to throw in). Returns the result or ('errno', e)."""
    n, value, exc = 0, None, None
    while True:
        try:
            req = coro.throw(exc) if exc is not None else coro.send(value)
        except StopIteration as e:
            return e.value
        except LinuxError as e:
            return ("errno", e.errno)
        assert isinstance(req, Block)
        exc = on_block(n) if on_block else None
        value = True
        n += 1


def test_ready_read_completes_without_blocking(u: uring_io.UringIO, mem: memoryview) -> None:
    r, w = os.pipe()
    try:
        os.write(w, b"data")
        assert _run(u.transfer(_Task(), r, [mem[0:100]], write=False)) == 4
        assert bytes(mem[0:4]) == b"data"
    finally:
        os.close(r)
        os.close(w)


def test_blocked_read_completes_when_data_arrives(u: uring_io.UringIO, mem: memoryview) -> None:
    r, w = os.pipe()
    try:
        def writer(n: int) -> None:
            os.write(w, b"late")
            u.ring.submit(wait=1)    # the test's "sleep": until the CQE is posted
        assert _run(u.transfer(_Task(), r, [mem[0:100]], write=False), writer) == 4
        assert not u.ops
    finally:
        os.close(r)
        os.close(w)


def test_signal_cancels_and_restarts(u: uring_io.UringIO, mem: memoryview) -> None:
    r, w = os.pipe()
    try:
        res = _run(u.transfer(_Task(), r, [mem[0:100]], write=False),
                   lambda n: LinuxError(ERESTARTSYS))
        assert res == ("errno", ERESTARTSYS)
        assert not u.ops and u.ring.inflight == 0   # nothing left pointing at the buffer
        os.write(w, b"after")                        # not eaten by the cancelled read
        assert os.read(r, 10) == b"after"
    finally:
        os.close(r)
        os.close(w)


def test_errors_are_errno_and_write_finishes_everything(u: uring_io.UringIO,
                                                         mem: memoryview) -> None:
    r, w = os.pipe()
    os.close(r)
    try:
        assert _run(u.transfer(_Task(), w, [mem[0:10]], write=True)) == ("errno", errno.EPIPE)
    finally:
        os.close(w)
    r, w = os.pipe()
    try:
        size = 1 << 16                         # the pipe holds 64 KiB: 80 KiB must wait
        big = [mem[0:size], mem[0:16384]]

        def drain(n: int) -> None:
            os.read(r, 1 << 20)
            u.ring.submit(wait=1)
        assert _run(u.transfer(_Task(), w, big, write=True), drain) == size + 16384
    finally:
        os.close(r)
        os.close(w)


def test_fallback_when_off_or_refused(monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("QUARK_IO_URING", "off")
    assert uring_io.for_kernel(_Kernel()) is None
    monkeypatch.setenv("QUARK_IO_URING", "auto")

    def refuse(entries: int) -> None:
        raise OSError(errno.EPERM, "io_uring_setup")
    import quark.core.uring_ffi as ffi
    monkeypatch.setattr(ffi, "Ring", refuse)
    k = _Kernel()
    with caplog.at_level(logging.INFO, logger="quark.kernel"):
        assert uring_io.for_kernel(k) is None
        assert uring_io.for_kernel(k) is None      # decided once per kernel
    assert [r.getMessage() for r in caplog.records].count(
        "io_uring unavailable (Operation not permitted); "
        "blocking stream I/O polls and retries") == 1
