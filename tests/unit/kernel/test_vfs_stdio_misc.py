"""Host stdio files, sendfile, fcntl/ioctl generics, times, close_range."""

from __future__ import annotations

import errno
import os
import select
import struct
from pathlib import Path

import pytest

from quark.kernel.abi.linux import O_APPEND, O_CREAT, O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY
from quark.kernel.fs.host.file import HostStdioFile
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call, resume, start


@pytest.fixture
def t(tmp_path: Path) -> FakeTask:
    r = tmp_path / "rootfs"
    (r / "tmp").mkdir(parents=True)
    (r / "src").write_bytes(b"0123456789" * 1000)
    return FakeKernel(str(r)).task()


def test_stdio_read_blocks_on_host_fd(t: FakeTask) -> None:
    rfd, wfd = os.pipe()
    f = HostStdioFile.from_host_fd(rfd)
    assert f.path.startswith("pipe:[") and f.readable and not f.writable
    assert t.fds.install(f) == 0
    os.close(rfd)                      # the kernel holds its own dup
    buf = t.mm.alloc(64)
    coro, blk = start(t, 0, 0, buf, 64)
    assert isinstance(blk, Block) and blk.host_fds[0][1] == select.POLLIN
    os.write(wfd, b"typed")
    assert resume(coro) == ("done", 5) and t.mm.read(buf, 5) == b"typed"
    os.close(wfd)
    assert call(t, 0, 0, buf, 64) == 0  # EOF (POLLHUP) does not block
    f_nb = HostStdioFile.from_host_fd(os.pipe()[0])
    f_nb.set_status_flags(O_NONBLOCK)
    fd = t.fds.install(f_nb)
    assert call(t, 0, fd, buf, 64) == -errno.EAGAIN


def test_stdio_write_epipe(t: FakeTask) -> None:
    rfd, wfd = os.pipe()
    fd = t.fds.install(HostStdioFile.from_host_fd(wfd))
    data = t.mm.put(b"out")
    assert call(t, 1, fd, data, 3) == 3 and os.read(rfd, 10) == b"out"
    os.close(rfd)
    assert call(t, 1, fd, data, 3) == -errno.EPIPE
    assert call(t, 16, fd, 0x5401, t.mm.alloc(64)) == -errno.ENOTTY
    assert call(t, 72, fd, 3) == O_WRONLY
    os.close(wfd)


def test_sendfile(t: FakeTask) -> None:
    src = call(t, 2, t.mm.cstr("/src"), O_RDONLY, 0)
    dst = call(t, 2, t.mm.cstr("/tmp/dst"), O_CREAT | O_WRONLY, 0o644)
    assert call(t, 40, dst, src, 0, 5000) == 5000
    offp = t.mm.put(struct.pack("<Q", 9990))
    assert call(t, 40, dst, src, offp, 100) == 10
    assert t.mm.read_u64(offp) == 10000
    p = t.mm.alloc(8)
    call(t, 22, p)
    r, w = struct.unpack("<ii", t.mm.read(p, 8))
    assert call(t, 40, w, src, 0, 100) == 100     # generic path into a pipe
    buf = t.mm.alloc(200)
    assert call(t, 0, r, buf, 200) == 100 and t.mm.read(buf, 3) == b"012"


def test_fcntl_setfl_append_and_ioctls(t: FakeTask, tmp_path: Path) -> None:
    fd = call(t, 2, t.mm.cstr("/tmp/f"), O_CREAT | O_RDWR, 0o644)
    call(t, 1, fd, t.mm.put(b"abc"), 3)
    call(t, 8, fd, 0, 0)
    assert call(t, 72, fd, 4, O_APPEND | O_NONBLOCK) == 0
    assert call(t, 72, fd, 3) & (O_APPEND | O_NONBLOCK) == O_APPEND | O_NONBLOCK
    call(t, 1, fd, t.mm.put(b"Z"), 1)
    assert (tmp_path / "rootfs/tmp/f").read_bytes() == b"abcZ"
    call(t, 8, fd, 1, 0)
    n = t.mm.alloc(4)
    assert call(t, 16, fd, 0x541B, n) == 0 and t.mm.read_u32(n) == 3   # FIONREAD
    assert call(t, 16, fd, 0x5451, 0) == 0 and call(t, 72, fd, 1) == 1  # FIOCLEX
    assert call(t, 16, fd, 0x5450, 0) == 0 and call(t, 72, fd, 1) == 0  # FIONCLEX
    t.mm.write_u32(n, 0)
    assert call(t, 16, fd, 0x5421, n) == 0 and not call(t, 72, fd, 3) & O_NONBLOCK
    assert call(t, 16, fd, 0x5401, n) == -errno.ENOTTY
    assert call(t, 72, fd, 99) == -errno.EINVAL
    lk = t.mm.put(struct.pack("<hh4xqqi4x", 1, 0, 0, 0, 0))
    assert call(t, 72, fd, 6, lk) == 0                       # F_SETLK write lock
    assert call(t, 72, fd, 5, lk) == 0                       # F_GETLK -> F_UNLCK
    assert struct.unpack_from("<h", t.mm.read(lk, 2))[0] == 2
    assert call(t, 73, fd, 2) == 0 and call(t, 73, fd, 16) == -errno.EINVAL
    assert call(t, 73, fd, 99) == 0         # has LOCK_MAND (32): ignored, as Linux


def test_utimensat_and_access(t: FakeTask, tmp_path: Path) -> None:
    times = t.mm.put(struct.pack("<qqqq", 1000, 5, 2000, (1 << 30) - 2))
    assert call(t, 280, -100, t.mm.cstr("/src"), times, 0) == 0
    st = os.stat(tmp_path / "rootfs/src")
    assert st.st_atime_ns == 1000 * 10**9 + 5 and st.st_mtime_ns != 2000 * 10**9
    bad = t.mm.put(struct.pack("<qqqq", 0, 10**9, 0, 0))
    assert call(t, 280, -100, t.mm.cstr("/src"), bad, 0) == -errno.EINVAL
    assert call(t, 280, -100, t.mm.cstr("/src"), 0, 0) == 0
    assert os.stat(tmp_path / "rootfs/src").st_atime_ns > 1000 * 10**9 + 5
    assert call(t, 21, t.mm.cstr("/src"), 8) == -errno.EINVAL
    assert call(t, 21, t.mm.cstr("/nope"), 0) == -errno.ENOENT
    assert call(t, 439, -100, t.mm.cstr("/src"), 4, 0x200) == 0


def test_close_range_and_cloexec(t: FakeTask) -> None:
    fds = [call(t, 2, t.mm.cstr("/src"), O_RDONLY, 0) for _ in range(5)]
    assert fds == [0, 1, 2, 3, 4]
    assert call(t, 436, 1, 2, 4) == 0            # CLOSE_RANGE_CLOEXEC
    assert call(t, 72, 1, 1) == 1 and call(t, 72, 3, 1) == 0
    t.fds.close_on_exec()
    assert sorted(fd for fd, _ in t.fds) == [0, 3, 4]
    assert call(t, 436, 3, 0xFFFFFFFF, 0) == 0
    assert sorted(fd for fd, _ in t.fds) == [0]
    assert call(t, 436, 5, 1, 0) == -errno.EINVAL
