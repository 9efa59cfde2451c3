"""`quark features`: what this runtime supports, in the shape of runc's `features`
(runtime-spec features.md). It must state only what works: clients use it to decide
what to ask for. Extend it as the lifecycle (hooks, cgroups ...) lands.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .spec import NAMESPACE_TYPES

# Mount options the kernel's VFS honours on the mounts of config.json.
MOUNT_OPTIONS = sorted([
    "bind", "rbind", "defaults", "ro", "rw", "nosuid", "suid", "nodev", "dev",
    "noexec", "exec", "noatime", "relatime", "strictatime", "private", "rprivate",
])


def features() -> dict[str, Any]:
    """The features document (a JSON-ready dict)."""
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.1.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            # Namespaces are the guest kernel's own; only a network namespace path
            # (where the sandbox's host sockets live) reaches the host.
            "namespaces": sorted(NAMESPACE_TYPES - {"time"}),
            "capabilities": [],
            "cgroup": {"v1": False, "v2": False, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": False},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "io.github.quark.version": __version__,
            "io.github.quark.isolation": "kvm",
        },
    }
