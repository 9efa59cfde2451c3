#!/usr/bin/env python3
"""Network benchmark: quark next to runc, both on the net_bridge bridge.

- stream: the host sends N MiB over one TCP connection to ``nc -l`` in a busybox
  container (which writes it to /dev/null); time from connect to the container's exit.
- rr: sequential HTTP/1.0 GETs from the host to ``busybox httpd`` in the container
  (a new connection per request, like ``wget`` in a loop); requests per second.

Both runtimes use the same bridge, subnet and veth setup: quark through its
net_bridge plugin (a netns it creates), runc through the same plugin code applied to
a named netns given to runc in config.json. Needs root, /dev/kvm, runc, and the
net_bridge plugin importable (scripts/setup-debian.sh installs it).

    python3 bench/net.py [--mib 1024] [--requests 500]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quark.tools.bundle import make_busybox_bundle  # noqa: E402

BRIDGE, SUBNET = "qkbench0", "10.231.7.0/24"
FAILURES: dict[str, int] = {}


def _env(tmp: Path) -> dict[str, str]:
    conf = tmp / "config.toml"
    conf.write_text(f'[net_bridge]\nbridge = "{BRIDGE}"\nsubnet = "{SUBNET}"\n'
                    f'lease_dir = "{tmp / "leases"}"\n[log]\npath = ""\n')
    return {**os.environ, "QUARK_CONFIG": str(conf),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                        os.environ.get("PYTHONPATH")]))}


class Quark:
    name = "quark"

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.root = tmp, env, tmp / "quark-state"

    def _cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(self.root), *args],
                       env=self.env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)

    def start(self, bundle: Path, cid: str) -> str:
        self._cli("create", "--bundle", str(bundle), cid)
        self._cli("start", cid)
        leases = json.loads((self.tmp / "leases" / "leases.json").read_text())["leases"]
        return str(leases[cid]["ip"])

    def pid(self, cid: str) -> int:
        st = subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(self.root),
                             "state", cid], env=self.env, capture_output=True, text=True)
        return int(json.loads(st.stdout)["pid"]) if st.returncode == 0 else 0

    def stop(self, cid: str) -> None:
        subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(self.root), "delete",
                        "--force", cid], env=self.env, capture_output=True)


class Runc:
    name = "runc"

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        os.environ["QUARK_CONFIG"] = env["QUARK_CONFIG"]
        from quark_net_bridge import plugin
        self.plugin = plugin

    def start(self, bundle: Path, cid: str) -> str:
        subprocess.run(["ip", "netns", "add", cid], check=True)
        subprocess.run(["ip", "-n", cid, "link", "set", "lo", "up"], check=True)
        spec = SimpleNamespace(namespaces=[SimpleNamespace(type="network", path=None)],
                               annotations={})
        res = self.plugin.quark_network_setup(spec, f"/run/netns/{cid}", cid)
        cfg = json.loads((bundle / "config.json").read_text())
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/run/netns/{cid}"
        (bundle / "config.json").write_text(json.dumps(cfg))
        subprocess.run(["runc", "run", "-d", "--bundle", str(bundle), cid], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return str(res["ips"][0]["address"].split("/")[0])

    def pid(self, cid: str) -> int:
        st = subprocess.run(["runc", "state", cid], capture_output=True, text=True)
        if st.returncode != 0:
            return 0
        s = json.loads(st.stdout)
        return int(s["pid"]) if s["status"] == "running" else 0

    def stop(self, cid: str) -> None:
        subprocess.run(["runc", "delete", "--force", cid], capture_output=True)
        self.plugin.quark_network_teardown(cid)
        subprocess.run(["ip", "netns", "del", cid], capture_output=True)


def _connect(ip: str, port: int, timeout: float = 20) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection((ip, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait_exit(rt: Any, cid: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while rt.pid(cid) and time.monotonic() < deadline:
        time.sleep(0.01)


def stream(rt: Any, tmp: Path, mib: int) -> float:
    """MiB/s host -> container over one TCP connection."""
    cid = f"bn-{rt.name}-st-{os.getpid()}"
    b = make_busybox_bundle(tmp / cid, ["sh", "-c", "nc -l -p 5001 > /dev/null"])
    try:
        ip = rt.start(b, cid)
        s = _connect(ip, 5001)
        chunk = b"\0" * (1 << 20)
        t0 = time.perf_counter()
        for _ in range(mib):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)                       # the server closes at EOF
        dt = time.perf_counter() - t0
        s.close()
        return mib / dt
    finally:
        rt.stop(cid)


def rr(rt: Any, tmp: Path, n: int) -> float:
    """HTTP GETs per second, one connection each, host -> container httpd."""
    cid = f"bn-{rt.name}-rr-{os.getpid()}"
    b = make_busybox_bundle(tmp / cid, ["httpd", "-f", "-p", "80", "-h", "/www"])
    (b / "rootfs" / "www").mkdir()
    (b / "rootfs" / "www" / "index.html").write_text("x" * 512)
    try:
        ip = rt.start(b, cid)
        _connect(ip, 80).close()
        req = f"GET /index.html HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode()
        ok = 0
        t0 = time.perf_counter()
        for _ in range(n):
            try:
                with socket.create_connection((ip, 80), timeout=10) as s:
                    s.sendall(req)
                    got = b""
                    while chunk := s.recv(65536):
                        got += chunk
            except OSError as e:
                FAILURES[rt.name] = FAILURES.get(rt.name, 0) + 1
                print(f"{rt.name}: request failed: {e}", file=sys.stderr)
                continue
            if got.startswith(b"HTTP/1.") and got.endswith(b"x" * 512):
                ok += 1
            else:
                FAILURES[rt.name] = FAILURES.get(rt.name, 0) + 1
        return ok / (time.perf_counter() - t0)
    finally:
        rt.stop(cid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024, help="stream size in MiB")
    ap.add_argument("--requests", type=int, default=500, help="HTTP requests")
    ap.add_argument("--runtimes", default="runc,quark")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/net.py: needs root", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="quark-netbench-") as d:
        tmp = Path(d)
        env = _env(tmp)
        try:
            for name in a.runtimes.split(","):
                if name == "runc" and shutil.which("runc") is None:
                    rows.append((name, "runc not installed", ""))
                    continue
                rt = Runc(tmp, env) if name == "runc" else Quark(tmp, env)
                mbs = stream(rt, tmp, a.mib)
                rps = rr(rt, tmp, a.requests)
                fails = FAILURES.get(name, 0)
                rows.append((name, f"{mbs:,.1f}",
                             f"{rps:,.0f}" + (f" ({fails} failed)" if fails else "")))
        finally:
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
            for table, chain in (("nat", "POSTROUTING"), ("filter", "FORWARD")):
                out = subprocess.run(["iptables", "-w", "-t", table, "-S", chain],
                                     capture_output=True, text=True).stdout
                for line in out.splitlines():
                    if f"quark-bridge:{BRIDGE}" in line:
                        subprocess.run(["iptables", "-w", "-t", table, "-D",
                                        *line.split()[1:]], capture_output=True)
    head = ("runtime", f"TCP stream host->ctr, {a.mib} MiB (MiB/s)",
            f"HTTP GET, new conn each, {a.requests} req (req/s)")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    for r in [head, *rows]:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
