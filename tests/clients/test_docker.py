"""docker 20.10 with `--add-runtime quark=<quark>`: a dockerd the test starts on its own
socket, data-root and exec-root, using the session's containerd (namespace moby), no
bridge and no iptables (containers run with --network none)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clientlib import Cmd, start_daemon, stop_daemon, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.kvm, pytest.mark.timeout(300)]

IMAGE = "quark-busybox:latest"


@pytest.fixture(scope="module")
def docker(containerd, quark_shim, busybox_tar: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cmd]:
    d = tmp_path_factory.mktemp("docker")
    sock = d / "d.sock"
    (d / "daemon.json").write_text("{}")
    proc = start_daemon(
        ["dockerd", "--config-file", str(d / "daemon.json"), "-H", f"unix://{sock}",
         "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
         "--pidfile", str(d / "dockerd.pid"), "--containerd", containerd.address,
         "--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=vfs",
         "--add-runtime", f"quark={quark_shim.path}"],
        d / "dockerd.log", ready=sock.exists, timeout=60)
    cmd = Cmd(["docker", "-H", f"unix://{sock}"])
    wait_for(lambda: cmd("info").returncode == 0, what="dockerd to answer")
    cmd("import", str(busybox_tar), IMAGE, check=True, timeout=120)
    yield cmd
    for cid in cmd("ps", "-aq").stdout.split():
        cmd("rm", "-f", cid)
    stop_daemon(proc)


def run(docker: Cmd, *args: str, **kw: object):
    return docker("run", "--runtime", "quark", "--network", "none", *args, **kw)  # type: ignore[arg-type]


def test_run(docker: Cmd) -> None:
    p = run(docker, "--rm", IMAGE, "echo", "hello from docker")
    assert (p.returncode, p.stdout) == (0, "hello from docker\n"), p.stderr
    assert run(docker, "--rm", IMAGE, "sh", "-c", "exit 5").returncode == 5


def test_run_missing_command(docker: Cmd) -> None:
    p = run(docker, "--rm", IMAGE, "no-such-command")
    assert p.returncode == 127, p.stderr
    assert "executable file not found" in p.stderr


def test_exec_and_stop(docker: Cmd) -> None:
    name = f"dk{int(time.time() * 1000) % 10**8}"
    p = run(docker, "-d", "--name", name, IMAGE, "sh", "-c",
            'trap "exit 0" TERM; while true; do sleep 0.1; done')
    assert p.returncode == 0, p.stderr
    try:
        p = docker("exec", name, "sh", "-c", "echo from-exec; exit 2")
        assert (p.returncode, p.stdout) == (2, "from-exec\n"), p.stderr
        p = docker("exec", "-i", name, "cat", input="docker stdin\n")
        assert (p.returncode, p.stdout) == (0, "docker stdin\n"), p.stderr
        t0 = time.monotonic()
        assert docker("stop", "-t", "10", name).returncode == 0
        assert time.monotonic() - t0 < 8          # the TERM trap ran: no SIGKILL wait
        code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0"
    finally:
        docker("rm", "-f", name)
