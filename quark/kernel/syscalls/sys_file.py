"""read/write and friends, open/creat, lseek, sendfile, truncate, fsync, ioctl."""

from __future__ import annotations

import os
from typing import Any

from quark.kernel.abi.linux import (
    AT_FDCWD,
    EBADF,
    EINVAL,
    ESPIPE,
    FIOASYNC,
    FIOCLEX,
    FIONBIO,
    FIONCLEX,
    FIONREAD,
    FIOQSIZE,
    MAX_RW_COUNT,
    O_APPEND,
    O_ASYNC,
    O_CLOEXEC,
    O_CREAT,
    O_LARGEFILE,
    O_NONBLOCK,
    O_PATH,
    O_TRUNC,
    O_WRONLY,
    SEEK_HOLE,
)
from quark.kernel import gateio
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.iov import buffer, discarded, iovec_array
from quark.kernel.syscalls.table import fast, syscall
from quark.kernel.vfs import at, ops
from quark.kernel.vfs.fdtable import nofile_limit
from quark.kernel.vfs.file import File

Task = Any


def _readable(t: Task, fd: int) -> File:
    f: File = t.fds.get(fd)
    if not f.readable:
        raise LinuxError(EBADF)
    return f


def _writable(t: Task, fd: int) -> File:
    f: File = t.fds.get(fd)
    if not f.writable:
        raise LinuxError(EBADF)
    return f


def _positional(t: Task, fd: int, pos: int, write: bool) -> File:
    """pread/pwrite order: EINVAL for a negative offset, EBADF for no fd, ESPIPE,
    then EBADF for the wrong access mode."""
    if pos < 0:
        raise LinuxError(EINVAL)
    f: File = t.fds.get(fd)
    if not f.seekable:
        raise LinuxError(ESPIPE)
    if not (f.writable if write else f.readable):
        raise LinuxError(EBADF)
    return f


# ---- read/write
@syscall(0, "read")
async def sys_read(t: Task, a: SyscallArgs) -> int:
    """read(2)."""
    fd, buf, count = a.int(0), a.ptr(1), a.size(2)
    f = _readable(t, fd)
    n = await f.readv(t, buffer(t, buf, count, True), None)
    if f.gate_kinds is not None:
        gateio.grant_device(t, fd, f, False)
    return n


@syscall(1, "write")
async def sys_write(t: Task, a: SyscallArgs) -> int:
    """write(2)."""
    fd, buf, count = a.int(0), a.ptr(1), a.size(2)
    f = _writable(t, fd)
    if f.discards_writes:
        n = discarded(buf, count)
    else:
        n = await f.writev(t, buffer(t, buf, count, False, f.partial_writes), None)
    if f.gate_kinds is not None:
        gateio.grant_device(t, fd, f, True)
    return n


@syscall(17, "pread64")
async def sys_pread64(t: Task, a: SyscallArgs) -> int:
    fd, buf, count, pos = a.int(0), a.ptr(1), a.size(2), a.long(3)
    f = _positional(t, fd, pos, write=False)
    return await f.readv(t, buffer(t, buf, count, True), pos)


@syscall(18, "pwrite64")
async def sys_pwrite64(t: Task, a: SyscallArgs) -> int:
    fd, buf, count, pos = a.int(0), a.ptr(1), a.size(2), a.long(3)
    f = _positional(t, fd, pos, write=True)
    if f.discards_writes:
        return discarded(buf, count)
    return await f.writev(t, buffer(t, buf, count, False, f.partial_writes), pos)


@syscall(19, "readv")
async def sys_readv(t: Task, a: SyscallArgs) -> int:
    fd, iov, cnt = a.int(0), a.ptr(1), a.ulong(2)
    f = _readable(t, fd)
    return await f.readv(t, iovec_array(t, iov, cnt, True), None)


@syscall(20, "writev")
async def sys_writev(t: Task, a: SyscallArgs) -> int:
    fd, iov, cnt = a.int(0), a.ptr(1), a.ulong(2)
    f = _writable(t, fd)
    return await f.writev(t, iovec_array(t, iov, cnt, False, f.partial_writes), None)


@syscall(295, "preadv")
async def sys_preadv(t: Task, a: SyscallArgs) -> int:
    # x86-64 passes the whole offset in pos_l; pos_h only matters on 32-bit.
    fd, iov, cnt, pos = a.int(0), a.ptr(1), a.ulong(2), a.long(3)
    f = _positional(t, fd, pos, write=False)
    return await f.readv(t, iovec_array(t, iov, cnt, True), pos)


@syscall(296, "pwritev")
async def sys_pwritev(t: Task, a: SyscallArgs) -> int:
    fd, iov, cnt, pos = a.int(0), a.ptr(1), a.ulong(2), a.long(3)
    f = _positional(t, fd, pos, write=True)
    return await f.writev(t, iovec_array(t, iov, cnt, False, f.partial_writes), pos)


# ---- the same four calls as plain functions (taskrun's fast path) on files whose
# I/O never sleeps; None hands the call to the handler above. Linux declares the fd
# of these calls unsigned int, and a negative pos has its sign bit set.
# read and write are also where write-behind (fs/host/writebehind.py) gathers a run:
# the dispatcher leaves the flush of a pending run to them, and they flush unless
# the call extends the run or reads a memory device.
@fast(0)
def fast_read(t: Task, raw: tuple[int, ...]) -> int | None:
    fd = raw[0] & 0xFFFFFFFF
    f = _readable(t, fd)
    if not f.sync_io:
        return None
    wb = t.kernel.write_behind
    if wb.file is not None and f.read_observes:
        wb.flush(t)
    n = f.readv_now(buffer(t, raw[1], raw[2], True), None)
    if f.gate_kinds is not None:
        gateio.grant_device(t, fd, f, False)
    return n


@fast(1)
def fast_write(t: Task, raw: tuple[int, ...]) -> int | None:
    fd = raw[0] & 0xFFFFFFFF
    f = _writable(t, fd)
    if not f.sync_io:
        return None
    wb = t.kernel.write_behind
    if f.discards_writes:
        if wb.file is not None:
            wb.flush(t)
        n = discarded(raw[1], raw[2])
        gateio.grant_device(t, fd, f, True)
        return n
    bufs = buffer(t, raw[1], raw[2], False, f.partial_writes)
    if wb.enabled and f.behind_ok():
        n: int | None = wb.add(t, fd, f, bufs)
        if n is not None:
            return n
    elif wb.file is not None:
        wb.flush(t)
    n = f.writev_now(bufs, None)
    if f.gate_kinds is not None:
        gateio.grant_device(t, fd, f, True)
    return n


@fast(17)
def fast_pread64(t: Task, raw: tuple[int, ...]) -> int | None:
    pos = raw[3]
    f = _positional(t, raw[0] & 0xFFFFFFFF, -1 if pos >> 63 else pos, write=False)
    if not f.sync_io:
        return None
    return f.readv_now(buffer(t, raw[1], raw[2], True), pos)


@fast(18)
def fast_pwrite64(t: Task, raw: tuple[int, ...]) -> int | None:
    pos = raw[3]
    f = _positional(t, raw[0] & 0xFFFFFFFF, -1 if pos >> 63 else pos, write=True)
    if not f.sync_io:
        return None
    if f.discards_writes:
        return discarded(raw[1], raw[2])
    return f.writev_now(buffer(t, raw[1], raw[2], False, f.partial_writes), pos)


# ---- open
async def do_open(t: Task, dirfd: int, path: str, flags: int, mode: int) -> int:
    if not flags & O_PATH:
        flags |= O_LARGEFILE  # forced on 64-bit (force_o_largefile); F_GETFL shows it
    base = at.base_for(t, dirfd, path) if path else t.fs.cwd
    f = ops.open_path(t, base, path, flags, mode)
    if f.open_waits:
        await f.wait_open(t)
    return int(t.fds.install(f, bool(flags & O_CLOEXEC), limit=nofile_limit(t)))


@syscall(2, "open")
async def sys_open(t: Task, a: SyscallArgs) -> int:
    path, flags, mode = at.read_path(t, a.ptr(0)), a.int(1), a.uint(2)
    return await do_open(t, AT_FDCWD, path, flags, mode)


@syscall(257, "openat")
async def sys_openat(t: Task, a: SyscallArgs) -> int:
    dirfd, path, flags, mode = a.int(0), at.read_path(t, a.ptr(1)), a.int(2), a.uint(3)
    return await do_open(t, dirfd, path, flags, mode)


@syscall(85, "creat")
async def sys_creat(t: Task, a: SyscallArgs) -> int:
    path, mode = at.read_path(t, a.ptr(0)), a.uint(1)
    return await do_open(t, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode)


# ---- position, size, sync
@syscall(8, "lseek")
async def sys_lseek(t: Task, a: SyscallArgs) -> int:
    fd, off, whence = a.int(0), a.long(1), a.uint(2)
    f: File = t.fds.get(fd)
    if whence > SEEK_HOLE:
        raise LinuxError(EINVAL)
    return f.lseek(off, whence)


@syscall(76, "truncate")
async def sys_truncate(t: Task, a: SyscallArgs) -> int:
    path, length = at.read_path(t, a.ptr(0)), a.long(1)
    loc = at.lookup_loc(t, AT_FDCWD, path)
    ops.truncate(t, loc, length)
    return 0


@syscall(77, "ftruncate")
async def sys_ftruncate(t: Task, a: SyscallArgs) -> int:
    fd, length = a.int(0), a.long(1)
    if length < 0:
        raise LinuxError(EINVAL)
    f: File = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    if not f.writable:
        raise LinuxError(EINVAL)
    f.truncate(length)
    return 0


@syscall(74, "fsync")
async def sys_fsync(t: Task, a: SyscallArgs) -> int:
    f: File = t.fds.get(a.int(0))
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    f.fsync(False)
    return 0


@syscall(75, "fdatasync")
async def sys_fdatasync(t: Task, a: SyscallArgs) -> int:
    f: File = t.fds.get(a.int(0))
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    f.fsync(True)
    return 0


# ---- sendfile
@syscall(40, "sendfile", partial="copies through a kernel buffer unless both ends are host files")
async def sys_sendfile(t: Task, a: SyscallArgs) -> int:
    out_fd, in_fd, offp, count = a.int(0), a.int(1), a.ptr(2), a.size(3)
    inf = _readable(t, in_fd)
    outf = _writable(t, out_fd)
    if outf.flags & O_APPEND:
        raise LinuxError(EINVAL)
    off: int | None = None
    if offp:
        off = t.mm.read_u64(offp)
        if off >> 63:
            raise LinuxError(EINVAL)
        if not inf.seekable:
            raise LinuxError(ESPIPE)
    count = min(count, MAX_RW_COUNT)
    from quark.kernel.fs.host.file import HostFile
    if type(inf) is HostFile and type(outf) is HostFile and inf.host_fd is not None \
            and outf.host_fd is not None:
        try:
            n = os.sendfile(outf.host_fd, inf.host_fd, off, count)
        except OSError as e:
            raise LinuxError(e.errno or EINVAL) from e
    else:
        n = await _copy(t, inf, outf, off, count)
    if offp:
        assert off is not None
        t.mm.write_u64(offp, off + n)
    return n


async def _copy(t: Task, inf: File, outf: File, off: int | None, count: int) -> int:
    done = 0
    try:
        while done < count:
            chunk = bytearray(min(65536, count - done))
            mv = memoryview(chunk)
            n = await inf.readv(t, [mv], None if off is None else off + done)
            if n == 0:
                break
            w = await outf.writev(t, [mv[:n]], None)
            done += w
            if w < n:
                if off is None and inf.seekable:
                    inf.lseek(w - n, 1)  # give back what was read but not sent
                break
            if n < len(chunk):
                break
    except LinuxError:
        if done == 0:
            raise
    return done


# ---- ioctl
@syscall(16, "ioctl")
async def sys_ioctl(t: Task, a: SyscallArgs) -> int:
    """ioctl(2): the fd-generic requests here, the rest to the file."""
    fd, req, arg = a.int(0), a.uint(1), a.ulong(2)
    f: File = t.fds.get(fd)
    if f.flags & O_PATH:
        raise LinuxError(EBADF)
    if req == FIOCLEX:
        t.fds.set_cloexec(fd, True)
        return 0
    if req == FIONCLEX:
        t.fds.set_cloexec(fd, False)
        return 0
    if req == FIONBIO:
        on = t.mm.read_u32(arg)
        f.set_status_flags((f.flags | O_NONBLOCK) if on else (f.flags & ~O_NONBLOCK))
        return 0
    if req == FIOASYNC:
        on = t.mm.read_u32(arg)
        f.set_status_flags((f.flags | O_ASYNC) if on else (f.flags & ~O_ASYNC))
        return 0
    if req in (FIONREAD, FIOQSIZE) and f.seekable and f.loc is not None:
        st = f.stat()
        if st.is_reg():
            n = st.size - f.lseek(0, 1) if req == FIONREAD else st.size
            if req == FIONREAD:
                t.mm.write_u32(arg, max(0, min(n, 0x7FFFFFFF)))
            else:
                t.mm.write_u64(arg, n)
            return 0
    return await f.ioctl(t, req, arg)


