"""Address leases: one JSON file, changed only under an exclusive flock.

Concurrent ``quark create``s each run in their own sandbox process: every change
(reap, allocate, release) happens inside ``Leases.locked()``, which holds
``fcntl.flock(LOCK_EX)`` on ``<dir>/leases.lock`` while it reads ``leases.json``,
changes it and writes it back by rename (readers never see a half-written file).
The lock file itself is never replaced, so the lock is always on the same inode.

A lease records the sandbox process (pid and its start time): a lease whose process
is gone (crash, SIGKILL, a foreground ``run`` that ended in its own namespace) is
stale and is reaped by the next setup, so a crash never leaks an address for long.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat, None if no such (live) process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    if not rest or rest[0] == b"Z":
        return None
    return int(rest[19])


class LeaseError(Exception):
    """No address left, or the lease file is unusable."""


class Leases:
    def __init__(self, directory: str | os.PathLike[str], subnet: str,
                 gateway: str | None = None) -> None:
        self.dir = Path(directory)
        self.net = ipaddress.ip_network(subnet, strict=False)
        self.gateway = ipaddress.ip_address(gateway) if gateway else next(self.net.hosts())
        self.path = self.dir / "leases.json"
        self.lock_path = self.dir / "leases.lock"
        self.data: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def locked(self, save: bool = True) -> Iterator[Leases]:
        """Hold the lock; ``self.data`` is the file's content, saved on success
        unless ``save`` is False (the lock only orders other work)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.data = self._read()
            yield self
            if save:
                self._write()
        finally:
            os.close(fd)            # closing drops the flock

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise LeaseError(f"lease file {self.path}: {e}") from e
        return dict(doc.get("leases", {}))

    def _write(self) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"subnet": str(self.net), "leases": self.data}, indent=1))
        os.replace(tmp, self.path)

    # ---- inside locked()

    def stale(self) -> list[str]:
        """Ids of leases whose sandbox process is gone."""
        out = []
        for sid, lease in self.data.items():
            pid, start = lease.get("pid"), lease.get("pid_start")
            if not isinstance(pid, int) or pid_start_time(pid) != start:
                out.append(sid)
        return out

    def allocate(self, sandbox_id: str, **extra: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """The address of ``sandbox_id`` (its existing lease, or the lowest free one)."""
        if sandbox_id in self.data:
            lease = self.data[sandbox_id]
            lease.update(extra)
            return ipaddress.ip_address(lease["ip"])
        used = {lease["ip"] for lease in self.data.values()}
        for addr in self.net.hosts():
            if addr == self.gateway or str(addr) in used:
                continue
            self.data[sandbox_id] = {"ip": str(addr), **extra}
            return addr
        raise LeaseError(f"no free address in {self.net}")

    def release(self, sandbox_id: str) -> dict[str, Any] | None:
        return self.data.pop(sandbox_id, None)
