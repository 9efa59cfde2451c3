"""Typed access to the six raw argument registers of a system call."""

from __future__ import annotations

from quark.kernel.errors import LinuxError
from quark.kernel.abi.linux import EINVAL

_M64 = (1 << 64) - 1


class SyscallArgs:
    """The raw 64-bit argument words; accessors decode them the way Linux's syscall
    entry does (an ``int`` argument is the low 32 bits, sign-extended)."""

    __slots__ = ("nr", "raw")

    def __init__(self, nr: int, raw: tuple[int, int, int, int, int, int]) -> None:
        self.nr = nr
        self.raw = raw

    def int(self, i: int) -> int:
        """A C ``int``: low 32 bits, signed (fds, flags passed as int, AT_FDCWD)."""
        v = self.raw[i] & 0xFFFFFFFF
        return v - (1 << 32) if v & 0x80000000 else v

    def uint(self, i: int) -> int:
        """A C ``unsigned int``."""
        return self.raw[i] & 0xFFFFFFFF

    def long(self, i: int) -> int:
        """A C ``long`` / ``off_t`` / ``ssize_t``: 64 bits, signed."""
        v = self.raw[i] & _M64
        return v - (1 << 64) if v & (1 << 63) else v

    def ulong(self, i: int) -> int:
        """A C ``unsigned long`` (flags words, lengths)."""
        return self.raw[i] & _M64

    def ptr(self, i: int) -> int:
        """A user pointer; validated by the memory accessors, not here."""
        return self.raw[i] & _M64

    def size(self, i: int) -> int:
        """A ``size_t`` count. Linux clamps huge counts (MAX_RW_COUNT) rather than
        failing, so values with the sign bit set are EINVAL only where Linux says so;
        callers that need that check do it."""
        return self.raw[i] & _M64

    def nonneg(self, i: int) -> int:
        """A signed value that must not be negative (EINVAL otherwise)."""
        v = self.long(i)
        if v < 0:
            raise LinuxError(EINVAL)
        return v

    def __repr__(self) -> str:
        return f"SyscallArgs({self.nr}, {', '.join(hex(x) for x in self.raw)})"
