"""Credentials, rlimits and the identity syscalls against Linux's permission rules."""

from __future__ import annotations

import struct

import pytest

from quark.kernel.abi.linux import (
    EFAULT,
    EINVAL,
    EPERM,
    ESRCH,
    LINUX_CAPABILITY_VERSION_1,
    LINUX_CAPABILITY_VERSION_3,
)
from quark.kernel.creds import (
    CAP_CHOWN,
    CAP_FULL_SET,
    CAP_KILL,
    CAP_SETGID,
    CAP_SETUID,
    CAP_SYS_ADMIN,
    Creds,
)
from quark.kernel.errors import LinuxError
from quark.kernel.rlimits import (
    NR_OPEN,
    RLIM_INFINITY,
    RLIMIT_CORE,
    RLIMIT_NOFILE,
    RLIMIT_STACK,
    Rlimits,
)
from quark.kernel.syscalls import sys_identity as s
from quark.kernel.syscalls import table
from tests.unit.kernel.fakes_misc import BASE, FakeTask, call, errno_of

M1 = 0xFFFFFFFF  # (uid_t)-1


def user(uid: int = 1000, gid: int = 1000) -> FakeTask:
    return FakeTask(creds=Creds.for_user(uid, gid, (gid,)))


def ids(t: FakeTask) -> tuple[int, ...]:
    c = t.creds
    return (c.uid, c.euid, c.suid, c.fsuid)


def gids(t: FakeTask) -> tuple[int, ...]:
    c = t.creds
    return (c.gid, c.egid, c.sgid, c.fsgid)


# ---- Creds

def test_root_has_all_caps_user_none() -> None:
    assert all(Creds.root().capable(c) for c in range(41))
    assert not any(Creds.for_user(1, 1).capable(c) for c in range(41))
    assert not Creds.root().capable(41) and not Creds.root().capable(-1)


def test_copy_is_independent() -> None:
    a = Creds.root()
    b = a.copy()
    b.euid = 5
    assert a.euid == 0


def test_after_exec_gives_root_caps_back_and_syncs_saved_ids() -> None:
    c = Creds(1000, 1000, 0, 0, 1000, 1000, 1000, 1000, (), cap_effective=0, cap_permitted=0)
    n = c.after_exec()
    assert n.capable(CAP_SYS_ADMIN) and (n.suid, n.fsuid, n.sgid) == (0, 0, 0)
    assert not Creds.for_user(5, 5).after_exec().capable(CAP_CHOWN)


# ---- getters

def test_getters() -> None:
    t = FakeTask(creds=Creds(1, 2, 3, 4, 5, 6, 7, 8, ()))
    assert [call(t, f) for f in (s.sys_getuid, s.sys_getgid, s.sys_geteuid, s.sys_getegid)] == [1, 2, 3, 4]
    assert call(t, s.sys_getresuid, BASE, BASE + 4, BASE + 8) == 0
    assert struct.unpack("<3I", t.mm.read(BASE, 12)) == (1, 3, 5)
    assert call(t, s.sys_getresgid, BASE, BASE + 4, BASE + 8) == 0
    assert struct.unpack("<3I", t.mm.read(BASE, 12)) == (2, 4, 6)
    assert errno_of(t, s.sys_getresuid, BASE, 8, BASE) == EFAULT


# ---- setuid family

def test_setuid_root_sets_all_and_drops_caps() -> None:
    t = FakeTask()
    assert call(t, s.sys_setuid, 1000) == 0
    assert ids(t) == (1000,) * 4
    assert not t.creds.capable(CAP_SETUID)
    assert errno_of(t, s.sys_setuid, 0) == EPERM


def test_setuid_minus_one_is_einval() -> None:
    assert errno_of(FakeTask(), s.sys_setuid, -1) == EINVAL
    assert errno_of(FakeTask(), s.sys_setgid, -1) == EINVAL


def test_setuid_unprivileged_only_to_real_or_saved() -> None:
    t = FakeTask(creds=Creds(1000, 1000, 2000, 1000, 3000, 1000, 2000, 1000, ()))
    assert errno_of(t, s.sys_setuid, 4000) == EPERM
    assert call(t, s.sys_setuid, 3000) == 0
    assert ids(t) == (1000, 3000, 3000, 3000)
    assert call(t, s.sys_setuid, 1000) == 0
    assert ids(t) == (1000, 1000, 3000, 1000)


def test_seteuid_away_from_root_and_back() -> None:
    t = FakeTask()
    assert call(t, s.sys_setreuid, -1, 1000) == 0
    assert ids(t) == (0, 1000, 1000, 1000)  # saved follows: euid != old ruid
    assert not t.creds.capable(CAP_KILL)
    # saved uid is now 1000, real is still 0: may go back to 0 through the real uid,
    # and the saved uid stays (euid == ruid)
    assert call(t, s.sys_setreuid, -1, 0) == 0
    assert ids(t) == (0, 0, 1000, 0)
    assert t.creds.capable(CAP_KILL)


def test_setresuid_keeps_saved_root_for_later() -> None:
    t = FakeTask()
    assert call(t, s.sys_setresuid, 1000, 1000, -1) == 0
    assert ids(t) == (1000, 1000, 0, 1000)
    assert not t.creds.capable(CAP_SETUID)
    assert call(t, s.sys_setresuid, -1, 0, -1) == 0  # 0 is held as saved uid
    assert t.creds.capable(CAP_SETUID)
    assert call(t, s.sys_setresuid, 1000, 1000, 1000) == 0
    assert t.creds.cap_permitted == 0
    assert errno_of(t, s.sys_setresuid, -1, 0, -1) == EPERM


def test_setresuid_noop_and_unprivileged_permutation() -> None:
    t = FakeTask(creds=Creds(1, 1, 2, 1, 3, 1, 2, 1, ()))
    assert call(t, s.sys_setresuid, -1, -1, -1) == 0
    assert call(t, s.sys_setresuid, 3, 1, 2) == 0
    assert ids(t) == (3, 1, 2, 1)
    assert errno_of(t, s.sys_setresuid, 4, -1, -1) == EPERM
    assert ids(t) == (3, 1, 2, 1)


def test_setreuid_unprivileged_rules() -> None:
    t = FakeTask(creds=Creds(1, 1, 2, 1, 3, 1, 2, 1, ()))
    assert errno_of(t, s.sys_setreuid, 3, -1) == EPERM  # ruid: only real or effective
    assert errno_of(t, s.sys_setreuid, -1, 4) == EPERM
    assert call(t, s.sys_setreuid, 2, 1) == 0  # swap
    assert ids(t) == (2, 1, 1, 1)


def test_setfsuid_returns_old_and_checks() -> None:
    t = FakeTask(creds=Creds.for_user(1000, 1000))
    assert call(t, s.sys_setfsuid, 0) == 1000  # refused silently
    assert t.creds.fsuid == 1000
    r = FakeTask()
    assert call(r, s.sys_setfsuid, 5) == 0
    assert r.creds.fsuid == 5 and not r.creds.capable(CAP_CHOWN) and r.creds.capable(CAP_KILL)
    assert call(r, s.sys_setfsuid, -1) == 5  # query
    assert call(r, s.sys_setfsuid, 0) == 5
    assert r.creds.capable(CAP_CHOWN)


def test_gid_setters() -> None:
    t = user()
    assert errno_of(t, s.sys_setgid, 0) == EPERM
    assert errno_of(t, s.sys_setregid, 0, -1) == EPERM
    assert errno_of(t, s.sys_setresgid, -1, -1, 0) == EPERM
    r = FakeTask()
    assert call(r, s.sys_setresgid, 10, 20, 30) == 0
    assert gids(r) == (10, 20, 30, 20)
    assert call(r, s.sys_setregid, -1, 30) == 0
    assert gids(r) == (10, 30, 30, 30)
    assert call(r, s.sys_setgid, 7) == 0  # still root: CAP_SETGID
    assert gids(r) == (7, 7, 7, 7)
    assert call(r, s.sys_setfsgid, 9) == 7 and r.creds.fsgid == 9


# ---- groups

def test_getgroups_sizes() -> None:
    t = FakeTask(creds=Creds(0, 0, 0, 0, 0, 0, 0, 0, (1, 5, 9)))
    assert call(t, s.sys_getgroups, 0, 0) == 3
    assert errno_of(t, s.sys_getgroups, 2, BASE) == EINVAL
    assert errno_of(t, s.sys_getgroups, -1, BASE) == EINVAL
    assert call(t, s.sys_getgroups, 10, BASE) == 3
    assert struct.unpack("<3I", t.mm.read(BASE, 12)) == (1, 5, 9)


def test_setgroups() -> None:
    t = FakeTask()
    t.mm.write(BASE, struct.pack("<3I", 9, 1, 5))
    assert call(t, s.sys_setgroups, 3, BASE) == 0
    assert t.creds.groups == (1, 5, 9)
    assert call(t, s.sys_setgroups, 0, 0) == 0 and t.creds.groups == ()
    assert errno_of(t, s.sys_setgroups, 65537, BASE) == EINVAL
    assert errno_of(t, s.sys_setgroups, -1, BASE) == EINVAL
    assert errno_of(t, s.sys_setgroups, 1, 8) == EFAULT
    assert errno_of(user(), s.sys_setgroups, 0, 0) == EPERM


# ---- capabilities

def _capget(t: FakeTask, version: int, pid: int = 0) -> tuple[int, ...]:
    t.mm.write(BASE, struct.pack("<Ii", version, pid))
    call(t, s.sys_capget, BASE, BASE + 64)
    return struct.unpack("<6I", t.mm.read(BASE + 64, 24))


def test_capget_root_and_user() -> None:
    eff_lo, perm_lo, inh_lo, eff_hi, perm_hi, _ = _capget(FakeTask(), LINUX_CAPABILITY_VERSION_3)
    assert eff_lo | eff_hi << 32 == CAP_FULL_SET == perm_lo | perm_hi << 32
    assert inh_lo == 0
    assert _capget(user(), LINUX_CAPABILITY_VERSION_3) == (0,) * 6


def test_capget_version_probe_and_errors() -> None:
    t = FakeTask()
    t.mm.write(BASE, struct.pack("<Ii", 0x1234, 0))
    assert call(t, s.sys_capget, BASE, 0) == 0  # probe: answers with the preferred version
    assert t.mm.read_u32(BASE) == LINUX_CAPABILITY_VERSION_3
    t.mm.write(BASE, struct.pack("<Ii", 0x1234, 0))
    assert errno_of(t, s.sys_capget, BASE, BASE + 64) == EINVAL
    t.mm.write(BASE, struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, -1))
    assert errno_of(t, s.sys_capget, BASE, BASE + 64) == EINVAL
    t.mm.write(BASE, struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, 4242))
    assert errno_of(t, s.sys_capget, BASE, BASE + 64) == ESRCH
    assert errno_of(t, s.sys_capget, 8, BASE + 64) == EFAULT


def test_capget_other_task() -> None:
    t = FakeTask()
    FakeTask(pid=7, creds=Creds.for_user(7, 7), kernel=t.kernel)
    assert _capget(t, LINUX_CAPABILITY_VERSION_3, pid=7) == (0,) * 6


def _capset(t: FakeTask, eff: int, perm: int, inh: int = 0, pid: int = 0) -> int:
    t.mm.write(BASE, struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, pid))
    t.mm.write(BASE + 64, struct.pack("<6I", eff & M1, perm & M1, inh & M1,
                                      eff >> 32, perm >> 32, inh >> 32))
    try:
        return call(t, s.sys_capset, BASE, BASE + 64)
    except LinuxError as e:
        return -e.errno


def test_capset_may_only_drop() -> None:
    t = FakeTask()
    keep = CAP_FULL_SET & ~(1 << CAP_SYS_ADMIN)
    assert _capset(t, keep, keep) == 0
    assert not t.creds.capable(CAP_SYS_ADMIN) and t.creds.capable(CAP_KILL)
    assert _capset(t, CAP_FULL_SET, CAP_FULL_SET) == -EPERM  # cannot regain
    assert _capset(t, keep, keep & ~1) == -EPERM  # effective beyond permitted
    assert _capset(t, 0, keep) == 0 and not t.creds.capable(CAP_KILL)
    assert _capset(t, 1 << CAP_KILL, keep) == 0 and t.creds.capable(CAP_KILL)
    assert _capset(t, 0, 0, pid=99) == -EPERM
    assert _capset(user(), 1, 1) == -EPERM
    assert _capset(user(), 0, 0) == 0


def test_capset_v1_keeps_upper_word() -> None:
    t = FakeTask()
    t.mm.write(BASE, struct.pack("<Ii", LINUX_CAPABILITY_VERSION_1, 0))
    t.mm.write(BASE + 64, struct.pack("<3I", 0, M1, 0))
    assert call(t, s.sys_capset, BASE, BASE + 64) == 0
    assert t.creds.cap_effective == CAP_FULL_SET & ~M1


def test_dropped_setuid_cap_blocks_setuid() -> None:
    t = FakeTask()
    assert _capset(t, CAP_FULL_SET & ~(1 << CAP_SETUID), CAP_FULL_SET) == 0
    assert errno_of(t, s.sys_setuid, 5) == EPERM
    assert call(t, s.sys_setgid, 5) == 0 and t.creds.capable(CAP_SETGID)


# ---- Rlimits

def test_rlimit_defaults() -> None:
    r = Rlimits()
    assert r.get(RLIMIT_NOFILE) == (1024, NR_OPEN)
    assert r.get(RLIMIT_STACK) == (8 << 20, RLIM_INFINITY)
    assert r.get(RLIMIT_CORE) == (0, RLIM_INFINITY)
    with pytest.raises(LinuxError) as e:
        r.get(16)
    assert e.value.errno == EINVAL


def test_rlimit_set_rules() -> None:
    r = Rlimits()
    assert r.set(RLIMIT_NOFILE, 10, 100, may_raise_hard=False) == (1024, NR_OPEN)
    for soft, hard, priv, err in ((20, 10, True, EINVAL), (10, 200, False, EPERM),
                                  (10, NR_OPEN + 1, True, EPERM)):
        with pytest.raises(LinuxError) as e:
            r.set(RLIMIT_NOFILE, soft, hard, may_raise_hard=priv)
        assert e.value.errno == err
    assert r.set(RLIMIT_NOFILE, 100, 100, may_raise_hard=False) == (10, 100)
    assert r.set(RLIMIT_NOFILE, 5, 5000, may_raise_hard=True) == (100, 100)


def test_rlimit_fork_and_spec() -> None:
    r = Rlimits.from_spec([("RLIMIT_NOFILE", 4096, 512), {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}])
    assert r.get(RLIMIT_NOFILE) == (512, 4096) and r.get(RLIMIT_CORE) == (0, 0)
    child = r.fork()
    child.set(RLIMIT_NOFILE, 1, 1, may_raise_hard=False)
    assert r.get(RLIMIT_NOFILE) == (512, 4096)
    with pytest.raises(ValueError):
        Rlimits.from_spec([("RLIMIT_BOGUS", 1, 1)])
    with pytest.raises(ValueError):
        Rlimits.from_spec([("RLIMIT_NOFILE", 1, 2)])


def test_table_entries() -> None:
    t = table.load()
    for nr, name in ((102, "getuid"), (117, "setresuid"), (125, "capget"), (126, "capset")):
        assert t[nr].name == name and t[nr].handler is not None
