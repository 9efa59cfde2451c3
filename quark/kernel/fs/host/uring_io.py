"""Blocking stream I/O between host fds and guest memory through io_uring.

Some facts this rests on (measured on the development VM, 6.18, bench/README.md):
- From Python, one io_uring round trip costs more than the system call it replaces:
  a 4 KiB pread of a cached file is 0.8 µs with os.preadv and 4.2 µs as an SQE
  (2.4 µs for a bare NOP); 512 KiB in 128 pieces, 19 µs against 81 µs. So regular
  files and devices keep the synchronous path (``File.sync_io``).
- What io_uring does better is waiting: a read on an empty pipe or a write to a
  full one is handed to the kernel once, with the guest's buffers, and completes
  by itself when the fd is ready. The old way polled the fd, slept, polled again
  and only then read; the ring replaces the probe and the retry.
- Every CQE signals ``efd`` (IORING_REGISTER_EVENTFD); a task waiting for its
  request sleeps on its wait queue *and* that eventfd, and whoever wakes first
  reaps every ready CQE under the kernel lock and wakes their owners. The
  sandbox's event loop may watch ``efd`` too (it reaps the same way).
- A request's buffers are guest memory: the task sleeps with its address space
  pinned (``_wait``), and a request is never abandoned: a signal or exit cancels
  it and waits until its CQE says cancelled or done. Done wins: the data moved,
  so the call returns it (as Linux returns a partial read when a signal comes
  after some data).

Lock order: kernel lock, then the ring (it has no lock of its own: every use of
the ring happens with the kernel lock held).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Sequence
from typing import Any

from quark.kernel.abi.linux import ECANCELED, EINTR
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.file import skip_bytes, total_len
from quark.kernel.waiting import WaitQueue

log = logging.getLogger("quark.kernel")

MODES = ("auto", "off")
_CANCEL_TAG = 1 << 63    # user_data of our cancel requests: no one waits on them


class Op:
    """One request in flight; ``res`` is None until its CQE is reaped."""

    __slots__ = ("res", "ud", "wq")

    def __init__(self, ud: int) -> None:
        self.ud = ud
        self.res: int | None = None
        self.wq = WaitQueue()


class UringIO:
    def __init__(self, ring: Any) -> None:
        self.ring = ring
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            ring.register_eventfd(self.efd)
        except OSError:
            os.close(self.efd)
            raise
        self.ops: dict[int, Op] = {}
        self._next = 1

    def start(self, fd: int, bufs: Sequence[memoryview], write: bool) -> Op:
        """Submit one read or write at the fd's position. Kernel lock held."""
        ud = self._next
        self._next = (ud + 1) & (_CANCEL_TAG - 1) or 1
        op = Op(ud)
        self.ops[ud] = op
        try:
            self.ring.prep_rw(write, fd, bufs, None, ud)
            self.ring.submit()
        except OSError:
            del self.ops[ud]
            raise
        self.reap()     # a ready fd completes inside io_uring_enter
        return op

    def reap(self) -> None:
        """Collect every ready completion and wake its waiter. Kernel lock held."""
        try:
            os.eventfd_read(self.efd)
        except BlockingIOError:
            pass
        for ud, res in self.ring.reap():
            op = self.ops.pop(ud, None)
            if op is not None:
                op.res = res
                op.wq.notify()

    async def wait(self, t: Any, op: Op) -> int:
        """The result of ``op`` (bytes or -errno). A signal cancels it: then
        ERESTARTSYS, unless it completed anyway."""
        while op.res is None:
            try:
                await t.block((op.wq,), host_fds=((self.efd, select.POLLIN),))
            except LinuxError:
                self.cancel(op)
                assert op.res is not None
                if op.res in (-ECANCELED, -EINTR):
                    raise
                break
            self.reap()
        return op.res

    def cancel(self, op: Op) -> None:
        """Cancel ``op`` and wait (kernel lock held, GIL released) until its CQE is
        in: after this the kernel no longer touches its buffers."""
        self.reap()
        if op.res is not None:
            return
        self.ring.prep_cancel(op.ud, _CANCEL_TAG | op.ud)
        self.ring.submit()
        while True:
            self.reap()
            if op.res is not None:
                return
            self.ring.submit(wait=1)

    async def transfer(self, t: Any, fd: int, bufs: list[memoryview], write: bool) -> int:
        """read(2)/write(2) on a blocking stream fd: a read returns what the first
        completion brought; a write goes on until everything is written, as a
        blocking pipe or socket write does (a signal after some data ends it short)."""
        vcpu = getattr(t, "vcpu", None)
        if vcpu is not None and vcpu.thread_ident != threading.get_ident():
            # On the QCall poller: move to the task's own thread first. The
            # completion's task_work runs in the submitting thread, and the task's
            # thread is the one that will sleep waiting for it; submitted from the
            # poller, each completion cost a wake-up of the poller as well.
            await t.block((), timeout=0)
        total = total_len(bufs)
        done = 0
        while True:
            op = self.start(fd, skip_bytes(bufs, done), write)
            try:
                res = await self.wait(t, op)
            except LinuxError:
                if done:
                    return done
                raise
            if res < 0:
                if done:
                    return done
                raise LinuxError(-res)
            done += res
            if not write or res == 0 or done >= total:
                return done

    def close(self) -> None:
        self.ring.close()
        os.close(self.efd)


_UNSET: Any = object()


def for_kernel(k: Any) -> UringIO | None:
    """The kernel's ring, made on first use; None when io_uring is off or the host
    refuses it (logged once). ``QUARK_IO_URING`` (auto/off) overrides
    ``[kernel] io_uring`` of the configuration (``k.io_uring_mode``)."""
    u: UringIO | None = getattr(k, "uring", _UNSET)
    if u is not _UNSET:
        return u
    mode = os.environ.get("QUARK_IO_URING") or getattr(k, "io_uring_mode", "off")
    u = None
    if mode != "off":
        try:
            from quark.core.uring_ffi import Ring
            u = UringIO(Ring(64))
        except OSError as e:
            log.info("io_uring unavailable (%s); blocking stream I/O polls and retries",
                     os.strerror(e.errno) if e.errno else e)
    k.uring = u
    return u
