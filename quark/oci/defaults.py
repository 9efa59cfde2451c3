"""Default `config.json` contents, as `runc spec` (runc 1.1) writes them.

`quark spec` writes these; `quark do` and the bundle builder start from them.
"""

from __future__ import annotations

import os
from typing import Any

OCI_VERSION = "1.0.2-dev"
"""The runtime-spec version we write (the one runc 1.1 writes); 1.0.x and 1.1.x are read."""

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mount(dest: str, typ: str, source: str, options: list[str] | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"destination": dest, "type": typ, "source": source}
    if options:
        m["options"] = options
    return m


def base_mounts(*, rootless: bool = False) -> list[dict[str, Any]]:
    """The mounts every container gets: proc, /dev (tmpfs) with pts, shm and mqueue."""
    pts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        pts.append("gid=5")  # the tty group; a rootless user may not map it
    return [
        _mount("/proc", "proc", "proc"),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount("/dev/pts", "devpts", "devpts", pts),
        _mount("/dev/shm", "tmpfs", "shm",
               ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
    ]


def default_spec(args: list[str] | None = None, *, rootless: bool = False,
                 terminal: bool = True) -> dict[str, Any]:
    """A config.json dict equal to `runc spec` (or `runc spec --rootless`) output.

    :param args: process.args (runc's default is ["sh"]).
    :param rootless: the `--rootless` variant: a user namespace mapping the caller's
        uid/gid to 0, no network namespace, /sys bind-mounted instead of sysfs.
    :param terminal: process.terminal (runc writes true).
    """
    mounts = base_mounts(rootless=rootless)
    if rootless:
        mounts.append(_mount("/sys", "none", "/sys",
                             ["rbind", "nosuid", "noexec", "nodev", "ro"]))
    else:
        mounts.append(_mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]))
    mounts.append(_mount("/sys/fs/cgroup", "cgroup", "cgroup",
                         ["nosuid", "noexec", "nodev", "relatime", "ro"]))

    linux: dict[str, Any] = {}
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
        namespaces = ["pid", "ipc", "uts", "mount", "user"]
    else:
        linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
        namespaces = ["pid", "network", "ipc", "uts", "mount"]
    linux["namespaces"] = [{"type": t} for t in namespaces]
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)

    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": [DEFAULT_PATH, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(_CAPS)
                             for k in ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "quark",
        "mounts": mounts,
        "linux": linux,
    }
