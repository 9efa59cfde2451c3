"""End to end: busybox under `quark run` / `quark do` behaves as under runc (issue 2)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = "echo hello; ls / | wc -l; echo $((6*7)); cat /etc/passwd | head -1; exit 3"
EXPECTED = "hello\n7\n42\nroot:x:0:0:root:/root:/bin/sh\n"


@pytest.mark.kvm
def test_quark_run_bundle(make_bundle: Callable[..., Path], quark_cmd: Callable[..., object],
                          tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", SCRIPT])
    r = quark_cmd(["--root", str(tmp_path / "state"), "run", "--bundle", str(bundle),
                   f"guest-{os.getpid()}"])
    assert (r.code, r.stdout) == (3, EXPECTED), r.stderr  # type: ignore[attr-defined]


@pytest.mark.kvm
@pytest.mark.runc
def test_same_as_runc(make_bundle: Callable[..., Path], quark_cmd: Callable[..., object],
                      tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", SCRIPT])
    cid = f"guest-runc-{os.getpid()}"
    runc = subprocess.run(["runc", "run", "--bundle", str(bundle), cid],
                          capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
    r = quark_cmd(["--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), cid])
    assert (r.code, r.stdout) == (runc.returncode, runc.stdout), r.stderr  # type: ignore


@pytest.mark.kvm
def test_quark_do(busybox_rootfs: Path, quark_run: Callable[..., object]) -> None:
    r = quark_run(busybox_rootfs, ["sh", "-c", "echo $FOO; pwd; exit 5"], env=["FOO=bar"],
                  cwd="/tmp")
    assert (r.code, r.stdout) == (5, "bar\n/tmp\n"), r.stderr  # type: ignore[attr-defined]
