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

The write ring (kernel/gateio.py): after ``RING_AFTER`` writes in one run by one
task, the run moves into guest memory. The task gets a ``RING`` bytes mapping of its
own ("[quark-ring]"), and its gate copies further writes to that fd into it with no
host call at all. The ring is circular: only the gate moves its head, only the host
its tail, so the host drains it while the task runs on. It does, through the task's
page tables, wherever it would flush a run: before any other call of any task (read
and write included, unless they extend the run), at faults, at the file's release
and at the task's exit; and the poller drains it whenever it holds ``DRAIN_AT``
bytes or the poller goes idle (the gate rings the doorbell after its next write
when the poller asked for it). A ring write that has not reached its commit store
when a drain reads the head is a call still in progress, which a concurrent reader
may or may not see, as on Linux. A write that finds the ring full goes to the host,
which drains and takes it. The ring is the process's own memory: a program that
stores into it between two writes changes what reaches its file (natively there is
no such mapping); unmapping it or mapping over it loses nothing (gatecalls.c).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from quark.core.guest.layout import GATE_FDS
from quark.kernel import gateio
from quark.kernel.abi.linux import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from quark.kernel.errors import LinuxError

log = logging.getLogger("quark.kernel")

LIMIT = 256 << 10
RESERVE = 4 << 20        # free space kept beyond a run (metadata, other writers)
RING = LIMIT             # the write ring: one run's worth (a power of two)
DRAIN_AT = RING // 4     # the poller drains a ring holding this much
RING_NAME = "[quark-ring]"   # what /proc/PID/maps shows for it
RING_AFTER = 4           # writes in a run before it moves to a ring (one-off writes never pay for one)


class Ring:
    """A task's write ring for one fd (the gate's K_WRITE_RING)."""

    __slots__ = ("base", "fd", "file", "task", "tail")

    def __init__(self, task: Any, fd: int, file: Any, base: int) -> None:
        self.task, self.fd, self.file, self.base = task, fd, file, base
        self.tail = 0           # bytes drained, mod 2^32 (the gate's head counts written)

    @property
    def vcpu(self) -> Any:
        """The task's vCPU, whose mailbox holds the head (a task keeps its vCPU
        until it exits, and its ring goes before that: task_exit)."""
        return self.task.vcpu


class WriteBehind:
    """The pending run of one sandbox; every method runs under the kernel lock."""

    __slots__ = ("buf", "count", "enabled", "file", "owner", "ring")

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.file: Any = None        # the HostFile whose run (or ring) is pending, or None
        self.buf = bytearray()
        self.count = 0               # writes in the run
        self.owner: Any = None       # the task that made them all, or None
        self.ring: Ring | None = None   # while set, buf is empty and file is ring.file

    def add(self, t: Any, fd: int, f: Any, bufs: list[memoryview]) -> int | None:
        """Take ``bufs`` (a write(2) by ``t`` on ``fd``, at ``f``'s position) into
        the run and return its length, or None when it must go to the host now;
        whatever pending it cannot extend is flushed first either way."""
        n = 0
        for b in bufs:
            n += len(b)
        ring = self.ring
        if ring is not None:
            if ring.task is t and ring.file is f and ring.fd == fd:
                return self._ring_write(ring, bufs, n)
            self.flush(t, drop=True)        # ``t``'s own ring goes; another's stays
            if self.ring is not None:
                return None                 # a ring is another task's: write through
        if self.file is not f or len(self.buf) + n > LIMIT:
            if self.file is not None:
                self.flush()
            if n >= LIMIT or n == 0:
                return None          # nothing to gather (and a 0 write checks the fd)
            if not self._room(f):
                return None          # near a full disk: ENOSPC must come from write(2)
            self.file = f
            self.count = 0
            self.owner = t
            f.write_behind = self
        buf = self.buf
        for b in bufs:
            buf += b
        self.count += 1
        if self.owner is not t:
            self.owner = None
        elif self.count >= RING_AFTER:
            self._start_ring(t, fd, f)
        return n

    @staticmethod
    def _room(f: Any) -> bool:
        try:
            st = os.fstatvfs(f.host_fd)
        except OSError:
            return False
        return bool(st.f_bavail * st.f_frsize >= LIMIT + RESERVE)

    def _start_ring(self, t: Any, fd: int, f: Any) -> None:
        """Move the run of ``t`` on ``fd`` into a ring its gate fills."""
        if fd >= GATE_FDS or not gateio.eligible(t, ring=True):
            return
        mm = t.mm
        base = mm.write_ring
        vma = mm.vmas.find(base) if base else None
        if vma is None or (vma.start, vma.end, vma.name, vma.prot) != (base, base + RING, RING_NAME,
                                                                      PROT_READ | PROT_WRITE):
            # None yet, or the task unmapped it or mapped over it since: a new one.
            try:
                # Small enough to be populated at once: the gate's copies never fault.
                base = mm.mmap(0, RING, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                               name=RING_NAME)
            except Exception:   # noqa: BLE001 - no room: the run stays a host-side run
                return
            mm.write_ring = base
        self._write_buf()
        self.ring = Ring(t, fd, f, base)
        t.vcpu.ring_arm(fd, base, RING)

    def _ring_write(self, ring: Ring, bufs: list[memoryview], n: int) -> int | None:
        """A write the gate left to the host (the ring was full, or the call was
        bounced): its task is stopped here, so the ring is emptied and refilled."""
        self._drain(ring)
        f = ring.file
        if n == 0 or n > RING or f.write_error or not self._room(f):
            self._drop_ring()
            return None
        data = bufs[0] if len(bufs) == 1 else b"".join(bufs)
        try:
            pos = 0
            for v in ring.task.mm.iovecs(ring.base, n, True):
                v[:] = data[pos:pos + len(v)]
                pos += len(v)
        except LinuxError:
            self._drop_ring()       # not writable: the ring is not as it was made
            return None
        ring.tail = 0           # empty, and its task stopped here: start it over
        ring.vcpu.ring_arm(ring.fd, ring.base, RING, head=n)
        return n

    @staticmethod
    def _used(ring: Ring, head: int) -> int:
        """Bytes between the host's tail and the gate's ``head``; 0 when that is
        more than the ring holds (guest nonsense, undone at its next write)."""
        used = (head - ring.tail) & 0xFFFFFFFF
        return used if used <= RING else 0

    def backlog(self) -> int:
        """Bytes the ring holds that no drain has taken."""
        ring = self.ring
        # Read without the kernel lock (the poller): the task may be between
        # dropping its ring and letting go of its vCPU.
        v = ring.vcpu if ring is not None else None
        return 0 if v is None else self._used(ring, v.ring_head())

    def _drain(self, ring: Ring) -> None:
        """Write what the gate committed since the last drain."""
        head = ring.vcpu.ring_head()
        used = self._used(ring, head)
        if not used:
            return
        f, pos = ring.file, ring.tail & (RING - 1)
        ring.tail = head
        if f.host_fd is None:
            ring.vcpu.ring_set_tail(head)
            return
        first = min(used, RING - pos)
        try:
            mm = ring.task.mm
            views = mm.iovecs(ring.base + pos, first, False)
            if used > first:
                views += mm.iovecs(ring.base, used - first, False)
        except LinuxError:
            f.write_error = 5
            log.warning("the write ring of task %d is gone: %d bytes to %s lost",
                        ring.task.tid, used, f.path)
            ring.vcpu.ring_set_tail(head)
            return
        _write_out(f, views, used)
        # Only now may the gate reuse the space: the host read it until here.
        ring.vcpu.ring_set_tail(head)
        if f.write_error or not self._room(f):
            # Near a full disk ENOSPC must come from write(2), and an error from
            # the next write: the gate stops taking writes (at most the one in
            # flight still lands in the ring); its next goes to the host.
            ring.vcpu.ring_stop(ring.fd)

    def _drop_ring(self) -> None:
        ring, self.ring = self.ring, None
        if ring is not None:
            self._drain(ring)
            ring.vcpu.gate_clear()
        self.file = None
        self.owner = None

    def flush(self, stopped: Any = None, drop: bool = False) -> None:
        """Write the pending run and what the ring holds to the host; an error is
        kept for the file. ``stopped``: the task stopped in the host at a call,
        whose ring (if it has it) is emptied, or with ``drop`` taken back."""
        ring = self.ring
        if ring is not None:
            if ring.task is stopped and (drop or ring.task.dead):
                self._drop_ring()
                return
            self._drain(ring)
            return
        self._write_buf()
        self.file = None
        self.owner = None

    def released(self, f: Any) -> None:
        """``f`` is being released: nothing of it may stay pending."""
        if self.file is f:
            if self.ring is not None:
                self._drop_ring()
            else:
                self.flush()

    def drop(self, t: Any) -> None:
        """``t`` exits or is gone: its ring's data goes to the file and the ring away."""
        if self.ring is not None and self.ring.task is t:
            self._drop_ring()

    def pending(self) -> bool:
        """The ring holds data no drain has taken (the poller's last look before it
        sleeps; its own barrier orders this read after ``want_kick``)."""
        return self.backlog() > 0

    def want_kick(self) -> None:
        """The poller is going to sleep: the gate must ring after its next write."""
        if self.ring is not None:
            self.ring.vcpu.ring_want_kick(True)

    def _write_buf(self) -> None:
        """Write the host-side run (``buf``) to the host."""
        f, data = self.file, self.buf
        if f is None or not data:
            return
        self.buf = bytearray()
        if f.host_fd is not None:
            view = memoryview(data)
            try:
                _write_out(f, [view], len(data))
            finally:
                view.release()


def _write_out(f: Any, views: list[memoryview], n: int) -> None:
    """Write ``views`` (``n`` bytes in all) to ``f``'s host fd at its position; an
    error is kept for the file's next write or fsync."""
    done = 0
    try:
        while views:
            k = os.writev(f.host_fd, views)
            if k <= 0:
                raise OSError(5, "short write")
            done += k
            while views and k >= len(views[0]):
                k -= len(views[0])
                views.pop(0)
            if views and k:
                views[0] = views[0][k:]
    except OSError as e:
        f.write_error = e.errno or 5
        log.warning("deferred write of %d bytes to %s failed after %d: %s",
                    n, f.path, done, os.strerror(f.write_error))
