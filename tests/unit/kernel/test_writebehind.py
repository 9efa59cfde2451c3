"""Write-behind (fs/host/writebehind.py) through the fast read/write twins: which
writes it gathers, what flushes them, and that errors stay Linux's. The rules at the
dispatcher (every other call flushes) are checked end to end by the guest program
tests/guest/progs/writebehind.c."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from quark.kernel.abi.linux import O_CREAT, O_DSYNC, O_RDONLY, O_RDWR, O_SYNC, O_WRONLY
from quark.kernel.fs.dev.devices import ZeroFile
from quark.kernel.fs.host.writebehind import LIMIT, RESERVE
from quark.kernel.syscalls.table import load

from .fakes import FakeKernel, FakeTask, call
from .fakes import fast_call as _fast

SYS_open, SYS_close, SYS_fsync = 2, 3, 74
BLOCK = 4096


def _task(root: Path) -> FakeTask:
    load()
    t = FakeKernel(str(root)).task()
    t.kernel.write_behind.enabled = True
    return t


@pytest.fixture
def t(tmp_path: Path) -> FakeTask:
    (tmp_path / "root").mkdir()
    return _task(tmp_path / "root")


def _open(t: FakeTask, path: str, flags: int) -> int:
    fd = call(t, SYS_open, t.mm.cstr(path), flags | O_CREAT, 0o644)
    assert fd >= 0, fd
    return fd


def _write_blocks(t: FakeTask, fd: int, n: int, tag: int = 0) -> None:
    for i in range(n):
        buf = t.mm.put(bytes([tag + i]) * BLOCK)
        assert _fast(t, 1, fd, buf, BLOCK) == BLOCK


def test_a_run_reaches_the_file_when_the_file_is_read(t: FakeTask, tmp_path: Path) -> None:
    fd = _open(t, "/f", O_RDWR)
    _write_blocks(t, fd, 10)
    host = tmp_path / "root" / "f"
    assert host.stat().st_size == 0          # gathered, not yet written
    assert t.kernel.write_behind.file is not None
    buf = t.mm.alloc(BLOCK)
    assert _fast(t, 0, fd, buf, BLOCK) == 0   # at the end of what was written
    assert host.stat().st_size == 10 * BLOCK
    assert host.read_bytes() == b"".join(bytes([i]) * BLOCK for i in range(10))
    assert t.kernel.write_behind.file is None


def test_reads_of_dev_zero_leave_the_run_pending(t: FakeTask, tmp_path: Path) -> None:
    fd = _open(t, "/f", O_WRONLY)
    z = t.fds.install(ZeroFile(O_RDONLY, "/dev/zero"))
    buf = t.mm.alloc(BLOCK)
    for _ in range(5):
        assert _fast(t, 0, z, buf, BLOCK) == BLOCK
        assert _fast(t, 1, fd, buf, BLOCK) == BLOCK
    assert (tmp_path / "root" / "f").stat().st_size == 0
    assert call(t, SYS_close, fd) == 0        # the release flushes
    assert (tmp_path / "root" / "f").read_bytes() == bytes(5 * BLOCK)


def test_a_write_to_another_file_flushes_the_run(t: FakeTask, tmp_path: Path) -> None:
    a, b = _open(t, "/a", O_WRONLY), _open(t, "/b", O_WRONLY)
    _write_blocks(t, a, 3)
    _write_blocks(t, b, 1)
    assert (tmp_path / "root" / "a").stat().st_size == 3 * BLOCK
    assert (tmp_path / "root" / "b").stat().st_size == 0


def test_runs_are_bounded(t: FakeTask, tmp_path: Path) -> None:
    fd = _open(t, "/f", O_WRONLY)
    n = LIMIT // BLOCK
    _write_blocks(t, fd, n + 1)
    assert (tmp_path / "root" / "f").stat().st_size == n * BLOCK
    big = t.mm.put(bytes(LIMIT))             # a write of LIMIT or more goes straight
    assert _fast(t, 1, fd, big, LIMIT) == LIMIT
    assert (tmp_path / "root" / "f").stat().st_size == (2 * n + 1) * BLOCK


@pytest.mark.parametrize("flag", [O_SYNC, O_DSYNC], ids=["O_SYNC", "O_DSYNC"])
def test_synchronous_files_are_written_at_once(t: FakeTask, tmp_path: Path, flag: int) -> None:
    fd = _open(t, "/f", O_WRONLY | flag)
    _write_blocks(t, fd, 2)
    assert (tmp_path / "root" / "f").stat().st_size == 2 * BLOCK


def test_bind_mounts_are_written_at_once(tmp_path: Path) -> None:
    # A bind mount may have readers on the host: only the rootfs is gathered.
    (tmp_path / "root" / "vol").mkdir(parents=True)
    (tmp_path / "host").mkdir()
    t = _task(tmp_path / "root")
    t.kernel.vfs.mount("/vol", "bind", str(tmp_path / "host"), ["rbind", "rw"])
    fd = _open(t, "/vol/f", O_WRONLY)
    _write_blocks(t, fd, 2)
    assert (tmp_path / "host" / "f").stat().st_size == 2 * BLOCK


def test_disabled_means_every_write_reaches_the_host(t: FakeTask, tmp_path: Path) -> None:
    t.kernel.write_behind.enabled = False
    fd = _open(t, "/f", O_WRONLY)
    _write_blocks(t, fd, 2)
    assert (tmp_path / "root" / "f").stat().st_size == 2 * BLOCK


def test_a_deferred_error_is_returned_by_the_next_write_and_fsync(t: FakeTask) -> None:
    fd = _open(t, "/f", O_WRONLY)
    _write_blocks(t, fd, 2)
    f = t.fds.get(fd)
    # The host file turns into /dev/full under the run: its flush fails ENOSPC.
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, f.host_fd)
    os.close(full)
    t.kernel.write_behind.flush()
    buf = t.mm.put(bytes(BLOCK))
    assert _fast(t, 1, fd, buf, BLOCK) == -errno.ENOSPC     # reported once ...
    assert f.write_error == 0
    _write_blocks(t, fd, 1)                                  # ... then gathered again
    t.kernel.write_behind.flush()
    assert call(t, SYS_fsync, fd) == -errno.ENOSPC
    assert call(t, SYS_fsync, fd) == -errno.EINVAL  # reported once: then /dev/full's own


def _fill(write: object, limit: int) -> tuple[int, int]:
    """Write 4 KiB blocks until an error: (bytes written, errno)."""
    done = 0
    while done < limit:
        r = write()  # type: ignore[operator]
        if r < 0:
            return done, -r
        done += r
    return done, 0


def test_enospc_comes_from_write_at_the_same_byte_as_natively(
        tmp_path: Path, small_tmpfs: Callable[[Path, int], Path]) -> None:
    """Differential: fill a small tmpfs natively and through the fast write with
    write-behind on; both must fail with ENOSPC after the same number of bytes."""
    size = LIMIT + RESERVE + 24 * BLOCK          # several runs, then the reserve
    for name in ("native", "quark"):
        small_tmpfs(tmp_path / name, size)
    block = bytes(range(256)) * (BLOCK // 256)
    nfd = os.open(tmp_path / "native" / "f", os.O_WRONLY | os.O_CREAT, 0o644)

    def native() -> int:
        try:
            return os.write(nfd, block)
        except OSError as e:
            return -(e.errno or 0)
    want = _fill(native, 2 * size)
    os.close(nfd)

    t = _task(tmp_path / "quark")
    fd = _open(t, "/f", O_WRONLY)
    buf = t.mm.put(block)
    taken = []

    def quark() -> int:
        r = _fast(t, 1, fd, buf, BLOCK)
        assert r is not None
        taken.append(t.kernel.write_behind.file is not None)
        return r
    got = _fill(quark, 2 * size)
    assert want[1] == errno.ENOSPC
    assert got == want
    assert any(taken), "no write was gathered: the test proves nothing"
    call(t, SYS_close, fd)
    assert (tmp_path / "quark" / "f").stat().st_size == want[0]
