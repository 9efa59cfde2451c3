"""The kernel's character device table: opening a device node anywhere (tmpfs /dev,
or a node found in the rootfs) looks its (major, minor) up here, as Linux's
chrdev_open does. Nothing here ever opens a host device node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quark.kernel.abi.linux import ENXIO, S_IFCHR, S_IFMT
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.file import File
from quark.kernel.vfs.path import Location
from quark.kernel.vfs.stat import Stat

Opener = Callable[[Any, int, Location], File]
_CHAR: dict[tuple[int, int], Opener] = {}


def register_char(major: int, minor: int, opener: Opener) -> None:
    """Add a character device (e.g. a plugin's); the opener gets (task, flags, loc)."""
    _CHAR[(major, minor)] = opener


def open_device(t: Any, st: Stat, flags: int, loc: Location) -> File:
    from quark.kernel.fs.dev import devices  # registers the standard devices
    _ = devices
    opener = _CHAR.get(st.rdev) if st.mode & S_IFMT == S_IFCHR else None
    if opener is None:
        raise LinuxError(ENXIO)
    return opener(t, flags, loc)
