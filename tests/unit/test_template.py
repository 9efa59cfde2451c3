"""The template's wire and checks, without a template process (quark.template)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quark.template import client, server

REPO = Path(__file__).resolve().parents[2]


SERVED_CASES = [
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
]


@pytest.mark.parametrize("argv,expected", SERVED_CASES)
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


def test_launcher_finds_a_virtual_environments_packages(tmp_path: Path) -> None:
    """Without site, a venv's sys.prefix is its base interpreter's: bin/quark must
    still put the venv's site-packages on sys.path (scripts/setup-debian.sh makes a
    venv wherever the system Python is Debian's)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    text = (REPO / "bin" / "quark").read_text()
    program = text.split("-c '\n", 1)[1].split("\n_paths()\n", 1)[0]
    program += "\n_paths()\nprint(repr(sys.path))\n"
    r = subprocess.run([str(venv / "bin" / "python3"), "-I", "-S", "-c", program,
                        str(REPO / "bin" / "quark")], check=True, capture_output=True,
                       text=True, timeout=60)
    ver = "python%d.%d" % sys.version_info[:2]
    assert str(venv / "lib" / ver / "site-packages") in eval(r.stdout), r.stdout


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


def _worker_for_test(tmp_path: Path) -> tuple[int, Any]:
    """A worker (no plugin wires anything ahead) whose at_exit writes tmp/ended;
    its pid and this end of its socket pair."""
    from quark.template import worker

    def child(end: Any) -> None:
        os.environ["QUARK_PLUGINS"] = "none"
        worker.at_exit(lambda: (tmp_path / "ended").write_text("undone"))
        worker.serve(end)
    return worker.fork_paired(child)


@pytest.mark.root      # the worker returns to its own network namespace after each job
def test_worker_passes_fds_back_and_undoes_at_exit(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from quark.template import worker
    (tmp_path / "data").write_text("from the worker's fd")
    pid, run_end = _worker_for_test(tmp_path)
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
def test_worker_undoes_at_exit_when_terminated(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`pkill -f template` reaches the workers too: SIGTERM still runs at_exit."""
    import signal

    from quark.template import worker
    pid, run_end = _worker_for_test(tmp_path)
    monkeypatch.setattr(worker, "sock", run_end)
    assert worker.submit(os.getpid, ()).result() == pid     # in its loop
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


def test_preload_leaves_out_what_runs_do_not_call(tmp_path: Path) -> None:
    """Every module the template imports is in every run's RSS: the guest stub's
    build tools (tempfile, random) stay out, and the TOML parser is in only when
    there is a configuration file to parse."""
    # Started as bin/quark starts it: without site, whose .pth hooks import more.
    code = (f"import sys, site; sys.path[:0] = [{str(REPO)!r}, *site.getsitepackages()]; "
            "from quark.template import server; server.preload(); "
            "print(sorted(m for m in ('tempfile', 'random', 'tomllib') if m in sys.modules))")
    config = tmp_path / "config.toml"
    env = dict(os.environ, QUARK_PLUGINS="none", QUARK_CONFIG=str(config),
               QUARK_CACHE_DIR=str(tmp_path / "cache"))
    argv = [sys.executable, "-S", "-c", code]
    # The first start reads the plugins' entry points without a cache
    # (quark.plugins.entry_points), which imports importlib.metadata and with it
    # tempfile; a template pays that once, and so does this warm-up.
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert out.strip() == "[]"
    config.write_text("[log]\nlevel = \"info\"\n")
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True,
                         timeout=120).stdout
    assert out.strip() == "['tomllib']"


# ---- quark-client (quark/template/client.c) against a template stand-in --------------

@pytest.fixture(scope="module")
def quark_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/quark-client as scripts/setup-debian.sh builds it, else compiled here."""
    import shutil
    built = REPO / "bin" / "quark-client"
    if built.exists():
        return built
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed, and bin/quark-client is not built")
    out = tmp_path_factory.mktemp("client") / "quark-client"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out),
                    str(REPO / "quark" / "template" / "client.c")], check=True)
    return out


class _StandIn:
    """A SEQPACKET listener that records each request and answers it with
    ``answer(conn, words, fds)``."""

    def __init__(self, path: Path, answer: Any) -> None:
        import socket
        import threading
        self.requests: list[tuple[list[str], int]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.answer = answer
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                words, fds = client.receive(conn, maxfds=8)
                self.requests.append((words or [], len(fds)))
                for fd in fds:
                    os.close(fd)
                self.answer(conn, words, fds)

    def close(self) -> None:
        self.done = True
        self.thread.join()
        self.sock.close()


def _refuse(conn: Any, words: Any, fds: Any) -> None:
    client.send(conn, ["refused", "a test"])




def test_c_client_serves_what_the_python_client_serves(quark_client: Path,
                                                       tmp_path: Path) -> None:
    # QUARK_PYTHON=true: what is not handed over ends in `true`, whatever it was.
    stand_in = _StandIn(tmp_path / "t.sock", _refuse)
    env = dict(os.environ, QUARK_TEMPLATE=str(tmp_path / "t.sock"), QUARK_PYTHON="true")
    try:
        for argv, expected in SERVED_CASES:
            before = len(stand_in.requests)
            r = subprocess.run([str(quark_client), str(REPO / "bin" / "quark"), *argv],
                               env=env, capture_output=True, timeout=30)
            assert r.returncode == 0, (argv, r.stderr)
            assert (len(stand_in.requests) > before) is expected is client.served(argv), argv
    finally:
        stand_in.close()


def test_c_client_request_is_the_python_clients(quark_client: Path, tmp_path: Path) -> None:
    import resource
    import time
    stand_in = _StandIn(tmp_path / "t.sock", _refuse)
    env = {"PATH": "/usr/bin:/bin", "QUARK_TEMPLATE": str(tmp_path / "t.sock"),
           "QUARK_PYTHON": "true", "EMPTY": "", "EQ": "a=b=c"}
    argv = ["--debug", "run", "--bundle", str(tmp_path), "cid"]
    launcher = str(REPO / "bin" / "quark")
    try:
        t = time.monotonic()
        subprocess.run([str(quark_client), launcher, *argv], env=env, check=True, timeout=30)
    finally:
        stand_in.close()
    (words, nfds), = stand_in.requests
    mask = os.umask(0)
    os.umask(mask)
    limits = [f"{n}={','.join(map(str, resource.getrlimit(getattr(resource, n))))}"
              for n in dir(resource) if n.startswith("RLIMIT_")]
    expected = client.run_request(launcher, argv, env, mask, 0.0, limits)
    assert nfds == 4                                    # 0, 1, 2 and the cwd
    assert words[:3] + words[4:] == expected[:3] + expected[4:]
    assert t <= float(words[3]) <= time.monotonic()     # CLOCK_MONOTONIC, as Python's


def test_a_refused_run_is_not_asked_again_in_python(quark_client: Path,
                                                    tmp_path: Path) -> None:
    stand_in = _StandIn(tmp_path / "t.sock", _refuse)
    env = dict(os.environ, QUARK_TEMPLATE=str(tmp_path / "t.sock"), QUARK_PYTHON=sys.executable)
    missing = tmp_path / "missing"
    try:
        r = subprocess.run([str(quark_client), str(REPO / "bin" / "quark"), "--root",
                            str(tmp_path / "root"), "run", "--bundle", str(missing), "cid"],
                           env=env, capture_output=True, text=True, timeout=60)
    finally:
        stand_in.close()
    assert r.returncode == 1 and str(missing) in r.stderr, r.stderr   # quark itself said so
    assert len(stand_in.requests) == 1
    assert "QUARK_LAUNCHER_NO_CLIENT" not in r.stderr


@pytest.mark.parametrize("final,code,killed", [
    (["status", "7"], 7, False),
    (["wait_status", str(9)], -9, False),          # the run died of SIGKILL: so does it
    (["wait_status", str(3 << 8)], 3, False),
    (None, 1, True),                                # the template went away
])
def test_c_client_exits_as_the_run_did(quark_client: Path, tmp_path: Path,
                                       final: list[str] | None, code: int,
                                       killed: bool) -> None:
    """The caller's side of a served run: the pid and a pidfd, signals relayed to
    it, then the run's status; if the template vanishes, the run is killed."""
    import signal
    run = subprocess.Popen(["sleep", "30"])
    pidfd = os.pidfd_open(run.pid)

    def answer(conn: Any, words: Any, fds: Any) -> None:
        client.send(conn, ["pid", str(run.pid)], [pidfd])
        if final is not None:
            client.send(conn, final)
    stand_in = _StandIn(tmp_path / "t.sock", answer)
    env = dict(os.environ, QUARK_TEMPLATE=str(tmp_path / "t.sock"), QUARK_PYTHON="false")
    try:
        r = subprocess.run([str(quark_client), str(REPO / "bin" / "quark"), "run", "x"],
                           env=env, capture_output=True, text=True, timeout=30)
    finally:
        stand_in.close()
        os.close(pidfd)
    assert r.returncode == code, r.stderr
    if killed:
        assert run.wait(10) == -signal.SIGKILL
        assert "template process went away" in r.stderr
    else:
        run.kill()
        run.wait()


@pytest.mark.parametrize("which", ["c", "python"])
def test_a_run_that_ends_before_its_pid_is_not_run_again(quark_client: Path, tmp_path: Path,
                                                         which: str) -> None:
    """A served run can end (a bad config file) before the template's `pid` reaches
    its caller: the caller takes that status and does not run the command itself."""
    stand_in = _StandIn(tmp_path / "t.sock",
                        lambda conn, words, fds: client.send(conn, ["status", "5"]))
    env = dict(os.environ, QUARK_TEMPLATE=str(tmp_path / "t.sock"))
    if which == "c":
        argv = [str(quark_client), str(REPO / "bin" / "quark")]
        env["QUARK_PYTHON"] = "false"           # a fallback would exit 1
    else:
        argv = [str(REPO / "bin" / "quark")]
        env.update(QUARK_PYTHON=sys.executable, QUARK_LAUNCHER_NO_CLIENT="1")
    try:
        r = subprocess.run([*argv, "--root", str(tmp_path / "root"), "run", "--bundle",
                            str(tmp_path / "missing"), "x"],
                           env=env, capture_output=True, text=True, timeout=60)
    finally:
        stand_in.close()
    assert r.returncode == 5, r.stderr
    assert len(stand_in.requests) == 1 and r.stderr == ""


@pytest.mark.root
@pytest.mark.parametrize("which", ["c", "python"])
def test_a_listener_of_another_user_gets_nothing(quark_client: Path, tmp_path: Path,
                                                 which: str) -> None:
    """Someone else's socket at the template's path gets neither the caller's fds
    and environment nor a pidfd to aim its signals at: the caller runs quark itself."""
    import shutil
    import socket
    import tempfile
    shared = Path(tempfile.mkdtemp(dir="/tmp"))      # pytest's tmp_path is root's only
    os.chmod(shared, 0o777)
    path = shared / "t.sock"
    from quark.template.worker import fork_paired

    def listen_as_nobody(ready: socket.socket) -> None:
        os.setgid(65534)
        os.setuid(65534)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(str(path))
        s.listen(1)
        ready.send(b"x")
        s.settimeout(30)
        conn, _ = s.accept()
        conn.settimeout(30)
        if conn.recv(1 << 20):      # exits 1
            raise AssertionError("the caller sent its request")
    pid, ready = fork_paired(listen_as_nobody)
    assert ready.recv(1) == b"x"
    ready.close()
    env = dict(os.environ, QUARK_TEMPLATE=str(path))
    if which == "c":
        argv = [str(quark_client), str(REPO / "bin" / "quark")]
        env["QUARK_PYTHON"] = "true"
    else:
        argv = [str(REPO / "bin" / "quark")]
        env.update(QUARK_PYTHON=sys.executable, QUARK_LAUNCHER_NO_CLIENT="1")
    r = subprocess.run([*argv, "--root", str(tmp_path / "root"), "run", "--bundle",
                        str(tmp_path / "missing"), "x"], env=env, capture_output=True,
                       text=True, timeout=60)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(shared)
    assert os.waitstatus_to_exitcode(status) == 0, "the request went to the other user"
    if which == "python":
        assert r.returncode == 1 and "missing" in r.stderr   # quark ran it itself
