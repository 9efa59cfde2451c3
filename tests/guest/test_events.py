"""Waiting and events, differentially: poll/select, epoll, eventfd/timerfd/signalfd,
memfd/fallocate/copy_file_range programs run natively and under quark (same machinery
as test_differential.py: a chroot of the same rootfs vs `quark do`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.guest.harness import Result, env_args, fresh_copy, run_native
from tests.guest.test_differential import (  # noqa: F401  (fixtures used by name)
    Case,
    _check_expectations,
    _diff,
    guest_binaries,
    guest_template,
)

pytestmark = pytest.mark.usefixtures("need_chroot")  # every test runs natively too

CASES = [
    Case("events_poll", must=(
        "poll empty pipe = 2", "revents: 0 0x4 0x20 0", "poll 65 fds at limit 64 = -1 EINVAL",
        "waited >= 70ms: 1; timeout left 0.000000; read set has p0: 0",
        "select closed fd = -1 EBADF", "poll interrupted, SA_RESTART = -1 EINTR",
        "hits 4, SIGUSR1 blocked again: 1, time left between 3s and 5s: 0",
        "ppoll, SIGUSR1 pending but blocked = 0", "pselect6 sigset size 4 = -1 EINVAL")),
    Case("events_epoll", must=(
        "add itself = -1 EINVAL", "add regular file = -1 EPERM",
        "ET after partial read = 0", "ONESHOT second = 0",
        "three ready = 3 [data 300 events 0x1] [data 100 events 0x1] [data 200 events 0x1]",
        "add outer to inner (loop) = -1 ELOOP", "nest level 5: ELOOP",
        "after closing the registered fd (dup alive) = 1 [data 44 events 0x1]",
        "interrupted (SA_RESTART does not restart epoll_wait) = -1 EINTR")),
    Case("events_fds", must=(
        "read sum = 8, value 7", "write 1 more (would overflow) = -1 EAGAIN",
        "blocking read = 8, value 1", "expired one-shot: value 0.000000000",
        "read = 128: signo 10 code -6 pid is mine 1 uid 0 status 0",
        "SIGCHLD: signo 17 code 1 (CLD_EXITED 1) status 7 pid matches 1",
        "F_GET_SEALS = 15", "after punch: a 0 0 d",
        "with offsets into a memfd = -1 EXDEV", "getxattr empty name = -1 ERANGE")),
]


@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_native_reference(case: Case, guest_template: Path,  # noqa: F811
                          tmp_path: Path) -> None:
    rootfs = fresh_copy(guest_template, tmp_path / "native")
    r = run_native(rootfs, [f"/bin/{case.prog}", *case.args])
    _check_expectations(case, r, "native", rootfs)


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_differential(case: Case, guest_template: Path, tmp_path: Path,  # noqa: F811
                      quark_run: Callable[..., Result]) -> None:
    argv = [f"/bin/{case.prog}", *case.args]
    native_root = fresh_copy(guest_template, tmp_path / "native")
    quark_root = fresh_copy(guest_template, tmp_path / "quark")
    native = run_native(native_root, argv)
    _check_expectations(case, native, "native", native_root)
    q = quark_run(quark_root, argv, env=env_args(), cwd="/", timeout=120)
    quark = Result(q.code, q.stdout, q.stderr)
    assert (quark.code, quark.stdout) == (native.code, native.stdout), _diff(native, quark)
