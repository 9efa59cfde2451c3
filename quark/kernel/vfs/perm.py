"""Discretionary access control (fs/namei.c generic_permission, without ACLs).

Overrides come from capabilities, as in Linux: CAP_DAC_OVERRIDE lets a task read
and write anything and execute a file with at least one execute bit;
CAP_DAC_READ_SEARCH lets it read files and search directories; CAP_FOWNER
stands in for ownership. A container's root has them all by default.
"""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import EACCES, EPERM, MAY_EXEC, MAY_READ, MAY_WRITE, S_IFDIR, S_IFMT
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.stat import Stat

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_MKNOD = 27


def _ids(t: Any, real: bool) -> tuple[int, int, tuple[int, ...]]:
    c = getattr(t, "creds", None)
    if c is None:
        return 0, 0, ()
    if real:
        return c.uid, c.gid, tuple(c.groups)
    return c.fsuid, c.fsgid, tuple(c.groups)


def fsuid(t: Any) -> int:
    return _ids(t, False)[0]


def fsgid(t: Any) -> int:
    return _ids(t, False)[1]


def in_group(t: Any, gid: int) -> bool:
    _, g, groups = _ids(t, False)
    return gid == g or gid in groups


def capable(t: Any, cap: int, *, real: bool = False) -> bool:
    """Whether the task has ``cap``; ``real`` (access(2) without AT_EACCESS) judges
    by the real uid, as Linux's access_override_creds does for root."""
    c: Any = getattr(t, "creds", None)
    if c is None:
        return True
    if real:
        # Linux gives the real-uid check root's permitted set, or nothing.
        return c.uid == 0 and bool(getattr(c, "cap_permitted", -1) >> cap & 1)
    if hasattr(c, "capable"):
        return bool(c.capable(cap))
    return bool(c.fsuid == 0)


def allowed(t: Any, st: Stat, want: int, *, real: bool = False) -> bool:
    """Whether the caller may access ``st`` for ``want`` (MAY_READ|WRITE|EXEC bits)."""
    uid, gid, groups = _ids(t, real)
    mode = st.mode
    if uid == st.uid:
        bits = mode >> 6
    elif gid == st.gid or st.gid in groups:
        bits = mode >> 3
    else:
        bits = mode
    if not (want & ~bits & 7):
        return True
    is_dir = mode & S_IFMT == S_IFDIR
    if capable(t, CAP_DAC_OVERRIDE, real=real) and (
            not want & MAY_EXEC or is_dir or mode & 0o111):
        return True
    return capable(t, CAP_DAC_READ_SEARCH, real=real) and (
        want == MAY_READ or (is_dir and not want & MAY_WRITE))


def check(t: Any, st: Stat, want: int, *, real: bool = False) -> None:
    if not allowed(t, st, want, real=real):
        raise LinuxError(EACCES)


def is_root(t: Any) -> bool:
    """Whether every DAC check passes for directories (lets the walk skip stats)."""
    return capable(t, CAP_DAC_OVERRIDE)


def check_owner(t: Any, st: Stat) -> None:
    """chmod/utimes-to-arbitrary-time rule: the owner, or CAP_FOWNER."""
    if fsuid(t) != st.uid and not capable(t, CAP_FOWNER):
        raise LinuxError(EPERM)


def may_delete(t: Any, dir_st: Stat, victim: Stat) -> None:
    """Sticky-directory rule of may_delete: in a +t directory only the owner of the
    file or of the directory (or CAP_FOWNER) may remove or rename it."""
    uid = fsuid(t)
    if dir_st.mode & 0o1000 and uid != victim.uid and uid != dir_st.uid \
            and not capable(t, CAP_FOWNER):
        raise LinuxError(EPERM)


