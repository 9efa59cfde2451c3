"""Task credentials: the uid/gid sets, supplementary groups and capability sets.

Some facts this follows (kernel/sys.c, kernel/cred.c, security/commoncap.c):
- Credentials are copy-on-write in Linux: a change builds a new ``cred`` and commits it.
  Handlers do the same here: ``new = t.creds.copy()``, change ``new``, ``t.creds = new``;
  a ``Creds`` other tasks may hold is never mutated.
- Capabilities are bit sets, not a function of the uid. A process whose euid becomes 0
  gets ``effective = permitted``; when it gives up uid 0 in all of ruid/euid/suid, its
  permitted and effective sets are cleared; dropping euid 0 clears only the effective
  set (so ``seteuid(1000); seteuid(0)`` works). ``setfsuid`` moves the file-system
  capabilities with fsuid. That is what the ``fix_*`` helpers implement.
- A fresh root task has every capability; any other fresh task has none. There are no
  user namespaces: uid 0 inside the sandbox is the sandbox's root, which is not the
  host's (the kernel never grants host access from a capability).
"""

from __future__ import annotations

import dataclasses

# ---- capability numbers (include/uapi/linux/capability.h)
CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_FOWNER = 3
CAP_FSETID = 4
CAP_KILL = 5
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_LINUX_IMMUTABLE = 9
CAP_NET_BIND_SERVICE = 10
CAP_NET_BROADCAST = 11
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_IPC_LOCK = 14
CAP_IPC_OWNER = 15
CAP_SYS_MODULE = 16
CAP_SYS_RAWIO = 17
CAP_SYS_CHROOT = 18
CAP_SYS_PTRACE = 19
CAP_SYS_PACCT = 20
CAP_SYS_ADMIN = 21
CAP_SYS_BOOT = 22
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
CAP_SYS_TIME = 25
CAP_SYS_TTY_CONFIG = 26
CAP_MKNOD = 27
CAP_LEASE = 28
CAP_AUDIT_WRITE = 29
CAP_AUDIT_CONTROL = 30
CAP_SETFCAP = 31
CAP_MAC_OVERRIDE = 32
CAP_MAC_ADMIN = 33
CAP_SYSLOG = 34
CAP_WAKE_ALARM = 35
CAP_BLOCK_SUSPEND = 36
CAP_AUDIT_READ = 37
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40
CAP_LAST_CAP = CAP_CHECKPOINT_RESTORE

CAP_FULL_SET = (1 << (CAP_LAST_CAP + 1)) - 1

# The capabilities that follow fsuid 0 (CAP_FS_SET in linux/capability.h).
CAP_FS_SET = (
    1 << CAP_CHOWN | 1 << CAP_MKNOD | 1 << CAP_DAC_OVERRIDE | 1 << CAP_DAC_READ_SEARCH
    | 1 << CAP_FOWNER | 1 << CAP_FSETID | 1 << CAP_LINUX_IMMUTABLE | 1 << CAP_MAC_OVERRIDE
)

NGROUPS_MAX = 65536
OVERFLOW_ID = 65534  # what Linux reports for an id it cannot map


def cap_valid(cap: int) -> bool:
    return 0 <= cap <= CAP_LAST_CAP


@dataclasses.dataclass
class Creds:
    """One task's credentials. Treat as immutable once installed in a task (see the
    module docstring); ``copy`` gives a private one to change."""

    uid: int
    gid: int
    euid: int
    egid: int
    suid: int
    sgid: int
    fsuid: int
    fsgid: int
    groups: tuple[int, ...] = ()
    # Capability sets as bit masks; -1 means "what a fresh exec with these ids gets".
    cap_effective: int = -1
    cap_permitted: int = -1
    cap_inheritable: int = 0
    cap_bset: int = CAP_FULL_SET

    def __post_init__(self) -> None:
        if self.cap_permitted < 0:
            self.cap_permitted = self.cap_bset if 0 in (self.uid, self.euid) else 0
        if self.cap_effective < 0:
            self.cap_effective = self.cap_permitted if self.euid == 0 else 0

    @classmethod
    def root(cls) -> Creds:
        """uid/gid 0 with every capability (the default OCI process user)."""
        return cls(0, 0, 0, 0, 0, 0, 0, 0, ())

    @classmethod
    def for_user(cls, uid: int, gid: int, groups: tuple[int, ...] | list[int] = ()) -> Creds:
        """All of real/effective/saved/fs ids set to ``uid``/``gid`` (OCI ``process.user``)."""
        return cls(uid, gid, uid, gid, uid, gid, uid, gid, tuple(sorted(set(groups))))

    def copy(self) -> Creds:
        return dataclasses.replace(self)

    def capable(self, cap: int) -> bool:
        """Whether the effective set holds ``cap`` (Linux ``capable()``)."""
        return cap_valid(cap) and bool(self.cap_effective >> cap & 1)

    def in_group(self, gid: int) -> bool:
        """``in_group_p``: fsgid or a supplementary group (for file permission checks)."""
        return gid == self.fsgid or gid in self.groups

    # ---- capability fix-ups after id changes (security/commoncap.c)

    def fix_caps_after_setuid(self, old: Creds) -> None:
        """``cap_emulate_setxuid``: call on the new creds after setuid/setreuid/setresuid."""
        if 0 in (old.uid, old.euid, old.suid) and 0 not in (self.uid, self.euid, self.suid):
            self.cap_permitted = 0
            self.cap_effective = 0
        if old.euid == 0 and self.euid != 0:
            self.cap_effective = 0
        if old.euid != 0 and self.euid == 0:
            self.cap_effective = self.cap_permitted

    def fix_caps_after_setfsuid(self, old: Creds) -> None:
        """File-system capabilities follow fsuid 0 (``LSM_SETID_FS`` in commoncap.c)."""
        if old.fsuid == 0 and self.fsuid != 0:
            self.cap_effective &= ~CAP_FS_SET
        if old.fsuid != 0 and self.fsuid == 0:
            self.cap_effective |= self.cap_permitted & CAP_FS_SET

    def after_exec(self) -> Creds:
        """The creds of the image ``execve`` starts (no set-id files, no file caps):
        saved and fs ids follow the effective ones; root gets ``bset | inheritable``
        permitted and, when euid is 0, the same effective (``cap_bprm_creds_from_file``)."""
        new = self.copy()
        new.suid = new.fsuid = new.euid
        new.sgid = new.fsgid = new.egid
        if 0 in (new.uid, new.euid):
            new.cap_permitted = new.cap_bset | new.cap_inheritable
        else:
            new.cap_permitted = 0
        new.cap_effective = new.cap_permitted if new.euid == 0 else 0
        return new
