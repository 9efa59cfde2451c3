"""/dev: a tmpfs holding the device nodes and links an OCI runtime creates
(runc's default devices and /dev/fd, /dev/std* links)."""

from __future__ import annotations

from collections.abc import Sequence

from quark.kernel.abi.linux import S_IFCHR, S_IFDIR, S_IFLNK
from quark.kernel.fs.tmpfs.fs import TmpFs, TmpNode

DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
         ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
DIRS = (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o1777))


def populate(fs: TmpFs) -> None:
    """Add what is missing of the standard /dev content to ``fs``'s root."""
    root = fs.root
    kids = root.children
    assert kids is not None
    for name, major, minor in DEVICES:
        if name not in kids:
            kids[name] = TmpNode(fs, S_IFCHR | 0o666, 0, 0, root, (major, minor))
    for name, target in LINKS:
        if name not in kids:
            n = TmpNode(fs, S_IFLNK | 0o777, 0, 0, root)
            n.target = target
            kids[name] = n
    for name, mode in DIRS:
        if name not in kids:
            d = TmpNode(fs, S_IFDIR | mode, 0, 0, root)
            d.nlink = 2
            kids[name] = d
            root.nlink += 1


def make_devfs(opts: Sequence[str] = ()) -> TmpFs:
    fs = TmpFs.from_options(list(opts) or ["mode=755"], name="devtmpfs")
    fs.root._mode = S_IFDIR | 0o755
    populate(fs)
    return fs
