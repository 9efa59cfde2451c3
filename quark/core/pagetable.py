"""x86-64 4-level page tables kept in guest memory, written by the host.

Facts (PVM.md): KVM shadows these tables. Adding a mapping is seen at the next fault;
removing or downgrading one is NOT seen until the old frame's host mapping is dropped
(``PhysMem.invalidate``/``discard``). Callers that remove or downgrade mappings must
therefore invalidate the old frames; this module only edits entries and reports them.
"""

from __future__ import annotations

import struct

from quark.core.guest.layout import GATES_KVA, KBASE
from quark.core.memory import FrameAllocator
from quark.core.memory_ffi import PhysMem

P, RW, US, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 16, 32, 64, 128, 256
NX = 1 << 63
ADDR_MASK = 0x000F_FFFF_FFFF_F000
_TABLE = P | RW | US        # intermediate entries grant everything; leaves restrict

_Q = struct.Struct("<Q")
_KSLOT = (KBASE >> 39) & 511


class PageTable:
    """One address space's tables. The last lower-half PML4 slot points at a table of
    this space's own whose first entry is that of the machine's shared one
    (``kernel_pdpt``: IDT, stub, per-vCPU pages); its second GiB holds the gates and
    mailboxes of the vCPUs this space's tasks run on (layout.GATES_KVA), so no space
    sees another's mailbox. Freed like every other table of the space (release)."""

    __slots__ = ("_pt", "_tables", "alloc", "buf", "mem", "root")

    def __init__(self, mem: PhysMem, alloc: FrameAllocator, kernel_pdpt: int | None) -> None:
        """``kernel_pdpt``: the machine's shared table; None for the machine's own
        tables (vm._KernelTables)."""
        self.mem = mem
        buf = self.buf = mem.map
        self.alloc = alloc
        self.root = alloc.alloc()
        self._tables: list[int] = [self.root]   # every table frame this space owns
        self._pt: dict[int, int] = {}           # va >> 21 -> leaf table frame
        if kernel_pdpt is not None:
            pdpt, pd, pt = alloc.alloc(), alloc.alloc(), alloc.alloc()
            self._tables += (pdpt, pd, pt)
            buf[pdpt:pdpt + 8] = buf[kernel_pdpt:kernel_pdpt + 8]
            _Q.pack_into(buf, pdpt + 8 * ((GATES_KVA >> 30) & 511), pd | _TABLE)
            _Q.pack_into(buf, pd + 8 * ((GATES_KVA >> 21) & 511), pt | _TABLE)
            _Q.pack_into(buf, self.root + 8 * _KSLOT, pdpt | _TABLE)
            self._pt[GATES_KVA >> 21] = pt

    def _leaf_table(self, va: int, create: bool) -> int:
        key = va >> 21
        pt = self._pt.get(key)
        if pt is not None or not create:
            return pt or 0
        table = self.root
        for shift in (39, 30, 21):
            slot = table + 8 * ((va >> shift) & 511)
            e = _Q.unpack_from(self.buf, slot)[0]
            if e & P:
                table = e & ADDR_MASK
                continue
            new = self.alloc.alloc()
            self._tables.append(new)
            _Q.pack_into(self.buf, slot, new | _TABLE)
            table = new
        self._pt[key] = table
        return table

    def map(self, va: int, pa: int, flags: int) -> int:
        """Set the leaf entry for ``va``; returns the entry it replaced (0 if none)."""
        pt = self._leaf_table(va, True)
        slot = pt + 8 * ((va >> 12) & 511)
        old = _Q.unpack_from(self.buf, slot)[0]
        _Q.pack_into(self.buf, slot, (pa & ADDR_MASK) | flags | P)
        return int(old)

    def map_run(self, va: int, frames: list[int], flags: int) -> None:
        """Map consecutive pages from ``va`` to ``frames`` over entries that were
        empty (a fault-around): the entries of each leaf table in one store."""
        i, n = 0, len(frames)
        bits = flags | P
        while i < n:
            page = va + i * 4096
            pt = self._leaf_table(page, True)
            k = min(n - i, 512 - ((page >> 12) & 511))       # entries left in this table
            words = [(f & ADDR_MASK) | bits for f in frames[i:i + k]]
            struct.pack_into(f"<{k}Q", self.buf, pt + 8 * ((page >> 12) & 511), *words)
            i += k

    def unmap(self, va: int) -> int:
        """Clear the leaf entry for ``va``; returns it (0 if there was none)."""
        pt = self._leaf_table(va, False)
        if not pt:
            return 0
        slot = pt + 8 * ((va >> 12) & 511)
        old = _Q.unpack_from(self.buf, slot)[0]
        if old:
            _Q.pack_into(self.buf, slot, 0)
        return int(old)

    def entry(self, va: int) -> int:
        """The leaf entry for ``va`` or 0."""
        pt = self._pt.get(va >> 21)
        if not pt:
            return 0
        return int(_Q.unpack_from(self.buf, pt + 8 * ((va >> 12) & 511))[0])

    def set_flags(self, va: int, flags: int) -> int:
        """Keep the frame, replace the permission bits; returns the old entry."""
        pt = self._leaf_table(va, False)
        if not pt:
            return 0
        slot = pt + 8 * ((va >> 12) & 511)
        old = _Q.unpack_from(self.buf, slot)[0]
        if old & P:
            _Q.pack_into(self.buf, slot, (old & ADDR_MASK) | flags | P)
        return int(old)

    def release(self) -> None:
        """Free the table frames (not the frames they map: the owner frees those)."""
        self.alloc.retire_tables(self._tables)
        self._tables = []
        self._pt.clear()


def frame_of(entry: int) -> int:
    return entry & ADDR_MASK
