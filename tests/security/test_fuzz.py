"""The syscall fuzzer (progs/fuzz.c) under quark, and the bugs it found.

`test_fuzz` runs the fuzzer with fixed seeds in a fresh rootfs copy, quark logging
to a file, and checks what the guest must never achieve: a handler raising a
Python exception (logged "syscall handler failed ..." with a traceback), the
sandbox dying, or a change on the host next to or outside the rootfs.

`test_regressions` runs progs/regress.c natively (chroot) and under quark and
compares: one line per bug the fuzzer found that only a real kernel shows. The
others have unit tests in tests/unit/kernel/test_fuzz_regressions.py.

A failing seed replays: `quark --log L do ROOTFS -- /bin/fuzz SEED CALLS -v`
prints each call before making it (see README.md).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from quark.tools.bundle import make_rootfs
from tests.guest.harness import (
    Result,
    can_chroot,
    env_args,
    fresh_copy,
    populate,
    run_native,
)

PROGS = Path(__file__).resolve().parent / "progs"
# Fixed: a seed that finds a bug stays, and the kernel is fixed. ~5-15 s each here.
SEEDS = (1, 2, 3, 4, 5)
CALLS = 8000
MARKER_TEXT = "HOST-SECRET-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def binaries(static_cc: Callable[..., Path]) -> dict[str, Path]:
    return {name: static_cc((PROGS / f"{name}.c").read_text(), name, flags=("-Wall",))
            for name in ("fuzz", "regress")}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, binaries: dict[str, Path]) -> Path:
    rootfs = tmp_path_factory.mktemp("fuzz-template") / "rootfs"
    make_rootfs(rootfs, extra_binaries=binaries.values())
    populate(rootfs)
    return rootfs


def _failures(log: str) -> list[str]:
    """Each handler failure in quark's text log, its traceback unescaped."""
    out = []
    for line in log.splitlines():
        if "handler failed" not in line and "Traceback" not in line:
            continue
        m = re.search(r'exception="(.*)"', line)
        tb = m.group(1).encode().decode("unicode_escape") if m else line
        out.append("\n".join(tb.splitlines()[-6:]))
    return out


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz(seed: int, template: Path, tmp_path: Path,
              quark_run: Callable[..., Result]) -> None:
    # The marker sits where "../../../HOST-MARKER" from the guest's / would land.
    marker = tmp_path / "HOST-MARKER"
    marker.write_text(MARKER_TEXT + "\n")
    marker_stat = marker.stat()
    rootfs = fresh_copy(template, tmp_path / "rootfs")
    log = tmp_path / "quark.log"

    r = quark_run(rootfs, ["/bin/fuzz", str(seed), str(CALLS)], env=env_args(), cwd="/",
                  timeout=110, global_args=("--log", str(log)))

    failures = _failures(log.read_text() if log.exists() else "")
    assert not failures, (f"seed {seed}: {len(failures)} handler failure(s):\n"
                          + "\n----\n".join(failures[:10]))
    assert r.code == 0, f"seed {seed}: exit {r.code}\nstdout tail: {r.stdout[-500:]!r}\n" \
                        f"stderr: {r.stderr[-2000:]}"
    assert f"fuzz done seed={seed} calls={CALLS}" in r.stdout.splitlines(), r.stdout[-500:]
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-2000:]
    # The host: the marker untouched, nothing new beside the rootfs copy.
    assert marker.read_text() == MARKER_TEXT + "\n"
    assert marker.stat().st_mtime_ns == marker_stat.st_mtime_ns
    assert MARKER_TEXT not in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["HOST-MARKER", "quark.log", "rootfs"]


@pytest.mark.kvm
@pytest.mark.root
def test_regressions(template: Path, tmp_path: Path,
                     quark_run: Callable[..., Result]) -> None:
    reason = can_chroot()
    if reason:
        pytest.skip(f"native reference run impossible: {reason}")
    native = run_native(fresh_copy(template, tmp_path / "native"), ["/bin/regress"])
    assert native.code == 0 and "regress done" in native.stdout, native
    q = quark_run(fresh_copy(template, tmp_path / "quark"), ["/bin/regress"],
                  env=env_args(), cwd="/", timeout=60)
    assert (q.code, q.stdout) == (native.code, native.stdout), \
        f"native:\n{native.stdout}\nquark ({q.code}):\n{q.stdout}\n{q.stderr[-2000:]}"
