"""eventfd (fs/eventfd.c).

Facts followed:
- The counter is a u64. read needs an 8-byte buffer (EINVAL otherwise) and returns
  the counter and zeroes it, or with EFD_SEMAPHORE returns 1 and decrements it; a zero
  counter blocks (EAGAIN when non-blocking).
- write takes exactly 8 bytes (EINVAL otherwise); 0xffffffffffffffff is EINVAL; a write that would take the
  counter to 0xffffffffffffffff or beyond blocks until a read makes room.
- Readable when the counter is above 0, writable while it is below 0xfffffffffffffffe.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import (
    EAGAIN,
    EINVAL,
    O_NONBLOCK,
    O_RDWR,
    POLLERR,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.anon import AnonFile, first_bytes
from quark.kernel.vfs.file import copy_out, total_len

ULLONG_MAX = (1 << 64) - 1
EFD_SEMAPHORE = 1


class EventFd(AnonFile):
    def __init__(self, initval: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK), "[eventfd]")
        self.count = initval
        self.semaphore = bool(flags & EFD_SEMAPHORE)

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if total_len(bufs) < 8:
            raise LinuxError(EINVAL)
        while self.count == 0:
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await t.block((self.wait_queue,))
        v = 1 if self.semaphore else self.count
        self.count -= v
        self.wait_queue.notify(POLLOUT | POLLWRNORM)
        return copy_out(struct.pack("<Q", v), bufs)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if total_len(bufs) != 8:
            raise LinuxError(EINVAL)
        v = int.from_bytes(first_bytes(bufs, 8), "little")
        if v == ULLONG_MAX:
            raise LinuxError(EINVAL)
        while ULLONG_MAX - self.count <= v:
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await t.block((self.wait_queue,))
        self.count += v
        self.wait_queue.notify(POLLIN | POLLRDNORM)
        return 8

    def poll_events(self) -> int:
        ev = 0
        if self.count > 0:
            ev |= POLLIN | POLLRDNORM
        if self.count == ULLONG_MAX:
            ev |= POLLERR
        if ULLONG_MAX - 1 > self.count:
            ev |= POLLOUT | POLLWRNORM
        return ev
