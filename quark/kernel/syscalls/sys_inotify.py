"""inotify: not implemented; a clean ENOSYS (inotify_init fails first, so programs take
their polling fallback: tail -f, systemd-less daemons, Python's watchers)."""

from __future__ import annotations

from quark.kernel.abi.linux import ENOSYS
from quark.kernel.syscalls.table import error

_WHY = "inotify is not implemented; callers fall back to polling"

error(253, "inotify_init", ENOSYS, _WHY)
error(294, "inotify_init1", ENOSYS, _WHY)
error(254, "inotify_add_watch", ENOSYS, _WHY)
error(255, "inotify_rm_watch", ENOSYS, _WHY)
