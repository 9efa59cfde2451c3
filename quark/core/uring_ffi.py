"""An io_uring instance over the raw system calls (cffi, ABI mode: no build step,
no liburing).

Some facts this rests on (io_uring(7), include/uapi/linux/io_uring.h):
- io_uring_setup returns an fd; the submission ring, completion ring and the SQE
  array are mmapped from it at fixed offsets. With IORING_FEAT_SINGLE_MMAP (5.4+)
  one mapping holds both rings.
- We produce SQEs (write the entry, then its index into the SQ array, then the
  tail) and consume CQEs (read entries up to the tail, then store the head). x86-64
  keeps stores in order, and each step here is a separate C-level store, so plain
  stores are the release/acquire the protocol needs.
- The kernel copies an SQE when io_uring_enter submits it; the buffers it points
  at (guest memory, our iovec arrays) must stay valid until its CQE arrives. Ring
  keeps the iovec arrays and buffer anchors of each request until it is reaped.
- IORING_REGISTER_EVENTFD makes every posted CQE signal an eventfd, which a waiter
  polls. (IORING_REGISTER_EVENTFD_ASYNC would skip inline completions, but on 6.x
  it signals only for io-wq workers: a pipe read completed by poll + task_work,
  measured, never signalled it.)
- Errors come back as a negative errno in the CQE's ``res``, the host's value for
  the same operation; setup fails with ENOSYS (no io_uring), EPERM
  (kernel.io_uring_disabled=2, or 1 without the group) or ENOMEM.

Every pointer handed to the kernel here is either into a mapping this module
made (the rings), into a cffi array kept in ``_inflight`` until the request's CQE
is consumed, or into a caller's buffer anchored there as well.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Sequence
from typing import Any

import cffi  # type: ignore[import-untyped]

_ffi = cffi.FFI()
_ffi.cdef("""
long syscall(long number, ...);
struct io_sqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, flags, dropped, array, resv1;
    uint64_t user_addr;
};
struct io_cqring_offsets {
    uint32_t head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1;
    uint64_t user_addr;
};
struct io_uring_params {
    uint32_t sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle;
    uint32_t features, wq_fd, resv[3];
    struct io_sqring_offsets sq_off;
    struct io_cqring_offsets cq_off;
};
struct iovec { void *iov_base; size_t iov_len; };
""")
_libc = _ffi.dlopen(None)
# glibc's syscall() is assembly that moves six integer registers and never reads
# %al, so calling it through a fixed seven-long prototype is the variadic call
# without cffi's per-call argument casts (~1 µs of the 3 µs an enter took).
_sys7 = _ffi.cast("long (*)(long, long, long, long, long, long, long)",
                  _ffi.addressof(_libc, "syscall"))
# One SQE, written with a single pack_into instead of a dozen cffi field stores:
# opcode, flags, ioprio, fd, off, addr, len, op_flags, user_data, buf_index,
# personality, splice_fd_in, addr3, pad.
_SQE = struct.Struct("<BBHiQQIIQHHiQQ")
_CQE = struct.Struct("<QiI")

SYS_io_uring_setup = 425
SYS_io_uring_enter = 426
SYS_io_uring_register = 427

IORING_OFF_SQ_RING = 0
IORING_OFF_CQ_RING = 0x8000000
IORING_OFF_SQES = 0x10000000
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_ENTER_GETEVENTS = 1 << 0
IORING_REGISTER_EVENTFD = 4

OP_READV = 1
OP_WRITEV = 2
OP_READ = 22
OP_WRITE = 23
OP_ASYNC_CANCEL = 14
OP_NOP = 0

# The offset word of a stream fd: "the current file position", which is what
# read(2)/write(2) use; pipes and sockets ignore it.
NO_OFFSET = (1 << 64) - 1

assert _SQE.size == 64 and _CQE.size == 16
assert _ffi.sizeof("struct io_uring_params") == 120


def _check(r: int, what: str) -> int:
    if r < 0:
        e = _ffi.errno
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return r


class Ring:
    """One io_uring. Not thread-safe: callers serialise submission and reaping
    (the kernel lock does). ``entries``: SQ size (the CQ is twice that)."""

    def __init__(self, entries: int = 64) -> None:
        p = _ffi.new("struct io_uring_params *")
        self.fd = _check(_sys7(SYS_io_uring_setup, entries,
                               int(_ffi.cast("uintptr_t", p)), 0, 0, 0, 0),
                         "io_uring_setup")
        try:
            self._map_rings(p)
        except BaseException:
            os.close(self.fd)
            raise
        self._inflight: dict[int, Any] = {}   # user_data -> what the kernel points at
        self._pending = 0                      # SQEs written, not yet submitted

    def _map_rings(self, p: Any) -> None:
        so, co = p.sq_off, p.cq_off
        sq_size = so.array + p.sq_entries * 4
        cq_size = co.cqes + p.cq_entries * _CQE.size
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_POPULATE
        if p.features & IORING_FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
            self._sq_map = mmap.mmap(self.fd, sq_size, flags, prot, offset=IORING_OFF_SQ_RING)
            self._cq_map = self._sq_map
        else:
            self._sq_map = mmap.mmap(self.fd, sq_size, flags, prot, offset=IORING_OFF_SQ_RING)
            self._cq_map = mmap.mmap(self.fd, cq_size, flags, prot, offset=IORING_OFF_CQ_RING)
        self._sqe_map = mmap.mmap(self.fd, p.sq_entries * _SQE.size, flags, prot,
                                  offset=IORING_OFF_SQES)
        # The ring words as uint32 views; the offsets are the kernel's, in bytes.
        self._sqw = memoryview(self._sq_map).cast("I")
        self._cqw = memoryview(self._cq_map).cast("I")
        self._sq_head, self._sq_tail = so.head // 4, so.tail // 4
        self._sq_array = so.array // 4
        self._sq_mask = self._sqw[so.ring_mask // 4]
        self._sq_entries = p.sq_entries
        self._cq_head, self._cq_tail = co.head // 4, co.tail // 4
        self._cq_mask = self._cqw[co.ring_mask // 4]
        self._cqes = co.cqes
        self.features = p.features

    # ---- submission
    def _push(self, opcode: int, fd: int, off: int, addr: int, length: int,
              user_data: int, keep: Any) -> None:
        w = self._sqw
        tail = w[self._sq_tail]
        if (tail - w[self._sq_head]) & 0xFFFFFFFF >= self._sq_entries:
            self.submit()                           # full: hand what is there over
            if (tail - w[self._sq_head]) & 0xFFFFFFFF >= self._sq_entries:
                raise OSError(16, "io_uring submission queue full")   # EBUSY
        idx = tail & self._sq_mask
        _SQE.pack_into(self._sqe_map, idx * _SQE.size, opcode, 0, 0, fd, off, addr,
                       length, 0, user_data, 0, 0, 0, 0, 0)
        w[self._sq_array + idx] = idx
        self._inflight[user_data] = keep
        w[self._sq_tail] = (tail + 1) & 0xFFFFFFFF     # publishes the entry
        self._pending += 1

    def prep_rw(self, write: bool, fd: int, bufs: Sequence[memoryview], offset: int | None,
                user_data: int) -> None:
        """A read (into ``bufs``) or write (from them) at ``offset`` (None: the
        fd's position, for streams). The buffers stay referenced until reaped."""
        anchors = [_ffi.from_buffer(b) for b in bufs]
        off = NO_OFFSET if offset is None else offset
        if len(anchors) == 1:
            self._push(OP_WRITE if write else OP_READ, fd, off,
                       int(_ffi.cast("uintptr_t", anchors[0])), len(bufs[0]), user_data,
                       anchors)
            return
        iov = _ffi.new("struct iovec[]", len(anchors))
        for i, (a, b) in enumerate(zip(anchors, bufs)):
            iov[i].iov_base = a
            iov[i].iov_len = len(b)
        self._push(OP_WRITEV if write else OP_READV, fd, off,
                   int(_ffi.cast("uintptr_t", iov)), len(anchors), user_data, (anchors, iov))

    def prep_cancel(self, target: int, user_data: int) -> None:
        """Cancel the request whose user_data is ``target``."""
        self._push(OP_ASYNC_CANCEL, -1, 0, target, 0, user_data, None)

    def prep_nop(self, user_data: int) -> None:
        self._push(OP_NOP, -1, 0, 0, 0, user_data, None)

    def submit(self, wait: int = 0) -> int:
        """Submit what was prepared; with ``wait``, also sleep (GIL released) until
        that many completions are ready. Returns how many SQEs the kernel took."""
        n, self._pending = self._pending, 0
        flags = IORING_ENTER_GETEVENTS if wait else 0
        while True:
            r = _sys7(SYS_io_uring_enter, self.fd, n, wait, flags, 0, 0)
            if r >= 0:
                return int(r)
            if _ffi.errno != 4:                     # EINTR: retry, like os functions
                self._pending = n
                _check(r, "io_uring_enter")

    # ---- completion
    def reap(self) -> list[tuple[int, int]]:
        """Every ready completion as (user_data, res); releases their buffers."""
        w = self._cqw
        head, tail = w[self._cq_head], w[self._cq_tail]
        if head == tail:
            return []
        out = []
        mask, base, inflight, m = self._cq_mask, self._cqes, self._inflight, self._cq_map
        while head != tail:
            ud, res, _flags = _CQE.unpack_from(m, base + (head & mask) * _CQE.size)
            out.append((ud, res))
            inflight.pop(ud, None)
            head = (head + 1) & 0xFFFFFFFF
        w[self._cq_head] = head
        return out

    def register_eventfd(self, efd: int) -> None:
        """``efd`` is signalled whenever a completion is posted."""
        arg = _ffi.new("int *", efd)
        _check(_sys7(SYS_io_uring_register, self.fd, IORING_REGISTER_EVENTFD,
                     int(_ffi.cast("uintptr_t", arg)), 1, 0, 0), "io_uring_register")

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def close(self) -> None:
        """Closing the fd cancels what is still in flight; the kernel stops using
        our buffers once the ring is torn down."""
        self._sqw.release()
        self._cqw.release()
        for m in {id(x): x for x in (self._sq_map, self._cq_map, self._sqe_map)}.values():
            m.close()
        os.close(self.fd)
        self._inflight.clear()
