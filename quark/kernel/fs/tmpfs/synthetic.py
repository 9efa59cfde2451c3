"""Small read-only trees for the filesystems a container expects to see mounted
but that we do not emulate in depth: sysfs, devpts, mqueue, cgroup*."""

from __future__ import annotations

import os

from quark.kernel.abi.linux import (
    CGROUP2_SUPER_MAGIC,
    DEVPTS_SUPER_MAGIC,
    MQUEUE_MAGIC,
    S_IFDIR,
    S_IFREG,
    SYSFS_MAGIC,
)
from quark.kernel.fs.tmpfs.fs import TmpFs, TmpNode

_MAGIC = {"sysfs": SYSFS_MAGIC, "devpts": DEVPTS_SUPER_MAGIC, "mqueue": MQUEUE_MAGIC,
          "cgroup2": CGROUP2_SUPER_MAGIC, "cgroup": CGROUP2_SUPER_MAGIC}


def make_empty(fstype: str) -> TmpFs:
    fs = TmpFs(mode=0o755, name="tmpfs" if fstype == "empty" else fstype)
    fs.magic = _MAGIC.get(fstype, fs.magic)
    return fs


def _dir(parent: TmpNode, name: str) -> TmpNode:
    assert parent.children is not None
    n = TmpNode(parent.fs, S_IFDIR | 0o755, 0, 0, parent)
    n.nlink = 2
    parent.children[name] = n
    parent.nlink += 1
    return n


def _file(parent: TmpNode, name: str, text: str) -> None:
    assert parent.children is not None
    n = TmpNode(parent.fs, S_IFREG | 0o444, 0, 0, parent)
    n.data = bytearray(text.encode())
    parent.children[name] = n


def make_sysfs() -> TmpFs:
    """Just what common programs probe: the CPU list and cgroup mountpoint."""
    fs = make_empty("sysfs")
    ncpu = os.cpu_count() or 1
    cpus = f"0-{ncpu - 1}\n" if ncpu > 1 else "0\n"
    _dir(_dir(fs.root, "fs"), "cgroup")
    _dir(fs.root, "kernel")
    _dir(_dir(fs.root, "class"), "net")
    cpu = _dir(_dir(_dir(fs.root, "devices"), "system"), "cpu")
    for name in ("online", "possible", "present"):
        _file(cpu, name, cpus)
    for i in range(ncpu):
        _dir(cpu, f"cpu{i}")
    return fs
