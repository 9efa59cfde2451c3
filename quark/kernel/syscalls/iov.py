"""Guest buffers and iovec arrays as host memoryviews (lib/iov_iter.c rules).

- At most IOV_MAX (1024) iovecs, else EINVAL; an iov_len with the sign bit set
  is EINVAL; the total is clamped to MAX_RW_COUNT, never an error.
- A single buffer's count is clamped to MAX_RW_COUNT as well.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import EINVAL, IOV_MAX, MAX_RW_COUNT
from quark.kernel.errors import LinuxError

_IOVEC = struct.Struct("<QQ")


def buffer(t: Any, addr: int, count: int, write: bool) -> list[memoryview]:
    """``write=True``: the kernel stores into the buffer (a read(2))."""
    count = min(count, MAX_RW_COUNT)
    if count == 0:
        return []
    return list(t.mm.iovecs(addr, count, write))


def iovec_array(t: Any, addr: int, cnt: int, write: bool) -> list[memoryview]:
    if cnt > IOV_MAX or cnt < 0:
        raise LinuxError(EINVAL)
    if cnt == 0:
        return []
    raw = t.mm.read(addr, cnt * _IOVEC.size)
    vecs = [_IOVEC.unpack_from(raw, i * _IOVEC.size) for i in range(cnt)]
    if any(ln >> 63 for _, ln in vecs):
        raise LinuxError(EINVAL)
    out: list[memoryview] = []
    total = 0
    for base, ln in vecs:
        ln = min(ln, MAX_RW_COUNT - total)
        if ln:
            out.extend(t.mm.iovecs(base, ln, write))
            total += ln
    return out
