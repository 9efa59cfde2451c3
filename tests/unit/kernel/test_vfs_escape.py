"""Host confinement: nothing a hostile guest does with symlinks, "..", or racing
renames reaches a byte outside the rootfs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from quark.kernel.abi.linux import O_CREAT, O_DIRECTORY, O_RDONLY, O_WRONLY
from quark.kernel.errors import LinuxError
from quark.kernel.vfs import ops
from quark.kernel.vfs.inode import SetAttr
from quark.kernel.vfs.path import Resolver
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call

SECRET = b"HOST SECRET\n"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(SECRET)
    (outside / "file").write_bytes(SECRET)
    r = tmp_path / "a" / "b" / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "tmp").mkdir()
    (r / "d").mkdir()
    (r / "d/file").write_bytes(b"inside\n")
    (r / "etc/passwd").write_bytes(b"root:inside\n")
    os.symlink("/etc/passwd", r / "abs")
    os.symlink("../../../../../../../../etc/passwd", r / "rel")
    os.symlink("/c2", r / "c1")
    os.symlink("../../../../etc", r / "c2")
    os.symlink("../../..", r / "updir")
    os.symlink(str(outside / "passwd"), r / "hostabs")
    os.symlink("/proc/self/root/etc/passwd", r / "magic")
    os.symlink("/tmp/created", r / "dangling")
    os.symlink(str(outside), r / "outdir")
    return r, outside


def _read(t: FakeTask, path: str) -> bytes | int:
    fd = call(t, 2, t.mm.cstr(path), O_RDONLY, 0)
    if fd < 0:
        return fd
    buf = t.mm.alloc(256)
    n = call(t, 0, fd, buf, 256)
    return t.mm.read(buf, n)


def test_symlinks_resolve_inside(world: tuple[Path, Path]) -> None:
    r, outside = world
    t = FakeKernel(str(r)).task()
    assert _read(t, "/abs") == b"root:inside\n"
    assert _read(t, "/rel") == b"root:inside\n"
    assert _read(t, "/c1/passwd") == b"root:inside\n"
    assert _read(t, "/updir/updir/etc/passwd") == b"root:inside\n"
    assert _read(t, "/updir/../../etc/passwd") == b"root:inside\n"
    assert _read(t, "/hostabs") == -errno.ENOENT
    assert _read(t, "/magic") == -errno.ENOENT
    assert _read(t, "/outdir/file") == -errno.ENOENT
    fd = call(t, 2, t.mm.cstr("/dangling"), O_CREAT | O_WRONLY, 0o644)
    assert fd >= 0
    assert (r / "tmp/created").exists()
    assert not Path("/tmp/created").exists() or Path("/tmp/created").stat().st_ino != \
        (r / "tmp/created").stat().st_ino
    assert call(t, 80, t.mm.cstr("/updir")) == 0  # chdir through an escaping link
    assert _read(t, "../../../../etc/passwd") == b"root:inside\n"
    for p in (outside / "passwd", outside / "file"):
        assert p.read_bytes() == SECRET


def test_symlink_loop(world: tuple[Path, Path]) -> None:
    r, _ = world
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    t = FakeKernel(str(r)).task()
    assert _read(t, "/loop1") == -errno.ELOOP
    # 40 links are fine, 41 are not
    for i in range(41):
        os.symlink(f"s{i + 1}" if i < 40 else "etc/passwd", r / f"s{i}")
    assert _read(t, "/s1") == b"root:inside\n"
    assert _read(t, "/s0") == -errno.ELOOP


def test_racing_directory_swap(world: tuple[Path, Path]) -> None:
    """A name resolved while it was a directory is swapped for a symlink to the
    outside before the host access: every kind of access fails, none escapes."""
    r, outside = world
    t = FakeKernel(str(r)).task()
    loc = Resolver(t).resolve(t.fs.root, "/d/file")
    dloc = Resolver(t).resolve(t.fs.root, "/d")
    os.rename(r / "d", r / "d.old")
    os.symlink(str(outside), r / "d")
    with pytest.raises(LinuxError) as e:
        ops.open_loc(t, loc, O_RDONLY)
    assert e.value.errno in (errno.ELOOP, errno.EXDEV, errno.ENOENT)
    with pytest.raises(LinuxError):
        loc.node.stat()
    with pytest.raises(LinuxError):
        ops.open_loc(t, dloc, O_RDONLY | O_DIRECTORY)
    with pytest.raises(LinuxError):
        dloc.node.readdir(t)
    with pytest.raises(LinuxError):
        dloc.node.create(t, "new", 0o644, O_WRONLY, dloc)
    with pytest.raises(LinuxError):
        dloc.node.unlink(t, "file")
    with pytest.raises(LinuxError):
        loc.node.setattr(t, SetAttr(mode=0o777))
    with pytest.raises(LinuxError):
        loc.node.setattr(t, SetAttr(size=0))
    with pytest.raises(LinuxError):
        loc.node.setattr(t, SetAttr(uid=1234, gid=1234))
    with pytest.raises(LinuxError):
        dloc.node.rename(t, "file", dloc.node, "file2", 0)
    with pytest.raises(LinuxError):
        dloc.node.symlink(t, "x", "/y")
    assert (outside / "file").read_bytes() == SECRET
    assert sorted(os.listdir(outside)) == ["file", "passwd"]
    assert oct((outside / "file").stat().st_mode & 0o777) != "0o777"


def test_racing_final_symlink(world: tuple[Path, Path]) -> None:
    """The last component replaced by a symlink after lookup: never followed."""
    r, outside = world
    t = FakeKernel(str(r)).task()
    loc = Resolver(t).resolve(t.fs.root, "/etc/passwd")
    os.unlink(r / "etc/passwd")
    os.symlink(str(outside / "passwd"), r / "etc/passwd")
    with pytest.raises(LinuxError):
        ops.open_loc(t, loc, O_RDONLY)
    with pytest.raises(LinuxError):
        loc.node.setattr(t, SetAttr(size=0))
    with pytest.raises(LinuxError):  # chmod of a link: EOPNOTSUPP, never followed
        loc.node.setattr(t, SetAttr(mode=0o600))
    assert (outside / "passwd").read_bytes() == SECRET
    assert (outside / "passwd").stat().st_mode & 0o777 != 0o600


def test_device_nodes_never_opened_on_host(world: tuple[Path, Path]) -> None:
    r, _ = world
    if os.geteuid() != 0:
        pytest.skip("mknod of a device node needs root")
    os.mknod(r / "sda", 0o600 | 0o060000, os.makedev(8, 0))
    t = FakeKernel(str(r)).task()
    assert _read(t, "/sda") == -errno.ENXIO  # not in the kernel's device table
    os.mknod(r / "null", 0o666 | 0o020000, os.makedev(1, 3))
    assert _read(t, "/null") == b""          # the kernel's own /dev/null
    assert call(t, 133, t.mm.cstr("/tmp/sdb"), 0o060600, (8 << 8) | 16) == -errno.EPERM
