"""Guest physical memory: one memfd mapped shared into the sandbox process.

The mapping's host address goes to KVM as the memory slot; the same mapping is how
the Python kernel reads and writes guest memory (``view``), so a guest buffer is host
memory and file payloads can move with ``os.preadv`` straight into it.
"""

from __future__ import annotations

import ctypes
import mmap
import os

MADV_DONTNEED = 4
MADV_REMOVE = 9
MADV_POPULATE_WRITE = 23


class PhysMem:
    """``size`` bytes of guest-physical memory starting at guest address 0."""

    def __init__(self, size: int, name: str = "quark-guest") -> None:
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)  # sparse: pages exist only once touched
        self.map = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.map)
        # The mapping lives as long as self.map; KVM gets its address.
        anchor = ctypes.c_char.from_buffer(self.map)
        self.host_addr = ctypes.addressof(anchor)
        del anchor  # a live ctypes view would pin the buffer and block close()

    def populate(self, pa: int, length: int) -> None:
        """Back ``[pa, pa+length)`` with host pages now. A first touch costs ~5 µs a
        page on these hosts (the memfd's page, and the outer VM's behind it), ten
        times a touch of a resident page: worth paying before it is waited for."""
        self.map.madvise(MADV_POPULATE_WRITE, pa, length)

    def populate_quietly(self, pa: int, length: int) -> None:
        """:meth:`populate` of what fits, ignoring failure (an older host kernel
        without MADV_POPULATE_WRITE; then the first touches do it)."""
        try:
            self.populate(pa, min(length, self.size - pa))
        except (OSError, ValueError):
            pass

    def discard(self, pa: int, length: int) -> None:
        """Free frames: content becomes zero and KVM's shadow entries for them are
        dropped through the MMU notifier (PVM.md: the only invalidation that works)."""
        self.map.madvise(MADV_REMOVE, pa, length)

    def invalidate(self, pa: int, length: int) -> None:
        """Drop KVM's shadow entries for frames whose content must stay (a mapping
        lost rights or moved): the memfd keeps the data, the guest re-walks."""
        self.map.madvise(MADV_DONTNEED, pa, length)

    def close(self) -> None:
        self.view.release()
        try:
            self.map.close()
        except BufferError:
            # A view of guest memory is still referenced (a handler's frame kept by
            # a traceback): leave the mapping to process exit rather than fail.
            pass
        os.close(self.fd)
