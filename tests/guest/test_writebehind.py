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
SPIN = r"""
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
int main(void)
{
    int fd = open("/spin.out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "hello from the guest\n", 21) != 21)
        return 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while (b.tv_sec - a.tv_sec < 4);
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
def test_the_host_sees_a_pending_run_while_the_container_runs(
        make_bundle: Callable[..., Path], static_cc: Callable[..., Path]) -> None:
    prog = static_cc(SPIN, name="spin")
    rootfs = make_bundle(["sh"], extra_binaries=[prog]) / "rootfs"
    env = dict(os.environ, PYTHONPATH=str(REPO), QUARK_WRITE_BEHIND="rootfs",
               QUARK_SYSCALL_PATH="qcall")
    proc = subprocess.Popen([sys.executable, "-m", "quark.cli", "do", str(rootfs), "/bin/spin"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = rootfs / "spin.out"
    seen, started = b"", time.monotonic()
    try:
        while time.monotonic() - started < 3.0 and proc.poll() is None:
            if out.exists() and (seen := out.read_bytes()):
                break
            time.sleep(0.01)
        still_running = proc.poll() is None
    finally:
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert seen == b"hello from the guest\n", "the write never reached the host"
    assert still_running, "the container ended first: the test proves nothing"
