"""Guest-physical frame allocation on top of :class:`memory_ffi.PhysMem`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from quark.core.guest.layout import FIXED_END, PAGE
from quark.core.memory_ffi import PhysMem


# Page-table frames gathered before KVM is told to forget its shadows of them (see
# FrameAllocator.retire_tables): 1/64 of guest memory, at least 256 frames. Each
# drop costs ~0.2 ms of ioctls plus the faults that rebuild the shadows of what
# the VM still uses, which grows with memory; waiting frames cost no host memory
# (they are discarded), only guest-physical frames, and running out of those
# releases them. A short process leaves ~12 tables: 1 GiB of guest memory makes
# one drop per ~340 of them.
RETIRE_SHARE = 64
RETIRE_MIN = 256
# Frames of finished address spaces discarded together (free_dead): ~20 processes'
# worth, so the runs merge; at most 1 MiB of host memory waits meanwhile.
DIRTY_BATCH = 256


class OutOfMemory(Exception):
    """No guest-physical frame is left (the kernel maps this to ENOMEM)."""


class FrameAllocator:
    """Hands out 4 KiB guest-physical frames, zero-filled.

    A freed frame is discarded (MADV_REMOVE) before reuse, which both zeroes it and
    drops every shadow mapping KVM holds for it, so a frame never shows its previous
    owner's data to a new one (PVM.md). Frames that were page tables also wait for
    KVM to forget its shadows of them (retire_tables). Thread-safe: vCPU threads
    allocate on faults.
    """

    def __init__(self, mem: PhysMem, start: int = FIXED_END) -> None:
        self.mem = mem
        self._next = start
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.in_use = 0
        self.refs: dict[int, int] = {}      # frames shared copy-on-write: holders (>= 2)
        # Called when no frame is left; True if it freed some (the kernel's text
        # cache gives back the frames nothing maps). The caller holds no lock here.
        self.reclaim: Callable[[], bool] | None = None
        # Makes KVM forget every shadow page table (vm.Machine.drop_shadows). None
        # where no VM runs on this memory: retired tables are then free at once.
        self.drop_shadows: Callable[[], None] | None = None
        self._retired: list[int] = []       # discarded, waiting for drop_shadows
        self._dirty: list[int] = []         # free, not yet discarded (free_dead)
        self.retire_batch = max(RETIRE_MIN, mem.size // PAGE // RETIRE_SHARE)

    def share(self, pa: int) -> None:
        """One more address space holds ``pa`` (copy-on-write fork)."""
        with self._lock:
            self.refs[pa] = self.refs.get(pa, 1) + 1

    def share_many(self, frames: list[int]) -> None:
        """:meth:`share` for each of ``frames``, in one lock round."""
        with self._lock:
            refs = self.refs
            for pa in frames:
                refs[pa] = refs.get(pa, 1) + 1

    def holders(self, pa: int) -> int:
        return self.refs.get(pa, 1)

    def alloc(self) -> int:
        try:
            return self._alloc()
        except OutOfMemory:
            if not self._refill():
                raise
        return self._alloc()

    def _refill(self) -> bool:
        """After OutOfMemory: True if the dirty frames, the retired tables or the
        reclaim hook gave some frames back."""
        if self.clean_dirty() or self.release_retired():
            return True
        return self.reclaim is not None and self.reclaim()

    def _alloc(self) -> int:
        with self._lock:
            self.in_use += 1
            if self._free:
                return self._free.pop()
            pa = self._next
            if pa + PAGE > self.mem.size:
                self.in_use -= 1
                raise OutOfMemory("guest memory exhausted")
            self._next = pa + PAGE
            return pa

    def alloc_many(self, n: int) -> list[int]:
        """``n`` frames at once (a fault-around, a fork): one lock round for all;
        all or none (OutOfMemory)."""
        try:
            return self._alloc_many(n)
        except OutOfMemory:
            if not self._refill():
                raise
        return self._alloc_many(n)

    def _alloc_many(self, n: int) -> list[int]:
        with self._lock:
            free = self._free
            take = min(n, len(free))
            out = free[len(free) - take:]
            rest = n - take
            if self._next + rest * PAGE > self.mem.size:
                raise OutOfMemory("guest memory exhausted")
            del free[len(free) - take:]
            out.reverse()                   # the order alloc() would hand them out
            if rest:
                out.extend(range(self._next, self._next + rest * PAGE, PAGE))
                self._next += rest * PAGE
            self.in_use += n
            return out

    def _drop_holders(self, frames: list[int]) -> tuple[list[int], list[int]]:
        """(owned, shared): ``frames`` this holder alone had, and those others keep,
        each of which loses this holder. Lock held."""
        refs = self.refs
        if not refs:
            return frames, []
        owned, shared = [], []
        for pa in frames:
            n = refs.get(pa)
            if n is None:
                owned.append(pa)
                continue
            if n > 2:
                refs[pa] = n - 1
            else:
                del refs[pa]        # one holder left: it owns the frame now
            shared.append(pa)
        return owned, shared

    def free_many(self, frames: list[int]) -> None:
        """Let go of frames: shared ones lose a holder; the rest are discarded in runs
        of contiguous pages (one madvise each) and reused."""
        if not frames:
            return
        if self.refs:
            with self._lock:
                kept, shared = self._drop_holders(frames)
            # The departing holder's translations of frames others keep must go too
            # (PVM.md): otherwise a page-table frame reused later can revive them.
            self._runs(sorted(shared), self.mem.invalidate)
            frames = kept
            if not frames:
                return
        frames = sorted(frames)
        self._runs(frames, self.mem.discard)
        with self._lock:
            self._free.extend(frames)
            self.in_use -= len(frames)

    def free_dead(self, frames: list[int]) -> None:
        """Let go of the frames of an address space nothing runs on any more (exit,
        exec) and whose tables were retired. Its translations of them live only in
        KVM's shadows of those tables, which no vCPU reaches before the drop that
        frees them (retire_tables). So a shared frame only loses a holder, and owned
        ones are discarded DIRTY_BATCH at a time, in runs that merge: an exec let go
        of its frames in ~20 madvise calls of a page or two, ~6 µs each."""
        if self.drop_shadows is None:
            self.free_many(frames)      # tables are reused at once: the old way
            return
        with self._lock:
            owned, _ = self._drop_holders(frames)
            self._dirty.extend(owned)
            self.in_use -= len(owned)
            if len(self._dirty) < DIRTY_BATCH:
                return
        self.clean_dirty()

    @property
    def dirty(self) -> int:
        """How many frames free_dead holds back undiscarded."""
        return len(self._dirty)

    def clean_dirty(self) -> bool:
        """Discard the frames free_dead gathered and make them free; True if any."""
        with self._lock:
            dirty, self._dirty = self._dirty, []
        if not dirty:
            return False
        self._runs(sorted(dirty), self.mem.discard)
        with self._lock:
            self._free.extend(dirty)
        return True

    def retire_tables(self, frames: list[int]) -> None:
        """Let go of frames that were page tables (their address space is gone).

        KVM's shadow MMU may still hold its shadow of such a frame in the old role
        (the cached root of a finished process, say), and it never sees the host's
        writes (PVM.md). Reused as data, a store into it was emulated, and KVM cannot
        emulate vector stores: glibc's EVEX memcpy killed the task with exit 17.
        Reused as a table, the stale shadow's translations could come back. So the
        frames are discarded now (zeroed, host memory freed) but stay out of use
        until retire_batch have gathered; one drop_shadows then makes KVM forget
        every shadow, and they are free."""
        if not frames:
            return
        if self.drop_shadows is None:
            self.free_many(frames)
            return
        self._runs(sorted(frames), self.mem.discard)
        with self._lock:
            self._retired.extend(frames)
            self.in_use -= len(frames)      # free to the kernel, held back only here
            if len(self._retired) < self.retire_batch:
                return
        self.release_retired()

    def release_retired(self) -> bool:
        """Make the retired tables free (one drop of KVM's shadows); True if there
        were any."""
        with self._lock:
            frames, self._retired = self._retired, []
        if not frames:
            return False
        assert self.drop_shadows is not None
        self.drop_shadows()
        with self._lock:
            self._free.extend(frames)
        return True

    @staticmethod
    def _runs(frames: list[int], op: Any) -> None:
        """Apply ``op(start, length)`` to each run of contiguous frames."""
        i = 0
        while i < len(frames):
            j = i
            while j + 1 < len(frames) and frames[j + 1] == frames[j] + PAGE:
                j += 1
            op(frames[i], frames[j] + PAGE - frames[i])
            i = j + 1

    def free(self, pa: int) -> None:
        self.free_many([pa])
