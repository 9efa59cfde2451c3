"""OCI hooks: parsing, state on stdin, env, timeout, and the spec's failure rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quark.oci.errors import OciError
from quark.oci.hooks import HookError, parse_hooks, run_hooks

STATE = {"ociVersion": "1.0.2-dev", "id": "c1", "status": "creating", "pid": 42,
         "bundle": "/b", "annotations": {}}


def script(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_state_on_stdin_args_and_env(tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = script(tmp_path, "h", f'cat > {out}; echo "$1 $FOO" >> {out}.args\n')
    hooks = parse_hooks({"hooks": {"createRuntime": [
        {"path": path, "args": ["myhook", "one"], "env": ["FOO=bar"]}]}})
    run_hooks("createRuntime", hooks, STATE)
    assert json.loads(out.read_text()) == STATE
    # args[0] is argv[0] (a script's $0 is its path, so only the rest shows here)
    assert (tmp_path / "out.args").read_text().split() == ["one", "bar"]


def test_fatal_kinds_raise(tmp_path: Path) -> None:
    path = script(tmp_path, "fail", "echo broken >&2; exit 3\n")
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer"):
        hooks = parse_hooks({"hooks": {kind: [{"path": path}]}})
        with pytest.raises(HookError, match=f"{kind} hook #0 .* exited with status 3: broken"):
            run_hooks(kind, hooks, STATE, warn=lambda m: None)


def test_poststart_poststop_warn_and_go_on(tmp_path: Path) -> None:
    fail = script(tmp_path, "fail", "exit 1\n")
    ok = script(tmp_path, "ok", f"touch {tmp_path}/ran\n")
    for kind in ("poststart", "poststop"):
        warnings: list[str] = []
        hooks = parse_hooks({"hooks": {kind: [{"path": fail}, {"path": ok}]}})
        run_hooks(kind, hooks, STATE, warn=warnings.append)
        assert len(warnings) == 1 and "exited with status 1" in warnings[0]
        assert (tmp_path / "ran").exists()
        (tmp_path / "ran").unlink()


def test_timeout(tmp_path: Path) -> None:
    path = script(tmp_path, "slow", "sleep 5\n")
    hooks = parse_hooks({"hooks": {"prestart": [{"path": path, "timeout": 1}]}})
    with pytest.raises(HookError, match="timed out after 1s"):
        run_hooks("prestart", hooks, STATE)


def test_missing_binary(tmp_path: Path) -> None:
    hooks = parse_hooks({"hooks": {"createContainer": [{"path": str(tmp_path / "no")}]}})
    with pytest.raises(HookError, match="No such file"):
        run_hooks("createContainer", hooks, STATE)


@pytest.mark.parametrize("bad, msg", [
    ({"prestart": [{"path": "relative"}]}, "must be absolute"),
    ({"prestart": [{}]}, "path is missing"),
    ({"prestart": [{"path": "/x", "timeout": 0}]}, "positive integer"),
    ({"prestart": [{"path": "/x", "args": "no"}]}, "list of strings"),
    ({"prestart": {"path": "/x"}}, "must be a list"),
])
def test_bad_hooks_are_one_line(bad: dict, msg: str) -> None:
    with pytest.raises(OciError, match=msg):
        parse_hooks({"hooks": bad})
