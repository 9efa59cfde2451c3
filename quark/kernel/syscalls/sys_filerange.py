"""fallocate(2) and copy_file_range(2) (fs/open.c vfs_fallocate, fs/read_write.c).

fallocate: tmpfs files (and memfds) take mode 0, KEEP_SIZE and PUNCH_HOLE|KEEP_SIZE
(as shmem does; other modes EOPNOTSUPP); host files take mode 0, through the host's
posix_fallocate; anything else there is EOPNOTSUPP.
copy_file_range: regular files on one filesystem only (EXDEV across), copied through
the kernel unless both ends are host files (then the host's copy_file_range).
"""

from __future__ import annotations

import os
import struct
from typing import Any

from quark.kernel.abi.linux import (
    EBADF,
    EFBIG,
    EINVAL,
    EISDIR,
    ENODEV,
    EOPNOTSUPP,
    EPERM,
    ESPIPE,
    EXDEV,
    MAX_RW_COUNT,
    O_APPEND,
    O_PATH,
    S_IFDIR,
    S_IFIFO,
    S_IFMT,
    S_IFREG,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.memfd import F_SEAL_GROW, F_SEAL_WRITE, MemFile
from quark.kernel.fs.tmpfs.fs import MAX_FILE_SIZE, TmpFile
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.file import File

Task = Any

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_NO_HIDE_STALE = 0x04
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20
FALLOC_FL_UNSHARE_RANGE = 0x40
FALLOC_FL_WRITE_ZEROES = 0x80
FALLOC_FL_MODE_MASK = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE \
    | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES


def _fd_file(t: Task, fd: int) -> File:
    """fdget: O_PATH descriptors do not count."""
    f: File = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    return f


@syscall(285, "fallocate", partial="tmpfs: mode 0, KEEP_SIZE, PUNCH_HOLE; host files: "
                                   "mode 0 only")
async def sys_fallocate(t: Task, a: SyscallArgs) -> int:
    fd, mode, offset, length = a.int(0), a.int(1), a.long(2), a.long(3)
    f = _fd_file(t, fd)
    if offset < 0 or length <= 0:
        raise LinuxError(EINVAL)
    # Linux >= 6.15: exactly one operation, KEEP_SIZE where it makes sense.
    if mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE):
        raise LinuxError(EOPNOTSUPP)
    op = mode & FALLOC_FL_MODE_MASK
    if op == FALLOC_FL_PUNCH_HOLE:
        if not mode & FALLOC_FL_KEEP_SIZE:
            raise LinuxError(EOPNOTSUPP)
    elif op in (FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_WRITE_ZEROES):
        if mode & FALLOC_FL_KEEP_SIZE:
            raise LinuxError(EOPNOTSUPP)
    elif op not in (0, FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_ZERO_RANGE):
        raise LinuxError(EOPNOTSUPP)
    if not f.writable:
        raise LinuxError(EBADF)
    kind = f.stat().mode & S_IFMT
    if kind == S_IFIFO:
        raise LinuxError(ESPIPE)
    if kind == S_IFDIR:
        raise LinuxError(EISDIR)
    if kind != S_IFREG:
        raise LinuxError(ENODEV)
    end = offset + length
    if end > MAX_FILE_SIZE:
        raise LinuxError(EFBIG)
    if isinstance(f, TmpFile):
        _tmpfs_fallocate(f, mode, offset, end)
        return 0
    if mode == 0 and f.host_fd is not None and f.seekable:
        try:
            os.posix_fallocate(f.host_fd, offset, length)
        except OSError as e:
            raise LinuxError(e.errno or EOPNOTSUPP) from e
        return 0
    raise LinuxError(EOPNOTSUPP)


def _tmpfs_fallocate(f: TmpFile, mode: int, offset: int, end: int) -> None:
    """shmem_fallocate: KEEP_SIZE and PUNCH_HOLE only; memory is never preallocated."""
    if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
        raise LinuxError(EOPNOTSUPP)
    node = f.node
    seals = f.seals if isinstance(f, MemFile) else 0
    size = len(node.data)
    if mode & FALLOC_FL_PUNCH_HOLE:
        if seals & F_SEAL_WRITE:
            raise LinuxError(EPERM)
        stop = min(end, size)
        if offset < stop:
            node.data[offset:stop] = bytes(stop - offset)
            node.touch()
        return
    if seals & F_SEAL_GROW and end > size:
        raise LinuxError(EPERM)
    if not mode & FALLOC_FL_KEEP_SIZE and end > size:
        node.resize(end)


# ---- copy_file_range ------------------------------------------------------------

@syscall(326, "copy_file_range")
async def sys_copy_file_range(t: Task, a: SyscallArgs) -> int:
    fd_in, off_in_p, fd_out, off_out_p = a.int(0), a.ptr(1), a.int(2), a.ptr(3)
    count, flags = a.size(4), a.uint(5)
    fin = _fd_file(t, fd_in)
    fout = _fd_file(t, fd_out)
    pos_in = _start(t, fin, off_in_p)
    pos_out = _start(t, fout, off_out_p)
    if flags:
        raise LinuxError(EINVAL)
    st_in, st_out = fin.stat(), fout.stat()
    if st_in.is_dir() or st_out.is_dir():
        raise LinuxError(EISDIR)
    if not st_in.is_reg() or not st_out.is_reg():
        raise LinuxError(EINVAL)
    if not fin.readable or not fout.writable or fout.flags & O_APPEND:
        raise LinuxError(EBADF)
    if pos_in < 0 or pos_out < 0:
        raise LinuxError(EINVAL)
    count = min(count, MAX_RW_COUNT)
    count = 0 if pos_in >= st_in.size else min(count, st_in.size - pos_in)
    same = (st_in.dev, st_in.ino) == (st_out.dev, st_out.ino)
    if same and pos_out + count > pos_in and pos_out < pos_in + count:
        raise LinuxError(EINVAL)
    if pos_out + count > MAX_FILE_SIZE:
        raise LinuxError(EFBIG)
    if count == 0:
        return 0
    if st_in.dev != st_out.dev:
        raise LinuxError(EXDEV)     # no cross-filesystem copies (Linux >= 5.19)
    n = await _copy_range(t, fin, pos_in, fout, pos_out, count)
    if off_in_p:
        t.mm.write(off_in_p, struct.pack("<q", pos_in + n))
    else:
        fin.lseek(pos_in + n, 0)
    if off_out_p:
        t.mm.write(off_out_p, struct.pack("<q", pos_out + n))
    else:
        fout.lseek(pos_out + n, 0)
    return n


def _start(t: Task, f: File, off_p: int) -> int:
    if off_p:
        return int(struct.unpack("<q", t.mm.read(off_p, 8))[0])
    if not f.seekable:
        return 0            # a pipe or the like: EINVAL below, as not a regular file
    return int(f.lseek(0, 1))


async def _copy_range(t: Task, fin: File, pos_in: int, fout: File, pos_out: int,
                      count: int) -> int:
    if fin.host_fd is not None and fout.host_fd is not None and not isinstance(fin, TmpFile):
        try:
            return os.copy_file_range(fin.host_fd, fout.host_fd, count, pos_in, pos_out)
        except OSError:
            pass        # cross-device on old kernels and the like: copy by hand
    done = 0
    while done < count:
        buf = bytearray(min(1 << 20, count - done))
        mv = memoryview(buf)
        n = await fin.readv(t, [mv], pos_in + done)
        if n <= 0:
            break
        w = await fout.writev(t, [mv[:n]], pos_out + done)
        done += w
        if w < n:
            break
    return done
