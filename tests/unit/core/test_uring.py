"""quark/core/uring_ffi.py: the raw io_uring ring (skips where the host refuses it)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from quark.core.uring_ffi import Ring


@pytest.fixture
def ring() -> Iterator[Ring]:
    try:
        r = Ring(8)
    except OSError as e:
        pytest.skip(f"io_uring unavailable here: {e}")
    yield r
    r.close()


def test_read_completes_with_the_data(ring: Ring, mem: memoryview, tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(bytes(range(256)) * 32)
    fd = os.open(p, os.O_RDONLY)
    try:
        ring.prep_rw(False, fd, [mem[0:4096]], 0, 7)
        assert ring.submit(wait=1) == 1
        assert ring.reap() == [(7, 4096)]
        assert bytes(mem[0:4096]) == p.read_bytes()[:4096]
        assert ring.inflight == 0       # its buffers are let go
    finally:
        os.close(fd)


def test_vectors_short_read_at_eof_and_write(ring: Ring, mem: memoryview,
                                             tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"a" * 100 + b"b" * 50)
    fd = os.open(p, os.O_RDWR)
    try:
        ring.prep_rw(False, fd, [mem[0:100], mem[4096:4196]], 0, 1)   # 200 asked, 150 there
        ring.submit(wait=1)
        assert ring.reap() == [(1, 150)]
        assert bytes(mem[4096:4146]) == b"b" * 50
        mem[8192:8197] = b"hello"
        ring.prep_rw(True, fd, [mem[8192:8197]], 150, 2)
        ring.submit(wait=1)
        assert ring.reap() == [(2, 5)]
        assert p.read_bytes().endswith(b"hello")
    finally:
        os.close(fd)


def test_errors_come_back_as_negative_errno(ring: Ring, mem: memoryview) -> None:
    r, w = os.pipe()
    os.close(w)
    os.close(r)
    ring.prep_rw(False, r, [mem[0:16]], None, 3)   # a closed fd
    ring.submit(wait=1)
    assert ring.reap() == [(3, -errno.EBADF)]


def test_pipe_read_waits_signals_eventfd_and_cancels(ring: Ring, mem: memoryview) -> None:
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    r, w = os.pipe()
    try:
        ring.register_eventfd(efd)
        ring.prep_rw(False, r, [mem[0:64]], None, 4)
        ring.submit()
        assert ring.reap() == []                    # nothing to read yet: it waits
        os.write(w, b"ping")
        ring.submit(wait=1)
        assert ring.reap() == [(4, 4)]
        assert os.eventfd_read(efd) >= 1
        assert bytes(mem[0:4]) == b"ping"
        ring.prep_rw(False, r, [mem[0:64]], None, 5)
        ring.submit()
        ring.prep_cancel(5, 6)
        ring.submit()
        got: list[tuple[int, int]] = []
        while len(got) < 2:
            ring.submit(wait=1)
            got += ring.reap()
        assert sorted(got) == [(5, -errno.ECANCELED), (6, 0)]
    finally:
        for fd in (efd, r, w):
            os.close(fd)


def test_a_full_submission_queue_is_submitted_first(ring: Ring) -> None:
    for i in range(20):                  # more than the 8 entries
        ring.prep_nop(100 + i)
    ring.submit()
    got: list[tuple[int, int]] = []
    while len(got) < 20:
        ring.submit(wait=1)
        got += ring.reap()
    assert sorted(ud for ud, _ in got) == list(range(100, 120))
