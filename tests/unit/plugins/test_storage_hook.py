"""quark_storage_mount: a plugin's filesystem serves a mount of config.json."""

from __future__ import annotations

import types
from pathlib import Path

import pluggy

from quark.kernel.fs.tmpfs.fs import TmpFs
from quark.kernel.vfs.mount import VFS
from quark.kernel.vfs.path import Resolver
from quark.oci.spec import MountSpec
from quark.plugins import hookspecs

hookimpl = pluggy.HookimplMarker("quark")


class MemStorage:
    """Serves mounts of type "memtest" from an in-memory filesystem."""

    def __init__(self) -> None:
        self.fs = TmpFs(name="memtest")
        self.calls: list[str] = []

    @hookimpl
    def quark_storage_mount(self, spec_mount: MountSpec, vfs: VFS) -> TmpFs | None:
        self.calls.append(spec_mount.destination)
        return self.fs if spec_mount.type == "memtest" else None


def _build(tmp_path: Path, mounts: tuple[MountSpec, ...], plugin: MemStorage) -> VFS:
    from quark.sandbox.process import Sandbox
    pm = pluggy.PluginManager("quark")
    pm.add_hookspecs(hookspecs)
    pm.register(plugin)
    fake = types.SimpleNamespace(spec=types.SimpleNamespace(
        rootfs=tmp_path, readonly=False, terminal=False, mounts=mounts),
        plugins=pm, kernel=types.SimpleNamespace(vfs=None))
    Sandbox._build_vfs(fake)            # the real mount loop, without a VM
    return fake.kernel.vfs


def test_plugin_filesystem_serves_its_mount(tmp_path: Path) -> None:
    plugin = MemStorage()
    vfs = _build(tmp_path, (MountSpec("/data", "memtest", "", ()),
                            MountSpec("/tmp", "tmpfs", "tmpfs", ())), plugin)
    assert plugin.calls == ["/data", "/tmp"]       # asked for every mount
    data = [m for m in vfs.mounts() if m.path == "/data"]
    assert data and data[0].fs is plugin.fs
    tmp = [m for m in vfs.mounts() if m.path == "/tmp"]
    assert tmp and tmp[0].fs is not plugin.fs      # None: the kernel's own tmpfs
    loc = Resolver(types.SimpleNamespace(fs=vfs.new_fs_context(), creds=None)).resolve(
        vfs.root(), "/data")
    assert loc.node.is_dir()
