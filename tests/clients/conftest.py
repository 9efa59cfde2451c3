"""Fixtures for the real-client tests (podman, containerd's ctr, docker, CRI).

Every client runs quark through a logging shim: a shell script named `quark` that
appends its argv to a file, then execs this checkout's quark with the test's Python.
The lines a test caused are attached to its report when it fails (section "quark
argv"), so a failure shows which call and flag the client sent. The shim prepends
`--root <session dir>` (a client's own --root comes later and wins), so containers
of clients that do not pass one stay out of /run/quark.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# The tests import clientlib (helpers shared by the client tests) from here.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass
class Shim:
    path: Path          # the `quark` script clients run
    log: Path           # one line per call: time, pid, argv
    root: Path          # default --root

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def since(self, offset: int) -> str:
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")


@pytest.fixture(scope="session")
def quark_shim(tmp_path_factory: pytest.TempPathFactory) -> Shim:
    d = tmp_path_factory.mktemp("shim")
    (d / "bin").mkdir()
    shim = Shim(d / "bin" / "quark", d / "argv.log", d / "root")
    pythonpath = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    shim.path.write_text(
        "#!/bin/sh\n"
        f'printf "%s %s quark %s\\n" "$(date +%T.%N)" "$$" "$*" >> {shlex.quote(str(shim.log))}\n'
        f"PYTHONPATH={shlex.quote(pythonpath)} exec {shlex.quote(sys.executable)} "
        f'-m quark.cli --root {shlex.quote(str(shim.root))} "$@"\n')
    shim.path.chmod(0o755)
    return shim


@pytest.fixture(autouse=True)
def _argv_section(request: pytest.FixtureRequest) -> Iterator[None]:
    """Remember where the shim's log was when the test started (see the hook below)."""
    shim = request.getfixturevalue("quark_shim")
    request.node._quark_argv = (shim, shim.mark())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    mark = getattr(item, "_quark_argv", None)
    if mark is not None and rep.failed:
        shim, offset = mark
        rep.sections.append(("quark argv", shim.since(offset) or "(quark was not called)"))


# -- images ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootfs tarball: the busybox rootfs plus /bin/noexec (mode 644)."""
    d = tmp_path_factory.mktemp("image")
    rootfs = d / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "bin" / "noexec").write_text("#!/bin/sh\necho should not run\n")
    (rootfs / "bin" / "noexec").chmod(0o644)
    tar = d / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        for p in sorted(rootfs.iterdir()):
            t.add(p, arcname=p.name)
    return tar


# -- containerd (for ctr and CRI) ----------------------------------------------------------

from clientlib import BUSYBOX_REF, PAUSE_REF  # noqa: E402


@dataclass
class Containerd:
    address: str
    ctr: Any                # clientlib.Cmd: ctr -a ADDRESS
    log: Path


@pytest.fixture(scope="session")
def containerd(quark_shim: Shim, busybox_tar: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd of our own (own root, state and sockets; native snapshotter) with
    the CRI runtime handler `quark` (runc shim, BinaryName = the quark shim), the
    busybox image in namespaces default and k8s.io, and a pause-like image."""
    from clientlib import Cmd, oci_archive, start_daemon, stop_daemon

    d = tmp_path_factory.mktemp("ctd")
    address = str(d / "c.sock")
    (d / "config.toml").write_text(f"""\
version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
[grpc]
  address = "{address}"
[ttrpc]
  address = "{address}.ttrpc"
[debug]
  address = "{d / 'debug.sock'}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.quark]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.quark.options]
        BinaryName = "{quark_shim.path}"
""")
    log = d / "containerd.log"
    proc = start_daemon(["containerd", "--config", str(d / "config.toml")], log,
                        ready=lambda: os.path.exists(address))
    ctr = Cmd(["ctr", "-a", address])
    wait_for_ctr = 0
    while ctr("version").returncode != 0 and wait_for_ctr < 50:
        wait_for_ctr += 1
        time.sleep(0.2)
    oci_archive(busybox_tar, d / "busybox-oci.tar", BUSYBOX_REF, ["sh"])
    # 2e6 s: the guest kernel's poll timeout overflows for sleeps of ~25 days and more.
    oci_archive(busybox_tar, d / "pause-oci.tar", PAUSE_REF, ["/bin/sleep", "2000000"])
    for ns in ("default", "k8s.io"):
        ctr("-n", ns, "images", "import", "--snapshotter", "native",
            str(d / "busybox-oci.tar"), check=True, timeout=120)
    ctr("-n", "k8s.io", "images", "import", "--snapshotter", "native",
        str(d / "pause-oci.tar"), check=True, timeout=120)
    yield Containerd(address, ctr, log)
    stop_daemon(proc)
