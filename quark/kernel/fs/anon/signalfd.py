"""signalfd (fs/signalfd.c).

Facts followed:
- Reading dequeues pending signals that are in the fd's mask, from the *reader's*
  thread queue first, then its process queue, whether or not they are blocked (they
  normally are, or they would be delivered first). Synchronous fault signals go
  first, then the lowest number.
- A read needs room for one 128-byte ``struct signalfd_siginfo`` (EINVAL); it blocks
  for the first signal only, then takes what else fits without waiting.
- Readiness is the polling task's: POLLIN while a signal in the mask is pending for
  it. Queuing a signal wakes the process's signalfd waiters (``signalfd_notify``,
  a hook in task_signals).
- SIGKILL and SIGSTOP are silently dropped from the mask.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import (
    EAGAIN,
    EINVAL,
    O_NONBLOCK,
    O_RDWR,
    POLLIN,
    POLLRDNORM,
    SIGBUS,
    SIGCHLD,
    SIGFPE,
    SIGILL,
    SIGSEGV,
    SIGSYS,
    SIGTRAP,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.anon import AnonFile
from quark.kernel.signals import UNCATCHABLE, SigInfo, bit
from quark.kernel.vfs.file import copy_out, total_len
from quark.kernel.waiting import WaitQueue

SIGINFO_SIZE = 128
_SYNC = bit(SIGSEGV) | bit(SIGBUS) | bit(SIGILL) | bit(SIGTRAP) | bit(SIGFPE) | bit(SIGSYS)
_FAULTS = (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP)
SI_USER, SI_KERNEL = 0, 0x80


def signalfd_queue(tg: Any) -> WaitQueue:
    """The process's signalfd wait queue (created on first use)."""
    sh = tg.sighand
    wq: WaitQueue | None = getattr(sh, "signalfd_wq", None)
    if wq is None:
        wq = WaitQueue()
        sh.signalfd_wq = wq
    return wq


def pack_signalfd_siginfo(info: SigInfo) -> bytes:
    """struct signalfd_siginfo, filled the way signalfd_copyinfo does per layout."""
    b = bytearray(SIGINFO_SIZE)
    sig, code = info.signo, info.code
    struct.pack_into("<Iii", b, 0, sig, info.errno, code)
    if SI_USER < code < SI_KERNEL and sig in _FAULTS:
        struct.pack_into("<Q", b, 72, info.addr)                       # ssi_addr
    elif SI_USER < code < SI_KERNEL and sig == SIGCHLD:
        struct.pack_into("<II", b, 12, info.pid & 0xFFFFFFFF, info.uid)
        struct.pack_into("<i", b, 40, info.status)                     # ssi_status
        struct.pack_into("<QQ", b, 56, info.utime, info.stime)
    elif code < 0:                                                     # SIL_RT
        struct.pack_into("<II", b, 12, info.pid & 0xFFFFFFFF, info.uid)
        v = info.value & 0xFFFFFFFFFFFFFFFF
        struct.pack_into("<i", b, 44, (v & 0xFFFFFFFF) - ((v & 0x80000000) << 1))
        struct.pack_into("<Q", b, 48, v)                               # ssi_ptr
    else:                                                              # SIL_KILL
        struct.pack_into("<II", b, 12, info.pid & 0xFFFFFFFF, info.uid)
    return bytes(b)


class SignalFd(AnonFile):
    def __init__(self, mask: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK), "[signalfd]")
        self.mask = mask & ~UNCATCHABLE

    def set_mask(self, mask: int) -> None:
        self.mask = mask & ~UNCATCHABLE

    def _dequeue(self, t: Any) -> SigInfo | None:
        for q in (t.pending, t.tg.shared_pending):
            ready = q.mask & self.mask
            if ready:
                pick = (ready & _SYNC) or ready
                return q.take((pick & -pick).bit_length())  # type: ignore[no-any-return]
        return None

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        room = total_len(bufs) // SIGINFO_SIZE
        if room == 0:
            raise LinuxError(EINVAL)
        info = self._dequeue(t)
        while info is None:
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await t.block((signalfd_queue(t.tg),))
            info = self._dequeue(t)
        out = bytearray(pack_signalfd_siginfo(info))
        while len(out) // SIGINFO_SIZE < room:
            info = self._dequeue(t)
            if info is None:
                break
            out += pack_signalfd_siginfo(info)
        return copy_out(out, bufs)

    def poll_events_for(self, t: Any) -> int:
        if (t.pending.mask | t.tg.shared_pending.mask) & self.mask:
            return POLLIN | POLLRDNORM
        return 0

    def poll_events(self) -> int:
        return 0        # readiness needs a task: see poll_events_for

    def wait_queue_for(self, t: Any) -> WaitQueue:
        return signalfd_queue(t.tg)
