"""Mounts, tmpfs, /dev, /proc and pipes through the system calls."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from quark.kernel.abi.linux import (
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NONBLOCK,
    O_RDONLY,
    O_RDWR,
    O_WRONLY,
    S_IFCHR,
    S_IFIFO,
    SEEK_SET,
)
from quark.kernel.creds import Creds
from quark.kernel.errors import LinuxError
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call, resume, start


@pytest.fixture
def kernel(tmp_path: Path) -> FakeKernel:
    r = tmp_path / "rootfs"
    for d in ("etc", "tmp", "bin", "mnt"):
        (r / d).mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    host = tmp_path / "data"
    host.mkdir()
    (host / "hello").write_text("from the host\n")
    (tmp_path / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    k = FakeKernel(str(r))
    v = k.vfs
    v.mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"])
    v.mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"])
    v.mount("/dev/pts", "devpts", "devpts", [])
    v.mount("/dev/shm", "tmpfs", "shm", ["size=64k"])
    v.mount("/sys", "sysfs", "sysfs", ["ro"])
    v.mount("/data", "bind", str(host), ["rbind", "ro"])
    v.mount("/etc/resolv.conf", "bind", str(tmp_path / "resolv.conf"), ["rbind"])
    v.mount("/deep/missing/dir", "tmpfs", "tmpfs", [])
    return k


@pytest.fixture
def t(kernel: FakeKernel) -> FakeTask:
    return kernel.task()


def open_(t: FakeTask, path: str, flags: int = O_RDONLY, mode: int = 0o644) -> int:
    return call(t, 2, t.mm.cstr(path), flags, mode)


def read(t: FakeTask, fd: int, n: int = 65536) -> bytes:
    buf = t.mm.alloc(n)
    got = call(t, 0, fd, buf, n)
    assert got >= 0, got
    return t.mm.read(buf, got)


def cat(t: FakeTask, path: str) -> bytes:
    fd = open_(t, path)
    assert fd >= 0, (path, fd)
    data = read(t, fd)
    call(t, 3, fd)
    return data


def write(t: FakeTask, fd: int, data: bytes) -> int:
    return call(t, 1, fd, t.mm.put(data), len(data))


def listdir(t: FakeTask, path: str) -> set[str]:
    fd = open_(t, path, O_RDONLY | O_DIRECTORY)
    assert fd >= 0, fd
    buf = t.mm.alloc(32768)
    names = set()
    while (n := call(t, 217, fd, buf, 32768)) > 0:
        data = t.mm.read(buf, n)
        off = 0
        while off < n:
            reclen = struct.unpack_from("<H", data, off + 16)[0]
            names.add(data[off + 19:off + reclen].split(b"\0")[0].decode())
            off += reclen
    call(t, 3, fd)
    return names


def stat(t: FakeTask, path: str, follow: bool = True) -> tuple[int, ...]:
    buf = t.mm.alloc(144)
    r = call(t, 4 if follow else 6, t.mm.cstr(path), buf)
    if r < 0:
        return (r,)
    return struct.unpack_from("<QQQIIIiQq", t.mm.read(buf, 144))


# ---- mounts
def test_mount_crossing_and_dotdot(t: FakeTask) -> None:
    assert "proc" in listdir(t, "/") and "deep" in listdir(t, "/")
    assert cat(t, "/data/hello") == b"from the host\n"
    assert cat(t, "/data/../etc/passwd").startswith(b"root")
    assert cat(t, "/dev/shm/../../etc/passwd").startswith(b"root")
    assert cat(t, "/etc/resolv.conf") == b"nameserver 10.0.0.1\n"
    assert open_(t, "/data/new", O_CREAT | O_WRONLY) == -errno.EROFS
    assert call(t, 87, t.mm.cstr("/data/hello")) == -errno.EROFS
    assert call(t, 84, t.mm.cstr("/proc")) == -errno.EBUSY
    assert call(t, 82, t.mm.cstr("/data/hello"), t.mm.cstr("/tmp/x")) == -errno.EXDEV
    assert call(t, 83, t.mm.cstr("/deep/missing/dir/sub"), 0o755) == 0
    assert call(t, 80, t.mm.cstr("/deep/missing/dir/sub")) == 0
    buf = t.mm.alloc(64)
    n = call(t, 79, buf, 64)
    assert t.mm.read(buf, n) == b"/deep/missing/dir/sub\0"
    assert call(t, 80, t.mm.cstr("../../..")) == 0
    assert call(t, 79, buf, 64) == 6 and t.mm.read(buf, 6) == b"/deep\0"


def test_resolv_conf_bind_is_writable_file(t: FakeTask) -> None:
    fd = open_(t, "/etc/resolv.conf", O_WRONLY | 0o1000)
    assert fd >= 0
    assert write(t, fd, b"x\n") == 2
    assert cat(t, "/etc/resolv.conf") == b"x\n"


def test_statfs(t: FakeTask) -> None:
    buf = t.mm.alloc(120)
    assert call(t, 137, t.mm.cstr("/proc"), buf) == 0
    assert struct.unpack_from("<q", t.mm.read(buf, 8))[0] == 0x9FA0
    assert call(t, 137, t.mm.cstr("/dev/shm"), buf) == 0
    assert struct.unpack_from("<q", t.mm.read(buf, 8))[0] == 0x01021994
    assert call(t, 137, t.mm.cstr("/"), buf) == 0
    assert call(t, 137, t.mm.cstr("/data"), buf) == 0
    assert struct.unpack_from("<q", t.mm.read(buf, 120), 0x50)[0] & 1  # ST_RDONLY


# ---- tmpfs
def test_tmpfs_files(t: FakeTask) -> None:
    fd = open_(t, "/dev/shm/a", O_CREAT | O_RDWR | O_EXCL, 0o640)
    assert fd >= 0
    assert write(t, fd, b"hello tmpfs") == 11
    assert call(t, 8, fd, 6, SEEK_SET) == 6
    assert read(t, fd) == b"tmpfs"
    assert call(t, 18, fd, t.mm.put(b"J"), 1, 20) == 1   # sparse pwrite
    st = stat(t, "/dev/shm/a")
    assert st[3] == 0o100640 and st[8] == 21
    assert cat(t, "/dev/shm/a") == b"hello tmpfs" + b"\0" * 9 + b"J"
    assert call(t, 83, t.mm.cstr("/dev/shm/d"), 0o700) == 0
    assert stat(t, "/dev/shm/d")[2] == 2 and stat(t, "/dev/shm")[2] == 3
    assert call(t, 88, t.mm.cstr("../a"), t.mm.cstr("/dev/shm/d/ln")) == 0
    assert cat(t, "/dev/shm/d/ln").startswith(b"hello")
    assert call(t, 86, t.mm.cstr("/dev/shm/a"), t.mm.cstr("/dev/shm/d/hard")) == 0
    assert stat(t, "/dev/shm/a")[2] == 2
    assert call(t, 82, t.mm.cstr("/dev/shm/d"), t.mm.cstr("/dev/shm/d/x")) == -errno.EINVAL
    assert call(t, 82, t.mm.cstr("/dev/shm/d"), t.mm.cstr("/dev/shm/e")) == 0
    assert listdir(t, "/dev/shm") == {".", "..", "a", "e"}
    assert listdir(t, "/dev/shm/e") == {".", "..", "ln", "hard"}
    assert call(t, 84, t.mm.cstr("/dev/shm/e")) == -errno.ENOTEMPTY
    assert call(t, 87, t.mm.cstr("/dev/shm/e/ln")) == 0
    assert call(t, 87, t.mm.cstr("/dev/shm/e/hard")) == 0
    assert call(t, 84, t.mm.cstr("/dev/shm/e")) == 0
    assert stat(t, "/dev/shm")[2] == 2
    assert call(t, 90, t.mm.cstr("/dev/shm/a"), 0o4755) == 0
    assert stat(t, "/dev/shm/a")[3] == 0o104755
    assert call(t, 92, t.mm.cstr("/dev/shm/a"), 1000, 1000) == 0
    st = stat(t, "/dev/shm/a")
    assert (st[4], st[5], st[3]) == (1000, 1000, 0o100755)   # chown clears setuid


def test_tmpfs_size_limit(t: FakeTask) -> None:
    fd = open_(t, "/dev/shm/big", O_CREAT | O_WRONLY)
    assert call(t, 77, fd, 64 * 1024) == 0
    assert call(t, 77, fd, 64 * 1024 + 1) == -errno.ENOSPC
    assert call(t, 18, fd, t.mm.put(b"x"), 1, 70000) == -errno.ENOSPC


def test_tmpfs_permissions(kernel: FakeKernel, t: FakeTask) -> None:
    assert call(t, 83, t.mm.cstr("/dev/shm/private"), 0o700) == 0
    u = kernel.task(2, Creds.for_user(1000, 1000))
    assert open_(u, "/dev/shm/private/x", O_CREAT | O_WRONLY) == -errno.EACCES
    fd = open_(u, "/dev/shm/mine", O_CREAT | O_WRONLY)
    assert fd >= 0
    st = stat(u, "/dev/shm/mine")
    assert (st[4], st[5]) == (1000, 1000)
    # sticky /dev/shm: may_delete says EPERM before it looks at the type
    assert call(u, 87, u.mm.cstr("/dev/shm/private")) == -errno.EPERM
    assert call(t, 87, t.mm.cstr("/dev/shm/private")) == -errno.EISDIR


def test_mknod_fifo_in_tmpfs(t: FakeTask) -> None:
    assert call(t, 133, t.mm.cstr("/dev/shm/fifo"), S_IFIFO | 0o644, 0) == 0
    assert stat(t, "/dev/shm/fifo")[3] == S_IFIFO | 0o644
    w = open_(t, "/dev/shm/fifo", O_RDWR)
    assert write(t, w, b"via fifo") == 8
    assert read(t, w) == b"via fifo"


@pytest.mark.parametrize("path", ["/dev/shm/fifo", "/tmp/fifo"])
def test_fifo_open_waits_for_the_other_end(t: FakeTask, path: str) -> None:
    from quark.kernel.fs.pipe.pipe import _fifos
    from quark.kernel.waiting import ERESTARTSYS
    assert call(t, 133, t.mm.cstr(path), S_IFIFO | 0o644, 0) == 0
    assert open_(t, path, O_WRONLY | O_NONBLOCK) == -errno.ENXIO
    assert open_(t, path, 3) == -errno.EINVAL
    coro, blk = start(t, 2, t.mm.cstr(path), O_RDONLY, 0)
    assert isinstance(blk, Block)                       # a reader waits for a writer
    assert isinstance(resume(coro), Block)              # woken for nothing: waits on
    w = open_(t, path, O_WRONLY | O_NONBLOCK)           # it counts as a reader
    assert w >= 0
    done, r = resume(coro)
    assert done == "done" and r >= 0
    assert write(t, w, b"abc") == 3
    assert call(t, 3, w) == 0
    assert read(t, r) == b"abc"
    assert read(t, r) == b""                            # the writer came and left: EOF
    assert call(t, 3, r) == 0
    # a writer waiting for a reader gives up on a signal, leaving no opener behind
    coro, blk = start(t, 2, t.mm.cstr(path), O_WRONLY, 0)
    assert isinstance(blk, Block)
    with pytest.raises(LinuxError) as e:
        coro.throw(LinuxError(ERESTARTSYS))
    assert e.value.errno == ERESTARTSYS
    assert all(p.readers or p.writers for p in _fifos.values())
    # the buffer goes with the last opener
    a = open_(t, path, O_RDWR | O_NONBLOCK)
    assert write(t, a, b"stale") == 5
    assert call(t, 3, a) == 0
    a = open_(t, path, O_RDWR | O_NONBLOCK)
    assert call(t, 0, a, t.mm.alloc(8), 8) == -errno.EAGAIN


# ---- /dev
def test_dev_nodes(t: FakeTask) -> None:
    names = listdir(t, "/dev")
    assert {"null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "pts",
            "shm"} <= names
    assert stat(t, "/dev/null")[3] == S_IFCHR | 0o666
    assert stat(t, "/dev/null")[7] == (1 << 8) | 3
    assert stat(t, "/dev/urandom")[7] == (1 << 8) | 9
    assert stat(t, "/dev/tty")[7] == 5 << 8
    assert cat(t, "/dev/null") == b""
    fd = open_(t, "/dev/zero", O_RDWR)
    buf = t.mm.alloc(100_000)
    t.mm.write(buf, b"\xff" * 100_000)
    assert call(t, 0, fd, buf, 100_000) == 100_000
    assert t.mm.read(buf, 100_000) == bytes(100_000)
    assert write(t, fd, b"abc") == 3
    full = open_(t, "/dev/full", O_WRONLY)
    assert write(t, full, b"abc") == -errno.ENOSPC
    r = open_(t, "/dev/urandom")
    assert call(t, 0, r, buf, 64) == 64 and t.mm.read(buf, 64) != bytes(64)
    assert open_(t, "/dev/tty") == -errno.ENXIO
    null = open_(t, "/dev/null", O_WRONLY)
    assert write(t, null, b"x" * 10) == 10


def test_dev_tty_when_configured(t: FakeTask, kernel: FakeKernel) -> None:
    rfd, wfd = os.pipe()
    kernel.vfs.set_tty(wfd)
    fd = open_(t, "/dev/tty", O_WRONLY)
    assert fd >= 0
    assert write(t, fd, b"to the terminal") == 15
    assert os.read(rfd, 100) == b"to the terminal"
    assert call(t, 16, fd, 0x5401, t.mm.alloc(64)) == -errno.ENOTTY  # a pipe is no tty


# ---- /proc
def test_proc_self(t: FakeTask, kernel: FakeKernel) -> None:
    t.comm = "sh"
    status = cat(t, "/proc/self/status").decode()
    lines = dict(line.split(":\t", 1) for line in status.splitlines())
    assert lines["Name"] == "sh" and lines["Pid"] == "1" and lines["PPid"] == "0"
    assert lines["State"] == "R (running)" and lines["Uid"] == "0\t0\t0\t0"
    assert lines["VmRSS"].strip() == "512 kB"
    st = cat(t, "/proc/1/stat").decode().split()
    assert st[:5] == ["1", "(sh)", "R", "0", "1"] and len(st) == 52
    assert cat(t, "/proc/self/cmdline") == b"/bin/sh\0-c\0true\0"
    assert cat(t, "/proc/self/comm") == b"sh\n"
    buf = t.mm.alloc(64)
    n = call(t, 89, t.mm.cstr("/proc/self"), buf, 64)
    assert t.mm.read(buf, n) == b"1"
    n = call(t, 89, t.mm.cstr("/proc/self/exe"), buf, 64)
    assert t.mm.read(buf, n) == b"/bin/sh"
    assert "1" in listdir(t, "/proc") and "self" in listdir(t, "/proc")
    assert cat(t, "/proc/sys/kernel/hostname") == b"quark-test\n"
    assert b"/proc proc" in cat(t, "/proc/mounts")
    assert b"nodev\tproc" in cat(t, "/proc/filesystems")
    assert float(cat(t, "/proc/uptime").split()[0]) >= 0
    assert open_(t, "/proc/self/status", O_WRONLY) == -errno.EACCES
    assert open_(t, "/proc/2/status") == -errno.ENOENT
    assert open_(t, "/proc/01/status") == -errno.ENOENT     # not the name of pid 1


def test_proc_fd_links(t: FakeTask) -> None:
    fd = open_(t, "/etc/passwd")
    assert fd == 0
    assert listdir(t, "/proc/self/fd") >= {".", "..", "0"}
    buf = t.mm.alloc(64)
    n = call(t, 89, t.mm.cstr("/proc/self/fd/0"), buf, 64)
    assert t.mm.read(buf, n) == b"/etc/passwd"
    assert cat(t, "/dev/stdin").startswith(b"root")   # /dev/stdin -> /proc/self/fd/0
    p = t.mm.alloc(8)
    assert call(t, 22, p) == 0
    r, w = struct.unpack("<ii", t.mm.read(p, 8))
    n = call(t, 89, t.mm.cstr(f"/proc/self/fd/{w}"), buf, 64)
    assert t.mm.read(buf, n).startswith(b"pipe:[")
    w2 = open_(t, f"/dev/fd/{w}", O_WRONLY)           # reopening a pipe end shares it
    assert write(t, w2, b"through /dev/fd") == 15
    assert read(t, r) == b"through /dev/fd"
    assert call(t, 80, t.mm.cstr("/etc")) == 0
    assert cat(t, "/proc/self/cwd/passwd").startswith(b"root")


def test_sysfs_readonly(t: FakeTask) -> None:
    assert cat(t, "/sys/devices/system/cpu/online").startswith(b"0")
    assert call(t, 83, t.mm.cstr("/sys/x"), 0o755) == -errno.EROFS


# ---- pipes
def pipe(t: FakeTask, flags: int = 0) -> tuple[int, int]:
    p = t.mm.alloc(8)
    assert call(t, 293, p, flags) == 0
    return struct.unpack("<ii", t.mm.read(p, 8))


def test_pipe_basic_eof_epipe(t: FakeTask) -> None:
    r, w = pipe(t)
    assert write(t, w, b"abc") == 3
    assert read(t, r) == b"abc"
    assert call(t, 72, w, 3) == 1 and call(t, 72, r, 3) == 0   # F_GETFL
    assert call(t, 72, r, 1032) == 65536                         # F_GETPIPE_SZ
    assert call(t, 8, r, 0, 0) == -errno.ESPIPE
    assert call(t, 17, r, t.mm.alloc(4), 4, 0) == -errno.ESPIPE
    assert call(t, 0, w, t.mm.alloc(4), 4) == -errno.EBADF
    assert call(t, 3, w) == 0
    assert read(t, r) == b""                                     # EOF
    r2, w2 = pipe(t)
    call(t, 3, r2)
    assert write(t, w2, b"x") == -errno.EPIPE
    assert call(t, 293, t.mm.alloc(8), 0o1) == -errno.EINVAL


def test_pipe_nonblocking_and_capacity(t: FakeTask) -> None:
    r, w = pipe(t, O_NONBLOCK)
    assert call(t, 0, r, t.mm.alloc(4), 4) == -errno.EAGAIN
    chunk = t.mm.put(b"z" * 100_000)
    assert call(t, 1, w, chunk, 100_000) == 65536               # partial write
    assert call(t, 1, w, chunk, 1) == -errno.EAGAIN
    buf = t.mm.alloc(70_000)
    assert call(t, 0, r, buf, 70_000) == 65536
    assert call(t, 1, w, chunk, 4096) == 4096


def test_pipe_blocking_read_wakes(kernel: FakeKernel, t: FakeTask) -> None:
    r, w = pipe(t)
    buf = t.mm.alloc(16)
    coro, blk = start(t, 0, r, buf, 16)
    assert isinstance(blk, Block)
    assert write(t, w, b"late") == 4
    assert resume(coro) == ("done", 4)
    assert t.mm.read(buf, 4) == b"late"
    # a blocked reader sees EOF when the last writer goes away
    coro, blk = start(t, 0, r, buf, 16)
    assert isinstance(blk, Block)
    assert call(t, 3, w) == 0
    assert resume(coro) == ("done", 0)


def test_pipe_blocking_write_and_atomicity(t: FakeTask) -> None:
    r, w = pipe(t)
    big = t.mm.put(b"a" * 65536)
    assert call(t, 1, w, big, 65000) == 65000
    small = t.mm.put(b"b" * 1000)
    coro, blk = start(t, 1, w, small, 1000)   # 536 bytes free: an atomic write waits
    assert isinstance(blk, Block)
    buf = t.mm.alloc(65536)
    assert call(t, 0, r, buf, 100) == 100
    assert isinstance(resume(coro), Block)     # 636 free: still not enough
    assert call(t, 0, r, buf, 1000) == 1000
    assert resume(coro) == ("done", 1000)
    # readers vanish while a writer sleeps: EPIPE
    r2, w2 = pipe(t)
    call(t, 1, w2, big, 65536)
    coro, blk = start(t, 1, w2, small, 10)
    assert isinstance(blk, Block)
    call(t, 3, r2)
    assert resume(coro) == ("done", -errno.EPIPE)


def test_dup_shares_pipe_and_fork(t: FakeTask) -> None:
    r, w = pipe(t)
    w2 = call(t, 32, w)
    call(t, 3, w)
    assert write(t, w2, b"still open") == 10
    child = t.fds.fork()
    call(t, 3, w2)
    assert read(t, r) == b"still open"
    buf = t.mm.alloc(4)
    coro, blk = start(t, 0, r, buf, 4)
    assert isinstance(blk, Block)      # the child's copy keeps the writer alive
    child.close_all()
    assert resume(coro) == ("done", 0)
