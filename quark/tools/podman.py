"""A podman of one's own: containers.conf and vfs storage under one directory, for the
client tests (tests/clients/test_podman.py) and bench/run.py.

This VM lacks CAP_SYS_RESOURCE, so default_ulimits pins nofile and nproc; quark is
listed in runtime_supports_json so that podman reads its JSON error log; cgroupfs and
file events need no systemd.
"""

from __future__ import annotations

from pathlib import Path


def podman_env(d: Path) -> dict[str, str]:
    """Write the configuration under ``d`` (a directory that exists); the
    environment variables that make podman use it."""
    conf = d / "containers.conf"
    conf.write_text(f"""\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
log_driver = "k8s-file"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{d / 'tmp'}"
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "quark"]
""")
    storage = d / "storage.conf"
    storage.write_text(f"""\
[storage]
driver = "vfs"
runroot = "{d / 'run'}"
graphroot = "{d / 'graph'}"
""")
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
