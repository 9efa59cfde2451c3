"""Memory calls: brk, mmap, munmap, mprotect, madvise, mremap, msync, mincore, mlock."""

from __future__ import annotations

from quark.core.guest.layout import PAGE, USER_TOP
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.task import Task

MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_WILLNEED, MADV_DONTNEED = 0, 1, 2, 3, 4
MADV_FREE = 8
MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4


@syscall(12, "brk")
async def sys_brk(t: Task, a: SyscallArgs) -> int:
    return t.mm.set_brk(a.ulong(0))


@syscall(9, "mmap", partial="host processes outside the sandbox see MAP_SHARED stores at msync/munmap")
async def sys_mmap(t: Task, a: SyscallArgs) -> int:
    addr, length, prot, flags, fd, off = (a.ulong(0), a.ulong(1), a.int(2), a.int(3),
                                          a.int(4), a.long(5))
    if off < 0:
        raise LinuxError(L.EINVAL)
    f = None
    if not flags & L.MAP_ANONYMOUS:
        f = t.fds.get(fd)
        if flags & L.MAP_TYPE in (L.MAP_SHARED, L.MAP_SHARED_VALIDATE) and prot & L.PROT_WRITE \
                and not f.writable:
            raise LinuxError(L.EACCES)
        if not f.readable:
            raise LinuxError(L.EACCES)
    return t.mm.mmap(addr, length, prot, flags, f, off, f.path if f is not None else "")


@syscall(11, "munmap")
async def sys_munmap(t: Task, a: SyscallArgs) -> int:
    t.mm.munmap(a.ulong(0), a.ulong(1))
    return 0


@syscall(10, "mprotect")
async def sys_mprotect(t: Task, a: SyscallArgs) -> int:
    t.mm.mprotect(a.ulong(0), a.ulong(1), a.int(2))
    return 0


@syscall(28, "madvise", partial="DONTNEED/FREE zero anonymous pages; other advice accepted")
async def sys_madvise(t: Task, a: SyscallArgs) -> int:
    addr, length, advice = a.ulong(0), a.ulong(1), a.int(2)
    if addr & (PAGE - 1):
        raise LinuxError(L.EINVAL)
    end = addr + ((length + PAGE - 1) & ~(PAGE - 1))
    if end > USER_TOP or end < addr:
        raise LinuxError(L.EINVAL)
    if advice in (MADV_DONTNEED, MADV_FREE):
        t.mm.drop_pages(addr, end)
    elif advice not in range(26) and advice not in (100, 101):
        raise LinuxError(L.EINVAL)
    return 0


@syscall(25, "mremap")
async def sys_mremap(t: Task, a: SyscallArgs) -> int:
    old, old_size, new_size, flags, new_addr = (a.ulong(0), a.ulong(1), a.ulong(2),
                                                a.int(3), a.ulong(4))
    if old & (PAGE - 1) or flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise LinuxError(L.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise LinuxError(L.EINVAL)
    if new_size == 0:
        raise LinuxError(L.EINVAL)
    return t.mm.mremap(old, old_size, new_size, flags & MREMAP_MAYMOVE,
                       new_addr if flags & MREMAP_FIXED else None,
                       bool(flags & MREMAP_DONTUNMAP))


@syscall(26, "msync")
async def sys_msync(t: Task, a: SyscallArgs) -> int:
    addr, length, flags = a.ulong(0), a.ulong(1), a.int(2)
    if addr & (PAGE - 1) or flags & ~7 or (flags & 1 and flags & 4):
        raise LinuxError(L.EINVAL)
    end = addr + ((length + PAGE - 1) & ~(PAGE - 1))
    covered = addr
    for v in t.mm.vmas.overlapping(addr, end):
        if v.start > covered:
            raise LinuxError(L.ENOMEM)
        covered = v.end
    if covered < end:
        raise LinuxError(L.ENOMEM)
    if flags & 5:                       # MS_ASYNC, MS_SYNC: both write back now
        t.mm.msync(addr, end)
    return 0


@syscall(27, "mincore")
async def sys_mincore(t: Task, a: SyscallArgs) -> int:
    addr, length, vec = a.ulong(0), a.ulong(1), a.ptr(2)
    if addr & (PAGE - 1):
        raise LinuxError(L.EINVAL)
    if length > USER_TOP - addr:
        raise LinuxError(L.ENOMEM)      # not a user range (Linux: access_ok)
    pages = (length + PAGE - 1) // PAGE
    # Linux fills the vector a page of bytes at a time, so a huge length costs
    # nothing before the first unmapped page ends the call.
    done = 0
    while done < pages:
        n = min(pages - done, PAGE)
        out = bytearray(n)
        for i in range(n):
            p = addr + (done + i) * PAGE
            if t.mm.vmas.find(p) is None:
                raise LinuxError(L.ENOMEM)
            out[i] = 1 if p in t.mm.frames else 0
        t.mm.write(vec + done, bytes(out))
        done += n
    return 0


@syscall(149, "mlock")
async def sys_mlock(t: Task, a: SyscallArgs) -> int:
    return 0


@syscall(150, "munlock")
async def sys_munlock(t: Task, a: SyscallArgs) -> int:
    return 0


@syscall(151, "mlockall")
async def sys_mlockall(t: Task, a: SyscallArgs) -> int:
    if a.int(0) & ~7 or not a.int(0):
        raise LinuxError(L.EINVAL)
    return 0


@syscall(152, "munlockall")
async def sys_munlockall(t: Task, a: SyscallArgs) -> int:
    return 0
