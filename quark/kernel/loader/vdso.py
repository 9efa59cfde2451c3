"""The vDSO image and its time page, shared read-only by every process.

``Vdso`` lays the shared object (built from quark/core/guest/vdso.c) out as it is
mapped, in frames of guest memory allocated once per machine, preceded by the time
page the timekeeper writes. ``map_into`` places ``[vvar][vdso]`` in an address
space; the vDSO finds the time page one page below its ELF header.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from quark.core.guest.layout import PAGE
from quark.kernel.abi import linux as L

_PT_LOAD = 1


def _layout(so: bytes) -> bytes:
    """The image as mapped: each PT_LOAD copied to its p_vaddr (linked at 0)."""
    phoff = struct.unpack_from("<Q", so, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", so, 0x36)
    loads = []
    for i in range(phnum):
        p_type, _fl, off, vaddr, _pa, filesz, memsz, _al = struct.unpack_from(
            "<IIQQQQQQ", so, phoff + i * phentsize)
        if p_type == _PT_LOAD:
            loads.append((off, vaddr, filesz, memsz))
    size = max(v + m for _o, v, _f, m in loads)
    image = bytearray((size + PAGE - 1) // PAGE * PAGE)
    for off, vaddr, filesz, _m in loads:
        image[vaddr:vaddr + filesz] = so[off:off + filesz]
    return bytes(image)


@functools.cache
def vdso_image() -> bytes:
    """The vDSO's pages, laid out once per process (a template's runs inherit them:
    finding and checking the build is ~4 ms)."""
    from quark.core.guest.build import shared_object
    return _layout(shared_object("vdso"))


class Vdso:
    def __init__(self, machine: Any) -> None:
        image = vdso_image()
        self.pages = len(image) // PAGE
        self.mem = machine.mem
        self.vvar_frame = machine.alloc.alloc()
        self.frames = [machine.alloc.alloc() for _ in range(self.pages)]
        for i, f in enumerate(self.frames):
            machine.mem.map[f:f + PAGE] = image[i * PAGE:(i + 1) * PAGE]

    def map_into(self, mm: Any) -> int:
        """Map ``[vvar][vdso]`` below the mmap area; returns the vDSO base
        (AT_SYSINFO_EHDR)."""
        span = (1 + self.pages) * PAGE
        base = mm.vmas.gap_below(mm.mmap_top, span, 0x10000)
        if base is None:
            raise MemoryError("no room for the vDSO")
        mm.map_special(base, [self.vvar_frame], L.PROT_READ, "[vvar]")
        mm.map_special(base + PAGE, self.frames, L.PROT_READ | L.PROT_EXEC, "[vdso]")
        mm.mmap_top = base
        return base + PAGE
