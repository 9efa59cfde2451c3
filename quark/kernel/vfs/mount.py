"""The container's mount table and the ``VFS`` object the kernel holds.

Mounts are keyed by (parent mount, key of the directory holding the mountpoint,
name): a walk checks that table before asking the filesystem, so a mount works
even where the rootfs has no such directory (a synthetic mountpoint, as gVisor
makes). A later mount on the same spot covers the earlier one.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from quark.kernel.abi.linux import EBUSY, EINVAL, ENODEV, ENOENT
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.inode import DirEntry, FileSystem, Node, dtype_of
from quark.kernel.vfs.path import Location, Resolver, dirname, split

if TYPE_CHECKING:
    from quark.kernel.vfs.fscontext import FsContext

_mount_ids = itertools.count(1)

# Mount options that are flags of the mount, not of the filesystem.
_MNT_FLAGS = ("ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime",
              "strictatime", "nodiratime", "sync", "dirsync")
_PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave",
                "unbindable", "runbindable", "bind", "rbind")


class Mount:
    def __init__(self, vfs: VFS, fs: FileSystem, root: Node, path: str, *,
                 readonly: bool, flags: Sequence[str], source: str,
                 parent: Mount | None, parent_loc: Location | None) -> None:
        self.id = next(_mount_ids)
        self.vfs = vfs
        self.fs = fs
        self.root = root
        self.path = path
        self.readonly = readonly
        self.flags = tuple(flags)
        self.source = source
        self.parent = parent
        self.parent_loc = parent_loc

    @property
    def nosuid(self) -> bool:
        return "nosuid" in self.flags

    @property
    def noexec(self) -> bool:
        return "noexec" in self.flags

    def options_text(self) -> str:
        """The options column of /proc/mounts."""
        opts = ["ro" if self.readonly else "rw"]
        opts += [f for f in self.flags if f not in ("ro", "rw")]
        extra = getattr(self.fs, "mount_options", "")
        if extra:
            opts.append(extra)
        return ",".join(opts)

    def __repr__(self) -> str:
        return f"<Mount {self.id} {self.fs.name} at {self.path}>"


class _Task:
    """The identity the VFS uses for its own walks while setting up mounts: root
    creds, root and cwd at the container root."""

    def __init__(self, root: Location) -> None:
        from quark.kernel.creds import Creds
        from quark.kernel.vfs.fscontext import FsContext
        self.creds = Creds.root()
        self.fs = FsContext(root, root)
        self.pid = 1
        self.tid = 1


class VFS:
    """The mount table of one container.

    :param rootfs_host_path: host directory served as ``/`` (through hostfs).
    :param readonly: ``root.readonly`` of config.json.
    :param kernel: provides ``procs()``, ``hostname``, ``boot_time`` to procfs.
    :param tty_fd: host fd of the controlling terminal for /dev/tty (None: ENXIO).
    """

    def __init__(self, rootfs_host_path: str, readonly: bool = False, *,
                 kernel: Any = None, tty_fd: int | None = None) -> None:
        from quark.kernel.fs.host.fs import HostFs
        self.kernel = kernel
        self.tty_fd = tty_fd
        self._covers: dict[tuple[int, Hashable, str], Mount] = {}
        self._mounts: list[Mount] = []
        fs = HostFs(rootfs_host_path, readonly=readonly)
        self.root_mount = Mount(self, fs, fs.root, "/", readonly=readonly, flags=(),
                                source=rootfs_host_path, parent=None, parent_loc=None)
        self._mounts.append(self.root_mount)

    # ---- for the kernel
    def root(self) -> Location:
        return Location(self.root_mount, self.root_mount.root, "/")

    def new_fs_context(self, cwd: str = "/") -> FsContext:
        """The FsContext of the init process: root at "/", cwd at ``cwd``."""
        from quark.kernel.vfs.fscontext import FsContext
        root = self.root()
        ctx = FsContext(root, root)
        if cwd != "/":
            ctx.cwd = Resolver(_Task(root)).resolve(root, cwd)
        return ctx

    def mounts(self) -> list[Mount]:
        """Mounts in the order made (the order of /proc/mounts)."""
        return list(self._mounts)

    def mounted_at(self, d: Location, name: str) -> Mount | None:
        if not self._covers:
            return None
        return self._covers.get((d.mount.id, d.node.key(), name))

    def names_mounted_in(self, d: Location) -> list[str]:
        """Mountpoints directly in ``d`` (shown by getdents even when synthetic)."""
        mid, key = d.mount.id, d.node.key()
        return [n for (m, k, n) in self._covers if m == mid and k == key]

    def set_tty(self, host_fd: int | None) -> None:
        self.tty_fd = host_fd

    # ---- mount(2)-like setup, driven by the sandbox from config.json
    def mount(self, dest: str, fstype: str, source: str = "",
              options: Sequence[str] | str = (), provided: FileSystem | None = None) -> Mount:
        """Mount ``fstype`` at container path ``dest`` (absolute). Missing parent
        directories of ``dest`` become empty read-only directories. ``provided``: a
        filesystem a storage plugin made for this mount (its ``root`` is mounted)."""
        if isinstance(options, str):
            options = [o for o in options.split(",") if o]
        opts = list(options)
        if not dest.startswith("/"):
            dest = "/" + dest
        comps = [c for c in split(dest) if c != "."]
        if not comps or ".." in comps:
            raise LinuxError(EBUSY if not comps else EINVAL)
        dest = "/" + "/".join(comps)
        parent = self._ensure_dir(dirname(dest))
        name = comps[-1]
        if provided is not None:
            fs, root, readonly = provided, provided.root, "ro" in opts  # type: ignore[attr-defined]
        else:
            fs, root, readonly = self._make_fs(fstype, source, opts)
        flags = [o for o in opts if o in _MNT_FLAGS and o not in ("ro", "rw")]
        m = Mount(self, fs, root, dest, readonly=readonly, flags=flags, source=source or fstype,
                  parent=parent.mount, parent_loc=parent)
        self._covers[(parent.mount.id, parent.node.key(), name)] = m
        self._mounts.append(m)
        if fstype == "tmpfs" and dest == "/dev":
            # OCI runtimes fill a tmpfs /dev with the default devices (runc does).
            from quark.kernel.fs.dev.devfs import populate
            from quark.kernel.fs.tmpfs.fs import TmpFs
            assert isinstance(fs, TmpFs)
            populate(fs)
        return m

    def _ensure_dir(self, path: str) -> Location:
        r = Resolver(_Task(self.root()))
        try:
            return r.resolve(self.root(), path)
        except LinuxError as e:
            if e.errno != ENOENT or path == "/":
                raise
        self.mount(path, "empty")
        return Resolver(_Task(self.root())).resolve(self.root(), path)

    def _make_fs(self, fstype: str, source: str, opts: list[str]) -> tuple[FileSystem, Node, bool]:
        readonly = "ro" in opts
        fsopts = [o for o in opts if o not in _MNT_FLAGS and o not in _PROPAGATION]
        if fstype == "bind" or "bind" in opts or "rbind" in opts:
            from quark.kernel.fs.host.fs import HostFs
            hfs = HostFs(source, readonly=readonly)
            return hfs, hfs.root, readonly
        if fstype == "tmpfs":
            from quark.kernel.fs.tmpfs.fs import TmpFs
            tfs = TmpFs.from_options(fsopts)
            return tfs, tfs.root, readonly
        if fstype in ("devtmpfs", "dev"):
            from quark.kernel.fs.dev.devfs import make_devfs
            dfs = make_devfs(fsopts)
            return dfs, dfs.root, readonly
        if fstype == "proc":
            from quark.kernel.fs.proc.fs import ProcFs
            pfs = ProcFs(self)
            return pfs, pfs.root, readonly
        if fstype == "sysfs":
            from quark.kernel.fs.tmpfs.synthetic import make_sysfs
            sfs = make_sysfs()
            return sfs, sfs.root, True
        if (fstype in ("devpts", "mqueue", "empty", "securityfs", "debugfs", "binfmt_misc")
                or fstype.startswith("cgroup")):
            from quark.kernel.fs.tmpfs.synthetic import make_empty
            efs = make_empty(fstype)
            return efs, efs.root, True
        raise LinuxError(ENODEV, f"unknown filesystem type {fstype!r}")

    def release(self) -> None:
        for m in self._mounts:
            m.fs.release()


def list_dir(t: Any, loc: Location) -> list[DirEntry]:
    """A directory's entries for getdents64: "." and "..", the filesystem's own,
    then mountpoints the filesystem does not have."""
    r = Resolver(t)
    me = loc.node.stat().ino
    up = r.dotdot(loc)
    try:
        up_ino = up.node.stat().ino
    except LinuxError:
        up_ino = me
    out = [DirEntry(".", me, 4), DirEntry("..", up_ino, 4)]
    out += loc.node.readdir(t)
    extra = loc.mount.vfs.names_mounted_in(loc)
    if extra:
        have = {e.name for e in out}
        for n in extra:
            if n not in have:
                m = loc.mount.vfs.mounted_at(loc, n)
                assert m is not None
                out.append(DirEntry(n, m.root.stat().ino, dtype_of(m.root.mode())))
    return out


