"""Guest buffers and iovec arrays as host memoryviews (lib/iov_iter.c rules).

- At most IOV_MAX (1024) iovecs, else EINVAL; an iov_len with the sign bit set
  is EINVAL; the total is clamped to MAX_RW_COUNT, never an error.
- A single buffer's count is clamped to MAX_RW_COUNT as well.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import EFAULT, EINVAL, IOV_MAX, MAX_RW_COUNT

TASK_SIZE = 0x7FFF_FFFF_F000        # x86-64 user address limit (4-level paging)
from quark.kernel.errors import LinuxError

_IOVEC = struct.Struct("<QQ")


def buffer(t: Any, addr: int, count: int, write: bool,
           partial: bool | None = None) -> list[memoryview]:
    """``write=True``: the kernel stores into the buffer (a read(2)). ``partial``:
    a bad page ends the buffer short instead of failing it (default: for reads)."""
    if count > MAX_RW_COUNT:
        count = MAX_RW_COUNT
    elif count == 0:
        return []
    # A read that runs into a bad page returns what fits (copy_to_user stops
    # short); a write from a bad buffer is EFAULT for pipes (they commit nothing on
    # a fault) but short for regular files (generic_perform_write keeps what it
    # copied): File.partial_writes.
    views: list[memoryview] = t.mm.iovecs(addr, count, write,
                                          partial=write if partial is None else partial)
    return views


def discarded(addr: int, count: int) -> int:
    """write(2) to a file that never reads the buffer (/dev/null, /dev/zero):
    vfs_write's access_ok and the MAX_RW_COUNT clamp, nothing else."""
    if _outside_user(addr, count):
        raise LinuxError(EFAULT)
    return min(count, MAX_RW_COUNT)


def _outside_user(base: int, ln: int) -> bool:
    """access_ok's test: ``[base, base + ln)`` does not lie in user space."""
    return base + ln > TASK_SIZE or base + ln < base


def iovec_array(t: Any, addr: int, cnt: int, write: bool,
                partial: bool | None = None) -> list[memoryview]:
    """``partial`` as for ``buffer``: the transfer ends short at a bad page."""
    short = write if partial is None else partial
    if cnt > IOV_MAX or cnt < 0:
        raise LinuxError(EINVAL)
    if cnt == 0:
        return []
    raw = t.mm.read(addr, cnt * _IOVEC.size)
    vecs = [_IOVEC.unpack_from(raw, i * _IOVEC.size) for i in range(cnt)]
    if any(ln >> 63 for _, ln in vecs):
        raise LinuxError(EINVAL)
    # import_iovec's access_ok: every segment must lie in user space, checked before
    # anything moves (a segment that is merely unmapped ends the transfer short).
    if any(ln and _outside_user(base, ln) for base, ln in vecs):
        raise LinuxError(EFAULT)
    out: list[memoryview] = []
    total = 0
    for base, ln in vecs:
        ln = min(ln, MAX_RW_COUNT - total)
        if ln:
            try:
                got = t.mm.iovecs(base, ln, write, partial=short)
            except LinuxError:
                if out and short:
                    break       # a read stops short at the first bad segment
                raise
            out.extend(got)
            total += ln
            if sum(len(v) for v in got) < ln:
                break
    return out
