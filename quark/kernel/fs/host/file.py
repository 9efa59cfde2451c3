"""Open files backed by a host fd.

Payloads move between the host fd and the memoryviews of guest memory with
os.readv/os.preadv/os.writev/os.pwritev: no Python ``bytes`` copy of the data.
The host allows IOV_MAX (1024) vectors per call; longer lists go in chunks.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat as _st
from collections.abc import Callable, Sequence
from typing import Any

from quark.kernel.abi.linux import (
    EACCES,
    EAGAIN,
    EINVAL,
    ENOTTY,
    EPIPE,
    FIONREAD,
    IOV_MAX,
    O_APPEND,
    O_DIRECT,
    O_DSYNC,
    O_NONBLOCK,
    O_TRUNC,
    POLLERR,
    POLLHUP,
    POLLOUT,
    SIZEOF_TERMIOS,
    SIZEOF_WINSIZE,
    TCFLSH,
    TCGETS,
    TCSETS,
    TCSETSF,
    TCSETSW,
    TIOCGPGRP,
    TIOCGSID,
    TIOCGWINSZ,
    TIOCNOTTY,
    TIOCSCTTY,
    TIOCSPGRP,
    TIOCSWINSZ,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.host import host_ffi, uring_io
from quark.kernel.fs.host.fs import host_errors
from quark.kernel.mm import shared, textcache
from quark.kernel.vfs.dirfile import DirFile
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location
from quark.kernel.vfs.stat import Stat

_WRITE_THROUGH = O_DSYNC | O_DIRECT      # O_SYNC includes O_DSYNC's bit


def vec_io(call: Callable[..., int], fd: int, bufs: Sequence[memoryview],
           offset: int | None) -> int:
    """Run os.readv/writev (offset None) or os.preadv/pwritev over ``bufs`` in
    IOV_MAX chunks, stopping at the first short transfer; an error after some
    chunks moved ends the transfer short instead, as it would in Linux."""
    try:
        if len(bufs) <= IOV_MAX:        # nearly always: one host call
            return call(fd, bufs) if offset is None else call(fd, bufs, offset)
    except OSError as e:
        raise LinuxError(e.errno or EACCES) from e
    done = 0
    for i in range(0, len(bufs), IOV_MAX):
        chunk = bufs[i:i + IOV_MAX]
        want = sum(len(b) for b in chunk)
        try:
            n = call(fd, chunk) if offset is None else call(fd, chunk, offset + done)
        except OSError as e:
            if done:
                break
            raise LinuxError(e.errno or EACCES) from e
        done += n
        if n < want:
            break
    return done


class HostFile(File):
    """A regular host file (rootfs or bind mount)."""

    seekable = True
    mmap_ok = True
    partial_writes = True
    # Regular files have no readiness to wait for; a wait for the disk is
    # uninterruptible in Linux too, so it may hold the dispatcher.
    sync_io = True
    write_behind: Any = None     # the WriteBehind that last took a run of this file
    write_error = 0              # errno of a deferred write, for the next write/fsync

    def __init__(self, fd: int, flags: int, path: str, loc: Location | None,
                 ident: tuple[int, int] | None = None) -> None:
        """``ident``: the fd's (st_dev, st_ino) when the opener has its stat."""
        super().__init__(flags, path, loc)
        self.host_fd = fd
        # Write-behind and the text cache are for the rootfs only: it is this
        # container's alone, while a bind mount may have readers and writers on the
        # host (fs/host/writebehind.py, mm/textcache.py).
        self.on_rootfs = loc is not None and loc.mount.parent is None
        self.writer: tuple[int, int] | None = None
        if self.writable or flags & O_TRUNC:
            if ident is None:           # a file just made (create): its stat now
                with contextlib.suppress(OSError):
                    st = os.fstat(fd)
                    ident = (st.st_dev, st.st_ino)
            if ident is not None:
                self.writer = ident
                textcache.writer_opened(ident)

    def cache_key(self) -> Any:
        if not self.on_rootfs or self.host_fd is None:
            return None
        try:
            return textcache.file_key(os.fstat(self.host_fd))
        except OSError:
            return None

    def behind_ok(self) -> bool:
        return (self.on_rootfs and not self.flags & _WRITE_THROUGH and not shared.live
                and not self.write_error)

    def _deferred_error(self) -> None:
        err = self.write_error
        if err:
            self.write_error = 0
            raise LinuxError(err)

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return self.readv_now(bufs, offset)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        return self.writev_now(bufs, offset)

    def readv_now(self, bufs: list[memoryview], offset: int | None) -> int:
        assert self.host_fd is not None
        if shared.live:                 # pages of this file mapped shared: see mm/shared.py
            shared.before_read(self, offset, sum(len(b) for b in bufs))
        return vec_io(os.readv if offset is None else os.preadv, self.host_fd, bufs, offset)

    def writev_now(self, bufs: list[memoryview], offset: int | None) -> int:
        assert self.host_fd is not None
        if self.write_error:
            self._deferred_error()
        if shared.live:
            # Mapped stores to the pages this write covers part of must reach the
            # file first, or reloading those pages after it would lose them.
            shared.before_read(self, None if self.flags & O_APPEND else offset,
                               sum(len(b) for b in bufs))
        n = vec_io(os.writev if offset is None else os.pwritev, self.host_fd, bufs, offset)
        if shared.live and n:
            shared.after_write(self, None if self.flags & O_APPEND else offset, n)
        return n

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        assert self.host_fd is not None
        return vec_io(os.preadv, self.host_fd, bufs, offset)

    def write_at(self, bufs: list[memoryview], offset: int) -> int:
        """Write-back of MAP_SHARED pages (mm/shared.py), past the hooks of writev."""
        assert self.host_fd is not None
        return vec_io(os.pwritev, self.host_fd, bufs, offset)

    def set_status_flags(self, flags: int) -> None:
        super().set_status_flags(flags)
        # O_APPEND must reach the host fd: the host does the appending (this fd is
        # ours alone, so changing its description affects nobody else).
        assert self.host_fd is not None
        with host_errors():
            cur = host_ffi.get_status_flags(self.host_fd)
            want = (cur & ~O_APPEND) | (self.flags & O_APPEND)
            if want != cur:
                host_ffi.set_status_flags(self.host_fd, want)

    def lseek(self, off: int, whence: int) -> int:
        assert self.host_fd is not None
        with host_errors():
            return os.lseek(self.host_fd, off, whence)

    def truncate(self, size: int) -> None:
        assert self.host_fd is not None
        with host_errors():
            os.ftruncate(self.host_fd, size)

    def fsync(self, datasync: bool) -> None:
        assert self.host_fd is not None
        self._deferred_error()
        with host_errors():
            (os.fdatasync if datasync else os.fsync)(self.host_fd)

    def stat(self) -> Stat:
        assert self.host_fd is not None
        with host_errors():
            return Stat.from_host(os.fstat(self.host_fd))

    def release(self) -> None:
        wb = self.write_behind
        if wb is not None:
            wb.released(self)
        if self.writer is not None:
            textcache.writer_closed(self.writer)
            self.writer = None
        if self.host_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.host_fd)
            self.host_fd = None


class HostDirFile(DirFile):
    """A host directory open for reading entries; the fd keeps it alive for fstat."""

    def __init__(self, fd: int, flags: int, path: str, loc: Location, t: Any) -> None:
        from quark.kernel.vfs.mount import list_dir
        super().__init__(flags, path, loc, lambda: list_dir(t, loc))
        self.dir_fd = fd

    def stat(self) -> Stat:
        with host_errors():
            return Stat.from_host(os.fstat(self.dir_fd))

    def fsync(self, datasync: bool) -> None:
        with host_errors():
            os.fsync(self.dir_fd)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.dir_fd)


def _ready(fd: int, events: int) -> int:
    p = select.poll()
    p.register(fd, events)
    r = p.poll(0)
    return r[0][1] if r else 0


class HostStreamFile(File):
    """A host fd the guest reads and writes as a stream: the sandbox's stdio (a tty,
    pipe, socket or file), /dev/tty, a FIFO in the rootfs.

    Host fds of stdio are shared with other processes, so we never make them
    non-blocking (that flag lives in the shared open file description); instead we
    poll first and transfer at once when the fd is ready (the common case, and the
    cheapest: see uring_io). When it is not, io_uring takes the transfer and does it
    once the fd is ready; without io_uring we block the task, not the vCPU thread,
    until the fd is ready, and try again.
    """

    def __init__(self, fd: int, flags: int, path: str, loc: Location | None = None, *,
                 owned: bool = True) -> None:
        super().__init__(flags, path, loc)
        self.host_fd = fd if owned else os.dup(fd)
        with host_errors():
            st = os.fstat(self.host_fd)
        self._mode = st.st_mode
        self.seekable = _st.S_ISREG(st.st_mode)
        self.is_tty = os.isatty(self.host_fd)
        self.pgrp = 0  # foreground process group for TIOCGPGRP when we own the tty

    @classmethod
    def from_host_fd(cls, host_fd: int, path: str | None = None) -> HostStreamFile:
        """Wrap (a dup of) one of the sandbox's own fds, e.g. 0, 1, 2 for init's
        stdio. Access mode comes from the host fd; the text for /proc/pid/fd is a
        neutral name rather than a host path."""
        with host_errors():
            fl = host_ffi.get_status_flags(host_fd)
            st = os.fstat(host_fd)
        acc = fl & 3
        if path is None:
            if os.isatty(host_fd):
                path = "/dev/console"
            elif _st.S_ISFIFO(st.st_mode):
                path = f"pipe:[{st.st_ino}]"
            elif _st.S_ISSOCK(st.st_mode):
                path = f"socket:[{st.st_ino}]"
            else:
                path = "/dev/null" if _st.S_ISCHR(st.st_mode) else "/dev/stdin"
        return cls(host_fd, acc | (fl & O_NONBLOCK), path, owned=False)

    def _fd(self) -> int:
        if self.host_fd is None:
            raise LinuxError(EINVAL)
        return self.host_fd

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        fd = self._fd()
        if offset is not None:
            return vec_io(os.preadv, fd, bufs, offset)
        while True:
            if self.seekable or _ready(fd, select.POLLIN):
                try:
                    return vec_io(os.readv, fd, bufs, None)
                except LinuxError as e:
                    if e.errno != EAGAIN:
                        raise
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            u = uring_io.for_kernel(t.kernel)
            if u is not None:
                return await u.transfer(t, fd, bufs, write=False)
            await t.block((), host_fds=((fd, select.POLLIN),))

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        fd = self._fd()
        if offset is not None:
            return vec_io(os.pwritev, fd, bufs, offset)
        while True:
            if self.seekable or _ready(fd, select.POLLOUT) & (POLLOUT | POLLERR):
                try:
                    return vec_io(os.writev, fd, bufs, None)
                except LinuxError as e:
                    if e.errno == EPIPE:
                        from quark.kernel.task_signals import sigpipe
                        raise sigpipe(t) from None
                    if e.errno != EAGAIN:
                        raise
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            u = uring_io.for_kernel(t.kernel)
            if u is not None:
                try:
                    return await u.transfer(t, fd, bufs, write=True)
                except LinuxError as e:
                    if e.errno != EPIPE:
                        raise
                    from quark.kernel.task_signals import sigpipe
                    raise sigpipe(t) from None
            await t.block((), host_fds=((fd, select.POLLOUT),))

    def lseek(self, off: int, whence: int) -> int:
        if not self.seekable:
            return super().lseek(off, whence)
        with host_errors():
            return os.lseek(self._fd(), off, whence)

    def stat(self) -> Stat:
        with host_errors():
            return Stat.from_host(os.fstat(self._fd()))

    def poll_events(self) -> int:
        if self.host_fd is None:
            return POLLHUP
        return _ready(self.host_fd, select.POLLIN | select.POLLOUT)

    def host_poll_fd(self) -> int | None:
        return self.host_fd

    async def ioctl(self, t: Any, req: int, arg: int) -> int:
        fd = self._fd()
        if req == FIONREAD:
            with host_errors():
                n = host_ffi.tty_ioctl_int(fd, FIONREAD)
            t.mm.write_u32(arg, n)
            return 0
        if not self.is_tty:
            raise LinuxError(ENOTTY)
        with host_errors():
            if req == TCGETS:
                t.mm.write(arg, host_ffi.tty_ioctl_get(fd, TCGETS, SIZEOF_TERMIOS))
            elif req in (TCSETS, TCSETSW, TCSETSF):
                host_ffi.tty_ioctl_set(fd, req, t.mm.read(arg, SIZEOF_TERMIOS))
            elif req == TIOCGWINSZ:
                t.mm.write(arg, host_ffi.tty_ioctl_get(fd, TIOCGWINSZ, SIZEOF_WINSIZE))
            elif req == TIOCSWINSZ:
                host_ffi.tty_ioctl_set(fd, TIOCSWINSZ, t.mm.read(arg, SIZEOF_WINSIZE))
            elif req == TCFLSH:
                host_ffi.tty_ioctl_set(fd, TCFLSH, int(arg).to_bytes(4, "little"))
            # Job control happens inside the container's session, not the host's:
            # remember the foreground group instead of handing guest pids to the host.
            elif req == TIOCGPGRP:
                t.mm.write_u32(arg, self.pgrp or getattr(t, "pgid", t.pid))
            elif req == TIOCSPGRP:
                self.pgrp = t.mm.read_u32(arg)
            elif req == TIOCGSID:
                t.mm.write_u32(arg, getattr(t, "sid", 1))
            elif req in (TIOCSCTTY, TIOCNOTTY):
                pass
            else:
                raise LinuxError(ENOTTY)
        return 0

    def release(self) -> None:
        if self.host_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.host_fd)
            self.host_fd = None


# The name the brief uses for init's stdio.
HostStdioFile = HostStreamFile

