"""Guest-physical frame allocation on top of :class:`memory_ffi.PhysMem`."""

from __future__ import annotations

import threading
import time
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
# Frames of finished address spaces kept with their host pages for reuse (free_dead):
# a first touch of a discarded frame costs ~5 µs (the memfd's page, and the outer
# VM's behind it), its discard ~6 µs of madvise, and zeroing a kept one ~0.3 µs. A
# fork+exec of a small program frees ~100; beyond this many the oldest are
# discarded, so a busy sandbox keeps at most 2 MiB of host memory this way, and a
# quiet one none: the QCall poller discards them WARM_QUIET seconds after the last
# (taskrun.qcall_idle; on the exit path, where there is no poller, they stay).
WARM_MAX = 512
WARM_QUIET = 0.1
_ZERO = bytes(PAGE)


class OutOfMemory(Exception):
    """No guest-physical frame is left (the kernel maps this to ENOMEM)."""


class FrameAllocator:
    """Hands out 4 KiB guest-physical frames, zero-filled.

    A frame freed by a live address space is discarded (MADV_REMOVE) before reuse,
    which both zeroes it and drops every shadow mapping KVM holds for it, so a frame
    never shows its previous owner's data to a new one (PVM.md). A finished space's
    frames are kept and zeroed when handed out instead (free_dead). Frames that were
    page tables also wait for KVM to forget its shadows of them (retire_tables).
    Thread-safe: vCPU threads allocate on faults.
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
        self._warm: list[int] = []          # free, old bytes, host page kept (free_dead)
        self._warm_since = 0.0              # monotonic time of the last free_dead
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
        if self._warm:
            return self.alloc_many(1)[0]
        try:
            return self._alloc()
        except OutOfMemory:
            if not self._refill():
                raise
        return self._alloc()

    def _refill(self) -> bool:
        """After OutOfMemory: True if the retired tables or the reclaim hook gave
        some frames back."""
        if self.release_retired():
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
        """``n`` zeroed frames at once (a fault-around, a fork); all or none
        (OutOfMemory)."""
        out, warm = self._take(n)
        if warm:
            buf = self.mem.map
            for pa in out[:warm]:
                buf[pa:pa + PAGE] = _ZERO
        return out

    def alloc_overwritten(self, n: int) -> list[int]:
        """``n`` frames for a caller that writes every byte of each at once (a
        fork's copies, a copy-on-write break), so they are not zeroed: kept frames
        of finished spaces first, with their old bytes. All or none (OutOfMemory)."""
        return self._take(n)[0]

    def _take(self, n: int) -> tuple[list[int], int]:
        """``n`` frames, the kept ones first: (frames, how many of them were kept)."""
        with self._lock:
            warm = self._warm
            take = min(n, len(warm))
            out = warm[len(warm) - take:]       # the latest freed: the likeliest cached
            del warm[len(warm) - take:]
            self.in_use += take
        if take < n:
            try:
                out += self._alloc_fresh(n - take)
            except OutOfMemory:
                with self._lock:
                    self._warm.extend(out)
                    self.in_use -= take
                raise
        return out, take

    def _alloc_fresh(self, n: int) -> list[int]:
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
        self._discard_free(list(frames), in_use=True)

    def free_dead(self, frames: list[int]) -> None:
        """Let go of the frames of an address space nothing runs on any more (exit,
        exec) and whose tables were retired. Its translations of them live only in
        KVM's shadows of those tables, which no vCPU reaches before the drop that
        frees them (retire_tables). So a shared frame only loses a holder, and owned
        ones need no discard before reuse: they are kept, host page and old bytes,
        and zeroed when handed out (alloc), or overwritten (alloc_overwritten). An
        exec used to let go of its frames in ~20 madvise calls of ~6 µs, and its
        successor paid ~5 µs a page to touch them again."""
        if self.drop_shadows is None:
            self.free_many(frames)      # tables are reused at once: the old way
            return
        with self._lock:
            owned, _ = self._drop_holders(frames)
            warm = self._warm
            warm.extend(owned)
            self.in_use -= len(owned)
            self._warm_since = time.monotonic()
            spill = len(warm) - WARM_MAX
            if spill <= 0:
                return
            oldest = warm[:spill]
            del warm[:spill]
        self._discard_free(oldest)

    @property
    def warm(self) -> int:
        """How many freed frames free_dead keeps undiscarded."""
        return len(self._warm)

    def clean_warm_when_quiet(self) -> float | None:
        """Discard the kept frames if none has come for WARM_QUIET; else the
        seconds until that is so (None: nothing is kept any more)."""
        if not self._warm:
            return None
        wait = self._warm_since + WARM_QUIET - time.monotonic()
        if wait > 0:
            return wait
        self.clean_warm()
        return None

    def clean_warm(self) -> bool:
        """Discard the frames free_dead kept (their host memory goes back) and make
        them free; True if any."""
        with self._lock:
            warm, self._warm = self._warm, []
        if not warm:
            return False
        self._discard_free(warm)
        return True

    def _discard_free(self, frames: list[int], in_use: bool = False) -> None:
        """Discard ``frames`` (sorted here, in runs) and make them free; ``in_use``:
        they were still counted in use."""
        frames.sort()
        self._runs(frames, self.mem.discard)
        with self._lock:
            self._free.extend(frames)
            if in_use:
                self.in_use -= len(frames)

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
