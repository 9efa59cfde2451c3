"""The open file description: what an fd points to, shared by dup and fork.

Some facts this follows:
- One ``File`` is one Linux ``struct file``: its offset and status flags are shared
  by every fd that dup/fork made from it. ``refs`` counts those holders (fd table
  slots, mappings); :meth:`release` runs once, when the last one lets go.
- A new File starts with no references; installing it in an fd table takes the
  first one. A File that never got installed is released by whoever made it.
- Default methods fail the way Linux does for a file without that operation
  (read/write without f_op -> EINVAL, ioctl -> ENOTTY, lseek on a pipe -> ESPIPE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quark.kernel.abi.linux import (
    EBADF,
    EINVAL,
    ENODEV,
    ENOTDIR,
    ENOTTY,
    ESPIPE,
    O_ACCMODE,
    O_APPEND,
    O_ASYNC,
    O_DIRECT,
    O_NOATIME,
    O_NONBLOCK,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.stat import Stat, StatFs
from quark.kernel.waiting import WaitQueue

if TYPE_CHECKING:
    from quark.kernel.vfs.path import Location

# Flags fcntl(F_SETFL) may change (Linux SETFL_MASK minus what we ignore).
SETFL_MASK = O_APPEND | O_NONBLOCK | O_NOATIME | O_ASYNC | O_DIRECT
# What open(2) keeps in f_flags: not O_CREAT/O_EXCL/O_NOCTTY/O_TRUNC/O_CLOEXEC.
KEPT_OPEN_FLAGS = ~(0o100 | 0o200 | 0o400 | 0o1000 | 0o2000000)


class File:
    """Base open file. Subclasses override the operations they support."""

    host_fd: int | None = None
    seekable = False
    # True when open(2) must still sleep once the filesystem made the file (a FIFO
    # waiting for its other end): the caller awaits wait_open before installing it.
    open_waits = False
    # True when reads and writes never sleep (regular host files, memory devices):
    # readv_now/writev_now then do the transfer as plain calls, and the dispatcher's
    # fast path (syscalls.table.fast) needs no coroutine for them.
    sync_io = False
    # True when mmap(2) may map it (Linux: the file has an f_op->mmap): regular
    # files and /dev/zero. Pipes, sockets, /proc files and most devices: ENODEV.
    mmap_ok = False
    # False when reading it cannot observe a file's contents (memory devices): a
    # pending write-behind run (fs/host/writebehind.py) may then wait.
    read_observes = True
    # What the gate may answer by itself on an fd of it once a call succeeded
    # (kernel/gateio.py): (read kind, write kind) of layout.K_*, or None.
    gate_kinds: tuple[int, int] | None = None
    # write(2) never reads the buffer (/dev/null, /dev/zero): only its range is checked.
    discards_writes = False
    # A write from a buffer that turns bad part way is short, not EFAULT (regular
    # files; a pipe commits nothing).
    partial_writes = False
    # Advisory locks (vfs/locks.py): the inode's lock context once this File held a
    # flock or OFD lock, and its cached inode key.
    lock_ctx: Any = None
    lock_key: Any = None

    def __init__(self, flags: int, path: str, loc: Location | None = None) -> None:
        self.flags = flags & KEPT_OPEN_FLAGS
        self.path = path
        self.loc = loc      # where it was opened: for fchdir, *at(dirfd), /proc fd links
        self.refs = 0
        self.pos = 0
        self.wait_queue = WaitQueue()   # notified on any readiness change
        self.released = False

    def cache_key(self) -> Any:
        """The key of its contents for the text cache (mm/textcache.py), or None:
        not cacheable."""
        return None

    def behind_ok(self) -> bool:
        """True when a write(2) to it may be deferred (fs/host/writebehind.py)."""
        return False

    # ---- reference counting (dup/fork share; last close releases)
    def incref(self) -> None:
        self.refs += 1

    def decref(self) -> None:
        self.refs -= 1
        if self.refs <= 0 and not self.released:
            self.released = True
            if self.lock_ctx is not None:
                from quark.kernel.vfs.locks import release_file
                release_file(self)
            self.release()

    def release(self) -> None:
        """Drop host resources; called exactly once, after the last reference."""

    async def wait_open(self, t: Any) -> None:
        """The sleeping part of open(2), when ``open_waits``; a file whose wait fails
        (ERESTARTSYS) has released itself."""

    # ---- modes
    @property
    def readable(self) -> bool:
        acc = self.flags & O_ACCMODE
        return not self.flags & O_PATH and acc in (O_RDONLY, O_RDWR)

    @property
    def writable(self) -> bool:
        acc = self.flags & O_ACCMODE
        return not self.flags & O_PATH and acc in (O_WRONLY, O_RDWR)

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & O_NONBLOCK)

    def set_status_flags(self, flags: int) -> None:
        """fcntl(F_SETFL): only the SETFL_MASK bits change."""
        self.flags = (self.flags & ~SETFL_MASK) | (flags & SETFL_MASK)

    # ---- data
    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        """Fill ``bufs`` from ``offset`` (None: the file position, advanced)."""
        raise LinuxError(EINVAL)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        raise LinuxError(EINVAL)

    def readv_now(self, bufs: list[memoryview], offset: int | None) -> int:
        """:meth:`readv` of a ``sync_io`` file, as a plain call."""
        raise LinuxError(EINVAL)

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        """:meth:`writev` of a ``sync_io`` file, as a plain call."""
        raise LinuxError(EINVAL)

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        """Synchronous positional read for mmap and the ELF loader (regular files)."""
        raise LinuxError(ENODEV)

    def lseek(self, off: int, whence: int) -> int:
        raise LinuxError(ESPIPE)

    def getdents64(self, count: int) -> bytes:
        raise LinuxError(ENOTDIR)

    def truncate(self, size: int) -> None:
        raise LinuxError(EINVAL)

    def fsync(self, datasync: bool) -> None:
        return None

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        raise LinuxError(ENOTTY)

    # ---- metadata
    def stat(self) -> Stat:
        if self.loc is None:
            raise LinuxError(EBADF)
        return self.loc.node.stat()

    def statfs(self) -> StatFs:
        if self.loc is None:
            raise LinuxError(EINVAL)
        return self.loc.node.fs.statfs()

    # ---- readiness (poll/epoll/select)
    def poll_events(self) -> int:
        """The current POLL* mask; regular files are always ready."""
        return POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM

    def host_poll_fd(self) -> int | None:
        """A host fd whose readiness is this file's (stdio, host FIFOs), else None."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r} flags={self.flags:#o} refs={self.refs}>"


class PathFile(File):
    """An O_PATH descriptor: a location only; fstat, fchdir and *at(dirfd) work."""

    def __init__(self, flags: int, path: str, loc: Location) -> None:
        super().__init__(flags, path, loc)

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        raise LinuxError(EBADF)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        raise LinuxError(EBADF)

    def getdents64(self, count: int) -> bytes:
        raise LinuxError(EBADF)

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        raise LinuxError(EBADF)

    def lseek(self, off: int, whence: int) -> int:
        raise LinuxError(EBADF)


def seek_position(cur: int, size: int, off: int, whence: int) -> int:
    """The new offset of a plain seekable file (SEEK_DATA/HOLE: no holes known)."""
    from quark.kernel.abi.linux import ENXIO, SEEK_CUR, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET
    if whence == SEEK_SET:
        new = off
    elif whence == SEEK_CUR:
        new = cur + off
    elif whence == SEEK_END:
        new = size + off
    elif whence == SEEK_DATA:
        if off < 0 or off >= size:
            raise LinuxError(ENXIO)
        new = off
    elif whence == SEEK_HOLE:
        if off < 0 or off >= size:
            raise LinuxError(ENXIO)
        new = size
    else:
        raise LinuxError(EINVAL)
    if new < 0 or new > (1 << 63) - 1:
        raise LinuxError(EINVAL)
    return new


def copy_out(data: bytes | bytearray | memoryview, bufs: list[memoryview]) -> int:
    """Copy ``data`` into ``bufs`` in order; returns bytes copied (slice copies only)."""
    src = memoryview(data)
    done = 0
    for b in bufs:
        if done >= len(src):
            break
        n = min(len(b), len(src) - done)
        b[:n] = src[done:done + n]
        done += n
    return done


def skip_bytes(bufs: list[memoryview], skip: int) -> list[memoryview]:
    """``bufs`` from byte ``skip`` on (``bufs`` itself when ``skip`` is 0): what is
    left of a vector after a partial transfer."""
    if not skip:
        return bufs
    out = []
    for b in bufs:
        if skip >= len(b):
            skip -= len(b)
            continue
        out.append(b[skip:])
        skip = 0
    return out


def total_len(bufs: list[memoryview]) -> int:
    return sum(len(b) for b in bufs)
