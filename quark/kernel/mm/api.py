"""What kernel code may do with a task's memory (the contract between mm/ and the rest).

Every address comes from the guest and is untrusted: each method checks it and raises
``LinuxError(EFAULT)`` where Linux would return EFAULT. Nothing here hands out Python
objects that outlive the call except the memoryviews of ``iovecs``, which are valid
until the caller next yields the kernel lock.
"""

from __future__ import annotations

from typing import Protocol


class GuestMemory(Protocol):
    def read(self, addr: int, n: int) -> bytes:
        """Copy ``n`` bytes from guest virtual ``addr``; EFAULT if any byte is unmapped
        or unreadable to user mode."""

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy into guest memory; EFAULT if any byte is unmapped or not writable."""

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        """A NUL-terminated string without its NUL. EFAULT on a bad pointer,
        ENAMETOOLONG when no NUL is found within ``limit`` bytes."""

    def read_u32(self, addr: int) -> int: ...
    def read_u64(self, addr: int) -> int: ...
    def write_u32(self, addr: int, v: int) -> None: ...
    def write_u64(self, addr: int, v: int) -> None: ...

    def iovecs(self, addr: int, n: int, write: bool, partial: bool = False) -> list[memoryview]:
        """Host memoryviews covering guest ``[addr, addr+n)`` (split where guest pages
        are not contiguous), for zero-copy ``os.readv``/``os.writev``/``os.preadv``.
        ``write=True`` means the kernel will store into them (guest pages must be
        user-writable). EFAULT if any page is bad; with ``partial``, the views up to
        the first bad page (EFAULT only if the first byte is bad)."""
