"""A plugin distribution built here, pip-installed into a virtual environment that
sees quark: discovered, its hook called in a container; uninstalled, gone (issue 5)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from quark.tools.bundle import make_busybox_bundle

REPO = Path(__file__).resolve().parents[2]

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "quark-hello-plugin"
version = "1.2.3"

[project.entry-points.quark]
hello = "quark_hello"
"""

MODULE = """\
import os
from quark.plugins import hookimpl

@hookimpl
def quark_sandbox_started(sandbox):
    with open(os.environ["HELLO_MARK"], "a") as f:
        f.write(f"started {sandbox.spec.id}\\n")
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run(["python3", "-m", "venv", "--system-site-packages", "--without-pip", str(d)],
                   check=True)
    return d


def _pip(venv: Path, *args: str) -> None:
    # The venv has no pip of its own: the outer one installs into it (--python).
    subprocess.run(["python3", "-m", "pip", "--python", str(venv / "bin" / "python3"),
                    "--disable-pip-version-check", "-q", *args], check=True,
                   capture_output=True, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})


def _quark(venv: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k != "QUARK_PLUGINS"}
    e.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([str(venv / "bin" / "python3"), "-m", "quark.cli", *args],
                          capture_output=True, text=True, timeout=120, env=e,
                          stdin=subprocess.DEVNULL)


def test_install_discover_call_uninstall(venv: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "quark_hello.py").write_text(MODULE)
    _pip(venv, "install", "--no-build-isolation", str(pkg))

    r = _quark(venv, "plugins")
    assert r.returncode == 0, r.stderr
    assert "hello  (quark-hello-plugin 1.2.3)" in r.stdout
    assert "quark_sandbox_started" in r.stdout
    # $QUARK_PLUGINS restricts what loads
    assert "hello" not in _quark(venv, "plugins", env={"QUARK_PLUGINS": "none"}).stdout

    if not (os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)):
        pytest.skip("/dev/kvm is not usable: the hook call needs a container")
    mark = tmp_path / "mark"
    b = make_busybox_bundle(tmp_path / "b", ["true"])
    r = _quark(venv, "do", str(b / "rootfs"), "--", "true", env={"HELLO_MARK": str(mark)})
    assert r.returncode == 0, r.stderr
    assert mark.read_text().startswith("started do-")

    _pip(venv, "uninstall", "-y", "quark-hello-plugin")
    r = _quark(venv, "plugins")
    assert r.returncode == 0 and "hello" not in r.stdout
