"""Fixtures shared by the unit tests."""

from __future__ import annotations

import gc
import mmap
from collections.abc import Iterator

import pytest


@pytest.fixture
def mem() -> Iterator[memoryview]:
    """64 KiB of anonymous memory standing in for guest memory (io_uring buffers)."""
    m = mmap.mmap(-1, 1 << 16)
    v = memoryview(m)
    yield v
    gc.collect()        # a thrown exception's traceback cycle may still hold a slice
    v.release()
    m.close()
