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
    (GateTables.kernel_pdpt: IDT, stub, per-vCPU pages); its second GiB holds the gates and
    mailboxes of the vCPUs this space's tasks run on (layout.GATES_KVA)."""

    __slots__ = ("_gates", "_pt", "_tables", "alloc", "buf", "mem", "root")

    def __init__(self, mem: PhysMem, alloc: FrameAllocator,
                 gates: GateTables | None) -> None:
        """``gates``: the machine's pool of slot-255 tables; None for the machine's
        own tables (vm._KernelTables)."""
        self.mem = mem
        self.buf = mem.map
        self.alloc = alloc
        self.root = alloc.alloc()
        self._tables: list[int] = [self.root]   # every table frame this space owns
        self._pt: dict[int, int] = {}           # va >> 21 -> leaf table frame
        self._gates: tuple[GateTables, tuple[int, int, int]] | None = None
        if gates is not None:
            three = gates.take()
            self._gates = (gates, three)
            _Q.pack_into(self.buf, self.root + 8 * _KSLOT, three[0] | _TABLE)
            self._pt[GATES_KVA >> 21] = three[2]

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
        if self._gates is not None:
            pool, three = self._gates
            self._gates = None
            pool.give(three)


class GateTables:
    """The tables of slot 255 each address space has of its own (a PDPT whose first
    entry is the machine's, a PD, and the PT of the gates and mailboxes), kept for
    that one use: KVM may still shadow a freed table in the role it had, and a frame
    that shadowed the gates' PT, reused as another table, showed a mailbox at user
    addresses (dd's processes then jumped to 0). Given back with every gate
    unmapped (the vCPUs detach first), a set is as good as new."""

    def __init__(self, alloc: FrameAllocator, kernel_pdpt: int) -> None:
        self.alloc = alloc
        self.kernel_pdpt = kernel_pdpt
        self._free: list[tuple[int, int, int]] = []

    def take(self) -> tuple[int, int, int]:
        if self._free:
            self.alloc.pooled(-3)
            return self._free.pop()
        buf = self.alloc.mem.map
        pdpt, pd, pt = (self.alloc.alloc() for _ in range(3))
        buf[pdpt:pdpt + 8] = buf[self.kernel_pdpt:self.kernel_pdpt + 8]
        _Q.pack_into(buf, pdpt + 8 * ((GATES_KVA >> 30) & 511), pd | _TABLE)
        _Q.pack_into(buf, pd + 8 * ((GATES_KVA >> 21) & 511), pt | _TABLE)
        return pdpt, pd, pt

    def give(self, three: tuple[int, int, int]) -> None:
        pt = three[2]
        words = struct.unpack_from("<512Q", self.alloc.mem.map, pt)
        if any(words):          # the vCPUs detach first: only after a failure
            for i, e in enumerate(words):
                if e & P:       # a gate left mapped: unmap it, and from KVM's shadow
                    _Q.pack_into(self.alloc.mem.map, pt + 8 * i, 0)
                    self.alloc.mem.invalidate(e & ADDR_MASK, 4096)
        self._free.append(three)
        self.alloc.pooled(3)


def frame_of(entry: int) -> int:
    return entry & ADDR_MASK
