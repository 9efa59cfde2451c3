"""The kernel's one exception: a Linux errno travelling up to the syscall dispatcher."""

from __future__ import annotations

import errno as _errno


class LinuxError(Exception):
    """Raised by kernel code to make the current system call return ``-errno``.

    The dispatcher is the only place that turns it into a return value; errno values
    never leave the kernel package.
    """

    def __init__(self, errno: int, msg: str = "") -> None:
        super().__init__(errno, msg or _errno.errorcode.get(errno, str(errno)))
        self.errno = errno

    def __repr__(self) -> str:
        return f"LinuxError({_errno.errorcode.get(self.errno, self.errno)})"
