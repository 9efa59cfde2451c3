"""User and group ids, supplementary groups, capabilities (kernel/sys.c, kernel/groups.c,
kernel/capability.c).

Each setter follows Linux's permission rule exactly: an unprivileged task may only
move an id among the values it already holds (real, effective, saved), a task with
CAP_SETUID / CAP_SETGID may set anything; violations are EPERM. ``(uid_t)-1`` means
"leave unchanged" where Linux says so and is EINVAL for setuid/setgid. Credentials are
replaced, never mutated in place (see creds.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from quark.kernel.abi.linux import (
    EFAULT,
    EINVAL,
    EPERM,
    ESRCH,
    LINUX_CAPABILITY_VERSION_1,
    LINUX_CAPABILITY_VERSION_2,
    LINUX_CAPABILITY_VERSION_3,
)
from quark.kernel.creds import CAP_SETGID, CAP_SETPCAP, CAP_SETUID, NGROUPS_MAX, Creds
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import fast, syscall

NOCHANGE = 0xFFFFFFFF  # (uid_t)-1 / (gid_t)-1

Task = Any  # quark.kernel.task.Task (not imported: the table must load without it)


def _commit(t: Task, new: Creds) -> int:
    t.creds = new
    return 0


# ---- getters: plain functions the QCall fast path calls without a coroutine
# (syscalls.table.fast); the handlers (exit path, strace) answer through them.

def _creds_field(field: str) -> Callable[[Task, tuple[int, ...]], int]:
    def get(t: Task, raw: tuple[int, ...]) -> int:
        return int(getattr(t.creds, field))
    return get


fast_getuid = fast(102)(_creds_field("uid"))
fast_getgid = fast(104)(_creds_field("gid"))
fast_geteuid = fast(107)(_creds_field("euid"))
fast_getegid = fast(108)(_creds_field("egid"))


@syscall(102, "getuid")
async def sys_getuid(t: Task, a: SyscallArgs) -> int:
    """getuid(2)."""
    return fast_getuid(t, ())


@syscall(104, "getgid")
async def sys_getgid(t: Task, a: SyscallArgs) -> int:
    """getgid(2)."""
    return fast_getgid(t, ())


@syscall(107, "geteuid")
async def sys_geteuid(t: Task, a: SyscallArgs) -> int:
    """geteuid(2)."""
    return fast_geteuid(t, ())


@syscall(108, "getegid")
async def sys_getegid(t: Task, a: SyscallArgs) -> int:
    """getegid(2)."""
    return fast_getegid(t, ())


@syscall(118, "getresuid")
async def sys_getresuid(t: Task, a: SyscallArgs) -> int:
    """getresuid(2): three ``put_user`` in order; the first bad pointer is EFAULT."""
    c = t.creds
    for i, v in enumerate((c.uid, c.euid, c.suid)):
        t.mm.write_u32(a.ptr(i), v)
    return 0


@syscall(120, "getresgid")
async def sys_getresgid(t: Task, a: SyscallArgs) -> int:
    """getresgid(2)."""
    c = t.creds
    for i, v in enumerate((c.gid, c.egid, c.sgid)):
        t.mm.write_u32(a.ptr(i), v)
    return 0


# ---- uid setters

@syscall(105, "setuid")
async def sys_setuid(t: Task, a: SyscallArgs) -> int:
    """setuid(2): privileged sets real, saved, effective and fs uid; otherwise only
    effective/fs, and only to the real or saved uid."""
    uid = a.uint(0)
    if uid == NOCHANGE:
        raise LinuxError(EINVAL)
    old = t.creds
    new = old.copy()
    if old.capable(CAP_SETUID):
        new.uid = new.suid = uid
    elif uid != old.uid and uid != old.suid:
        raise LinuxError(EPERM)
    new.euid = new.fsuid = uid
    new.fix_caps_after_setuid(old)
    return _commit(t, new)


@syscall(113, "setreuid")
async def sys_setreuid(t: Task, a: SyscallArgs) -> int:
    """setreuid(2)."""
    ruid, euid = a.uint(0), a.uint(1)
    old = t.creds
    new = old.copy()
    priv = old.capable(CAP_SETUID)
    if ruid != NOCHANGE:
        if ruid not in (old.uid, old.euid) and not priv:
            raise LinuxError(EPERM)
        new.uid = ruid
    if euid != NOCHANGE:
        if euid not in (old.uid, old.euid, old.suid) and not priv:
            raise LinuxError(EPERM)
        new.euid = euid
    # The saved uid follows the effective one when the real uid is set, or when the
    # effective uid is set to something other than the (old) real uid.
    if ruid != NOCHANGE or (euid != NOCHANGE and euid != old.uid):
        new.suid = new.euid
    new.fsuid = new.euid
    new.fix_caps_after_setuid(old)
    return _commit(t, new)


@syscall(117, "setresuid")
async def sys_setresuid(t: Task, a: SyscallArgs) -> int:
    """setresuid(2): unprivileged, each new id must be one of the current three."""
    ruid, euid, suid = a.uint(0), a.uint(1), a.uint(2)
    old = t.creds
    if ((ruid == NOCHANGE or ruid == old.uid)
            and (euid == NOCHANGE or (euid == old.euid and euid == old.fsuid))
            and (suid == NOCHANGE or suid == old.suid)):
        return 0  # no-op: Linux returns before any permission check
    held = (old.uid, old.euid, old.suid)
    wants_new = any(v != NOCHANGE and v not in held for v in (ruid, euid, suid))
    if wants_new and not old.capable(CAP_SETUID):
        raise LinuxError(EPERM)
    new = old.copy()
    if ruid != NOCHANGE:
        new.uid = ruid
    if euid != NOCHANGE:
        new.euid = euid
    if suid != NOCHANGE:
        new.suid = suid
    new.fsuid = new.euid
    new.fix_caps_after_setuid(old)
    return _commit(t, new)


@syscall(122, "setfsuid")
async def sys_setfsuid(t: Task, a: SyscallArgs) -> int:
    """setfsuid(2): never fails; returns the previous fsuid whether or not it changed."""
    uid = a.uint(0)
    old = t.creds
    if uid == NOCHANGE:
        return int(old.fsuid)
    allowed = uid in (old.uid, old.euid, old.suid, old.fsuid) or old.capable(CAP_SETUID)
    if allowed and uid != old.fsuid:
        new = old.copy()
        new.fsuid = uid
        new.fix_caps_after_setfsuid(old)
        t.creds = new
    return int(old.fsuid)


# ---- gid setters (same rules with CAP_SETGID; capabilities do not follow gids)

@syscall(106, "setgid")
async def sys_setgid(t: Task, a: SyscallArgs) -> int:
    """setgid(2)."""
    gid = a.uint(0)
    if gid == NOCHANGE:
        raise LinuxError(EINVAL)
    old = t.creds
    new = old.copy()
    if old.capable(CAP_SETGID):
        new.gid = new.sgid = gid
    elif gid != old.gid and gid != old.sgid:
        raise LinuxError(EPERM)
    new.egid = new.fsgid = gid
    return _commit(t, new)


@syscall(114, "setregid")
async def sys_setregid(t: Task, a: SyscallArgs) -> int:
    """setregid(2)."""
    rgid, egid = a.uint(0), a.uint(1)
    old = t.creds
    new = old.copy()
    priv = old.capable(CAP_SETGID)
    if rgid != NOCHANGE:
        if rgid not in (old.gid, old.egid) and not priv:
            raise LinuxError(EPERM)
        new.gid = rgid
    if egid != NOCHANGE:
        if egid not in (old.gid, old.egid, old.sgid) and not priv:
            raise LinuxError(EPERM)
        new.egid = egid
    if rgid != NOCHANGE or (egid != NOCHANGE and egid != old.gid):
        new.sgid = new.egid
    new.fsgid = new.egid
    return _commit(t, new)


@syscall(119, "setresgid")
async def sys_setresgid(t: Task, a: SyscallArgs) -> int:
    """setresgid(2)."""
    rgid, egid, sgid = a.uint(0), a.uint(1), a.uint(2)
    old = t.creds
    if ((rgid == NOCHANGE or rgid == old.gid)
            and (egid == NOCHANGE or (egid == old.egid and egid == old.fsgid))
            and (sgid == NOCHANGE or sgid == old.sgid)):
        return 0
    held = (old.gid, old.egid, old.sgid)
    wants_new = any(v != NOCHANGE and v not in held for v in (rgid, egid, sgid))
    if wants_new and not old.capable(CAP_SETGID):
        raise LinuxError(EPERM)
    new = old.copy()
    if rgid != NOCHANGE:
        new.gid = rgid
    if egid != NOCHANGE:
        new.egid = egid
    if sgid != NOCHANGE:
        new.sgid = sgid
    new.fsgid = new.egid
    return _commit(t, new)


@syscall(123, "setfsgid")
async def sys_setfsgid(t: Task, a: SyscallArgs) -> int:
    """setfsgid(2)."""
    gid = a.uint(0)
    old = t.creds
    if gid == NOCHANGE:
        return int(old.fsgid)
    allowed = gid in (old.gid, old.egid, old.sgid, old.fsgid) or old.capable(CAP_SETGID)
    if allowed and gid != old.fsgid:
        new = old.copy()
        new.fsgid = gid
        t.creds = new
    return int(old.fsgid)


# ---- supplementary groups

@syscall(115, "getgroups")
async def sys_getgroups(t: Task, a: SyscallArgs) -> int:
    """getgroups(2): size 0 asks for the count; a smaller non-zero size is EINVAL."""
    size, ptr = a.int(0), a.ptr(1)
    groups = t.creds.groups
    if size < 0:
        raise LinuxError(EINVAL)
    if size == 0:
        return len(groups)
    if size < len(groups):
        raise LinuxError(EINVAL)
    if groups:
        t.mm.write(ptr, struct.pack(f"<{len(groups)}I", *groups))
    return len(groups)


@syscall(116, "setgroups")
async def sys_setgroups(t: Task, a: SyscallArgs) -> int:
    """setgroups(2): needs CAP_SETGID (checked first, as Linux does); the kernel keeps
    the list sorted, so getgroups returns it sorted."""
    size, ptr = a.int(0), a.ptr(1)
    if not t.creds.capable(CAP_SETGID):
        raise LinuxError(EPERM)
    if not 0 <= size <= NGROUPS_MAX:  # Linux compares as unsigned
        raise LinuxError(EINVAL)
    groups: tuple[int, ...] = ()
    if size:
        groups = struct.unpack(f"<{size}I", t.mm.read(ptr, 4 * size))
    new = t.creds.copy()
    new.groups = tuple(sorted(groups))  # duplicates are kept, like Linux
    return _commit(t, new)


# ---- capabilities (kernel/capability.c)

_HEADER = struct.Struct("<Ii")          # struct __user_cap_header_struct {u32 version; int pid;}
_DATA = struct.Struct("<III")           # struct __user_cap_data_struct {effective, permitted, inheritable}


def _cap_words(t: Task, hdr: int) -> int:
    """``cap_validate_magic``: how many 32-bit words the header's version transfers.
    An unknown version gets the preferred one written back and EINVAL."""
    version = t.mm.read_u32(hdr)
    if version == LINUX_CAPABILITY_VERSION_1:
        return 1
    if version in (LINUX_CAPABILITY_VERSION_2, LINUX_CAPABILITY_VERSION_3):
        return 2
    t.mm.write_u32(hdr, LINUX_CAPABILITY_VERSION_3)
    raise LinuxError(EINVAL)


@syscall(125, "capget")
async def sys_capget(t: Task, a: SyscallArgs) -> int:
    """capget(2). With a NULL data pointer it is a version probe: a bad version is then
    answered with 0 (the preferred version written into the header)."""
    hdr, data = a.ptr(0), a.ptr(1)
    try:
        words = _cap_words(t, hdr)
    except LinuxError as e:
        if data == 0 and e.errno == EINVAL:
            return 0
        raise
    if data == 0:
        return 0
    pid = _HEADER.unpack(t.mm.read(hdr, _HEADER.size))[1]
    if pid < 0:
        raise LinuxError(EINVAL)
    target = t
    if pid != 0 and pid != t.pid:
        target = t.kernel.find_task(pid)
        if target is None:
            raise LinuxError(ESRCH)
    c = target.creds
    out = b"".join(
        _DATA.pack(c.cap_effective >> (32 * i) & 0xFFFFFFFF,
                   c.cap_permitted >> (32 * i) & 0xFFFFFFFF,
                   c.cap_inheritable >> (32 * i) & 0xFFFFFFFF)
        for i in range(words))
    t.mm.write(data, out)
    return 0


@syscall(126, "capset")
async def sys_capset(t: Task, a: SyscallArgs) -> int:
    """capset(2) on the caller only. Without file capabilities or CAP_SETPCAP games,
    the only thing it can do is drop: new permitted within old permitted, new effective
    within new permitted, new inheritable within old (inheritable | permitted) and the
    bounding set (``cap_capset``)."""
    hdr, data = a.ptr(0), a.ptr(1)
    words = _cap_words(t, hdr)
    pid = _HEADER.unpack(t.mm.read(hdr, _HEADER.size))[1]
    if pid != 0 and pid != t.pid:
        raise LinuxError(EPERM)
    if data == 0:
        raise LinuxError(EFAULT)
    raw = t.mm.read(data, _DATA.size * words)
    eff = perm = inh = 0
    for i in range(words):
        e, p, h = _DATA.unpack_from(raw, _DATA.size * i)
        eff |= e << (32 * i)
        perm |= p << (32 * i)
        inh |= h << (32 * i)
    old = t.creds
    if words == 1:  # a v1 caller cannot see the upper word; Linux keeps it as is
        eff |= old.cap_effective & ~0xFFFFFFFF
        perm |= old.cap_permitted & ~0xFFFFFFFF
        inh |= old.cap_inheritable & ~0xFFFFFFFF
    if inh & ~(old.cap_inheritable | old.cap_permitted) and not old.capable(CAP_SETPCAP):
        raise LinuxError(EPERM)
    if inh & ~(old.cap_inheritable | old.cap_bset):
        raise LinuxError(EPERM)
    if perm & ~old.cap_permitted:
        raise LinuxError(EPERM)
    if eff & ~perm:
        raise LinuxError(EPERM)
    new = old.copy()
    new.cap_effective, new.cap_permitted, new.cap_inheritable = eff, perm, inh
    return _commit(t, new)
