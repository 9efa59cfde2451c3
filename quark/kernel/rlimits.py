"""Resource limits of a thread group (getrlimit/setrlimit/prlimit64).

Some facts this follows (kernel/sys.c ``do_prlimit``, include/asm-generic/resource.h):
- Limits belong to the thread group (``signal_struct``): threads share one ``Rlimits``;
  fork gives the child a copy (:meth:`Rlimits.fork`); execve keeps them.
- A new soft limit above the new hard limit is EINVAL; raising a hard limit needs
  CAP_SYS_RESOURCE (EPERM otherwise); RLIMIT_NOFILE can never exceed ``fs.nr_open``
  (EPERM, even for root). Lowering is always allowed.
- ``RLIM_INFINITY`` is all ones on 64-bit; values are unsigned 64-bit.
- The defaults are those a container usually starts with: Linux's init limits, with
  RLIMIT_NOFILE at 1024/1048576 as containerd and podman give, unless config.json
  says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from quark.kernel.abi.linux import EINVAL, EPERM
from quark.kernel.errors import LinuxError

RLIMIT_CPU = 0
RLIMIT_FSIZE = 1
RLIMIT_DATA = 2
RLIMIT_STACK = 3
RLIMIT_CORE = 4
RLIMIT_RSS = 5
RLIMIT_NPROC = 6
RLIMIT_NOFILE = 7
RLIMIT_MEMLOCK = 8
RLIMIT_AS = 9
RLIMIT_LOCKS = 10
RLIMIT_SIGPENDING = 11
RLIMIT_MSGQUEUE = 12
RLIMIT_NICE = 13
RLIMIT_RTPRIO = 14
RLIMIT_RTTIME = 15
RLIM_NLIMITS = 16

RLIM_INFINITY = (1 << 64) - 1

NAMES = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
    "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
    "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
    "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)
BY_NAME = {n: i for i, n in enumerate(NAMES)}

NR_OPEN = 1 << 20  # sysctl fs.nr_open default: the ceiling of RLIMIT_NOFILE
# Linux sets NPROC and SIGPENDING at boot to max_threads/2, which depends on RAM;
# this is the value of a 4 GiB machine.
DEFAULT_NPROC = 15_644

_INF = RLIM_INFINITY
DEFAULTS: tuple[tuple[int, int], ...] = (
    (_INF, _INF),                      # CPU
    (_INF, _INF),                      # FSIZE
    (_INF, _INF),                      # DATA
    (8 << 20, _INF),                   # STACK: _STK_LIM
    (0, _INF),                         # CORE
    (_INF, _INF),                      # RSS
    (DEFAULT_NPROC, DEFAULT_NPROC),    # NPROC
    (1024, NR_OPEN),                   # NOFILE
    (8 << 20, 8 << 20),                # MEMLOCK: MLOCK_LIMIT since 5.16
    (_INF, _INF),                      # AS
    (_INF, _INF),                      # LOCKS
    (DEFAULT_NPROC, DEFAULT_NPROC),    # SIGPENDING
    (819_200, 819_200),                # MSGQUEUE: MQ_BYTES_MAX
    (0, 0),                            # NICE
    (0, 0),                            # RTPRIO
    (_INF, _INF),                      # RTTIME
)


class Rlimits:
    """The 16 (soft, hard) pairs of one thread group. Change them only through
    :meth:`set`, which applies Linux's rules."""

    __slots__ = ("_lim",)

    def __init__(self, limits: Iterable[tuple[int, int]] = DEFAULTS) -> None:
        self._lim = list(limits)
        if len(self._lim) != RLIM_NLIMITS:
            raise ValueError(f"expected {RLIM_NLIMITS} limits, got {len(self._lim)}")

    @classmethod
    def from_spec(cls, entries: Iterable[Any]) -> Rlimits:
        """Defaults overridden by OCI ``process.rlimits``: items are ``(type, hard, soft)``
        tuples (``quark.oci.spec.Rlimit``) or the raw ``{"type", "hard", "soft"}`` dicts.
        A bad entry is a ValueError (config errors are the OCI layer's to report)."""
        r = cls()
        for e in entries:
            if isinstance(e, dict):
                name, hard, soft = e["type"], e["hard"], e["soft"]
            else:
                name, hard, soft = e
            res = BY_NAME.get(name)
            if res is None:
                raise ValueError(f"unknown rlimit type {name!r}")
            if not (0 <= soft <= hard <= RLIM_INFINITY):
                raise ValueError(f"{name}: soft {soft} / hard {hard} out of order or range")
            r._lim[res] = (soft, hard)
        return r

    def fork(self) -> Rlimits:
        """The child's copy (fork without CLONE_THREAD)."""
        return Rlimits(self._lim)

    def get(self, resource: int) -> tuple[int, int]:
        """``(soft, hard)``; EINVAL for an unknown resource."""
        if not 0 <= resource < RLIM_NLIMITS:
            raise LinuxError(EINVAL)
        return self._lim[resource]

    def soft(self, resource: int) -> int:
        """The soft limit the kernel enforces (e.g. ``soft(RLIMIT_NOFILE)`` for fd numbers)."""
        return self._lim[resource][0]

    def hard(self, resource: int) -> int:
        return self._lim[resource][1]

    def set(self, resource: int, soft: int, hard: int, *, may_raise_hard: bool) -> tuple[int, int]:
        """Install new limits and return the old pair (``do_prlimit``).

        :param may_raise_hard: the caller has CAP_SYS_RESOURCE.
        Errors, in Linux's order: EINVAL for an unknown resource or soft > hard; EPERM
        for RLIMIT_NOFILE above nr_open, or a higher hard limit without the capability.
        """
        if not 0 <= resource < RLIM_NLIMITS:
            raise LinuxError(EINVAL)
        soft &= RLIM_INFINITY
        hard &= RLIM_INFINITY
        if soft > hard:
            raise LinuxError(EINVAL)
        if resource == RLIMIT_NOFILE and hard > NR_OPEN:
            raise LinuxError(EPERM)
        old = self._lim[resource]
        if hard > old[1] and not may_raise_hard:
            raise LinuxError(EPERM)
        self._lim[resource] = (soft, hard)
        return old

    def __repr__(self) -> str:
        def fmt(v: int) -> str:
            return "inf" if v == RLIM_INFINITY else str(v)

        body = ", ".join(f"{NAMES[i][7:]}={fmt(s)}/{fmt(h)}" for i, (s, h) in enumerate(self._lim))
        return f"Rlimits({body})"
