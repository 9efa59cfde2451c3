"""The system call table is data: number -> (name, handler, support level, note).

Each ``sys_<area>.py`` module declares its handlers with :func:`syscall`; the table
is assembled from those declarations when :func:`load` runs. ``docs/compatibility.md``
and ``--strace`` names are generated from it.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Awaitable, Callable, TypeVar

Handler = Callable[[Any, Any], Awaitable[int]]
# A synchronous twin of a handler: (task, raw argument words) -> result, or None when
# the call might sleep and must go to the coroutine handler instead.
FastHandler = Callable[[Any, tuple[int, ...]], "int | None"]
_F = TypeVar("_F", bound=FastHandler)

SUPPORTED = "supported"
PARTIAL = "partial"
ERROR = "error"


@dataclasses.dataclass(frozen=True)
class Entry:
    nr: int
    name: str
    handler: Handler | None
    level: str
    note: str = ""
    errno: int = 0  # for ERROR entries: what the call always returns


TABLE: dict[int, Entry] = {}
FAST: dict[int, FastHandler] = {}

# The modules whose @syscall declarations make up the table.
MODULES = (
    "sys_file",
    "sys_fd",
    "sys_stat",
    "sys_dir",
    "sys_mm",
    "sys_process",
    "sys_signal",
    "sys_time",
    "sys_identity",
    "sys_misc",
    "sys_futex",
    "sys_poll",
    "sys_epoll",
    "sys_events",
    "sys_memfd",
    "sys_filerange",
    "sys_xattr",
    "sys_inotify",
    "sys_socket",
)


def _register(e: Entry) -> None:
    old = TABLE.get(e.nr)
    if old is not None and old.name != e.name:
        raise RuntimeError(f"syscall {e.nr} declared twice: {old.name} and {e.name}")
    TABLE[e.nr] = e


def syscall(nr: int, name: str, *, partial: str = "") -> Callable[[Handler], Handler]:
    """Declare ``fn`` as the handler of syscall ``nr``; ``partial`` notes what it lacks."""

    def deco(fn: Handler) -> Handler:
        _register(Entry(nr, name, fn, PARTIAL if partial else SUPPORTED, partial))
        return fn

    return deco


def fast(nr: int) -> Callable[[_F], _F]:
    """Declare ``fn`` the fast path of syscall ``nr`` (see :data:`FastHandler`): the
    dispatcher calls it before the handler and skips the coroutine when it answers.
    It makes the same checks in the same order, so it fails with the same errno."""

    def deco(fn: _F) -> _F:
        FAST[nr] = fn
        return fn

    return deco


def error(nr: int, name: str, errno: int, reason: str) -> None:
    """Declare a call that always fails with ``errno`` (e.g. a capability we never grant)."""
    _register(Entry(nr, name, None, ERROR, reason, errno))


_loaded = False


def load() -> dict[int, Entry]:
    """Import every handler module once; returns the table."""
    global _loaded
    if not _loaded:
        for m in MODULES:
            try:
                importlib.import_module(f"quark.kernel.syscalls.{m}")
            except ModuleNotFoundError as e:
                if e.name != f"quark.kernel.syscalls.{m}":
                    raise
        _loaded = True
    return TABLE
