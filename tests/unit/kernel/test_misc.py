"""uname, getrandom, limits, scheduling, prctl and the always-failing calls."""

from __future__ import annotations

import struct

from quark.kernel.abi.linux import (
    EACCES,
    EBADF,
    EFAULT,
    EINVAL,
    ENOSYS,
    EPERM,
    ESRCH,
    PAGE_SIZE,
    PR_CAPBSET_READ,
    PR_GET_CHILD_SUBREAPER,
    PR_GET_DUMPABLE,
    PR_GET_NAME,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_PDEATHSIG,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    PR_SET_NAME,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PRIO_PROCESS,
    PRIO_USER,
)
from quark.kernel.creds import Creds
from quark.kernel.rlimits import NR_OPEN, RLIM_INFINITY, RLIMIT_NICE, RLIMIT_NOFILE, RLIMIT_STACK
from quark.kernel.syscalls import sys_misc as s
from quark.kernel.syscalls import table
from tests.unit.kernel.fakes_misc import BASE, SIZE, FakeTask, call, errno_of

END = BASE + SIZE


def user(pid: int = 1, **kw: object) -> FakeTask:
    return FakeTask(pid=pid, creds=Creds.for_user(1000, 1000), **kw)  # type: ignore[arg-type]


# ---- uname / hostname

def test_uname() -> None:
    t = FakeTask()
    assert call(t, s.sys_uname, BASE) == 0
    raw = t.mm.read(BASE, 6 * 65)
    fields = [raw[i * 65:(i + 1) * 65].split(b"\0")[0] for i in range(6)]
    assert fields[0] == b"Linux" and fields[1] == b"sandbox" and fields[4] == b"x86_64"
    assert fields[2].startswith(b"6.") and fields[5] == b"(none)"
    assert errno_of(t, s.sys_uname, END - 100) == EFAULT


def test_sethostname() -> None:
    t = FakeTask()
    t.mm.write(BASE, b"box1")
    assert call(t, s.sys_sethostname, BASE, 4) == 0
    assert t.kernel.hostname == "box1"
    call(t, s.sys_uname, BASE + 100)
    assert t.mm.read(BASE + 165, 5) == b"box1\0"
    assert errno_of(t, s.sys_sethostname, BASE, 65) == EINVAL
    assert errno_of(t, s.sys_sethostname, BASE, -1) == EINVAL
    assert errno_of(t, s.sys_sethostname, 8, 4) == EFAULT
    assert errno_of(user(pid=2), s.sys_sethostname, BASE, 4) == EPERM
    assert call(t, s.sys_setdomainname, BASE, 2) == 0 and t.kernel.domainname == "bo"


# ---- getrandom

def test_getrandom() -> None:
    t = FakeTask()
    assert call(t, s.sys_getrandom, BASE, 4096, 0) == 4096
    a = t.mm.read(BASE, 4096)
    assert call(t, s.sys_getrandom, BASE, 4096, 1) == 4096
    assert t.mm.read(BASE, 4096) != a and len(set(a)) > 100
    assert call(t, s.sys_getrandom, BASE, 0, 0) == 0
    for flags in (8, 6, 0x80000000):
        assert errno_of(t, s.sys_getrandom, BASE, 16, flags) == EINVAL
    assert errno_of(t, s.sys_getrandom, 8, 16, 0) == EFAULT


def test_getrandom_partial_before_unmapped_page() -> None:
    t = FakeTask()
    t.mm.unmap_page(BASE + 3 * PAGE_SIZE)
    start = BASE + 2 * PAGE_SIZE + 100
    assert call(t, s.sys_getrandom, start, 10_000, 0) == PAGE_SIZE - 100
    assert errno_of(t, s.sys_getrandom, BASE + 3 * PAGE_SIZE, 10, 0) == EFAULT


# ---- rlimits

def test_getrlimit_setrlimit() -> None:
    t = FakeTask()
    assert call(t, s.sys_getrlimit, RLIMIT_STACK, BASE) == 0
    assert struct.unpack("<QQ", t.mm.read(BASE, 16)) == (8 << 20, RLIM_INFINITY)
    t.mm.write(BASE, struct.pack("<QQ", 64, 128))
    assert call(t, s.sys_setrlimit, RLIMIT_NOFILE, BASE) == 0
    assert t.rlimits.get(RLIMIT_NOFILE) == (64, 128)
    assert errno_of(t, s.sys_getrlimit, 16, BASE) == EINVAL
    assert errno_of(t, s.sys_setrlimit, 16, 8) == EFAULT  # EFAULT before EINVAL
    t.mm.write(BASE, struct.pack("<QQ", 10, 5))
    assert errno_of(t, s.sys_setrlimit, RLIMIT_NOFILE, BASE) == EINVAL


def test_setrlimit_raise_hard_needs_cap() -> None:
    t = user()
    t.mm.write(BASE, struct.pack("<QQ", 10, 20))
    assert call(t, s.sys_setrlimit, RLIMIT_NOFILE, BASE) == 0
    t.mm.write(BASE, struct.pack("<QQ", 10, 21))
    assert errno_of(t, s.sys_setrlimit, RLIMIT_NOFILE, BASE) == EPERM
    r = FakeTask(pid=5)
    r.mm.write(BASE, struct.pack("<QQ", 10, NR_OPEN + 1))
    assert errno_of(r, s.sys_setrlimit, RLIMIT_NOFILE, BASE) == EPERM


def test_prlimit64() -> None:
    t = FakeTask()
    t.mm.write(BASE, struct.pack("<QQ", 100, 200))
    assert call(t, s.sys_prlimit64, 0, RLIMIT_NOFILE, BASE, BASE + 16) == 0
    assert struct.unpack("<QQ", t.mm.read(BASE + 16, 16)) == (1024, NR_OPEN)
    assert call(t, s.sys_prlimit64, 1, RLIMIT_NOFILE, 0, BASE + 32) == 0
    assert struct.unpack("<QQ", t.mm.read(BASE + 32, 16)) == (100, 200)
    assert call(t, s.sys_prlimit64, 0, RLIMIT_NOFILE, 0, 0) == 0
    assert errno_of(t, s.sys_prlimit64, 4242, RLIMIT_NOFILE, 0, BASE) == ESRCH
    assert errno_of(t, s.sys_prlimit64, 0, 99, 0, BASE) == EINVAL
    assert errno_of(t, s.sys_prlimit64, 0, RLIMIT_NOFILE, 8, 0) == EFAULT


def test_prlimit64_other_process_permissions() -> None:
    u = user(pid=10)
    other_user = FakeTask(pid=11, creds=Creds.for_user(2000, 2000), kernel=u.kernel)
    same_user = FakeTask(pid=12, creds=Creds.for_user(1000, 1000), kernel=u.kernel)
    assert errno_of(u, s.sys_prlimit64, 11, RLIMIT_NOFILE, 0, BASE) == EPERM
    u.mm.write(BASE, struct.pack("<QQ", 7, 7))
    assert call(u, s.sys_prlimit64, 12, RLIMIT_NOFILE, BASE, 0) == 0
    assert same_user.rlimits.get(RLIMIT_NOFILE) == (7, 7)
    root = FakeTask(pid=13, kernel=u.kernel)
    assert call(root, s.sys_prlimit64, 11, RLIMIT_NOFILE, 0, BASE) == 0
    assert other_user.rlimits.get(RLIMIT_NOFILE)[0] == 1024


# ---- sysinfo, cpus, scheduling

def test_sysinfo() -> None:
    t = FakeTask()
    assert call(t, s.sys_sysinfo, BASE) == 0
    raw = t.mm.read(BASE, 112)
    uptime, = struct.unpack_from("<q", raw)
    total, free = struct.unpack_from("<QQ", raw, 32)
    procs, = struct.unpack_from("<H", raw, 80)
    unit, = struct.unpack_from("<I", raw, 104)
    assert uptime >= 0 and total >= free > 0 and procs == 1 and unit == 1
    assert errno_of(t, s.sys_sysinfo, END - 8) == EFAULT


def test_affinity() -> None:
    t = FakeTask()
    assert call(t, s.sys_sched_getaffinity, 0, 128, BASE) == 8
    assert t.mm.read_u64(BASE) == 0b1111
    assert errno_of(t, s.sys_sched_getaffinity, 0, 4, BASE) == EINVAL  # not a long
    assert errno_of(t, s.sys_sched_getaffinity, 0, 12, BASE) == EINVAL
    assert errno_of(t, s.sys_sched_getaffinity, 77, 8, BASE) == ESRCH
    t.mm.write_u64(BASE, 0b10)
    assert call(t, s.sys_sched_setaffinity, 0, 8, BASE) == 0
    assert call(t, s.sys_sched_getaffinity, 0, 8, BASE + 8) == 8
    assert t.mm.read_u64(BASE + 8) == 0b10
    t.mm.write_u64(BASE, 0b10000)  # only a CPU that does not exist
    assert errno_of(t, s.sys_sched_setaffinity, 0, 8, BASE) == EINVAL
    assert call(t, s.sys_sched_yield) == 0


def test_getcpu() -> None:
    t = FakeTask()
    t.mm.write(BASE, b"\xff" * 8)
    assert call(t, s.sys_getcpu, BASE, BASE + 4, 0) == 0
    assert t.mm.read_u32(BASE) < 4 and t.mm.read_u32(BASE + 4) == 0
    assert call(t, s.sys_getcpu, 0, 0, 0) == 0


def test_priority() -> None:
    t = user()
    assert call(t, s.sys_getpriority, PRIO_PROCESS, 0) == 20
    assert call(t, s.sys_setpriority, PRIO_PROCESS, 0, 5) == 0
    assert call(t, s.sys_getpriority, PRIO_PROCESS, 1) == 15
    assert call(t, s.sys_setpriority, PRIO_PROCESS, 0, 100) == 0  # clamped
    assert call(t, s.sys_getpriority, PRIO_USER, 0) == 1
    assert errno_of(t, s.sys_setpriority, PRIO_PROCESS, 0, 0) == EACCES  # lowering nice
    t.rlimits.set(RLIMIT_NICE, 30, 30, may_raise_hard=True)
    assert call(t, s.sys_setpriority, PRIO_PROCESS, 0, -10) == 0
    assert errno_of(t, s.sys_getpriority, 3, 0) == EINVAL
    assert errno_of(t, s.sys_getpriority, PRIO_PROCESS, 99) == ESRCH
    FakeTask(pid=2, creds=Creds.for_user(5, 5), kernel=t.kernel)
    assert errno_of(t, s.sys_setpriority, PRIO_PROCESS, 2, 10) == EPERM
    r = FakeTask(pid=3)
    assert call(r, s.sys_setpriority, PRIO_PROCESS, 0, -20) == 0
    assert call(r, s.sys_getpriority, PRIO_PROCESS, 0) == 40


# ---- personality, prctl

def test_personality() -> None:
    t = FakeTask()
    assert call(t, s.sys_personality, 0xFFFFFFFF) == 0
    assert call(t, s.sys_personality, 0x0040000) == 0
    assert call(t, s.sys_personality, 0xFFFFFFFF) == 0x0040000
    assert call(t, s.sys_personality, 0) == 0x0040000


def test_prctl_name() -> None:
    t = FakeTask()
    t.mm.write(BASE, b"a-very-long-thread-name\0")
    assert call(t, s.sys_prctl, PR_SET_NAME, BASE) == 0
    assert t.comm == b"a-very-long-thr"
    assert call(t, s.sys_prctl, PR_GET_NAME, BASE + 100) == 0
    assert t.mm.read(BASE + 100, 16) == b"a-very-long-thr\0"
    # a 15-byte name right before an unmapped page needs no NUL
    t.mm.unmap_page(BASE + 4 * PAGE_SIZE)
    edge = BASE + 4 * PAGE_SIZE - 15
    t.mm.write(edge, b"x" * 15)
    assert call(t, s.sys_prctl, PR_SET_NAME, edge) == 0 and t.comm == b"x" * 15
    t.mm.write(edge + 5, b"\0")
    assert call(t, s.sys_prctl, PR_SET_NAME, edge) == 0 and t.comm == b"xxxxx"
    assert errno_of(t, s.sys_prctl, PR_SET_NAME, edge + 8) == EFAULT
    assert errno_of(t, s.sys_prctl, PR_GET_NAME, 8) == EFAULT
    t.comm = "strcomm"  # the kernel may keep comm as str: the type is preserved
    t.mm.write(BASE, b"new\0")
    call(t, s.sys_prctl, PR_SET_NAME, BASE)
    assert t.comm == "new"


def test_prctl_flags() -> None:
    t = FakeTask()
    assert call(t, s.sys_prctl, PR_SET_PDEATHSIG, 9) == 0
    call(t, s.sys_prctl, PR_GET_PDEATHSIG, BASE)
    assert t.mm.read_u32(BASE) == 9
    assert errno_of(t, s.sys_prctl, PR_SET_PDEATHSIG, 65) == EINVAL
    assert call(t, s.sys_prctl, PR_GET_DUMPABLE) == 1
    assert call(t, s.sys_prctl, PR_SET_DUMPABLE, 0) == 0
    assert call(t, s.sys_prctl, PR_GET_DUMPABLE) == 0
    assert errno_of(t, s.sys_prctl, PR_SET_DUMPABLE, 2) == EINVAL
    assert call(t, s.sys_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0
    assert errno_of(t, s.sys_prctl, PR_SET_NO_NEW_PRIVS, 0) == EINVAL
    assert errno_of(t, s.sys_prctl, PR_SET_NO_NEW_PRIVS, 1, 1) == EINVAL
    assert call(t, s.sys_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    assert call(t, s.sys_prctl, PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1
    assert errno_of(t, s.sys_prctl, PR_GET_NO_NEW_PRIVS, 1) == EINVAL
    assert call(t, s.sys_prctl, PR_SET_CHILD_SUBREAPER, 1) == 0
    call(t, s.sys_prctl, PR_GET_CHILD_SUBREAPER, BASE)
    assert t.mm.read_u32(BASE) == 1
    assert call(t, s.sys_prctl, PR_CAPBSET_READ, 21) == 1
    assert errno_of(t, s.sys_prctl, PR_CAPBSET_READ, 64) == EINVAL
    assert errno_of(t, s.sys_prctl, 0x7FFF) == EINVAL
    child = s.misc_state(t).fork()
    assert child.no_new_privs and child.pdeathsig == 0 and not child.child_subreaper


# ---- sync, membarrier, table

def test_sync_membarrier() -> None:
    t = FakeTask()
    assert call(t, s.sys_sync) == 0
    assert call(t, s.sys_syncfs, 1) == 0
    assert errno_of(t, s.sys_syncfs, 9) == EBADF
    assert call(t, s.sys_membarrier, 0, 0) == 0
    assert errno_of(t, s.sys_membarrier, 0, 1) == EINVAL
    assert errno_of(t, s.sys_membarrier, 8, 0) == EINVAL


def test_table_errors_and_unregistered() -> None:
    tab = table.load()
    for nr, name in ((169, "reboot"), (165, "mount"), (166, "umount2"), (175, "init_module"),
                     (313, "finit_module"), (176, "delete_module"), (167, "swapon"),
                     (227, "clock_settime"), (164, "settimeofday"), (159, "adjtimex")):
        e = tab[nr]
        assert e.name == name and e.level == table.ERROR and e.errno == EPERM and e.note
    rseq = tab.get(334)  # rseq: ENOSYS, unregistered or declared so
    assert rseq is None or (rseq.level == table.ERROR and rseq.errno == ENOSYS)
    assert tab[63].name == "uname" and tab[318].name == "getrandom"
