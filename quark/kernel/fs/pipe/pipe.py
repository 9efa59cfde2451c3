"""Anonymous pipes and FIFOs (fs/pipe.c semantics).

Facts followed:
- Capacity 64 KiB by default (F_SETPIPE_SZ: a power of two number of pages, at
  most 1 MiB unless root).
- A write of at most PIPE_BUF (4096) bytes is atomic: it waits until all of it
  fits. Larger writes may be split and interleaved.
- Reading an empty pipe: EOF (0) when no writer is left, EAGAIN when O_NONBLOCK,
  else sleep. A read returns whatever is there (at least one byte).
- Writing with no reader left: EPIPE and SIGPIPE. A blocking
  write returns only when everything is written, or with the bytes written so far
  when a signal interrupts it (ERESTARTSYS if nothing was written).
- Non-blocking writes write what fits; EAGAIN when nothing (or, for an atomic
  write, not all) fits.

FIFOs (fifo_open):
- Every opener of one FIFO inode shares one pipe; it is discarded, unread data and
  all, when the last opener closes.
- open O_RDONLY waits until a writer opens (O_NONBLOCK: at once); O_WRONLY waits
  until a reader opens (O_NONBLOCK: ENXIO when none); O_RDWR never waits. A wait
  ends when the other end's open count moves, even if that opener has already left.
  A signal ends it with ERESTARTSYS, so SA_RESTART restarts the open.
- A reader that opened O_NONBLOCK before any writer gets no POLLHUP until a writer
  has come (f_pipe), although read returns 0 meanwhile.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from quark.kernel.abi.linux import (
    EAGAIN,
    EBUSY,
    EINVAL,
    ENXIO,
    EPERM,
    FIONREAD,
    O_ACCMODE,
    O_NONBLOCK,
    O_RDONLY,
    O_WRONLY,
    PAGE_SIZE,
    PIPE_BUF,
    PIPE_DEF_CAPACITY,
    PIPEFS_MAGIC,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    S_IFIFO,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs import perm
from quark.kernel.vfs.file import File
from quark.kernel.vfs.stat import Stat, StatFs, now_ns
from quark.kernel.waiting import WaitQueue

if TYPE_CHECKING:
    from quark.kernel.vfs.path import Location

PIPE_MAX_SIZE = 1 << 20
_pipe_ino = itertools.count(10000)


class Pipe:
    """The shared buffer; one WaitQueue wakes both readers and writers."""

    def __init__(self, uid: int = 0, gid: int = 0) -> None:
        self.buf = bytearray()
        self.capacity = PIPE_DEF_CAPACITY
        self.readers = 0
        self.writers = 0
        self.r_counter = 0          # opens ever, per end: what a FIFO open waits on
        self.w_counter = 0
        self.wq = WaitQueue()
        self.ino = next(_pipe_ino)
        self.uid, self.gid = uid, gid
        self.ctime = now_ns()
        self.atime = self.mtime = self.ctime

    def notify(self, events: int = 0) -> None:
        self.wq.notify(events)    # keyed: epoll's edge-triggered entries filter on it

    def stat(self) -> Stat:
        return Stat(mode=S_IFIFO | 0o600, ino=self.ino, dev=(0, 13), nlink=1,
                    uid=self.uid, gid=self.gid, size=0, blksize=PAGE_SIZE,
                    atime_ns=self.atime, mtime_ns=self.mtime, ctime_ns=self.ctime)

    def set_size(self, t: Any, n: int) -> int:
        if n <= 0 or n > (1 << 31):
            raise LinuxError(EINVAL)
        size = max(PAGE_SIZE, 1 << (n - 1).bit_length())
        if size > PIPE_MAX_SIZE and not perm.is_root(t):
            raise LinuxError(EPERM)
        if size < len(self.buf):
            raise LinuxError(EBUSY)
        self.capacity = size
        self.notify()
        return size


class PipeFile(File):
    """One end (or both, for a FIFO opened O_RDWR) of a pipe."""

    def __init__(self, pipe: Pipe, flags: int, path: str | None = None) -> None:
        super().__init__(flags, path or f"pipe:[{pipe.ino}]")
        self.pipe = pipe
        self.wait_queue = pipe.wq
        self.hup_after = 0          # f_pipe: no POLLHUP while w_counter is still this
        if self.readable:
            pipe.readers += 1
            pipe.r_counter += 1
        if self.writable:
            pipe.writers += 1
            pipe.w_counter += 1

    def release(self) -> None:
        if self.readable:
            self.pipe.readers -= 1
        if self.writable:
            self.pipe.writers -= 1
        self.pipe.notify()

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        p = self.pipe
        want = sum(len(b) for b in bufs)
        if want == 0:
            return 0
        while not p.buf:
            if p.writers == 0:
                return 0
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            await t.block((p.wq,))
        n = 0
        src = memoryview(p.buf)
        for b in bufs:
            k = min(len(b), len(src) - n)
            if k <= 0:
                break
            b[:k] = src[n:n + k]
            n += k
        src.release()
        del p.buf[:n]
        p.atime = now_ns()
        p.notify(POLLOUT | POLLWRNORM)
        return n

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        p = self.pipe
        total = sum(len(b) for b in bufs)
        if total == 0:
            return 0
        data = memoryview(b"".join(bufs)) if len(bufs) > 1 else bufs[0]
        if total > p.capacity - len(p.buf) and not self.nonblocking:
            # We will sleep, and guest buffers are only valid until we do.
            data = memoryview(bytes(data))
        done = 0
        atomic = total <= PIPE_BUF
        while True:
            if p.readers == 0:
                if done:
                    return done
                from quark.kernel.task_signals import sigpipe
                raise sigpipe(t)
            room = p.capacity - len(p.buf)
            if room >= (total - done if atomic else 1):
                k = min(room, total - done)
                p.buf += data[done:done + k]
                done += k
                p.mtime = now_ns()
                p.notify(POLLIN | POLLRDNORM)
                if done == total:
                    return done
            if self.nonblocking:
                if done:
                    return done
                raise LinuxError(EAGAIN)
            try:
                await t.block((p.wq,))
            except LinuxError:
                if done:
                    return done  # interrupted after a partial write
                raise

    def poll_events(self) -> int:
        p = self.pipe
        ev = 0
        if self.readable:
            if p.buf:
                ev |= POLLIN | POLLRDNORM
            if p.writers == 0 and self.hup_after != p.w_counter:
                ev |= POLLHUP
        if self.writable:
            if p.capacity - len(p.buf) >= PIPE_BUF:
                ev |= POLLOUT | POLLWRNORM
            if p.readers == 0:
                ev |= POLLERR
        return ev

    def stat(self) -> Stat:
        return self.pipe.stat()

    def statfs(self) -> StatFs:
        return StatFs(type=PIPEFS_MAGIC)

    def fsync(self, datasync: bool) -> None:
        raise LinuxError(EINVAL)

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        if req == FIONREAD:
            t.mm.write_u32(arg, len(self.pipe.buf))
            return 0
        return await super().ioctl(t, req, arg)

    # fcntl(F_GETPIPE_SZ / F_SETPIPE_SZ)
    def pipe_size(self) -> int:
        return self.pipe.capacity

    def set_pipe_size(self, t: Any, n: int) -> int:
        return self.pipe.set_size(t, n)


# The pipe of each FIFO inode that has openers: keyed by the inode (a tmpfs node;
# (dev, ino) of a FIFO in a host directory, which the sandbox never opens itself).
_fifos: dict[Hashable, Pipe] = {}


class FifoFile(PipeFile):
    """An opened FIFO: a pipe end whose metadata is the inode's."""

    def __init__(self, key: Hashable, pipe: Pipe, flags: int, loc: Location) -> None:
        super().__init__(pipe, flags, loc.path)
        self.loc = loc
        self.key = key
        self.partner = ("", 0)      # the counter open waits to see move, and its value

    async def wait_open(self, t: Any) -> None:
        which, seen = self.partner
        self.open_waits = False
        p = self.pipe
        try:
            while getattr(p, which) == seen:
                await t.block((p.wq,))
        except BaseException:   # a signal, or the task dies: this open never happened
            self.released = True
            self.release()
            raise

    def release(self) -> None:
        super().release()
        p = self.pipe
        if p.readers == 0 and p.writers == 0 and _fifos.get(self.key) is p:
            del _fifos[self.key]

    def stat(self) -> Stat:
        return File.stat(self)

    def statfs(self) -> StatFs:
        return File.statfs(self)


def open_fifo(t: Any, key: Hashable, flags: int, loc: Location) -> FifoFile:
    """fifo_open up to its wait, which the caller of open awaits (``wait_open``)."""
    acc = flags & O_ACCMODE
    if acc == O_ACCMODE:
        raise LinuxError(EINVAL)
    p = _fifos.get(key)
    nonblock = flags & O_NONBLOCK
    if acc == O_WRONLY and nonblock and (p is None or p.readers == 0):
        raise LinuxError(ENXIO)
    if p is None:
        p = _fifos[key] = Pipe(perm.fsuid(t), perm.fsgid(t))
    f = FifoFile(key, p, flags, loc)
    p.notify()                  # wake_up_partner
    if acc == O_RDONLY and p.writers == 0:
        if nonblock:
            f.hup_after = p.w_counter
        else:
            f.partner, f.open_waits = ("w_counter", p.w_counter), True
    elif acc == O_WRONLY and p.readers == 0:
        f.partner, f.open_waits = ("r_counter", p.r_counter), True
    return f


def make_pipe(t: Any, flags: int) -> tuple[PipeFile, PipeFile]:
    """pipe2's two ends with the status flags in ``flags`` (O_NONBLOCK, O_DIRECT)."""
    p = Pipe(perm.fsuid(t), perm.fsgid(t))
    extra = flags & O_NONBLOCK
    return PipeFile(p, O_RDONLY | extra), PipeFile(p, O_WRONLY | extra)
