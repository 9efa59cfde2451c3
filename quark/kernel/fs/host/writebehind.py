"""Write-behind for files of the container's rootfs: small sequential writes are
gathered and reach the host in one call.

Some facts this rests on (bench/README.md):
- On these hosts a 4 KiB append to ext4 costs 4.5-5.5 µs even natively; 64 KiB in
  one call costs 1.5 µs per 4 KiB, 256 KiB 1.2 µs. A served call costs ~4 µs on
  top. So `dd bs=4k` pays for the host write more than for the round trip.
- Linux's write(2) returns once the data is in the page cache; what the host gets
  here is that same promise one step later, kept by these rules:
  - Only the rootfs, which belongs to this container alone (gVisor's "exclusive"
    file access makes the same assumption for its cache), and only files opened
    without O_SYNC, O_DSYNC or O_DIRECT, while no file is mapped shared.
  - At most one run of writes is pending: the same open file, each write at the
    position the last one ended (the fd's own position; nothing else moves it
    without a flush), at most ``LIMIT`` bytes.
  - Everything that could observe the file flushes first: every system call except
    a write that extends the run and a read of a memory device (/dev/zero ...), every
    exception (a fault may read a mapped file), the file's release, and the poller
    going idle, so a host reader sees the data within the poller's window.
  - ENOSPC stays a write(2) error: a write is taken only while the filesystem's free
    space, read at the start of each run, covers the run with ``RESERVE`` to spare;
    near a full disk every write goes straight to the host, as before.
  - An error from a deferred write (EIO, or ENOSPC when someone else filled the disk
    meanwhile) is kept on the file and returned by its next write, fsync or
    fdatasync, as Linux reports writeback errors at fsync.
- What is lost if the sandbox process itself is SIGKILLed on the host: at most
  ``LIMIT`` bytes of data whose write(2) returned. A guest task killed by a signal
  still releases its files, which flushes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("quark.kernel")

LIMIT = 256 << 10
RESERVE = 4 << 20        # free space kept beyond a run (metadata, other writers)


class WriteBehind:
    """The pending run of one sandbox; every method runs under the kernel lock."""

    __slots__ = ("buf", "enabled", "file")

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.file: Any = None        # the HostFile whose run is pending, or None
        self.buf = bytearray()

    def add(self, f: Any, bufs: list[memoryview]) -> int | None:
        """Take ``bufs`` (a write(2) at ``f``'s position) into the run and return
        its length, or None when it must go to the host now; any run it cannot
        extend is flushed first either way."""
        n = 0
        for b in bufs:
            n += len(b)
        if self.file is not f or len(self.buf) + n > LIMIT:
            if self.file is not None:
                self.flush()
            if n >= LIMIT or n == 0:
                return None          # nothing to gather (and a 0 write checks the fd)
            try:
                st = os.fstatvfs(f.host_fd)
            except OSError:
                return None
            if st.f_bavail * st.f_frsize < LIMIT + RESERVE:
                return None          # near a full disk: ENOSPC must come from write(2)
            self.file = f
            f.write_behind = self
        buf = self.buf
        for b in bufs:
            buf += b
        return n

    def flush(self) -> None:
        """Write the pending run to the host; an error is kept for the file."""
        f, data = self.file, self.buf
        if f is None:
            return
        self.file = None
        self.buf = bytearray()
        fd = f.host_fd
        if fd is None or not data:
            return
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(5, "short write")
                done += n
        except OSError as e:
            f.write_error = e.errno or 5
            log.warning("deferred write of %d bytes to %s failed after %d: %s",
                        len(data), f.path, done, os.strerror(f.write_error))
        finally:
            view.release()
