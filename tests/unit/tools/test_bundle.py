"""The busybox bundle builder (and a sanity run of its bundle under runc)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from quark.oci.spec import load_bundle
from quark.tools.bundle import BundleError, is_static_elf, make_busybox_bundle


def test_layout(busybox_bundle: Path) -> None:
    root = busybox_bundle / "rootfs"
    assert is_static_elf(root / "bin" / "busybox")
    assert os.readlink(root / "bin" / "sh") == "busybox"
    assert (root / "bin" / "ls").is_symlink()
    assert (root / "etc" / "passwd").read_text().startswith("root:x:0:0:")
    assert "root:x:0:" in (root / "etc" / "group").read_text()
    assert (root / "etc" / "hostname").read_text() == "quark\n"
    for d in ("tmp", "proc", "dev", "root"):
        assert (root / d).is_dir()
    assert (root / "tmp").stat().st_mode & 0o7777 == 0o1777


def test_config_loads(busybox_bundle: Path) -> None:
    spec = load_bundle(busybox_bundle, "b1")
    assert spec.args == ("sh",)
    assert spec.terminal is False
    assert spec.readonly is False


def test_args_extra_binaries_and_process_fields(tmp_path: Path,
                                                static_cc: Callable[..., Path]) -> None:
    prog = static_cc("int main(void) { return 0; }", name="nothing")
    bundle = make_busybox_bundle(tmp_path / "b", ["/bin/nothing"], extra_binaries=[prog],
                                 cwd="/tmp")
    assert is_static_elf(bundle / "rootfs" / "bin" / "nothing")
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["/bin/nothing"]
    assert config["process"]["cwd"] == "/tmp"


def test_refuses_dynamic_binary_and_non_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a static ELF"):
        make_busybox_bundle(tmp_path / "b", extra_binaries=[Path("/bin/ls")])
    with pytest.raises(BundleError, match="not an empty directory"):
        make_busybox_bundle(tmp_path / "b")


@pytest.mark.runc
def test_runc_runs_the_bundle(make_bundle: Callable[..., Path]) -> None:
    """The reference runtime agrees the bundle is good (the output quark must match)."""
    script = "echo hello; ls / | wc -l; echo $((6*7)); cat /etc/passwd | head -1; exit 3"
    bundle = make_bundle(["sh", "-c", script])
    cid = f"quark-test-{os.getpid()}"
    proc = subprocess.run(["runc", "run", "--bundle", str(bundle), cid],
                          capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
    assert (proc.returncode, proc.stdout) == (3, "hello\n7\n42\nroot:x:0:0:root:/root:/bin/sh\n")
