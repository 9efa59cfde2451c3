"""`quark template serve` and bin/quark handing foreground runs to it (quark.template).

Every served run is checked against the same command run in the caller's own
process (QUARK_TEMPLATE=off): output, exit status, signals; and against what the
template says it did (`quark template status`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from quark.oci import cgroups
from quark.template import client

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "bin" / "quark"
SCRIPT = "echo hello; ls / | wc -l; echo $((6*7)); exit 3"


@dataclass
class Template:
    proc: subprocess.Popen[bytes]
    socket: Path
    dir: Path
    env: dict[str, str]

    def argv(self, *args: str) -> list[str]:
        return [str(LAUNCHER), "--root", str(self.dir / "state"), "--log",
                str(self.dir / "runs.log"), *args]

    def run(self, *args: str, off: bool = False, env: dict[str, str] | None = None,
            **kw: object) -> subprocess.CompletedProcess[str]:
        env = env or (dict(self.env, QUARK_TEMPLATE="off") if off else self.env)
        return subprocess.run(self.argv(*args), env=env, check=False, capture_output=True, text=True,
                              timeout=60, **kw)  # type: ignore[call-overload]

    def status(self) -> dict[str, object]:
        r = subprocess.run([str(LAUNCHER), "template", "status"], env=self.env,
                           check=False, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return dict(json.loads(r.stdout))

    def wait_for(self, key: str, value: object, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.status()[key] != value:
            assert time.monotonic() < deadline, f"{key} stayed {self.status()[key]}"
            time.sleep(0.1)


@pytest.fixture
def template(tmp_path: Path) -> Iterator[Template]:
    sock = tmp_path / "template.sock"
    env = dict(os.environ, QUARK_PYTHON=sys.executable, QUARK_TEMPLATE=str(sock))
    proc = subprocess.Popen([str(LAUNCHER), "--log", str(tmp_path / "template.log"),
                             "template", "serve"], env=env, stdin=subprocess.DEVNULL)
    t = Template(proc, sock, tmp_path, env)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert proc.poll() is None, f"the template exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the template did not listen in 60 s"
            time.sleep(0.05)
        yield t
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the template did not stop on SIGTERM")
        log = (tmp_path / "template.log").read_text() if (tmp_path / "template.log").exists() else ""
        assert "Traceback" not in log and "request failed" not in log, log
        assert not sock.exists()


def _no_network(bundle: Path) -> Path:
    """Leave the host's network namespace to the test (no net_bridge wiring)."""
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                  if n["type"] != "network"]
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


@pytest.mark.kvm
@pytest.mark.root
def test_served_run_is_the_callers_run(template: Template,
                                       make_bundle: Callable[..., Path]) -> None:
    bundle = make_bundle(["sh", "-c", SCRIPT])      # with a network namespace
    own = template.run("run", "--bundle", str(bundle), "own", off=True)
    assert template.status()["served"] == 0
    served = template.run("run", "--bundle", str(bundle), "served")
    assert (served.returncode, served.stdout) == (own.returncode, own.stdout) == \
        (3, "hello\n7\n42\n"), served.stderr + own.stderr
    st = template.status()
    assert (st["served"], st["refused"], st["running"]) == (1, 0, 0)
    assert int(st["max_run_rss_kib"]) > 0  # type: ignore[call-overload]


@pytest.mark.kvm
@pytest.mark.root
def test_both_clients_hand_over_the_same_run(template: Template,
                                             make_bundle: Callable[..., Path]) -> None:
    """bin/quark hands a run over through quark-client (C) when it is built beside it,
    else, or with QUARK_LAUNCHER_NO_CLIENT set, through quark.template.client."""
    if not (LAUNCHER.parent / "quark-client").exists():
        pytest.skip("bin/quark-client is not built (scripts/setup-debian.sh builds it)")
    bundle = make_bundle(["sh", "-c", SCRIPT])
    c = template.run("run", "--bundle", str(bundle), "via-c")
    py = template.run("run", "--bundle", str(bundle), "via-python",
                      env=dict(template.env, QUARK_LAUNCHER_NO_CLIENT="1"))
    assert (c.returncode, c.stdout) == (py.returncode, py.stdout) == (3, "hello\n7\n42\n"), \
        c.stderr + py.stderr
    assert template.status()["served"] == 2


@pytest.mark.kvm
@pytest.mark.root
def test_stdin_cwd_and_environment(template: Template,
                                   make_bundle: Callable[..., Path]) -> None:
    bundle = _no_network(make_bundle(["sh", "-c", "cat; echo; exit 4"]))
    # A relative --bundle resolves in the caller's working directory; stdin is its.
    for off in (True, False):
        r = template.run("run", "--bundle", ".", f"stdin-{off}", off=off,
                         cwd=bundle, input="from the caller")
        assert (r.returncode, r.stdout) == (4, "from the caller\n"), r.stderr
    # The caller's environment is the run's: $QUARK_CONFIG naming a missing file.
    missing = template.dir / "no-such-config.toml"
    results = [template.run("run", "--bundle", str(bundle), f"env-{off}", off=off, input="",
                            env=dict(template.env, QUARK_CONFIG=str(missing),
                                     **({"QUARK_TEMPLATE": "off"} if off else {})))
               for off in (True, False)]
    for r in results:
        assert r.returncode == 1, r.stderr
        assert r.stderr == f"quark: config file {missing} does not exist\n"
    assert template.status()["served"] == 2


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.parametrize("off", [True, False], ids=["own-process", "template"])
def test_signals_reach_the_container(template: Template, make_bundle: Callable[..., Path],
                                     off: bool) -> None:
    bundle = _no_network(make_bundle(
        ["sh", "-c", ("trap 'echo got TERM; exit 7' TERM; echo ready; "
                      "while :; do sleep 0.1; done")]))
    env = dict(template.env, QUARK_TEMPLATE="off") if off else template.env
    p = subprocess.Popen(template.argv("run", "--bundle", str(bundle), f"sig-{off}"),
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline() == "ready\n"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out) == (7, "got TERM\n"), err


@pytest.mark.kvm
@pytest.mark.root
def test_killed_caller_takes_its_run_along(template: Template,
                                           make_bundle: Callable[..., Path]) -> None:
    bundle = _no_network(make_bundle(["sh", "-c", "echo ready; sleep 60"]))
    p = subprocess.Popen(template.argv("run", "--bundle", str(bundle), "killed"),
                         env=template.env, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    assert template.status()["running"] == 1
    p.kill()
    p.wait(10)
    template.wait_for("running", 0)


@pytest.mark.kvm
@pytest.mark.root
def test_run_joins_the_callers_cgroup(template: Template,
                                      make_bundle: Callable[..., Path]) -> None:
    """Its memory and pids are charged where the caller's own run would be."""
    hier = {key: mnt for mnt, key in cgroups._hierarchies()}
    key = "pids" if "pids" in hier else ""
    if key not in hier:
        pytest.skip("no pids (v1) or unified (v2) cgroup hierarchy is mounted")
    group = hier[key] / cgroups._own(key).lstrip("/") / f"quark-template-test-{os.getpid()}"
    group.mkdir()
    bundle = _no_network(make_bundle(["sh", "-c", "echo ready; sleep 60"]))
    try:
        p = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh",
             *template.argv("run", "--bundle", str(bundle), "cg")],
            env=template.env, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
        state = json.loads(template.run("state", "cg").stdout)
        run_pid = int(state["pid"])
        assert run_pid != p.pid
        assert str(run_pid) in (group / "cgroup.procs").read_text().split()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        template.wait_for("running", 0)
        template.run("delete", "--force", "cg")
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                group.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.mark.kvm
@pytest.mark.root
def test_a_different_caller_runs_itself(template: Template,
                                        make_bundle: Callable[..., Path]) -> None:
    """A caller in another network namespace is refused (the run would differ), and
    runs the command in its own process: same result."""
    bundle = _no_network(make_bundle(["sh", "-c", SCRIPT]))
    r = subprocess.run(["unshare", "--net", *template.argv("run", "--bundle", str(bundle),
                                                            "netns")],
                       env=template.env, check=False, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (3, "hello\n7\n42\n"), r.stderr
    st = template.status()
    assert (st["served"], st["refused"]) == (0, 1)
    log = (template.dir / "template.log").read_text()
    assert "the caller differs from the template in: ns/net" in log


@pytest.mark.kvm
@pytest.mark.root
def test_hostile_requests_are_refused(template: Template,
                                      make_bundle: Callable[..., Path]) -> None:
    def ask(words: list[str] | None, fds: list[int], raw: bytes | None = None) -> list[str] | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(str(template.socket))
        try:
            if raw is not None:
                s.send(raw)
            else:
                assert words is not None
                client.send(s, words, fds)
            reply, got = client.receive(s)
            for fd in got:
                os.close(fd)
            return reply
        finally:
            s.close()

    good = client.run_request("quark", ["run", "--bundle", "/nonexistent", "x"], {}, 0o22,
                              time.monotonic(), [])
    null = os.open("/dev/null", os.O_RDWR)
    try:
        assert ask(good, [null, null, null])[0] == "refused"                 # type: ignore[index]
        assert ask(["run", "q", "18", "1", "99"], [null] * 4)[0] == "refused"  # type: ignore[index]
        assert ask(client.run_request("q", ["create", "x"], {}, 0, 1.0, []),
                   [null] * 4)[0] == "refused"                                # type: ignore[index]
        assert ask(None, [], raw=b"\xff" * 70000) is not None
    finally:
        os.close(null)
    assert template.status()["served"] == 0
    # Still serving.
    bundle = _no_network(make_bundle(["sh", "-c", SCRIPT]))
    r = template.run("run", "--bundle", str(bundle), "after")
    assert (r.returncode, r.stdout) == (3, "hello\n7\n42\n"), r.stderr


@pytest.mark.kvm
@pytest.mark.root
def test_run_outlives_a_stopped_template(template: Template,
                                         make_bundle: Callable[..., Path]) -> None:
    """Stopping the template (a restart after an upgrade) leaves its runs alone: each
    still reports its exit status to its caller."""
    bundle = _no_network(make_bundle(["sh", "-c", ('echo ready; read line; echo "$line"; '
                                                   "exit 5")]))
    p = subprocess.Popen(template.argv("run", "--bundle", str(bundle), "outlives"),
                         env=template.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "ready\n"
    template.proc.send_signal(signal.SIGTERM)
    template.proc.wait(30)
    assert not template.socket.exists()
    out, err = p.communicate("after the template\n", timeout=30)
    assert (p.returncode, out) == (5, "after the template\n"), err


@pytest.mark.kvm
@pytest.mark.root
def test_a_dead_worker_leaves_the_wiring_to_the_run(template: Template,
                                                      make_bundle: Callable[..., Path]) -> None:
    """Each run gets a worker process forked ahead (quark.template.worker) for its
    network wiring; if it is gone, the run wires the network itself."""
    os.kill(int(_worker(template)), signal.SIGKILL)    # the next run's, before it
    time.sleep(0.2)
    bundle = make_bundle(["sh", "-c", "ip -o -4 addr show eth0 | grep -c inet; exit 3"])
    r = template.run("run", "--bundle", str(bundle), "deadworker")
    assert (r.returncode, r.stdout) == (3, "1\n"), r.stderr
    assert template.status()["served"] == 1
    log = (template.dir / "runs.log").read_text()
    assert "the template's worker" in log and "wiring in this process" in log


LEASES = Path("/var/lib/quark/net_bridge/leases.json")     # net_bridge's default


def _spares() -> dict[str, dict[str, object]]:
    """net_bridge's leases of namespaces wired ahead, by worker pid."""
    if not LEASES.exists():
        return {}
    leases = json.loads(LEASES.read_text())["leases"]
    return {k.partition(":")[2]: v for k, v in leases.items() if k.startswith("spare:")}


def _worker(template: Template) -> str:
    """The pid of the worker of the run forked ahead (once there is one)."""
    deadline = time.monotonic() + 15
    while not (template.status()["spare"] or {}).get("worker"):  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "no run forked ahead with a worker"
        time.sleep(0.05)
    return str(template.status()["spare"]["worker"])  # type: ignore[index]


def _until(what: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], check=False,
                          capture_output=True).returncode == 0


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.netns
def test_the_network_wired_ahead_is_adopted(template: Template,
                                            make_bundle: Callable[..., Path]) -> None:
    """net_bridge wires the next run's namespace in its worker (quark_network_prepare)
    and the run adopts it: the container has that address, the lease passes to its id
    and goes with it. A run without net_bridge gets an empty namespace, and a spare
    nobody claims is released, as is the last one when the template stops."""
    if importlib.util.find_spec("quark_net_bridge") is None:
        pytest.skip("the net_bridge plugin is not installed (pip install ./plugins/net_bridge)")
    worker = _worker(template)
    # Forked by the workers' parent, which holds pyroute2 so that runs do not.
    parent = template.status()["workers_parent"]
    assert parent and Path(f"/proc/{worker}/stat").read_text().split()[3] == str(parent)
    _until(lambda: worker in _spares())
    spare = _spares()[worker]
    _until(lambda: _link_exists(str(spare["veth"])))

    bundle = make_bundle(["sh", "-c", "ip -o -4 addr show eth0; ip route; exit 3"])
    r = template.run("run", "--bundle", str(bundle), "adopter")
    assert r.returncode == 3, r.stderr
    assert f"inet {spare['ip']}/16" in r.stdout and "default via 10.88.0.1" in r.stdout, r.stdout
    log = (template.dir / "runs.log").read_text()
    assert f"adopted the namespace wired ahead ({spare['veth']}, {spare['ip']})" in log
    leases = json.loads(LEASES.read_text())["leases"]
    assert "adopter" not in leases and f"spare:{worker}" not in leases
    _until(lambda: not _link_exists(str(spare["veth"])))

    # The next worker has wired its own; a run that loads no plugin leaves it unused.
    worker = _worker(template)
    _until(lambda: worker in _spares())
    veth = str(_spares()[worker]["veth"])
    r = template.run("run", "--bundle", str(bundle), "plain",
                     env=dict(template.env, QUARK_PLUGINS="none"))
    assert r.returncode == 3 and "eth0" in r.stderr, (r.stdout, r.stderr)  # no eth0 here
    assert "inet" not in r.stdout
    _until(lambda: worker not in _spares() and not _link_exists(veth))

    last = _worker(template)
    _until(lambda: last in _spares())
    template.proc.send_signal(signal.SIGTERM)
    template.proc.wait(30)
    _until(lambda: last not in _spares())


@pytest.mark.kvm
@pytest.mark.root
def test_a_run_forked_ahead_serves_the_request(template: Template,
                                               make_bundle: Callable[..., Path]) -> None:
    """The template forks the next run ahead and hands it the request; one that died
    meanwhile is replaced by a fork on the spot, and the next refill makes another."""
    bundle = _no_network(make_bundle(["sh", "-c", "echo $$; exit 5"]))
    first = template.status()["spare"]["run"]  # type: ignore[index]
    r = template.run("run", "--bundle", str(bundle), "ahead")
    assert (r.returncode, r.stdout) == (5, "1\n"), r.stderr
    st = template.status()
    assert st["served"] == 1 and st["spare"]["run"] != first  # type: ignore[index]
    os.kill(int(st["spare"]["run"]), signal.SIGKILL)  # type: ignore[index]
    _until(lambda: template.status()["spare"] is None)
    r = template.run("run", "--bundle", str(bundle), "forked")
    assert (r.returncode, r.stdout) == (5, "1\n"), r.stderr
    st = template.status()
    assert st["served"] == 2 and st["spare"] is not None
    log = (template.dir / "template.log").read_text()
    assert "the run forked ahead (pid" in log and "died" in log
