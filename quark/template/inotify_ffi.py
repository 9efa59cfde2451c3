"""inotify(7) through libc (Python's os module has no binding): what the template
needs to notice its code changing on disk."""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)


def init() -> int:
    """A non-blocking, close-on-exec inotify fd; OSError where there is none."""
    fd = int(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return fd


def add_watch(fd: int, path: str, mask: int) -> int:
    """The watch descriptor for ``path``; OSError (e.g. ENOSPC: out of watches)."""
    wd = int(_libc.inotify_add_watch(fd, os.fsencode(path), mask))
    if wd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"inotify_add_watch {path}: {os.strerror(e)}")
    return wd
