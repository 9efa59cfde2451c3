"""Shared fixtures and environment markers.

Markers (declared in pyproject.toml) skip a test, with the reason printed by `-ra`,
only where what it needs is absent:
  kvm    a read-write /dev/kvm
  root   euid 0
  runc   the runc binary, and root
  runsc  the runsc binary (gVisor), and root
  podman, containerd, docker   that client's binaries (podman+conmon, containerd+ctr+
         the runc shim, dockerd+docker with those of containerd), and root
  cri    containerd and the grpcio-tools module (the CRI test compiles its .proto)

Fixtures:
  busybox_bundle   session-wide OCI bundle with static busybox (sh as its command)
  busybox_rootfs   its rootfs directory
  make_bundle      factory: make_bundle(args, extra_binaries=(), **process) -> bundle
  static_cc        factory: static_cc(c_source, name) -> path of a `gcc -static` binary
  quark_run        quark_run(rootfs, argv, ...) -> Result(code, stdout, stderr), through
                   `python3 -m quark.cli do` in a subprocess with a timeout
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import pytest

from quark.tools.bundle import make_busybox_bundle

REPO = Path(__file__).resolve().parent.parent
LIBC_A = Path("/usr/lib/x86_64-linux-gnu/libc.a")


def _kvm_missing() -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist (no KVM on this machine)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return f"/dev/kvm is not read-write for uid {os.geteuid()}"
    return None


def _root_missing() -> str | None:
    return None if os.geteuid() == 0 else "needs root"


def _binary_missing(name: str) -> str | None:
    if shutil.which(name) is None:
        return f"{name} is not installed (scripts/setup-debian.sh installs it)"
    return _root_missing()


def _binaries_missing(*names: str) -> str | None:
    for name in names:
        reason = _binary_missing(name)
        if reason is not None:
            return reason
    return None


def _cri_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("grpc_tools") is None:
        return "the grpcio-tools module is not installed (pip install '.[test]')"
    return _binaries_missing("containerd", "containerd-shim-runc-v2")


_REQUIREMENTS: dict[str, Callable[[], str | None]] = {
    "kvm": _kvm_missing,
    "root": _root_missing,
    "runc": lambda: _binary_missing("runc"),
    "runsc": lambda: _binary_missing("runsc"),
    "podman": lambda: _binaries_missing("podman", "conmon"),
    "containerd": lambda: _binaries_missing("containerd", "ctr", "containerd-shim-runc-v2"),
    "docker": lambda: _binaries_missing("dockerd", "docker", "containerd", "ctr",
                                        "containerd-shim-runc-v2"),
    "cri": _cri_missing,
}


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name, check in _REQUIREMENTS.items():
        reason = check()
        lines.append(f"marker {name}: {'available' if reason is None else 'SKIPPED: ' + reason}")
    return lines


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers():
        check = _REQUIREMENTS.get(mark.name)
        if check is not None:
            reason = check()
            if reason is not None:
                pytest.skip(f"[{mark.name}] {reason}")


# -- bundles ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle with static busybox; config.json runs `sh`. Do not modify it."""
    return make_busybox_bundle(tmp_path_factory.mktemp("busybox") / "bundle", ["sh"])


@pytest.fixture(scope="session")
def busybox_rootfs(busybox_bundle: Path) -> Path:
    return busybox_bundle / "rootfs"


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """make_bundle(args, extra_binaries=(), **process) -> a fresh busybox bundle."""
    count = iter(range(1_000_000))

    def make(args: list[str], extra_binaries: Iterable[Path] = (), **process: object) -> Path:
        return make_busybox_bundle(tmp_path / f"bundle{next(count)}", args,
                                   extra_binaries=extra_binaries, **process)

    return make


@pytest.fixture
def small_tmpfs() -> Iterable[Callable[[Path, int], Path]]:
    """small_tmpfs(dir, size) -> dir, a tmpfs of ``size`` bytes mounted there (for
    ENOSPC); unmounted after the test. Skips without root or where mounting fails."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted: list[Path] = []

    def mount(d: Path, size: int) -> Path:
        d.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                           check=False, capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False, capture_output=True)


# -- static programs -------------------------------------------------------------------

@pytest.fixture(scope="session")
def static_cc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """static_cc(source, name="prog", flags=()) compiles C source with `gcc -static -O2`.

    Results are cached per source for the session. Skips when gcc or the static libc
    (libc6-dev) is missing.
    """
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed (apt-get install gcc)")
    if not LIBC_A.exists():
        pytest.skip(f"{LIBC_A} missing: static linking needs libc6-dev")
    out_dir = tmp_path_factory.mktemp("static-cc")

    def compile_(source: str, name: str = "prog", flags: Iterable[str] = ()) -> Path:
        flags = list(flags)
        key = hashlib.sha256((source + "\0" + " ".join(flags)).encode()).hexdigest()[:12]
        exe = out_dir / f"{name}-{key}" / name
        if exe.exists():
            return exe
        exe.parent.mkdir()
        src = exe.parent / f"{name}.c"
        src.write_text(source)
        proc = subprocess.run(["gcc", "-static", "-O2", *flags, "-o", str(exe), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"gcc failed for {name}:\n{proc.stderr}")
        return exe

    return compile_


# -- running quark ---------------------------------------------------------------------

class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str


def quark_cli(args: list[str], *, timeout: float = 60, input: str | None = None,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
    """Run `python3 -m quark.cli ARGS` from this checkout; fails the test on timeout."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    full_env.update(env or {})
    try:
        proc = subprocess.run([sys.executable, "-m", "quark.cli", *args], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env=full_env, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"quark {' '.join(args)} timed out after {timeout}s; "
                    f"stdout={e.stdout!r} stderr={e.stderr!r}")
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def quark_run() -> Callable[..., Result]:
    """quark_run(rootfs, argv, env=(), cwd=None, mounts=(), timeout=60, input=None,
    global_args=()) -> Result(code, stdout, stderr), via `quark do`."""

    def run(rootfs: Path, argv: list[str], *, env: Iterable[str] = (), cwd: str | None = None,
            mounts: Iterable[str] = (), timeout: float = 60, input: str | None = None,
            global_args: Iterable[str] = ()) -> Result:
        args = [*global_args, "do"]
        for e in env:
            args += ["--env", e]
        for m in mounts:
            args += ["--mount", m]
        if cwd is not None:
            args += ["--cwd", cwd]
        return quark_cli([*args, str(rootfs), "--", *argv], timeout=timeout, input=input)

    return run


@pytest.fixture
def quark_cmd() -> Callable[..., Result]:
    """quark_cmd(args, ...) -> Result: any quark command line (see quark_cli)."""
    return quark_cli
