"""System information, limits, scheduling hints, prctl and the calls a container may
never make (kernel/sys.c, kernel/sched/core.c, drivers/char/random.c, kernel/membarrier.c).

Per-task odds and ends that no other module owns (nice value, prctl flags, CPU
affinity, personality) live in a :class:`MiscState` at ``t.misc``; the task code
creates it (or :func:`misc_state` does on first use) and calls :meth:`MiscState.fork`
for a child. Its consumers elsewhere: exit delivers ``pdeathsig`` to children,
reparenting looks for ``child_subreaper``, execve honours ``no_new_privs``.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import time
from typing import Any

from quark.kernel.abi.linux import (
    EACCES,
    EFAULT,
    EINVAL,
    EPERM,
    ESRCH,
    GRND_INSECURE,
    GRND_NONBLOCK,
    GRND_RANDOM,
    NSIG,
    PAGE_SIZE,
    PR_CAPBSET_READ,
    PR_GET_CHILD_SUBREAPER,
    PR_GET_DUMPABLE,
    PR_GET_NAME,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_PDEATHSIG,
    PR_GET_SECUREBITS,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NAME,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PRIO_PGRP,
    PRIO_PROCESS,
    PRIO_USER,
    TASK_COMM_LEN,
)
from quark.kernel.creds import CAP_SYS_ADMIN, CAP_SYS_NICE, CAP_SYS_RESOURCE, cap_valid
from quark.kernel.errors import LinuxError
from quark.kernel.rlimits import RLIM_INFINITY, RLIMIT_NICE
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import error, syscall

Task = Any  # quark.kernel.task.Task

UTS_RELEASE = "6.1.0-quark"
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC Quark"
UTS_MACHINE = "x86_64"
_NEW_UTS_LEN = 64


@dataclasses.dataclass
class MiscState:
    """Per-task state owned by this module."""

    nice: int = 0
    pdeathsig: int = 0
    dumpable: int = 1
    no_new_privs: bool = False
    child_subreaper: bool = False
    personality: int = 0
    affinity: int | None = None  # CPU bit mask; None = every vCPU

    def fork(self) -> MiscState:
        """A child's state: nice, dumpable, no_new_privs, personality and affinity are
        inherited; the parent-death signal and the subreaper flag are not."""
        return dataclasses.replace(self, pdeathsig=0, child_subreaper=False)


def misc_state(t: Task) -> MiscState:
    st = getattr(t, "misc", None)
    if st is None:
        st = MiscState()
        t.misc = st
    return st


def _b(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("utf-8", "surrogateescape")


def _like(old: object, raw: bytes) -> str | bytes:
    """``raw`` in the type the kernel already uses for that attribute."""
    return raw if isinstance(old, bytes) else raw.decode("utf-8", "surrogateescape")


def _task(t: Task, pid: int) -> Task:
    """``pid`` 0 is the caller; otherwise the task with that id, or ESRCH."""
    if pid == 0 or pid == t.tid:
        return t
    other = t.kernel.find_task(pid)
    if other is None:
        raise LinuxError(ESRCH)
    return other


# ---- uname, host and domain names

@syscall(63, "uname")
async def sys_uname(t: Task, a: SyscallArgs) -> int:
    """uname(2): struct new_utsname, six NUL-padded 65-byte fields."""
    buf = a.ptr(0)
    k = t.kernel
    fields = ("Linux", k.hostname, UTS_RELEASE, UTS_VERSION, UTS_MACHINE,
              getattr(k, "domainname", "(none)"))
    t.mm.write(buf, b"".join(_b(f)[:_NEW_UTS_LEN].ljust(_NEW_UTS_LEN + 1, b"\0") for f in fields))
    return 0


def _set_uts(t: Task, a: SyscallArgs, attr: str) -> None:
    name, n = a.ptr(0), a.int(1)
    if not t.creds.capable(CAP_SYS_ADMIN):
        raise LinuxError(EPERM)
    if not 0 <= n <= _NEW_UTS_LEN:
        raise LinuxError(EINVAL)
    raw = t.mm.read(name, n) if n else b""
    setattr(t.kernel, attr, _like(getattr(t.kernel, attr, ""), raw))


@syscall(170, "sethostname")
async def sys_sethostname(t: Task, a: SyscallArgs) -> int:
    """sethostname(2): the sandbox's own UTS name (never the host's)."""
    _set_uts(t, a, "hostname")
    return 0


@syscall(171, "setdomainname")
async def sys_setdomainname(t: Task, a: SyscallArgs) -> int:
    """setdomainname(2)."""
    _set_uts(t, a, "domainname")
    return 0


# ---- randomness

_CHUNK = 1 << 16


def _fill_random(t: Task, addr: int, n: int) -> None:
    for view in t.mm.iovecs(addr, n, True):
        view[:] = os.urandom(len(view))


@syscall(318, "getrandom")
async def sys_getrandom(t: Task, a: SyscallArgs) -> int:
    """getrandom(2) from the host's CSPRNG, which is always initialised by the time a
    sandbox runs, so GRND_NONBLOCK never sees EAGAIN. A buffer that becomes unmapped
    part-way gives a short count, EFAULT only when nothing was written."""
    buf, count, flags = a.ptr(0), a.size(1), a.uint(2)
    if flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE):
        raise LinuxError(EINVAL)
    if flags & (GRND_INSECURE | GRND_RANDOM) == GRND_INSECURE | GRND_RANDOM:
        raise LinuxError(EINVAL)
    count = min(count, 0x7FFFFFFF)
    done = 0
    while done < count:
        step = min(_CHUNK, count - done)
        try:
            _fill_random(t, buf + done, step)
        except LinuxError as e:
            if e.errno != EFAULT:
                raise
            # Find the exact end of the writable part, page by page.
            while done < count:
                step = min(PAGE_SIZE - (buf + done) % PAGE_SIZE, count - done)
                try:
                    _fill_random(t, buf + done, step)
                except LinuxError:
                    break
                done += step
            if done == 0:
                raise
            return done
        done += step
    return done


# ---- resource limits

_RLIMIT = struct.Struct("<QQ")  # struct rlimit64 {u64 rlim_cur; u64 rlim_max;}


def _prlimit(t: Task, target: Task, resource: int, new_addr: int, old_addr: int) -> int:
    new = _RLIMIT.unpack(t.mm.read(new_addr, _RLIMIT.size)) if new_addr else None
    lim = target.rlimits
    if new is None:
        old = lim.get(resource)
    else:
        old = lim.set(resource, new[0], new[1], may_raise_hard=t.creds.capable(CAP_SYS_RESOURCE))
    if old_addr:
        t.mm.write(old_addr, _RLIMIT.pack(*old))
    return 0


@syscall(302, "prlimit64")
async def sys_prlimit64(t: Task, a: SyscallArgs) -> int:
    """prlimit64(2). Another process's limits need matching real, effective and saved
    ids, or CAP_SYS_RESOURCE (``check_prlimit_permission``)."""
    pid, resource, new, old = a.int(0), a.uint(1), a.ptr(2), a.ptr(3)
    if new:
        t.mm.read(new, _RLIMIT.size)  # Linux copies the new value in before the lookup
    target = t if pid in (0, t.pid) else t.kernel.find_task(pid)
    if target is None:
        raise LinuxError(ESRCH)
    if target is not t and target.pid != t.pid:
        me, them = t.creds, target.creds
        same = (me.uid == them.euid == them.suid == them.uid
                and me.gid == them.egid == them.sgid == them.gid)
        if not same and not me.capable(CAP_SYS_RESOURCE):
            raise LinuxError(EPERM)
    return _prlimit(t, target, resource, new, old)


@syscall(97, "getrlimit")
async def sys_getrlimit(t: Task, a: SyscallArgs) -> int:
    """getrlimit(2)."""
    return _prlimit(t, t, a.uint(0), 0, a.ptr(1))


@syscall(160, "setrlimit")
async def sys_setrlimit(t: Task, a: SyscallArgs) -> int:
    """setrlimit(2)."""
    resource, new = a.uint(0), a.ptr(1)
    t.mm.read(new, _RLIMIT.size)  # EFAULT before EINVAL, as in Linux
    return _prlimit(t, t, resource, new, 0)


# ---- system information

# struct sysinfo on x86-64: long uptime; unsigned long loads[3]; unsigned long totalram,
# freeram, sharedram, bufferram, totalswap, freeswap; unsigned short procs, pad;
# unsigned long totalhigh, freehigh; unsigned int mem_unit; char _f[0]; (112 bytes)
_SYSINFO = struct.Struct("<q3Q6QHH4xQQI4x")


def _meminfo(t: Task) -> tuple[int, int]:
    k = t.kernel
    total = getattr(k, "mem_total", None)
    if total is None:
        total = os.sysconf("SC_PHYS_PAGES") * PAGE_SIZE
    free = getattr(k, "mem_free", None)
    if free is None:
        free = min(total, os.sysconf("SC_AVPHYS_PAGES") * PAGE_SIZE)
    return int(total), int(free)


def _uptime(t: Task) -> int:
    up = getattr(t.kernel, "uptime", None)
    if callable(up):
        return int(up())
    return int(time.clock_gettime(time.CLOCK_BOOTTIME))


@syscall(99, "sysinfo", partial="load averages are 0; memory is the sandbox's size")
async def sys_sysinfo(t: Task, a: SyscallArgs) -> int:
    """sysinfo(2)."""
    info = a.ptr(0)
    total, free = _meminfo(t)
    procs_fn = getattr(t.kernel, "procs", None)
    nprocs = len(list(procs_fn())) if callable(procs_fn) else 1
    t.mm.write(info, _SYSINFO.pack(_uptime(t), 0, 0, 0, total, free, 0, 0, 0, 0,
                                   min(nprocs, 0xFFFF), 0, 0, 0, 1))
    return 0


# ---- CPUs and scheduling

def _all_cpus(t: Task) -> int:
    return (1 << int(t.kernel.ncpus)) - 1


def _mask_bytes(t: Task) -> int:
    """``cpumask_size()``: whole longs covering the vCPUs."""
    return (int(t.kernel.ncpus) + 63) // 64 * 8


@syscall(309, "getcpu")
async def sys_getcpu(t: Task, a: SyscallArgs) -> int:
    """getcpu(2): the vCPU the task last ran on; one NUMA node."""
    cpu, node = a.ptr(0), a.ptr(1)
    n = int(getattr(t, "cpu", 0)) % max(1, int(t.kernel.ncpus))
    if cpu:
        t.mm.write_u32(cpu, n)
    if node:
        t.mm.write_u32(node, 0)
    return 0


@syscall(204, "sched_getaffinity")
async def sys_sched_getaffinity(t: Task, a: SyscallArgs) -> int:
    """sched_getaffinity(2): returns the number of bytes written (the raw syscall's
    contract; glibc zeroes the rest)."""
    pid, n, ptr = a.int(0), a.uint(1), a.ptr(2)
    ncpus = int(t.kernel.ncpus)
    if n * 8 < ncpus or n & 7:
        raise LinuxError(EINVAL)
    target = _task(t, pid)
    mask = misc_state(target).affinity
    if mask is None:
        mask = _all_cpus(t)
    size: int = min(n, _mask_bytes(t))
    t.mm.write(ptr, mask.to_bytes(size, "little"))
    return size


@syscall(203, "sched_setaffinity", partial="recorded and reported, not enforced")
async def sys_sched_setaffinity(t: Task, a: SyscallArgs) -> int:
    """sched_setaffinity(2): EINVAL when no given CPU exists."""
    pid, n, ptr = a.int(0), a.uint(1), a.ptr(2)
    raw = t.mm.read(ptr, min(n, _mask_bytes(t))) if n else b""
    target = _task(t, pid)
    if target is not t:
        me, them = t.creds, target.creds
        if me.euid not in (them.euid, them.uid) and not me.capable(CAP_SYS_NICE):
            raise LinuxError(EPERM)
    mask = int.from_bytes(raw, "little") & _all_cpus(t)
    if not mask:
        raise LinuxError(EINVAL)
    misc_state(target).affinity = mask
    return 0


@syscall(24, "sched_yield")
async def sys_sched_yield(t: Task, a: SyscallArgs) -> int:
    """sched_yield(2): the host schedules the vCPU threads; nothing to do here."""
    return 0


def _prio_targets(t: Task, which: int, who: int) -> list[Task]:
    if which not in (PRIO_PROCESS, PRIO_PGRP, PRIO_USER):
        raise LinuxError(EINVAL)
    if which == PRIO_PROCESS:
        if who == 0:
            return [t]
        other = t.kernel.find_task(who)
        return [other] if other is not None else []
    tasks = getattr(t.kernel, "tasks", None)  # tid -> Task, the live tasks
    everyone = list(tasks.values()) if tasks is not None else [t]
    if which == PRIO_PGRP:
        pgid = who or _pgid(t)
        return [p for p in everyone if _pgid(p) == pgid]
    uid = who or t.creds.uid
    return [p for p in everyone if p.creds.uid == uid]


def _pgid(t: Task) -> int:
    pgid = getattr(t, "pgid", None)
    if pgid is None:
        pgid = getattr(getattr(t, "tg", None), "pgid", None)
    return int(pgid if pgid is not None else t.pid)


@syscall(140, "getpriority")
async def sys_getpriority(t: Task, a: SyscallArgs) -> int:
    """getpriority(2): the raw syscall returns ``20 - nice`` (1..40), so it never looks
    like an error; glibc converts back."""
    targets = _prio_targets(t, a.int(0), a.int(1))
    if not targets:
        raise LinuxError(ESRCH)
    return max(20 - misc_state(p).nice for p in targets)


@syscall(141, "setpriority")
async def sys_setpriority(t: Task, a: SyscallArgs) -> int:
    """setpriority(2): nice is clamped to [-20, 19]; lowering it needs CAP_SYS_NICE or
    RLIMIT_NICE room (EACCES), touching another user's task needs matching ids (EPERM)."""
    which, who, nice = a.int(0), a.int(1), a.int(2)
    targets = _prio_targets(t, which, who)
    if not targets:
        raise LinuxError(ESRCH)
    nice = max(-20, min(19, nice))
    me = t.creds
    for p in targets:
        them = p.creds
        if me.euid not in (them.uid, them.euid) and not me.capable(CAP_SYS_NICE):
            raise LinuxError(EPERM)
        st = misc_state(p)
        if nice < st.nice:
            soft = p.rlimits.soft(RLIMIT_NICE)
            if not (soft == RLIM_INFINITY or 20 - nice <= soft) and not me.capable(CAP_SYS_NICE):
                raise LinuxError(EACCES)
        st.nice = nice
    return 0


# ---- personality and prctl

@syscall(135, "personality", partial="values are stored; only PER_LINUX behaviour exists")
async def sys_personality(t: Task, a: SyscallArgs) -> int:
    """personality(2): returns the old value; 0xffffffff only queries."""
    persona = a.uint(0)
    st = misc_state(t)
    old = st.personality
    if persona != 0xFFFFFFFF:
        st.personality = persona
    return old


def _read_comm(t: Task, addr: int) -> bytes:
    """``strncpy_from_user(comm, addr, 15)``: stops at a NUL, faults only on bytes it
    actually needs."""
    want = TASK_COMM_LEN - 1
    first = min(want, PAGE_SIZE - addr % PAGE_SIZE)
    data = t.mm.read(addr, first)
    if b"\0" not in data and first < want:
        data += t.mm.read(addr + first, want - first)
    return bytes(data.split(b"\0", 1)[0])


@syscall(157, "prctl", partial="names, parent-death signal, dumpable, no_new_privs, "
                              "child subreaper, capability bounding set reads")
async def sys_prctl(t: Task, a: SyscallArgs) -> int:
    """prctl(2)."""
    op, arg2 = a.int(0), a.ulong(1)
    rest = (a.ulong(2), a.ulong(3), a.ulong(4))
    st = misc_state(t)
    if op == PR_SET_NAME:
        t.comm = _like(t.comm, _read_comm(t, arg2))
        return 0
    if op == PR_GET_NAME:
        t.mm.write(arg2, _b(t.comm)[:TASK_COMM_LEN - 1].ljust(TASK_COMM_LEN, b"\0"))
        return 0
    if op == PR_SET_PDEATHSIG:
        if arg2 > NSIG:
            raise LinuxError(EINVAL)
        st.pdeathsig = arg2
        return 0
    if op == PR_GET_PDEATHSIG:
        t.mm.write_u32(arg2, st.pdeathsig)
        return 0
    if op == PR_GET_DUMPABLE:
        return st.dumpable
    if op == PR_SET_DUMPABLE:
        if arg2 not in (0, 1):
            raise LinuxError(EINVAL)
        st.dumpable = arg2
        return 0
    if op == PR_SET_NO_NEW_PRIVS:
        if arg2 != 1 or any(rest):
            raise LinuxError(EINVAL)
        st.no_new_privs = True
        return 0
    if op == PR_GET_NO_NEW_PRIVS:
        if arg2 or any(rest):
            raise LinuxError(EINVAL)
        return int(st.no_new_privs)
    if op == PR_SET_CHILD_SUBREAPER:
        st.child_subreaper = bool(arg2)
        return 0
    if op == PR_GET_CHILD_SUBREAPER:
        t.mm.write_u32(arg2, int(st.child_subreaper))
        return 0
    if op == PR_CAPBSET_READ:
        if not cap_valid(arg2):
            raise LinuxError(EINVAL)
        return int(t.creds.cap_bset >> arg2 & 1)
    if op == PR_GET_SECUREBITS:
        return 0
    raise LinuxError(EINVAL)


# ---- sync

@syscall(162, "sync", partial="no-op: file data goes straight to host files; durability "
                              "is the host page cache's")
async def sys_sync(t: Task, a: SyscallArgs) -> int:
    """sync(2). A host-wide ``sync`` under the kernel lock would let one container stall
    every other; what the guest wrote already sits in host files."""
    return 0


@syscall(306, "syncfs", partial="validates the fd; see sync")
async def sys_syncfs(t: Task, a: SyscallArgs) -> int:
    """syncfs(2)."""
    t.fds.get(a.int(0))  # EBADF
    return 0


# ---- membarrier

MEMBARRIER_CMD_QUERY = 0


@syscall(324, "membarrier", partial="QUERY only, reporting no commands (a host membarrier "
                                   "through an *_ffi.py module would be the way to add them)")
async def sys_membarrier(t: Task, a: SyscallArgs) -> int:
    """membarrier(2). Reporting an empty command set makes users (liburcu, JITs) fall
    back to ordinary barriers, which is correct; any command is then EINVAL."""
    cmd, flags = a.int(0), a.uint(1)
    if flags:
        raise LinuxError(EINVAL)
    if cmd == MEMBARRIER_CMD_QUERY:
        return 0
    raise LinuxError(EINVAL)


# ---- calls a container never gets (a capability the sandbox does not grant, or a
# host-wide effect). rseq (334) stays unregistered: ENOSYS, as gVisor answers, and glibc
# copes with that.

error(169, "reboot", EPERM, "CAP_SYS_BOOT: the container cannot reboot the sandbox")
error(246, "kexec_load", EPERM, "CAP_SYS_BOOT")
error(320, "kexec_file_load", EPERM, "CAP_SYS_BOOT")
error(175, "init_module", EPERM, "CAP_SYS_MODULE: there are no kernel modules")
error(313, "finit_module", EPERM, "CAP_SYS_MODULE: there are no kernel modules")
error(176, "delete_module", EPERM, "CAP_SYS_MODULE: there are no kernel modules")
error(167, "swapon", EPERM, "CAP_SYS_ADMIN: no swap devices")
error(168, "swapoff", EPERM, "CAP_SYS_ADMIN: no swap devices")
error(163, "acct", EPERM, "CAP_SYS_PACCT: no process accounting")
error(164, "settimeofday", EPERM, "CAP_SYS_TIME: the clocks are the host's")
error(227, "clock_settime", EPERM, "CAP_SYS_TIME: the clocks are the host's")
error(159, "adjtimex", EPERM, "CAP_SYS_TIME: the clocks are the host's")
error(305, "clock_adjtime", EPERM, "CAP_SYS_TIME: the clocks are the host's")
error(165, "mount", EPERM, "mounts come from config.json")
error(166, "umount2", EPERM, "mounts come from config.json")
