"""The fd table (struct files_struct): small integers -> shared open files.

Threads created with CLONE_FILES share one table; fork gives the child a copy whose
slots point to the same File objects (offsets shared, as in Linux).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from quark.kernel.abi.linux import EBADF, EINVAL, EMFILE, RLIMIT_NOFILE
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.file import File

# Linux's fs.nr_open default: the hard ceiling for RLIMIT_NOFILE and dup2 targets.
NR_OPEN = 1 << 20
DEFAULT_NOFILE = 1024


def nofile_limit(t: Any) -> int:
    """The caller's RLIMIT_NOFILE soft limit. ``t.rlimits`` may offer ``soft(res)``
    or ``get(res) -> (soft, hard)``; without either, the Linux default 1024."""
    rl = getattr(t, "rlimits", None)
    if rl is not None:
        soft = getattr(rl, "soft", None)
        if callable(soft):
            return int(soft(RLIMIT_NOFILE))
        get = getattr(rl, "get", None)
        if callable(get):
            v = get(RLIMIT_NOFILE)
            return int(v[0] if isinstance(v, tuple) else v)
    return DEFAULT_NOFILE


class FdTable:
    def __init__(self) -> None:
        self._files: dict[int, File] = {}
        self._cloexec: set[int] = set()
        # Tasks using this table (CLONE_FILES shares it); the last one out closes.
        self.users = 1
        # inode key -> lock context where this table (the POSIX lock owner) holds
        # fcntl locks; maintained by vfs/locks.py
        self.posix_locked: dict[Any, Any] = {}

    def get(self, fd: int) -> File:
        """The file at ``fd``; EBADF when none."""
        f = self._files.get(fd)
        if f is None:
            raise LinuxError(EBADF)
        return f

    def lowest_free(self, min_fd: int = 0) -> int:
        fd = min_fd
        while fd in self._files:
            fd += 1
        return fd

    def install(self, file: File, cloexec: bool = False, min_fd: int = 0,
                limit: int = DEFAULT_NOFILE) -> int:
        """Put ``file`` at the lowest free fd >= ``min_fd``; takes a reference.
        EMFILE when that fd would reach ``limit`` (RLIMIT_NOFILE; see
        :func:`nofile_limit`); then a file nobody else holds is released."""
        fd = self.lowest_free(min_fd)
        if fd >= min(limit, NR_OPEN):
            if file.refs == 0 and not file.released:
                file.released = True
                file.release()
            raise LinuxError(EMFILE)
        self._set(fd, file, cloexec)
        return fd

    def _set(self, fd: int, file: File, cloexec: bool) -> None:
        file.incref()
        old = self._files.get(fd)
        self._files[fd] = file
        if cloexec:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)
        if old is not None:
            self._filp_close(old)

    def install_at(self, fd: int, file: File, cloexec: bool = False) -> None:
        """Put ``file`` at exactly ``fd``, closing what was there (dup2 semantics)."""
        if fd < 0 or fd >= NR_OPEN:
            raise LinuxError(EBADF)
        self._set(fd, file, cloexec)

    def close(self, fd: int) -> None:
        f = self._files.pop(fd, None)
        if f is None:
            raise LinuxError(EBADF)
        self._cloexec.discard(fd)
        self._filp_close(f)

    def _filp_close(self, f: File) -> None:
        if self.posix_locked:
            from quark.kernel.vfs.locks import close_posix
            close_posix(f, self)
        f.decref()

    def dup2(self, old: int, new: int, limit: int = NR_OPEN) -> int:
        f = self.get(old)
        if new < 0 or new >= min(limit, NR_OPEN):
            raise LinuxError(EBADF)
        if old == new:
            return new
        self._set(new, f, False)
        return new

    def dup3(self, old: int, new: int, cloexec: bool, limit: int = NR_OPEN) -> int:
        if old == new:
            raise LinuxError(EINVAL)
        f = self.get(old)
        if new < 0 or new >= min(limit, NR_OPEN):
            raise LinuxError(EBADF)
        self._set(new, f, cloexec)
        return new

    def get_cloexec(self, fd: int) -> bool:
        self.get(fd)
        return fd in self._cloexec

    def set_cloexec(self, fd: int, on: bool) -> None:
        self.get(fd)
        if on:
            self._cloexec.add(fd)
        else:
            self._cloexec.discard(fd)

    def fork(self) -> FdTable:
        """A copy sharing every open file (fork without CLONE_FILES)."""
        new = FdTable()
        for fd, f in self._files.items():
            f.incref()
            new._files[fd] = f
        new._cloexec = set(self._cloexec)
        return new

    def close_on_exec(self) -> None:
        for fd in sorted(self._cloexec):
            if fd in self._files:
                self.close(fd)
        self._cloexec.clear()

    def close_range(self, first: int, last: int, cloexec_only: bool) -> None:
        for fd in [fd for fd in self._files if first <= fd <= last]:
            if cloexec_only:
                self._cloexec.add(fd)
            else:
                self.close(fd)

    def close_all(self) -> None:
        """Process exit."""
        for fd in sorted(self._files):
            self.close(fd)

    def __iter__(self) -> Iterator[tuple[int, File]]:
        """(fd, file) in fd order, for /proc/pid/fd."""
        return iter(sorted(self._files.items()))

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, fd: int) -> bool:
        return fd in self._files


def install_pair(t: Any, a: File, b: File, cloexec: bool, addr: int) -> None:
    """pipe2/socketpair: install both ends at the lowest free fds and store them as
    ``int[2]`` at ``addr``. On any failure nothing stays installed and both files
    are released (EMFILE, EFAULT as Linux)."""
    limit = nofile_limit(t)
    try:
        fa = t.fds.install(a, cloexec, limit=limit)
    except LinuxError:
        if b.refs == 0 and not b.released:
            b.released = True
            b.release()
        raise
    try:
        fb = t.fds.install(b, cloexec, limit=limit)
    except LinuxError:
        t.fds.close(fa)
        raise
    try:
        t.mm.write(addr, struct.pack("<ii", fa, fb))
    except LinuxError:
        t.fds.close(fa)
        t.fds.close(fb)
        raise
