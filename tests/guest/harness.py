"""The differential harness: one rootfs, the same static program run natively and under
quark, outputs compared.

The native reference is ``chroot ROOTFS /bin/PROG`` as root: the program then sees
exactly the file tree quark gives it (same paths, same files), with the host kernel
answering. Every run gets its own copy of the rootfs, because programs change it.
Exit codes are compared the way a shell reports them: death by signal N is 128 + N.

Test data the programs rely on (``populate``):
  /data/hello.txt      "hello from the rootfs\\n"
  /data/numbers.txt    "0123456789abcdefghij\\n"
  /data/sub/a.txt      "a\\n"
  /data/link           -> hello.txt
  /data/abs-link       -> /data/hello.txt
  /etc/shadow          a rootfs-only marker line (the host's must never be read)
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

PROGS = Path(__file__).resolve().parent / "progs"

# Shown to the programs instead of the host environment, natively and under quark.
ENV = {"PATH": "/bin:/usr/bin", "HOME": "/root", "LANG": "C"}

ROOTFS_SHADOW = "root:ROOTFS-SHADOW-MARKER:19000:0:99999:7:::\n"
HELLO = "hello from the rootfs\n"


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


def shell_code(returncode: int) -> int:
    """subprocess's -N (killed by signal N) as a shell reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def populate(rootfs: Path) -> None:
    """Add the test data above to a busybox rootfs (quark.tools.bundle.make_rootfs)."""
    data = rootfs / "data"
    (data / "sub").mkdir(parents=True, exist_ok=True)
    (data / "hello.txt").write_text(HELLO)
    (data / "numbers.txt").write_text("0123456789abcdefghij\n")
    (data / "sub" / "a.txt").write_text("a\n")
    for name, target in (("link", "hello.txt"), ("abs-link", "/data/hello.txt")):
        if not (data / name).is_symlink():
            (data / name).symlink_to(target)
    shadow = rootfs / "etc" / "shadow"
    shadow.write_text(ROOTFS_SHADOW)
    shadow.chmod(0o640)
    for p in [data, data / "sub", *data.rglob("*.txt")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def fresh_copy(template: Path, dest: Path) -> Path:
    """A private copy of a rootfs (symlinks kept as symlinks, modes and owners kept)."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def run_native(rootfs: Path, argv: list[str], *, timeout: float = 60) -> Result:
    """``chroot ROOTFS argv`` with the clean environment; needs root."""
    try:
        p = subprocess.run([shutil.which("chroot") or "chroot", str(rootfs), *argv],
                           check=False, capture_output=True, text=True, timeout=timeout,
                           env=ENV, cwd="/", stdin=subprocess.DEVNULL,
                           # A quark container's init leads its own session; the
                           # runner's session may be 0 (its leader outside our pid
                           # namespace), so without this getsid(0) differs by host.
                           start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"native {argv} timed out after {timeout}s: "
                             f"stdout={e.stdout!r}") from e
    return Result(shell_code(p.returncode), p.stdout, p.stderr)


def env_args() -> list[str]:
    """The environment as KEY=VALUE strings (for quark_run's ``env``)."""
    return [f"{k}={v}" for k, v in ENV.items()]


def can_chroot() -> str | None:
    """Why native reference runs are impossible here, or None."""
    if os.geteuid() != 0:
        return "chroot needs root"
    if shutil.which("chroot") is None:
        return "chroot(8) is not installed"
    return None
