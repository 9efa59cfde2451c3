"""Networking tests: plugins installed into a temporary directory, containers on a
test bridge of their own (its own name, subnet and lease directory), removed after.

Marker ``netns``: needs network namespaces (unshare -n works); skips only where
they are unavailable.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _netns_missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    p = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    return None if p.returncode == 0 else f"unshare -n failed: {p.stderr.strip()}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("netns") is not None:
        reason = _netns_missing()
        if reason is not None:
            pytest.skip(f"[netns] {reason}")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """net_bridge and net_rdma pip-installed (--target) into a session directory."""
    site = tmp_path_factory.mktemp("site")
    for name in ("net_bridge", "net_rdma"):
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--disable-pip-version-check", "--root-user-action=ignore",
                        "--target", str(site), str(REPO / "plugins" / name)],
                       check=True, capture_output=True)
    return site


@pytest.fixture
def bridge_env(plugin_site: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for quark commands using a private bridge; cleans the host after."""
    n = os.getpid() % 200 + 20
    bridge = f"qkt{os.getpid() % 100000}"
    leases = tmp_path / "leases"
    conf = tmp_path / "config.toml"
    conf.write_text(f'[net_bridge]\nbridge = "{bridge}"\nsubnet = "10.{n}.77.0/24"\n'
                    f'lease_dir = "{leases}"\n[log]\npath = "{tmp_path / "quark.log"}"\n')
    env = {"QUARK_CONFIG": str(conf),
           "PYTHONPATH": os.pathsep.join([str(plugin_site), str(REPO)]),
           "QUARK_TEST_BRIDGE": bridge, "QUARK_TEST_SUBNET": f"10.{n}.77",
           "QUARK_TEST_LEASES": str(leases / "leases.json")}
    yield env
    subprocess.run(["ip", "link", "del", bridge], capture_output=True)
    for table, chain in (("nat", "POSTROUTING"), ("filter", "FORWARD")):
        out = subprocess.run(["iptables", "-w", "-t", table, "-S", chain],
                             capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"quark-bridge:{bridge}" in line:
                # shlex: -S quotes the comment, and a quoted one would not match.
                subprocess.run(["iptables", "-w", "-t", table, "-D",
                                *shlex.split(line)[1:]], capture_output=True)
