"""Write-behind end to end (quark/kernel/fs/host/writebehind.py): what the container
wrote is complete inside it and on the host, and a host reader sees a pending run
while the container is still running. What every other call sees is the
differential program tests/guest/progs/writebehind.c."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COUNT = 300

# Writes once, then computes for SECONDS without a system call (the vDSO answers
# clock_gettime): nothing but the poller going idle can flush the write.
# With argv[1] = N it writes N times, computes for 0.3 s (the poller goes to sleep),
# and writes N times again: from the 5th write on the gate copies them into its write
# ring, which only the poller moves to the host (woken by the gate's doorbell).
SPIN = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static void spin(long ns)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000000L + b.tv_nsec - a.tv_nsec < ns);
}
int main(int argc, char **argv)
{
    int fd = open("/spin.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int n = argc > 1 ? atoi(argv[1]) : 1;
    for (int round = 0; round < (n > 1 ? 2 : 1); round++) {
        for (int i = 0; i < n; i++)
            if (fd < 0 || write(fd, "hello from the guest\n", 21) != 21)
                return 1;
        spin(300000000L);
    }
    spin(4000000000L);
    return 0;
}
"""


@pytest.mark.kvm
def test_dd_output_is_complete_inside_and_on_the_host(
        make_bundle: Callable[..., Path], quark_run: Callable[..., object]) -> None:
    rootfs = make_bundle(["sh"]) / "rootfs"
    script = (f"dd if=/dev/zero of=/dd.out bs=4k count={COUNT} 2>/dev/null"
              " && md5sum /dd.out && wc -c < /dd.out")
    r = quark_run(rootfs, ["sh", "-c", script])
    want = hashlib.md5(bytes(COUNT * 4096)).hexdigest()
    assert r.code == 0, r.stderr  # type: ignore[attr-defined]
    assert r.stdout == f"{want}  /dd.out\n{COUNT * 4096}\n", r.stderr  # type: ignore
    assert hashlib.md5((rootfs / "dd.out").read_bytes()).hexdigest() == want


@pytest.mark.kvm
@pytest.mark.parametrize("writes", [1, 40], ids=["a-run", "the-write-ring"])
def test_the_host_sees_a_pending_run_while_the_container_runs(
        make_bundle: Callable[..., Path], static_cc: Callable[..., Path], writes: int) -> None:
    prog = static_cc(SPIN, name="spin")
    rootfs = make_bundle(["sh"], extra_binaries=[prog]) / "rootfs"
    env = dict(os.environ, PYTHONPATH=str(REPO), QUARK_WRITE_BEHIND="rootfs",
               QUARK_SYSCALL_PATH="qcall", QUARK_GATE_CALLS="on")
    proc = subprocess.Popen([sys.executable, "-m", "quark.cli", "do", str(rootfs), "/bin/spin",
                             str(writes)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    want = b"hello from the guest\n" * (writes if writes == 1 else 2 * writes)
    out = rootfs / "spin.out"
    seen, started = b"", time.monotonic()
    try:
        while time.monotonic() - started < 3.0 and proc.poll() is None:
            if out.exists() and (seen := out.read_bytes()) == want:
                break
            time.sleep(0.01)
        still_running = proc.poll() is None
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert seen == want, f"the host saw {len(seen)} of {len(want)} bytes"
    assert still_running, "the container ended first: the test proves nothing"


@pytest.mark.kvm
def test_enospc_comes_from_dd_at_the_same_byte_as_natively(
        tmp_path: Path, quark_run: Callable[..., object],
        small_tmpfs: Callable[[Path, int], Path]) -> None:
    """dd fills a small filesystem as the container's rootfs: its writes go through
    the gate's write ring until the free space nears RESERVE, then straight to the
    host. Natively (a chroot of the same rootfs on a filesystem of the same size) and
    under quark, dd must stop with ENOSPC after the same number of bytes."""
    from quark.tools.bundle import make_rootfs
    roots = [small_tmpfs(tmp_path / name, 24 << 20) for name in ("native", "quark")]
    for d in roots:
        make_rootfs(d)
        (d / "dev").mkdir(exist_ok=True)    # the same usage on both; natively used
        os.mknod(d / "dev" / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    script = "dd if=/dev/zero of=/fill bs=4k 2>/dev/null; echo status $?; wc -c < /fill"
    native = subprocess.run(["chroot", str(roots[0]), "/bin/sh", "-c", script],
                            capture_output=True, text=True, timeout=120)
    got = quark_run(roots[1], ["/bin/sh", "-c", script])   # (the defaults: ring on)
    assert native.stdout.startswith("status 1\n"), native.stdout + native.stderr
    assert int(native.stdout.split()[-1]) > 8 << 20, "the ring never had room"
    assert got.stdout == native.stdout, got.stderr  # type: ignore[attr-defined]
    assert (roots[1] / "fill").stat().st_size == int(native.stdout.split()[-1])
