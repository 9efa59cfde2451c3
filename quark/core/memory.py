"""Guest-physical frame allocation on top of :class:`memory_ffi.PhysMem`."""

from __future__ import annotations

import threading

from quark.core.guest.layout import FIXED_END, PAGE
from quark.core.memory_ffi import PhysMem


class OutOfMemory(Exception):
    """No guest-physical frame is left (the kernel maps this to ENOMEM)."""


class FrameAllocator:
    """Hands out 4 KiB guest-physical frames, zero-filled.

    A freed frame is discarded (MADV_REMOVE) before reuse, which both zeroes it and
    drops every shadow mapping KVM holds for it, so a frame never shows its previous
    owner's data to a new one (PVM.md). Thread-safe: vCPU threads allocate on faults.
    """

    def __init__(self, mem: PhysMem, start: int = FIXED_END) -> None:
        self.mem = mem
        self._next = start
        self._free: list[int] = []
        self._lock = threading.Lock()
        self.in_use = 0

    def alloc(self) -> int:
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

    def free_many(self, frames: list[int]) -> None:
        """Return frames; discards them in runs of contiguous pages (one madvise each)."""
        if not frames:
            return
        frames = sorted(frames)
        start = prev = frames[0]
        for pa in frames[1:]:
            if pa != prev + PAGE:
                self.mem.discard(start, prev + PAGE - start)
                start = pa
            prev = pa
        self.mem.discard(start, prev + PAGE - start)
        with self._lock:
            self._free.extend(frames)
            self.in_use -= len(frames)

    def free(self, pa: int) -> None:
        self.free_many([pa])
