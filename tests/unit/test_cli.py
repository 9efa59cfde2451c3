"""The command line: argument shapes, one-line errors, nothing left behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quark import cli
from quark.oci.defaults import default_spec

Run = Callable[..., Any]


def one_line_error(result: Any) -> str:
    assert result.code == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("quark: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No host config file, log in tmp_path: the tests do not depend on /etc/quark."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[log]\npath = "{tmp_path / "quark.log"}"\n')
    return {"QUARK_CONFIG": str(cfg)}


def test_version(quark_cmd: Run) -> None:
    r = quark_cmd(["--version"])
    assert r.code == 0
    assert r.stdout.splitlines()[0].startswith("quark version ")


def test_missing_bundle_is_one_line_and_leaves_root_empty(quark_cmd: Run, tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    root = tmp_path / "state"
    r = quark_cmd(["--root", str(root), "run", "--bundle", str(tmp_path / "nope"), "c1"],
                  env=env)
    assert one_line_error(r) == f"quark: bundle directory {tmp_path}/nope does not exist"
    assert not root.exists() or not any(root.iterdir())


def test_bad_json_with_json_log(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text('{"ociVersion": "1.0.2",\n "process": }')
    log = tmp_path / "runtime.log"
    root = tmp_path / "state"
    r = quark_cmd(["--root", str(root), "--log", str(log), "--log-format", "json",
                   "run", "-b", str(bundle), "c1"], env=env)
    line = one_line_error(r)
    assert "invalid JSON at line 2 column 13" in line
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert records[-1]["level"] == "error"
    assert records[-1]["msg"] == line.removeprefix("quark: ")
    assert records[-1]["time"].endswith("Z")
    assert not root.exists() or not any(root.iterdir())


def test_missing_args_in_bundle(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    config = default_spec(["sh"])
    del config["process"]["args"]
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(config))
    r = quark_cmd(["run", "c1"], env=env, cwd=tmp_path)  # bundle defaults to cwd
    assert one_line_error(r) == "quark: config.json: process.args is missing or empty"


def test_bad_config_file(quark_cmd: Run, tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[kernel]\nmemory_mib = 'lots'\n")
    r = quark_cmd(["run", "c1"], env={"QUARK_CONFIG": str(cfg)}, cwd=tmp_path)
    assert "kernel.memory_mib must be int" in one_line_error(r)


def test_spec_writes_and_refuses_to_overwrite(quark_cmd: Run, tmp_path: Path,
                                             env: dict[str, str]) -> None:
    assert quark_cmd(["spec", "--bundle", str(tmp_path)], env=env).code == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == default_spec()
    r = quark_cmd(["spec", "--bundle", str(tmp_path)], env=env)
    assert "already exists" in one_line_error(r)


def test_spec_rootless(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    assert quark_cmd(["spec", "--rootless"], env=env, cwd=tmp_path).code == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert {"type": "user"} in config["linux"]["namespaces"]


def test_features_is_json(quark_cmd: Run, env: dict[str, str]) -> None:
    r = quark_cmd(["features"], env=env)
    assert r.code == 0
    doc = json.loads(r.stdout)
    assert doc["ociVersionMin"] == "1.0.0"
    assert "namespaces" in doc["linux"]


def test_unknown_command_is_usage_error(quark_cmd: Run) -> None:
    r = quark_cmd(["frobnicate"])
    assert r.code == 2
    assert "invalid choice" in r.stderr


def test_debug_shows_traceback(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    r = quark_cmd(["--debug", "run", "-b", str(tmp_path / "nope"), "c1"], env=env)
    assert r.code == 1
    assert "Traceback" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("quark: bundle directory")


def test_do_bad_rootfs(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    r = quark_cmd(["do", str(tmp_path / "none"), "--", "true"], env=env)
    assert one_line_error(r) == f"quark: rootfs {tmp_path}/none does not exist"


def test_do_bad_mount(quark_cmd: Run, tmp_path: Path, env: dict[str, str]) -> None:
    r = quark_cmd(["do", "--mount", "bind:/data", str(tmp_path), "--", "true"], env=env)
    assert "a bind mount needs a source" in one_line_error(r)


@pytest.mark.parametrize("argv, rootfs, command, envs", [
    (["do", "/r", "--", "sh", "-c", "x"], "/r", ["sh", "-c", "x"], []),
    (["do", "/r", "sh", "-c", "x"], "/r", ["sh", "-c", "x"], []),
    (["do", "--env", "A=1", "/r", "ls", "-l", "--", "x"], "/r", ["ls", "-l", "--", "x"],
     ["A=1"]),
    (["--debug", "--log", "f", "do", "-e", "A=1", "--cwd", "/tmp", "/r", "--", "--env"],
     "/r", ["--env"], ["A=1"]),
])
def test_do_splits_the_command(argv: list[str], rootfs: str, command: list[str],
                               envs: list[str]) -> None:
    ns = cli._parse(argv)
    assert (ns.rootfs, ns.command, ns.env) == (rootfs, command, envs)


def test_do_builds_the_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`do` hands run_sandbox a spec with the default mounts, env and cwd asked for."""
    seen: dict[str, Any] = {}

    def fake_run(spec: Any, cfg: Any, pid_file: Any) -> int:
        seen["spec"] = spec
        return 7

    monkeypatch.setattr(cli, "_run_sandbox", fake_run)
    monkeypatch.setenv("QUARK_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    code = cli.main(["do", "--env", "TERM=dumb", "--env", "X=1", "--cwd", "/tmp",
                     "--mount", "tmpfs:/tmp", "--mount", f"bind:/data:{tmp_path}",
                     str(tmp_path), "--", "sh", "-c", "exit 7"])
    assert code == 7
    spec = seen["spec"]
    assert spec.rootfs == tmp_path
    assert spec.args == ("sh", "-c", "exit 7")
    assert spec.env[0].startswith("PATH=") and "TERM=dumb" in spec.env and "X=1" in spec.env
    assert spec.cwd == "/tmp"
    dests = [m.destination for m in spec.mounts]
    assert dests[:2] == ["/proc", "/dev"]
    assert dests[-2:] == ["/tmp", "/data"]
    assert spec.mounts[-1].source == str(tmp_path)
    assert spec.terminal is False


@pytest.mark.parametrize("status, expected", [(0, 0), (3, 3), (139, 139), (-9, 137)])
def test_run_exit_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, status: int,
                         expected: int) -> None:
    import sys
    import types

    fake = types.ModuleType("quark.sandbox.process")
    fake.run_sandbox = lambda spec, *, pid_file=None, config=None: status  # type: ignore
    monkeypatch.setitem(sys.modules, "quark.sandbox.process", fake)
    monkeypatch.setenv("QUARK_CONFIG", str(tmp_path / "c.toml"))
    (tmp_path / "c.toml").write_text(f'[log]\npath = "{tmp_path}/log"\n')
    (tmp_path / "rootfs").mkdir()
    # `do` is the stateless foreground path through run_sandbox (`run` now goes
    # through the create/start lifecycle, tested in tests/unit/oci/test_lifecycle.py).
    assert cli.main(["do", str(tmp_path / "rootfs"), "--", "true"]) == expected


def test_lifecycle_command_lines_parse_like_runc() -> None:
    ns = cli._parse(["ps", "--format", "json", "c1", "-o", "pid"])
    assert (ns.id, ns.format, ns.command) == ("c1", "json", ["-o", "pid"])
    ns = cli._parse(["exec", "-t", "--env", "A=1", "c1", "ls", "-la"])
    assert (ns.id, ns.tty, ns.env, ns.command) == ("c1", True, ["A=1"], ["ls", "-la"])
    ns = cli._parse(["--root", "/r", "kill", "--all", "c1", "KILL"])
    assert (ns.root, ns.all, ns.id, ns.signal) == ("/r", True, "c1", "KILL")
    ns = cli._parse(["--log-format=json", "create", "--bundle", "/b", "--pid-file", "/p",
                     "--console-socket", "/s", "--no-pivot", "c1"])
    assert (ns.bundle, ns.pid_file, ns.console_socket, ns.id) == ("/b", "/p", "/s", "c1")


@pytest.mark.parametrize("text, number", [("TERM", 15), ("SIGKILL", 9), ("usr1", 10),
                                          ("9", 9), ("SIGRTMIN+1", 35)])
def test_signal_names(text: str, number: int) -> None:
    from quark.oci.lifecycle import parse_signal

    assert parse_signal(text) == number


def test_bad_signal_is_one_line() -> None:
    from quark.oci.errors import OciError
    from quark.oci.lifecycle import parse_signal

    with pytest.raises(OciError, match="unknown signal 'NOPE'"):
        parse_signal("NOPE")


@pytest.mark.parametrize("annotation, forked", [(None, True), ("none", False)])
def test_early_worker_only_for_a_namespace_the_plugins_wire(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, annotation: str | None,
        forked: bool) -> None:
    """A foreground run forks its worker early for net_bridge's netlink work; a run
    whose new namespace stays empty (org.quark.network = "none") needs none."""
    import sys

    from quark.oci.spec import parse_config
    from quark.plugins import entry_points
    from quark.template import worker
    cfg = default_spec(["true"], terminal=False)
    if annotation:
        cfg["annotations"] = {"org.quark.network": annotation}
    (tmp_path / "rootfs").mkdir()
    spec = parse_config(cfg, bundle=tmp_path, container_id="c1")
    started: list[bool] = []
    monkeypatch.setattr(entry_points, "wanted", lambda: None)
    monkeypatch.setattr(entry_points, "entries", lambda: ["net_bridge"])
    monkeypatch.setattr(worker, "start", lambda: started.append(True))
    monkeypatch.setattr(worker, "sock", None)
    monkeypatch.setitem(sys.modules, "quark.template.worker", worker)
    cli._early_worker(spec)
    assert started == ([True] if forked else [])
