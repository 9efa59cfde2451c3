"""The template's wire and checks, without a template process (quark.template)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quark.template import client, server

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv,expected", [
    (["run", "--bundle", "/b", "id"], True),
    (["--root", "/r", "--log", "/l", "--debug", "run", "-b", "/b", "id"], True),
    (["run", "--bundle", "-d", "id"], True),            # -d is --bundle's value here
    (["run", "--console-socket", "/s", "id"], True),
    (["run", "--keep", "id"], True),
    (["run", "-d", "id"], False),
    (["run", "--detach", "id"], False),
    (["run", "-db", "/b", "id"], False),                # a cluster: left to the caller
    (["run", "--pid-file", "/p", "id"], False),
    (["run", "--pid-file=/p", "id"], False),
    (["run", "--preserve-fds", "2", "id"], False),
    (["run", "--help"], False),
    (["--help", "run", "id"], False),
    (["--version"], False),
    (["create", "--bundle", "/b", "id"], False),
    (["exec", "id", "ls"], False),
    (["state", "id"], False),
    ([], False),
])
def test_served(argv: list[str], expected: bool) -> None:
    assert client.served(argv) is expected


def test_run_request_round_trip() -> None:
    env = {"PATH": "/bin", "EMPTY": "", "EQ": "a=b", "BYTES": "\udcff\udcfe"}
    words = client.run_request("quark", ["run", "--bundle", "/b", "id"], env, 0o027, 12.5,
                                ["RLIMIT_NOFILE=1024,4096", "RLIMIT_CORE=0,-1"])
    # Through the bytes the socket carries (surrogates stand for non-UTF-8 bytes).
    back = client.encode(words).decode("utf-8", "surrogateescape").split("\0")
    msg = client.parse_run(back)
    assert msg == {"argv0": "quark", "umask": 0o027, "t0": 12.5,
                   "argv": ["run", "--bundle", "/b", "id"], "env": env,
                   "rlimits": {"RLIMIT_NOFILE": (1024, 4096), "RLIMIT_CORE": (0, -1)}}


@pytest.mark.parametrize("words", [
    [],
    ["status"],
    ["run"],
    ["run", "q", "18", "1.0", "5", "a"],                     # more args than words
    ["run", "q", "18", "1.0", "-1", "0"],
    ["run", "q", "18", "1.0", "1", "run", "9"],              # more env than words
    ["run", "q", "18", "1.0", "0", "1", "NOEQUALS"],
    ["run", "q", "18", "1.0", "0", "1", "=v"],
    ["run", "q", "18", "1.0", "0", "0", "RLIMIT_X=1"],       # no hard limit
    ["run", "q", "18", "1.0", "0", "0", "NOFILE=1,2"],       # not an RLIMIT_ name
    ["run", "q", "18", "1.0", "0", "0", "RLIMIT_X=a,b"],
    ["run", "q", "999", "1.0", "0", "0"],                    # umask beyond 0o777
    ["run", "q", "18", "nan", "0", "0"],
    ["run", "q", "x", "1.0", "0", "0"],
])
def test_parse_run_rejects(words: list[str]) -> None:
    with pytest.raises(ValueError):
        client.parse_run(words)


def test_check_request() -> None:
    ok = client.run_request("quark", ["run", "id"], {}, 0o22, 1.0, [])
    assert server._check_request(ok, [0, 1, 2, 3])[1] is None
    assert "fds" in (server._check_request(ok, [0, 1, 2])[1] or "")
    not_served = client.run_request("quark", ["create", "id"], {}, 0o22, 1.0, [])
    assert "serves" in (server._check_request(not_served, [0, 1, 2, 3])[1] or "")
    assert server._check_request(["status"], [])[0] == {"op": "status"}
    assert server._check_request(["status"], [5])[1] is not None
    assert server._check_request(None, [])[1] == "unreadable request"


def test_stale_code(tmp_path: Path) -> None:
    t = server.Template(str(tmp_path / "sock"))
    mod = tmp_path / "mod.py"
    mod.write_text("x = 1\n")
    t.code = {str(mod): mod.stat().st_mtime_ns}
    t.watch = server._Watch.of(t.code)
    assert t.watch is not None, "inotify is missing"
    (tmp_path / "other.py").write_text("")         # a file the template did not load
    assert t._stale() is None and t.watch is not None
    os.utime(mod, ns=(mod.stat().st_atime_ns, mod.stat().st_mtime_ns + 1_000_000))
    assert "mod.py changed since the template started" in (t._stale() or "")
    assert t.watch is None


def test_own_context_is_comparable() -> None:
    a, b = server._context("self"), server._context(os.getpid())
    assert a == b and "CapEff" in a and "ns/net" in a


def test_launcher_ignores_the_environment(tmp_path: Path) -> None:
    """bin/quark runs Python isolated: a `quark` package on $PYTHONPATH is not run."""
    evil = tmp_path / "evil" / "quark"
    (evil / "template").mkdir(parents=True)
    (evil / "__init__.py").write_text("raise SystemExit('hijacked')\n")
    (evil / "template" / "__init__.py").write_text("")
    (evil / "template" / "client.py").write_text("raise SystemExit('hijacked')\n")
    env = dict(os.environ, QUARK_PYTHON=sys.executable, PYTHONPATH=str(evil.parent),
               PYTHONSTARTUP=str(evil / "__init__.py"))
    r = subprocess.run([str(REPO / "bin" / "quark"), "--version"], check=False, capture_output=True,
                       text=True, env=env, cwd=evil.parent, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("quark version") and "hijacked" not in r.stdout + r.stderr


def test_launcher_usage_error_names_quark() -> None:
    env = dict(os.environ, QUARK_PYTHON=sys.executable)
    r = subprocess.run([str(REPO / "bin" / "quark"), "nosuchcommand"], check=False, capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("usage: quark"), r.stderr


def _open_for_run(path: str) -> object:
    from quark.template import worker
    return worker.WithFds({"path": path}, [os.open(path, os.O_RDONLY)])


def _fails() -> None:
    raise OSError(13, "no, says the worker")


@pytest.mark.root      # the worker returns to its own network namespace after each job
def test_worker_passes_fds_back_and_undoes_at_exit(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from quark.template import worker
    (tmp_path / "data").write_text("from the worker's fd")
    run_end, end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        try:
            run_end.close()
            os.environ["QUARK_PLUGINS"] = "none"    # no plugin wires anything ahead
            worker.at_exit(lambda: (tmp_path / "ended").write_text("undone"))
            worker.serve(end)
        finally:
            os._exit(0)
    end.close()
    monkeypatch.setattr(worker, "sock", run_end)
    got = worker.submit(_open_for_run, (str(tmp_path / "data"),)).result()
    assert isinstance(got, worker.WithFds) and got.value == {"path": str(tmp_path / "data")}
    (fd,) = got.fds
    try:
        assert os.read(fd, 100) == b"from the worker's fd"
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        worker.submit(_fails, ()).result()
    assert (e.value.errno, e.value.strerror) == (13, "no, says the worker")
    assert not (tmp_path / "ended").exists()
    worker.release()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert (tmp_path / "ended").read_text() == "undone"


@pytest.mark.root
def test_worker_undoes_at_exit_when_terminated(tmp_path: Path) -> None:
    """`pkill -f template` reaches the workers too: SIGTERM still runs at_exit."""
    import signal
    import socket
    import time

    from quark.template import worker
    run_end, end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            run_end.close()
            os.close(ready_r)
            os.environ["QUARK_PLUGINS"] = "none"
            worker.at_exit(lambda: (tmp_path / "ended").write_text("undone"))
            os.write(ready_w, b"x")
            worker.serve(end)
        finally:
            os._exit(0)
    end.close()
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"x"
    os.close(ready_r)
    time.sleep(0.2)                 # in its loop, waiting for a job
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    run_end.close()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert (tmp_path / "ended").read_text() == "undone"


def test_pyroute2_is_preloaded_for_the_workers_only() -> None:
    """net_bridge's quark_preload: nothing more for runs (every run would carry
    pyroute2's ~5 MiB in its RSS), pyroute2 warmed for the workers' parent."""
    import importlib.util
    if importlib.util.find_spec("quark_net_bridge") is None:
        pytest.skip("the net_bridge plugin is not installed (pip install ./plugins/net_bridge)")
    code = ("import sys; from quark.plugins import manager; manager.preload(where=%r); "
            "print(any(m.startswith('pyroute2') for m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("QUARK_PLUGINS", None)
    for where, expected in (("template", "False"), ("worker", "True")):
        out = subprocess.run([sys.executable, "-c", code % where], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == expected, where
