"""memfd_create(2)."""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import EFAULT, EINVAL, ENAMETOOLONG, O_LARGEFILE, O_RDWR
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.memfd import make_memfd
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.vfs.fdtable import nofile_limit
from quark.kernel.vfs.path import fsdecode

Task = Any

MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
MFD_HUGETLB = 0x0004
MFD_NOEXEC_SEAL = 0x0008
MFD_EXEC = 0x0010
MFD_ALL_FLAGS = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC
MFD_HUGE_MASK = 0x3F << 26
MFD_NAME_MAX_LEN = 255 - len("memfd:")


@syscall(319, "memfd_create", partial="MFD_HUGETLB files are ordinary memory")
async def sys_memfd_create(t: Task, a: SyscallArgs) -> int:
    name_p, flags = a.ptr(0), a.uint(1)
    allowed = MFD_ALL_FLAGS | (MFD_HUGE_MASK if flags & MFD_HUGETLB else 0)
    if flags & ~allowed:
        raise LinuxError(EINVAL)
    if flags & MFD_EXEC and flags & MFD_NOEXEC_SEAL:
        raise LinuxError(EINVAL)
    try:
        raw = t.mm.read_cstr(name_p, MFD_NAME_MAX_LEN + 1)
    except LinuxError as e:
        raise LinuxError(EINVAL if e.errno == ENAMETOOLONG else EFAULT) from None
    noexec = bool(flags & MFD_NOEXEC_SEAL)
    f = make_memfd(t, fsdecode(raw), O_RDWR | O_LARGEFILE,
                   sealing=bool(flags & MFD_ALLOW_SEALING) or noexec, noexec=noexec)
    return int(t.fds.install(f, bool(flags & MFD_CLOEXEC), limit=nofile_limit(t)))
