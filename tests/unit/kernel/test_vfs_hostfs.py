"""hostfs through the file system calls: open/read/write, getdents64, stat."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest

from quark.kernel.abi.linux import (
    AT_FDCWD,
    AT_SYMLINK_NOFOLLOW,
    O_APPEND,
    O_CLOEXEC,
    O_CREAT,
    O_DIRECTORY,
    O_EXCL,
    O_NOFOLLOW,
    O_PATH,
    O_RDONLY,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    SEEK_END,
    SEEK_SET,
)
from quark.kernel.creds import Creds
from tests.unit.kernel.fakes import FakeKernel, FakeTask, call

SYS_read, SYS_write, SYS_open, SYS_close, SYS_stat, SYS_fstat, SYS_lstat = 0, 1, 2, 3, 4, 5, 6
SYS_lseek, SYS_pread, SYS_pwrite, SYS_readv, SYS_writev = 8, 17, 18, 19, 20
SYS_getdents64, SYS_openat, SYS_newfstatat, SYS_getcwd, SYS_chdir = 217, 257, 262, 79, 80
SYS_mkdir, SYS_rmdir, SYS_unlink, SYS_rename, SYS_symlink, SYS_readlink = 83, 84, 87, 82, 88, 89
SYS_link, SYS_truncate, SYS_ftruncate, SYS_fcntl, SYS_access, SYS_statx = 86, 76, 77, 72, 21, 332
SYS_chmod, SYS_umask, SYS_fchdir, SYS_dup, SYS_dup2 = 90, 95, 81, 32, 33


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    r = tmp_path / "rootfs"
    for d in ("bin", "etc", "tmp", "usr/lib", "home/user", "root"):
        (r / d).mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "etc/hostname").write_text("container\n")
    (r / "bin/sh").write_bytes(b"\x7fELF" + b"\0" * 60)
    os.chmod(r / "bin/sh", 0o755)
    (r / "usr/lib/libc.so").write_bytes(b"libc" * 1000)
    os.symlink("usr/lib", r / "lib")
    os.chmod(r / "tmp", 0o1777)
    os.chmod(r / "root", 0o700)
    return r


@pytest.fixture
def kernel(rootfs: Path) -> FakeKernel:
    return FakeKernel(str(rootfs))


@pytest.fixture
def t(kernel: FakeKernel) -> FakeTask:
    return kernel.task()


def open_(t: FakeTask, path: str | bytes, flags: int = O_RDONLY, mode: int = 0o644) -> int:
    return call(t, SYS_open, t.mm.cstr(path), flags, mode)


def read_all(t: FakeTask, fd: int, n: int = 65536) -> bytes:
    buf = t.mm.alloc(n)
    got = call(t, SYS_read, fd, buf, n)
    assert got >= 0, got
    return t.mm.read(buf, got)


def write_(t: FakeTask, fd: int, data: bytes) -> int:
    return call(t, SYS_write, fd, t.mm.put(data), len(data))


def test_open_read_close(t: FakeTask) -> None:
    fd = open_(t, "/etc/passwd")
    assert fd == 0
    assert read_all(t, fd) == b"root:x:0:0:root:/root:/bin/sh\n"
    assert read_all(t, fd) == b""
    assert call(t, SYS_close, fd) == 0
    assert call(t, SYS_close, fd) == -errno.EBADF
    assert call(t, SYS_read, fd, t.mm.alloc(4), 4) == -errno.EBADF


def test_open_errors(t: FakeTask) -> None:
    assert open_(t, "/nope") == -errno.ENOENT
    assert open_(t, "/etc/passwd/x") == -errno.ENOTDIR
    assert open_(t, "/etc/passwd/") == -errno.ENOTDIR
    assert open_(t, "/etc", O_WRONLY) == -errno.EISDIR
    assert open_(t, "/etc/passwd", O_DIRECTORY) == -errno.ENOTDIR
    assert open_(t, "/etc/passwd", O_CREAT | O_EXCL | O_WRONLY) == -errno.EEXIST
    assert open_(t, "/lib", O_NOFOLLOW) == -errno.ELOOP
    assert open_(t, "") == -errno.ENOENT
    assert open_(t, "/etc/", O_CREAT | O_WRONLY) == -errno.EISDIR
    assert open_(t, "/lib", O_NOFOLLOW | O_PATH) >= 0


def test_write_create_trunc_append(t: FakeTask, rootfs: Path) -> None:
    fd = open_(t, "/tmp/f", O_CREAT | O_WRONLY, 0o666)
    assert fd >= 0
    assert write_(t, fd, b"hello world") == 11
    assert call(t, SYS_close, fd) == 0
    assert (rootfs / "tmp/f").read_bytes() == b"hello world"
    assert (rootfs / "tmp/f").stat().st_mode & 0o777 == 0o644  # umask 022
    fd = open_(t, "/tmp/f", O_WRONLY | O_APPEND)
    assert write_(t, fd, b"!") == 1
    assert (rootfs / "tmp/f").read_bytes() == b"hello world!"
    fd2 = open_(t, "/tmp/f", O_RDWR | O_TRUNC)
    assert (rootfs / "tmp/f").read_bytes() == b""
    assert write_(t, fd2, b"abcdef") == 6
    assert call(t, SYS_lseek, fd2, 2, SEEK_SET) == 2
    assert read_all(t, fd2) == b"cdef"
    assert call(t, SYS_lseek, fd2, 0, SEEK_END) == 6
    buf = t.mm.alloc(8)
    assert call(t, SYS_pread, fd2, buf, 3, 1) == 3 and t.mm.read(buf, 3) == b"bcd"
    assert call(t, SYS_pwrite, fd2, t.mm.put(b"XY"), 2, 0) == 2
    assert (rootfs / "tmp/f").read_bytes() == b"XYcdef"
    assert call(t, SYS_pread, fd2, buf, 3, -1) == -errno.EINVAL
    assert call(t, SYS_read, fd, buf, 3) == -errno.EBADF   # write-only fd
    assert call(t, SYS_ftruncate, fd2, 2) == 0
    assert (rootfs / "tmp/f").read_bytes() == b"XY"


def test_readv_writev(t: FakeTask, rootfs: Path) -> None:
    fd = open_(t, "/tmp/v", O_CREAT | O_RDWR)
    a, b = t.mm.put(b"abc"), t.mm.put(b"defgh")
    iov = t.mm.put(struct.pack("<QQQQ", a, 3, b, 5))
    assert call(t, SYS_writev, fd, iov, 2) == 8
    assert (rootfs / "tmp/v").read_bytes() == b"abcdefgh"
    call(t, SYS_lseek, fd, 0, SEEK_SET)
    x, y = t.mm.alloc(2), t.mm.alloc(16)
    iov = t.mm.put(struct.pack("<QQQQ", x, 2, y, 16))
    assert call(t, SYS_readv, fd, iov, 2) == 8
    assert t.mm.read(x, 2) == b"ab" and t.mm.read(y, 6) == b"cdefgh"
    assert call(t, SYS_readv, fd, iov, 1025) == -errno.EINVAL
    bad = t.mm.put(struct.pack("<QQ", x, 1 << 63))
    assert call(t, SYS_readv, fd, bad, 1) == -errno.EINVAL
    assert call(t, SYS_readv, fd, 0x10, 1) == -errno.EFAULT


def test_large_read_spans_pages(t: FakeTask, rootfs: Path) -> None:
    data = os.urandom(100_000)
    (rootfs / "tmp/big").write_bytes(data)
    fd = open_(t, "/tmp/big")
    assert read_all(t, fd, 200_000) == data


def test_efault(t: FakeTask) -> None:
    fd = open_(t, "/etc/passwd")
    assert call(t, SYS_read, fd, 0x10, 10) == -errno.EFAULT
    assert call(t, SYS_open, 0x10, 0, 0) == -errno.EFAULT
    assert call(t, SYS_fstat, fd, 0x10) == -errno.EFAULT
    assert call(t, SYS_write, 1, 0x10, 5) == -errno.EBADF


def test_enametoolong(t: FakeTask) -> None:
    assert open_(t, "/" + "a" * 256) == -errno.ENAMETOOLONG
    assert open_(t, "/" + "a" * 255) == -errno.ENOENT
    assert open_(t, "/a" * 2048) == -errno.ENAMETOOLONG
    assert open_(t, "/" + "a/" * 2046) == -errno.ENOENT


def test_getdents64(t: FakeTask, rootfs: Path) -> None:
    fd = open_(t, "/", O_RDONLY | O_DIRECTORY)
    buf = t.mm.alloc(4096)
    n = call(t, SYS_getdents64, fd, buf, 4096)
    assert n > 0
    data = t.mm.read(buf, n)
    names: dict[str, tuple[int, int]] = {}
    off = 0
    while off < n:
        ino, doff, reclen, dtype = struct.unpack_from("<QqHB", data, off)
        name = data[off + 19:off + reclen].split(b"\0")[0].decode()
        names[name] = (ino, dtype)
        assert reclen % 8 == 0
        off += reclen
    assert set(names) == {".", "..", "bin", "etc", "tmp", "usr", "home", "lib", "root"}
    assert names["etc"] == (os.stat(rootfs / "etc").st_ino, 4)
    assert names["lib"][1] == 10
    assert names["."][0] == os.stat(rootfs).st_ino
    assert call(t, SYS_getdents64, fd, buf, 4096) == 0
    assert call(t, SYS_lseek, fd, 0, SEEK_SET) == 0
    assert call(t, SYS_getdents64, fd, buf, 10) == -errno.EINVAL
    assert call(t, SYS_getdents64, fd, buf, 4096) == n
    f = open_(t, "/etc/passwd")
    assert call(t, SYS_getdents64, f, buf, 4096) == -errno.ENOTDIR


def unpack_stat(b: bytes) -> dict[str, int]:
    f = struct.unpack("<QQQIIIiQqqqqqqqqq", b[:120])
    keys = ["dev", "ino", "nlink", "mode", "uid", "gid", "pad", "rdev", "size", "blksize", "blocks", "atime", "atime_ns", "mtime", "mtime_ns", "ctime", "ctime_ns"]
    return dict(zip(keys, f))


def test_stat_layout_matches_host(t: FakeTask, rootfs: Path) -> None:
    buf = t.mm.alloc(144)
    assert call(t, SYS_stat, t.mm.cstr("/usr/lib/libc.so"), buf) == 0
    s = unpack_stat(t.mm.read(buf, 144))
    h = os.stat(rootfs / "usr/lib/libc.so")
    assert s["ino"] == h.st_ino and s["size"] == h.st_size == 4000
    assert s["mode"] == h.st_mode and s["nlink"] == h.st_nlink
    assert s["uid"] == h.st_uid and s["blocks"] == h.st_blocks
    assert s["mtime"] * 10**9 + s["mtime_ns"] == h.st_mtime_ns
    assert s["dev"] == h.st_dev  # new_encode_dev equals glibc's for small numbers
    assert call(t, SYS_lstat, t.mm.cstr("/lib"), buf) == 0
    assert unpack_stat(t.mm.read(buf, 144))["mode"] & 0o170000 == 0o120000
    assert call(t, SYS_stat, t.mm.cstr("/lib"), buf) == 0
    assert unpack_stat(t.mm.read(buf, 144))["mode"] & 0o170000 == 0o040000
    fd = open_(t, "/bin/sh")
    assert call(t, SYS_fstat, fd, buf) == 0
    assert unpack_stat(t.mm.read(buf, 144))["mode"] == os.stat(rootfs / "bin/sh").st_mode
    # newfstatat with AT_EMPTY_PATH on the fd
    assert call(t, SYS_newfstatat, fd, t.mm.cstr(""), buf, 0x1000) == 0
    assert call(t, SYS_newfstatat, fd, t.mm.cstr(""), buf, 0) == -errno.ENOENT
    assert call(t, SYS_newfstatat, AT_FDCWD, t.mm.cstr("/lib"), buf,
                AT_SYMLINK_NOFOLLOW) == 0


def test_statx(t: FakeTask, rootfs: Path) -> None:
    buf = t.mm.alloc(256)
    assert call(t, SYS_statx, AT_FDCWD, t.mm.cstr("/etc/passwd"), 0, 0x7FF, buf) == 0
    raw = t.mm.read(buf, 256)
    mask, blksize = struct.unpack_from("<II", raw, 0)
    nlink, uid, gid, mode = struct.unpack_from("<IIIH", raw, 16)
    ino, size = struct.unpack_from("<QQ", raw, 32)
    h = os.stat(rootfs / "etc/passwd")
    assert mask & 0x7FF == 0x7FF
    assert (ino, size, mode) == (h.st_ino, h.st_size, h.st_mode)
    mtime_s, mtime_ns = struct.unpack_from("<qI", raw, 112)
    assert mtime_s * 10**9 + mtime_ns == h.st_mtime_ns
    assert call(t, SYS_statx, AT_FDCWD, t.mm.cstr("/etc"), 0x6000, 0, buf) == -errno.EINVAL


def test_dirs_and_names(t: FakeTask, rootfs: Path) -> None:
    assert call(t, SYS_mkdir, t.mm.cstr("/tmp/d"), 0o777) == 0
    assert (rootfs / "tmp/d").stat().st_mode & 0o777 == 0o755
    assert call(t, SYS_mkdir, t.mm.cstr("/tmp/d"), 0o777) == -errno.EEXIST
    assert call(t, SYS_chdir, t.mm.cstr("/tmp/d")) == 0
    buf = t.mm.alloc(64)
    assert call(t, SYS_getcwd, buf, 64) == 7 and t.mm.read(buf, 7) == b"/tmp/d\0"
    assert call(t, SYS_getcwd, buf, 3) == -errno.ERANGE
    fd = open_(t, "rel", O_CREAT | O_WRONLY)
    assert fd >= 0 and (rootfs / "tmp/d/rel").exists()
    assert call(t, SYS_symlink, t.mm.cstr("rel"), t.mm.cstr("ln")) == 0
    assert os.readlink(rootfs / "tmp/d/ln") == "rel"
    n = call(t, SYS_readlink, t.mm.cstr("ln"), buf, 64)
    assert t.mm.read(buf, n) == b"rel"
    assert call(t, SYS_readlink, t.mm.cstr("rel"), buf, 64) == -errno.EINVAL
    assert call(t, SYS_link, t.mm.cstr("rel"), t.mm.cstr("hard")) == 0
    assert os.stat(rootfs / "tmp/d/hard").st_nlink == 2
    assert call(t, SYS_rename, t.mm.cstr("hard"), t.mm.cstr("/tmp/moved")) == 0
    assert (rootfs / "tmp/moved").exists()
    assert call(t, SYS_unlink, t.mm.cstr("/tmp/d")) == -errno.EISDIR
    assert call(t, SYS_rmdir, t.mm.cstr("/tmp/d")) == -errno.ENOTEMPTY
    assert call(t, SYS_unlink, t.mm.cstr("rel")) == 0
    assert call(t, SYS_unlink, t.mm.cstr("ln")) == 0
    assert call(t, SYS_chdir, t.mm.cstr("..")) == 0
    assert call(t, SYS_rmdir, t.mm.cstr("d")) == 0
    assert call(t, SYS_rmdir, t.mm.cstr("/tmp/moved/")) == -errno.ENOTDIR
    assert call(t, SYS_unlink, t.mm.cstr("/tmp/moved/")) == -errno.ENOTDIR
    assert call(t, SYS_chdir, t.mm.cstr("/etc/passwd")) == -errno.ENOTDIR


def test_dotdot_stays_at_root(t: FakeTask) -> None:
    fd = open_(t, "/../../../etc/passwd")
    assert read_all(t, fd).startswith(b"root:")
    assert call(t, SYS_chdir, t.mm.cstr("/../..")) == 0
    buf = t.mm.alloc(16)
    assert call(t, SYS_getcwd, buf, 16) == 2


def test_fd_flags_and_dup(t: FakeTask) -> None:
    fd = open_(t, "/etc/passwd", O_RDONLY | O_CLOEXEC)
    assert call(t, SYS_fcntl, fd, 1) == 1            # F_GETFD
    assert call(t, SYS_fcntl, fd, 3) == 0o100000      # F_GETFL: O_LARGEFILE
    d = call(t, SYS_dup, fd)
    assert d == fd + 1 and call(t, SYS_fcntl, d, 1) == 0
    assert call(t, SYS_fcntl, fd, 0, 10) == 10        # F_DUPFD
    assert call(t, SYS_fcntl, fd, 1030, 5) == 5 and call(t, SYS_fcntl, 5, 1) == 1
    # the offset is shared by dups
    assert len(read_all(t, fd, 5)) == 5
    assert call(t, SYS_lseek, d, 0, 1) == 5
    assert call(t, SYS_dup2, fd, 1_000_000_000) == -errno.EBADF
    assert call(t, SYS_dup2, fd, fd) == fd
    assert call(t, 292, fd, fd, 0) == -errno.EINVAL


def test_emfile(t: FakeTask) -> None:
    from quark.kernel.rlimits import Rlimits
    rl = Rlimits()
    rl.set(7, 4, 4, may_raise_hard=True)
    t.rlimits = rl
    fds = [open_(t, "/etc/passwd") for _ in range(4)]
    assert fds == [0, 1, 2, 3]
    assert open_(t, "/etc/passwd") == -errno.EMFILE
    assert call(t, SYS_fcntl, 0, 0, 4) == -errno.EINVAL


def test_permissions_non_root(kernel: FakeKernel, rootfs: Path) -> None:
    u = kernel.task(2, Creds.for_user(1000, 1000))
    assert open_(u, "/root/x", O_RDONLY) == -errno.EACCES
    assert open_(u, "/etc/passwd", O_WRONLY) == -errno.EACCES
    assert open_(u, "/etc/new", O_CREAT | O_WRONLY) == -errno.EACCES
    assert call(u, SYS_access, u.mm.cstr("/etc/passwd"), 4) == 0
    assert call(u, SYS_access, u.mm.cstr("/etc/passwd"), 2) == -errno.EACCES
    assert call(u, SYS_access, u.mm.cstr("/bin/sh"), 1) == 0
    assert call(u, SYS_chmod, u.mm.cstr("/etc/passwd"), 0o777) == -errno.EPERM
    assert call(u, SYS_chdir, u.mm.cstr("/root")) == -errno.EACCES
    root = kernel.task(3)
    assert call(root, SYS_access, root.mm.cstr("/etc/passwd"), 1) == -errno.EACCES


def test_readonly_rootfs(rootfs: Path) -> None:
    k = FakeKernel(str(rootfs))
    k.vfs.root_mount.readonly = True
    t = k.task()
    assert open_(t, "/etc/passwd", O_WRONLY) == -errno.EROFS
    assert open_(t, "/etc/passwd") >= 0
    assert call(t, SYS_mkdir, t.mm.cstr("/x"), 0o755) == -errno.EROFS
    assert call(t, SYS_mkdir, t.mm.cstr("/etc"), 0o755) == -errno.EEXIST
    assert call(t, SYS_unlink, t.mm.cstr("/etc/passwd")) == -errno.EROFS


def test_fchdir_and_openat(t: FakeTask) -> None:
    d = open_(t, "/etc", O_RDONLY | O_DIRECTORY)
    fd = call(t, SYS_openat, d, t.mm.cstr("passwd"), O_RDONLY, 0)
    assert read_all(t, fd).startswith(b"root")
    f = open_(t, "/etc/passwd")
    assert call(t, SYS_openat, f, t.mm.cstr("x"), 0, 0) == -errno.ENOTDIR
    assert call(t, SYS_openat, 99, t.mm.cstr("x"), 0, 0) == -errno.EBADF
    assert call(t, SYS_openat, 99, t.mm.cstr("/etc/passwd"), 0, 0) >= 0
    assert call(t, SYS_fchdir, d) == 0
    assert read_all(t, open_(t, "hostname")) == b"container\n"


def test_umask_and_truncate(t: FakeTask, rootfs: Path) -> None:
    assert call(t, SYS_umask, 0o077) == 0o022
    fd = open_(t, "/tmp/m", O_CREAT | O_WRONLY, 0o666)
    assert (rootfs / "tmp/m").stat().st_mode & 0o777 == 0o600
    write_(t, fd, b"123456")
    assert call(t, SYS_truncate, t.mm.cstr("/tmp/m"), 3) == 0
    assert (rootfs / "tmp/m").read_bytes() == b"123"
    assert call(t, SYS_truncate, t.mm.cstr("/tmp"), 3) == -errno.EISDIR
