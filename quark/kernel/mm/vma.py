"""Virtual memory areas: the ranges of an address space and what backs them."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from quark.kernel.abi.linux import PROT_EXEC, PROT_READ, PROT_WRITE


class Vma:
    """``[start, end)``, page aligned. ``file`` is an open File for file-backed
    mappings, None for anonymous memory. ``shm`` is the shared object (mm/shared.py)
    behind a MAP_SHARED mapping, None for a private one. ``offset`` is the byte offset
    of ``start`` in the file or the shared object."""

    __slots__ = ("end", "file", "flags", "name", "offset", "prot", "shm", "start")

    def __init__(self, start: int, end: int, prot: int, flags: int,
                 file: Any = None, offset: int = 0, name: str = "", shm: Any = None) -> None:
        self.start, self.end, self.prot, self.flags = start, end, prot, flags
        self.file, self.offset, self.name, self.shm = file, offset, name, shm
        if file is not None:
            file.incref()       # a mapping keeps its file open, as in Linux
        if shm is not None:
            shm.incref()

    def drop(self) -> None:
        """This VMA is gone: let go of its file and shared object."""
        if self.shm is not None:
            self.shm.decref()   # may write back through the file: before it goes
            self.shm = None
        if self.file is not None:
            self.file.decref()
            self.file = None

    def copy(self, start: int | None = None, end: int | None = None) -> Vma:
        s = self.start if start is None else start
        e = self.end if end is None else end
        backed = self.file is not None or self.shm is not None
        off = self.offset + (s - self.start) if backed else 0
        return Vma(s, e, self.prot, self.flags, self.file, off, self.name, self.shm)

    def perms(self) -> str:
        return "".join((
            "r" if self.prot & PROT_READ else "-",
            "w" if self.prot & PROT_WRITE else "-",
            "x" if self.prot & PROT_EXEC else "-",
            "p" if not self.flags & 1 else "s",
        ))

    def __repr__(self) -> str:
        return f"Vma({self.start:#x}-{self.end:#x} {self.perms()} {self.name})"


class VmaList:
    """Non-overlapping VMAs sorted by start address."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._vmas: list[Vma] = []

    def __iter__(self) -> Iterator[Vma]:
        return iter(self._vmas)

    def __len__(self) -> int:
        return len(self._vmas)

    def find(self, addr: int) -> Vma | None:
        """The VMA containing ``addr``."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            v = self._vmas[i]
            if addr < v.end:
                return v
        return None

    def overlapping(self, start: int, end: int) -> list[Vma]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for v in self._vmas[i:]:
            if v.start >= end:
                break
            if v.end > start:
                out.append(v)
        return out

    def insert(self, v: Vma) -> None:
        i = bisect.bisect_left(self._starts, v.start)
        self._starts.insert(i, v.start)
        self._vmas.insert(i, v)

    def remove(self, v: Vma) -> None:
        i = self._vmas.index(v)
        del self._starts[i]
        del self._vmas[i]

    def carve(self, start: int, end: int) -> list[Vma]:
        """Remove ``[start, end)`` from the list, splitting VMAs at the edges;
        returns the removed pieces."""
        removed = []
        for v in self.overlapping(start, end):
            self.remove(v)
            if v.start < start:
                self.insert(v.copy(end=start))
            if v.end > end:
                self.insert(v.copy(start=end))
            removed.append(v.copy(max(v.start, start), min(v.end, end)))
            v.drop()
        return removed

    def gap_below(self, top: int, length: int, floor: int) -> int | None:
        """Highest ``addr`` with ``[addr, addr+length)`` free, below ``top``."""
        hi = top
        for v in reversed(self._vmas):
            if v.start >= hi:
                continue
            if v.end <= hi - length:
                break
            hi = v.start
        return hi - length if hi - length >= floor else None
