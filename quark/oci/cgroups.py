"""linux.cgroupsPath: put the sandbox process in the container's cgroup.

Clients look for the container there (podman stats, containerd's shim loads the cgroup
of the pid for metrics and OOM events), and it is where the host's limits apply to
the whole VM: guest memory is the sandbox process's memory.

cgroupsPath forms (runc's): "/a/b" from the hierarchy root; "a/b" under our own
cgroup; with --systemd-cgroup "slice:prefix:name", which is `<slice>/<prefix>-<name>.scope`
(we do not talk to systemd; the path is made with cgroupfs, which systemd tolerates
for scopes it does not know). v1, v2 and the hybrid layout are handled: every
mounted hierarchy gets the process. Failures are returned as warnings, never fatal:
a container in the caller's cgroup still runs.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _hierarchies() -> list[tuple[Path, str]]:
    """(mount point, key) of each cgroup hierarchy; key matches /proc/self/cgroup."""
    out = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(rfields) < 3 or rfields[0] not in ("cgroup", "cgroup2"):
                continue
            mnt = Path(fields[4])
            if rfields[0] == "cgroup2":
                out.append((mnt, ""))
            else:
                opts = [o for o in rfields[2].split(",")
                        if o not in ("rw", "ro", "relatime", "noexec", "nosuid", "nodev")
                        and not o.startswith("release_agent") and o != "clone_children"]
                out.append((mnt, ",".join(sorted(opts))))
    return out


def _own(key: str, pid: int | str = "self") -> str:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            if ",".join(sorted(ctrls.split(","))) == key:
                return path
    return "/"


def _systemd(path: str) -> str:
    slice_, prefix, name = (path.split(":") + ["", ""])[:3]
    parts = []
    if slice_ and slice_ != "-.slice":
        stem = slice_.removesuffix(".slice").split("-")
        parts = ["-".join(stem[:i + 1]) + ".slice" for i in range(len(stem))]
    unit = f"{prefix}-{name}.scope" if prefix else name
    return "/" + "/".join(parts + [unit])


def resolve(cgroups_path: str, systemd: bool = False) -> str:
    """The cgroup path (relative form kept: resolved per hierarchy in `join`)."""
    if systemd or (cgroups_path.count(":") == 2 and not cgroups_path.startswith("/")):
        return _systemd(cgroups_path)
    return cgroups_path


def _dirs(path: str) -> list[Path]:
    out = []
    for mnt, key in _hierarchies():
        base = path if path.startswith("/") else os.path.join(_own(key), path)
        out.append(mnt / base.lstrip("/"))
    return out


def _mkdirs(d: Path) -> None:
    """mkdir -p; in a v1 cpuset hierarchy a new cgroup starts with no CPUs and no
    memory nodes (joining it fails with ENOSPC), so copy them from the parent as
    runc does."""
    if d.exists():
        return
    _mkdirs(d.parent)
    d.mkdir()
    for name in ("cpuset.cpus", "cpuset.mems"):
        f = d / name
        if f.exists() and not f.read_text().strip():
            f.write_text((d.parent / name).read_text())


def join(path: str, pid: int) -> tuple[list[str], list[str]]:
    """Create `path` in every hierarchy and move `pid` there.
    Returns (the directories joined, warnings)."""
    joined, warnings = [], []
    for d in _dirs(path):
        try:
            _mkdirs(d)
            (d / "cgroup.procs").write_text(str(pid))
            joined.append(str(d))
        except OSError as e:
            warnings.append(f"cgroup {d}: {e.strerror or e}")
    return joined, warnings


def follow(pid: int) -> list[str]:
    """Move this process into the cgroups of process `pid`, in every hierarchy (a
    template's run joins its caller's, so its memory is charged where a run in the
    caller's own process would have been). Returns warnings."""
    warnings = []
    for mnt, key in _hierarchies():
        theirs = _own(key, pid)
        if theirs == _own(key):
            continue            # a migration costs up to 15 ms (v1 cpu) even in place
        d = mnt / theirs.lstrip("/")
        try:
            (d / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as e:
            warnings.append(f"cgroup {d}: {e.strerror or e}")
    return warnings


def remove(dirs: list[str]) -> None:
    """Remove the directories `join` made (they must be empty); best effort."""
    for d in dirs:
        with contextlib.suppress(OSError):
            os.rmdir(d)
