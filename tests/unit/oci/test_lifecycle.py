"""The runc lifecycle through the CLI: create/start/state/kill/exec/pause/delete, hooks,
the console socket, errors and what is left behind. Real sandboxes: needs /dev/kvm."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from quark.oci.console import set_size

if TYPE_CHECKING:
    from tests.unit.oci.conftest import ConsoleReceiver

pytestmark = [pytest.mark.kvm, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[3]
LOOP = 'trap "echo got-usr1" USR1; echo started; while true; do sleep 0.1; done'


class Quark:
    """`quark --root ROOT ...` with the container's stdio in files (a create caller's
    stdout stays open in the sandbox, so it cannot be a pipe we read to EOF)."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "root"
        self.out = tmp / "stdout"
        self.log = tmp / "quark.log"
        cfg = tmp / "config.toml"
        cfg.write_text(f'[log]\npath = "{tmp / "sandbox.log"}"\n')
        self.env = {**os.environ, "QUARK_CONFIG": str(cfg),
                    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        err = self.out.with_suffix(".err")
        with open(self.out, "a") as out, open(err, "w") as e:
            p = subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(self.root),
                                "--log", str(self.log), "--log-format", "json", *args],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=e, text=True,
                               env=self.env, timeout=timeout)
        return subprocess.CompletedProcess(p.args, p.returncode, "", err.read_text())

    def capture(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quark.cli", "--root", str(self.root),
                               *args], capture_output=True, text=True, env=self.env,
                              timeout=60, stdin=subprocess.DEVNULL)

    def state(self, cid: str) -> dict[str, Any]:
        p = self.capture("state", cid)
        assert p.returncode == 0, p.stderr
        doc: dict[str, Any] = json.loads(p.stdout)
        return doc


def wait_for(pred: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def q(tmp_path: Path) -> Quark:
    return Quark(tmp_path)


def test_full_lifecycle(q: Quark, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    bundle = make_bundle(["sh", "-c", LOOP])
    pid_file = tmp_path / "pid"
    assert q("create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1").returncode == 0
    st = q.state("c1")
    assert st["status"] == "created" and st["pid"] == int(pid_file.read_text())
    assert st["bundle"] == str(bundle)
    assert q("start", "c1").returncode == 0
    assert q.state("c1")["status"] == "running"
    wait_for(lambda: "started" in q.out.read_text())
    assert "cannot start an already running" in q("start", "c1").stderr

    assert q("kill", "c1", "USR1").returncode == 0
    wait_for(lambda: "got-usr1" in q.out.read_text())

    e = q.capture("exec", "c1", "sh", "-c", "echo in-exec; exit 4")
    assert (e.returncode, e.stdout) == (4, "in-exec\n"), e.stderr
    ps = q.capture("ps", "--format", "json", "c1")
    assert json.loads(ps.stdout) == [st["pid"]]

    assert q("pause", "c1").returncode == 0
    assert q.state("c1")["status"] == "paused"
    assert q("resume", "c1").returncode == 0
    assert q.state("c1")["status"] == "running"
    ev = json.loads(q.capture("events", "--stats", "c1").stdout)
    assert ev["type"] == "stats" and ev["id"] == "c1" and ev["data"]["pids"]["current"] >= 1

    listing = json.loads(q.capture("list", "--format", "json").stdout)
    assert [c["id"] for c in listing] == ["c1"]
    assert "not stopped" in q("delete", "c1").stderr
    assert q("kill", "c1", "SIGKILL").returncode == 0
    wait_for(lambda: q.state("c1")["status"] == "stopped")
    assert q.state("c1")["pid"] == 0
    r = q("kill", "c1")
    assert r.returncode == 1 and "container not running" in r.stderr
    records = [json.loads(x) for x in q.log.read_text().splitlines()]
    assert {"level", "msg", "time"} <= set(records[-1])
    assert records[-1]["msg"] == "container not running"
    assert q("delete", "c1").returncode == 0
    assert not (q.root / "c1").exists()
    assert 'container "c1" does not exist' in q("delete", "c1").stderr
    assert q("delete", "--force", "c1").returncode == 0


def test_delete_force_running(q: Quark, make_bundle: Callable[..., Path]) -> None:
    assert q("run", "-d", "--bundle", str(make_bundle(["sleep", "100"])), "c2").returncode == 0
    pid = q.state("c2")["pid"]
    assert q("delete", "--force", "c2").returncode == 0
    assert not os.path.exists(f"/proc/{pid}/cmdline") or \
        open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
    assert not (q.root / "c2").exists()


def test_run_foreground_exit_status(q: Quark, make_bundle: Callable[..., Path]) -> None:
    r = q("run", "--bundle", str(make_bundle(["sh", "-c", "echo fg; exit 9"])), "c3")
    assert r.returncode == 9
    assert "fg" in q.out.read_text()
    assert not (q.root / "c3").exists()


@pytest.mark.parametrize("args, text", [
    (["no-such-cmd"], 'exec: "no-such-cmd": executable file not found in $PATH'),
    (["/etc/passwd"], "exec: /etc/passwd: permission denied"),
])
def test_create_errors_leave_nothing(q: Quark, make_bundle: Callable[..., Path],
                                     args: list[str], text: str) -> None:
    r = q("create", "--bundle", str(make_bundle(args)), "bad")
    assert r.returncode == 1
    assert r.stderr.strip() == f"quark: {text}"
    assert not q.root.exists() or not any(q.root.iterdir())
    assert json.loads(q.log.read_text().splitlines()[-1])["msg"] == text


def test_exec_detached_holder(q: Quark, make_bundle: Callable[..., Path],
                              tmp_path: Path) -> None:
    assert q("run", "-d", "--bundle", str(make_bundle(["sleep", "100"])), "c4").returncode == 0
    proc = tmp_path / "process.json"
    proc.write_text(json.dumps({"args": ["sh", "-c", "sleep 0.3; exit 6"], "cwd": "/",
                                "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}))
    pid_file = tmp_path / "exec.pid"
    r = q("exec", "--process", str(proc), "--detach", "--pid-file", str(pid_file), "c4")
    assert r.returncode == 0, r.stderr
    holder = int(pid_file.read_text())
    # The holder is not our child (it was forked by quark exec): wait for it via /proc.
    wait_for(lambda: not os.path.exists(f"/proc/{holder}") or
             open(f"/proc/{holder}/stat").read().split(")")[1].split()[0] == "Z")
    assert q("delete", "-f", "c4").returncode == 0


def test_hooks_order_and_failure(q: Quark, make_bundle: Callable[..., Path],
                                 tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nread -r state; echo "$1 $(echo "$state" | tr -d " " '
                    f'| grep -o "\\"status\\":\\"[a-z]*\\"")" >> {trace}\n')
    hook.chmod(0o755)
    kinds = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
             "poststop"]
    bundle = make_bundle(["sleep", "100"])
    config = json.loads((bundle / "config.json").read_text())
    config["hooks"] = {k: [{"path": str(hook), "args": ["hook", k]}] for k in kinds}
    (bundle / "config.json").write_text(json.dumps(config))
    assert q("run", "-d", "--bundle", str(bundle), "h1").returncode == 0
    assert q("delete", "-f", "h1").returncode == 0
    lines = trace.read_text().splitlines()
    assert [x.split()[0] for x in lines] == kinds
    assert lines[0].endswith('"status":"creating"') and lines[-1].endswith('"stopped"')

    config["hooks"] = {"createRuntime": [{"path": "/bin/false"}]}
    (bundle / "config.json").write_text(json.dumps(config))
    r = q("create", "--bundle", str(bundle), "h2")
    assert r.returncode == 1 and "createRuntime hook #0 (/bin/false) exited with status 1" \
        in r.stderr
    assert not (q.root / "h2").exists()


def test_a_foreground_run_catches_signals_before_init_runs(q: Quark,
                                                            make_bundle: Callable[..., Path],
                                                            tmp_path: Path) -> None:
    """`run` starts init, then serves. A SIGTERM sent as soon as the container is up
    must be forwarded to it, not kill quark: the poststart hook (which runs after
    init started) reads which signals its parent, quark, catches at that moment."""
    out = tmp_path / "sigcgt"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ngrep SigCgt /proc/$PPID/status > {out}\n")
    hook.chmod(0o755)
    bundle = make_bundle(["true"])
    config = json.loads((bundle / "config.json").read_text())
    config["hooks"] = {"poststart": [{"path": str(hook)}]}
    (bundle / "config.json").write_text(json.dumps(config))
    r = q("run", "--bundle", str(bundle), "fg-signals")
    assert r.returncode == 0, r.stderr
    caught = int(out.read_text().split()[1], 16)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        assert caught & (1 << (sig - 1)), f"{sig.name} was not caught when init started"


def test_console_socket(q: Quark, make_bundle: Callable[..., Path],
                        console_receiver: ConsoleReceiver) -> None:
    script = ('trap "stty size" WINCH; [ -t 0 ] && [ -t 1 ] && echo on-a-tty; '
              'while true; do sleep 0.1; done')
    bundle = make_bundle(["sh", "-c", script], terminal=True)
    r = q("create", "--bundle", str(bundle), "--console-socket", console_receiver.path, "t1")
    assert r.returncode == 0, r.stderr
    _, master = console_receiver.received()
    assert q("start", "t1").returncode == 0
    buf = b""
    deadline = time.monotonic() + 15
    while b"on-a-tty" not in buf and time.monotonic() < deadline:
        buf += os.read(master, 1024)
    assert b"on-a-tty" in buf
    # A resize reaches the guest: SIGWINCH to the sandbox (the tty's session), passed
    # on to pid 1, whose TIOCGWINSZ sees the new size.
    set_size(master, 123, 45)
    buf = b""
    deadline = time.monotonic() + 15
    while b"45 123" not in buf and time.monotonic() < deadline:
        buf += os.read(master, 1024)
    assert b"45 123" in buf
    assert q("delete", "-f", "t1").returncode == 0
    os.close(master)


def test_terminal_without_console_socket_fails(q: Quark,
                                               make_bundle: Callable[..., Path]) -> None:
    r = q("create", "--bundle", str(make_bundle(["true"], terminal=True)), "t2")
    assert r.returncode == 1 and "--console-socket" in r.stderr
    assert not (q.root / "t2").exists()


def test_killing_the_exec_holder_kills_the_guest_process(
        q: Quark, make_bundle: Callable[..., Path], tmp_path: Path) -> None:
    assert q("run", "-d", "--bundle", str(make_bundle(["sleep", "100"])), "c5").returncode == 0
    pid_file = tmp_path / "exec.pid"
    r = q("exec", "--detach", "--pid-file", str(pid_file), "c5", "sleep", "100")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(q.capture("exec", "c5", "ps").stdout.splitlines()) == 4)
    os.kill(int(pid_file.read_text()), 9)
    # header, pid 1, and ps itself: the exec'd sleep is gone
    wait_for(lambda: len(q.capture("exec", "c5", "ps").stdout.splitlines()) == 3)
    assert q("delete", "-f", "c5").returncode == 0


def test_preserve_fds_reach_the_container(q: Quark, make_bundle: Callable[..., Path],
                                         tmp_path: Path) -> None:
    extra = tmp_path / "fd3.txt"
    bundle = make_bundle(["sh", "-c", "echo through-fd3 >&3"])
    # fd 3 of `create` is the file; the sandbox keeps its stdio, so no pipes here.
    cmd = (f'exec "{sys.executable}" -m quark.cli --root "{q.root}" create '
           f'--bundle "{bundle}" --preserve-fds 1 pf 3>"{extra}" >/dev/null 2>"{tmp_path}/err"')
    p = subprocess.run(["sh", "-c", cmd], stdin=subprocess.DEVNULL, env=q.env, timeout=60)
    assert p.returncode == 0, (tmp_path / "err").read_text()
    assert q("start", "pf").returncode == 0
    wait_for(lambda: "through-fd3" in extra.read_text())
    q("delete", "--force", "pf")
