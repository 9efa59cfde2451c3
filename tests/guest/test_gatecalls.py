"""Calls the gate answers itself (quark/kernel/gateio.py), end to end. What each call
returns is the differential program tests/guest/progs/gatecalls.c; here: a plugin
that observes calls (strace) still sees every one, and switching the gate's calls
off changes nothing a program can see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import quark_cli

pytestmark = pytest.mark.kvm

# Ten reads of /dev/zero and ten writes to /dev/null: after the first of each, the
# gate would answer the rest if nothing observed them.
HEAD = "head -c 40960 /dev/zero > /dev/null"


def test_strace_sees_every_call(make_bundle: Callable[..., Path]) -> None:
    rootfs = make_bundle(["sh"]) / "rootfs"
    r = quark_cli(["--strace", "do", str(rootfs), "/bin/sh", "-c", HEAD])
    assert r.code == 0, r.stderr
    reads = [ln for ln in r.stderr.splitlines() if "read(3," in ln and ") = 4096" in ln]
    writes = [ln for ln in r.stderr.splitlines() if "write(1," in ln and ") = 4096" in ln]
    assert (len(reads), len(writes)) == (10, 10), r.stderr[-2000:]


def test_the_gate_off_or_on_gives_the_same_answers(
        make_bundle: Callable[..., Path], static_cc: Callable[..., Path]) -> None:
    progs = Path(__file__).resolve().parent / "progs"
    prog = static_cc((progs / "gatecalls.c").read_text(), name="gatecalls",
                     flags=("-Wall", "-I", str(progs)))
    out = {}
    for mode in ("on", "off"):
        rootfs = make_bundle(["sh"], extra_binaries=[prog]) / "rootfs"
        (rootfs / "data").mkdir(exist_ok=True)
        (rootfs / "data" / "hello.txt").write_text("hello from the rootfs\n")
        r = quark_cli(["do", str(rootfs), "/bin/gatecalls"], env={"QUARK_GATE_CALLS": mode},
                      timeout=120)
        assert r.code == 0, r.stderr
        out[mode] = r.stdout
    assert out["on"] == out["off"]
    assert out["on"].endswith("done\n")
