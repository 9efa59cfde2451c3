"""Two quark containers on the net_bridge bridge: HTTP between them and from the host;
nothing left after delete (issue 5). Uses the kernel's AF_INET sockets."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from quark.tools.bundle import make_busybox_bundle

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.kvm, pytest.mark.root, pytest.mark.netns]


def quark(env: dict[str, str], root: Path, *args: str, timeout: float = 60) -> Any:
    """A quark command; output through files, not pipes: a created sandbox keeps the
    stdio it was given (the container's), so a pipe would never reach EOF."""
    import sys
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(root), *args],
                           stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                           timeout=timeout, env={**os.environ, **env})
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(p.args, p.returncode, out.read(), err.read())


def wired(bundle: Path, how: str = "plugins") -> Path:
    """Ask (annotation org.quark.network) for net_bridge's wiring, which `create` (what
    OCI clients call) leaves out by default; or for none."""
    cfg = json.loads((bundle / "config.json").read_text())
    cfg.setdefault("annotations", {})["org.quark.network"] = how
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


def _ns_inode(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _holders(inode: int) -> set[int]:
    """Processes in the network namespace with this inode."""
    out = set()
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino == inode:
                    out.add(int(p))
            except OSError:
                pass
    return out


def _netns_alive(inode: int, pid: int) -> bool:
    """The sandbox's anonymous netns lives while its only member does (nsfs inode
    numbers are reused at once, so "no process has that inode" is not the test)."""
    return pid in _holders(inode) or os.path.exists(f"/proc/{pid}/ns/net")


def test_http_between_containers_and_from_host(bridge_env: dict[str, str],
                                               tmp_path: Path) -> None:
    root = tmp_path / "state"
    srv = wired(make_busybox_bundle(tmp_path / "srv",
                                    ["httpd", "-f", "-p", "80", "-h", "/www"]))
    (srv / "rootfs" / "www").mkdir()
    (srv / "rootfs" / "www" / "index.html").write_text("hello over the bridge\n")
    sid, cid = f"srv-{os.getpid()}", f"cli-{os.getpid()}"
    r = quark(bridge_env, root, "create", "--bundle", str(srv), sid)
    assert r.returncode == 0, r.stderr
    try:
        assert quark(bridge_env, root, "start", sid).returncode == 0
        pid = json.loads(quark(bridge_env, root, "state", sid).stdout)["pid"]
        inode = _ns_inode(pid)
        assert _holders(inode) == {pid}
        leases = json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"]
        ip = leases[sid]["ip"]
        veth = leases[sid]["veth"]
        assert ip.startswith(bridge_env["QUARK_TEST_SUBNET"] + ".")
        assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode == 0

        # the host reaches the server through the bridge
        body = ""
        for _ in range(50):
            try:
                body = urllib.request.urlopen(f"http://{ip}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body == "hello over the bridge\n"

        # another container fetches the page by IP
        cli = make_busybox_bundle(tmp_path / "cli", ["wget", "-q", "-O", "-", f"http://{ip}/"])
        r = quark(bridge_env, root, "run", "--bundle", str(cli), cid)
        assert (r.returncode, r.stdout) == (0, "hello over the bridge\n"), r.stderr
    finally:
        r = quark(bridge_env, root, "delete", "--force", sid)
    assert r.returncode == 0, r.stderr
    leases = json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"]
    assert leases == {}
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert not _netns_alive(inode, pid)


def test_delete_force_after_crash(bridge_env: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "state"
    b = wired(make_busybox_bundle(tmp_path / "b", ["sleep", "60"]))
    cid = f"crash-{os.getpid()}"
    assert quark(bridge_env, root, "create", "--bundle", str(b), cid).returncode == 0
    pid = json.loads(quark(bridge_env, root, "state", cid).stdout)["pid"]
    inode = _ns_inode(pid)
    assert _holders(inode) == {pid}
    veth = json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"][cid]["veth"]
    os.kill(pid, 9)
    r = quark(bridge_env, root, "delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"] == {}
    assert subprocess.run(["ip", "link", "show", veth], capture_output=True).returncode != 0
    assert not _netns_alive(inode, pid)


def test_concurrent_creates_get_distinct_addresses(bridge_env: dict[str, str],
                                                   tmp_path: Path) -> None:
    import sys
    root = tmp_path / "state"
    b = wired(make_busybox_bundle(tmp_path / "b", ["sleep", "60"]))
    ids = [f"par{i}-{os.getpid()}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-m", "quark.cli", "--root", str(root),
                               "create", "--bundle", str(b), i],
                              env={**os.environ, **bridge_env}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in ids]
    try:
        for p in procs:
            assert p.wait(timeout=60) == 0
        leases = json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"]
        assert sorted(leases) == sorted(ids)
        assert len({v["ip"] for v in leases.values()}) == len(ids)
    finally:
        for i in ids:
            quark(bridge_env, root, "delete", "--force", i)
    assert json.loads(Path(bridge_env["QUARK_TEST_LEASES"]).read_text())["leases"] == {}


def _links(pid: int) -> list[str]:
    """The link names in the network namespace of host process ``pid``."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link", "show"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_create_leaves_a_new_namespace_empty(bridge_env: dict[str, str],
                                             tmp_path: Path) -> None:
    """What podman --network=none, ctr run and docker --network none ask for: a new
    namespace with no path, which runc leaves empty (loopback only). `create` is
    what they call, so net_bridge stays out unless the annotation asks."""
    root = tmp_path / "state"
    b = make_busybox_bundle(tmp_path / "b", ["sleep", "60"])
    cid = f"nonet-{os.getpid()}"
    r = quark(bridge_env, root, "create", "--bundle", str(b), cid)
    assert r.returncode == 0, r.stderr
    try:
        pid = json.loads(quark(bridge_env, root, "state", cid).stdout)["pid"]
        assert _ns_inode(pid) != os.stat("/proc/self/ns/net").st_ino
        assert _links(pid) == ["lo"]
        leases = Path(bridge_env["QUARK_TEST_LEASES"])
        assert not leases.exists() or json.loads(leases.read_text())["leases"] == {}
    finally:
        assert quark(bridge_env, root, "delete", "--force", cid).returncode == 0


def test_run_with_network_none_leaves_it_empty(bridge_env: dict[str, str],
                                               tmp_path: Path) -> None:
    b = wired(make_busybox_bundle(tmp_path / "b", ["ip", "-o", "link", "show"]), "none")
    r = quark(bridge_env, tmp_path / "state", "run", "--bundle", str(b), f"rn-{os.getpid()}")
    assert r.returncode == 0, r.stderr
    assert [line.split(":")[1].strip() for line in r.stdout.splitlines()] == ["lo"]
    leases = Path(bridge_env["QUARK_TEST_LEASES"])
    assert not leases.exists() or json.loads(leases.read_text())["leases"] == {}


def test_joins_a_named_netns_and_plugin_stays_out(bridge_env: dict[str, str],
                                                  tmp_path: Path) -> None:
    name = f"qktest{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        b = make_busybox_bundle(tmp_path / "b", ["sleep", "60"])
        cfg = json.loads((b / "config.json").read_text())
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{name}"
        (b / "config.json").write_text(json.dumps(cfg))
        root = tmp_path / "state"
        cid = f"join-{os.getpid()}"
        assert quark(bridge_env, root, "create", "--bundle", str(b), cid).returncode == 0
        pid = json.loads(quark(bridge_env, root, "state", cid).stdout)["pid"]
        assert _ns_inode(pid) == os.stat(f"/run/netns/{name}").st_ino
        leases = Path(bridge_env["QUARK_TEST_LEASES"])
        assert not leases.exists() or json.loads(leases.read_text())["leases"] == {}
        assert quark(bridge_env, root, "delete", "--force", cid).returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_replaces_a_veth_left_by_a_crash(bridge_env: dict[str, str], tmp_path: Path) -> None:
    """A host veth of the same sandbox id (a crash before teardown) is replaced."""
    import hashlib
    cid = f"stale-veth-{os.getpid()}"
    name = "qb" + hashlib.sha256(cid.encode()).hexdigest()[:11]      # veth_name(cid)
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "qkstalepeer"],
                   check=True)
    try:
        b = make_busybox_bundle(tmp_path / "b", ["sh", "-c", "ip -o -4 addr show eth0"])
        r = quark(bridge_env, tmp_path / "state", "run", "--bundle", str(b), cid)
        assert r.returncode == 0, r.stderr
        assert f"inet {bridge_env['QUARK_TEST_SUBNET']}." in r.stdout, r.stdout
        assert subprocess.run(["ip", "link", "show", "qkstalepeer"],
                              capture_output=True).returncode != 0
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", "qkstalepeer"], capture_output=True)
