"""The state directory: what `quark state`, `list`, `kill`, `delete` know about a container.

Layout, one directory per container under the root (`--root`, default /run/quark):

    <root>/<id>/state.json     this module's `State`, rewritten atomically (rename)
    <root>/<id>/control.sock   the sandbox process's control socket (sandbox/control.py)
    <root>/<id>/resources.json what `update --resources` was given

Who writes state.json: `create` writes it first (status "creating"); from then on the
sandbox process is the only writer (created, running, paused, stopped). `delete`
removes the directory. A sandbox that dies without saying so is still reported as
stopped: the live status checks that `pid` is alive *and* is the same process, by its
start time in /proc/<pid>/stat (pids are reused).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import OciError

OCI_VERSION = "1.0.2-dev"   # what runc 1.1 reports in `state`
STATUSES = ("creating", "created", "running", "paused", "stopped")


class NotExistError(OciError):
    """No such container (message as runc's: `container "x" does not exist`)."""


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def pid_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), None if no such pid."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    try:
        if rest[0] == b"Z":     # a zombie has finished: it is not running anything
            return None
        return int(rest[19])
    except (IndexError, ValueError):
        return None


@dataclass
class State:
    """One container's record. `status` is what the sandbox last wrote; use
    `live_status()` for the truth."""

    id: str
    bundle: str
    rootfs: str = ""
    pid: int = 0
    pid_start: int | None = None
    status: str = "creating"
    created: str = field(default_factory=now_rfc3339)
    owner: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    exit_status: int | None = None
    cgroup_dirs: list[str] = field(default_factory=list)
    # False: the network plugins were never asked to set this container up (its new
    # namespace stays empty), so delete need not load them to tear it down.
    network_plugins: bool = True

    def alive(self) -> bool:
        """The sandbox process still runs (and is the one we started)."""
        st = pid_start_time(self.pid)
        return st is not None and (self.pid_start is None or st == self.pid_start)

    def live_status(self) -> str:
        if self.status == "stopped" or not self.alive():
            # "creating" with a dead pid is a create that failed half-way.
            return "stopped"
        return self.status

    def oci(self) -> dict[str, Any]:
        """The document `quark state` prints: runc 1.1's field names and order."""
        status = self.live_status()
        doc: dict[str, Any] = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "pid": 0 if status == "stopped" else self.pid,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    def hook_state(self) -> dict[str, Any]:
        """The state given to hooks on stdin (runtime-spec state, status as stored)."""
        return {"ociVersion": OCI_VERSION, "id": self.id, "status": self.status,
                "pid": self.pid, "bundle": self.bundle,
                "annotations": dict(self.annotations)}


class StateDir:
    """`<root>/<id>`: load and save one container's state."""

    def __init__(self, root: str | os.PathLike[str], container_id: str) -> None:
        self.root = Path(os.path.abspath(root))
        self.id = container_id
        self.path = self.root / container_id

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def control_path(self) -> Path:
        return self.path / "control.sock"

    def exists(self) -> bool:
        return self.state_file.exists()

    def make(self) -> None:
        """Claim the id: mkdir is atomic, so two creates of one id cannot both win."""
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
            self.path.mkdir(mode=0o711)
        except FileExistsError:
            raise OciError(f'container with id "{self.id}" already exists') from None
        except OSError as e:
            raise OciError(f"creating state directory {self.path}: {e.strerror}") from e

    def save(self, state: State) -> None:
        """Write state.json atomically: readers see the old or the new file, whole."""
        tmp = self.path / f".state.json.{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(asdict(state), f)
        os.rename(tmp, self.state_file)

    def load(self) -> State:
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotExistError(f'container "{self.id}" does not exist') from None
        except OSError as e:
            raise OciError(f"reading {self.state_file}: {e.strerror}") from e
        try:
            doc = json.loads(text)
            return State(**doc)
        except (ValueError, TypeError) as e:
            raise OciError(f"{self.state_file} is corrupt: {e}") from e

    def update(self, **changes: Any) -> State:
        """Load, change, save (only the sandbox process calls this after create)."""
        st = self.load()
        for k, v in changes.items():
            setattr(st, k, v)
        self.save(st)
        return st

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def list_states(root: str | os.PathLike[str]) -> list[State]:
    """Every container under `root` with a readable state, in id order."""
    out = []
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            out.append(StateDir(root, name).load())
        except OciError:
            continue    # a half-made or half-removed directory is not a container
    return out
