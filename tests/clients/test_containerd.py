"""containerd 1.6 through `ctr run --runc-binary <quark>`: containerd's runc shim
(containerd-shim-runc-v2) drives quark exactly as it drives runc."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from clientlib import BUSYBOX_REF, Cmd, link_names, wait_for

pytestmark = [pytest.mark.containerd, pytest.mark.kvm, pytest.mark.timeout(300)]


@pytest.fixture
def ctr(containerd, quark_shim) -> Cmd:
    return Cmd([*containerd.ctr.argv])


@pytest.fixture
def flags(quark_shim) -> list[str]:
    return ["--snapshotter", "native", "--runc-binary", str(quark_shim.path)]


@pytest.fixture
def task(ctr: Cmd, flags: list[str], request: pytest.FixtureRequest) -> Iterator[str]:
    """A detached task (`ctr run -d`) that loops forever."""
    name = f"t-{request.node.name.replace('_', '-')[:40]}"
    p = ctr("run", "-d", *flags, BUSYBOX_REF, name, "sh", "-c",
            "while true; do sleep 0.1; done")
    assert p.returncode == 0, p.stderr
    wait_for(lambda: "RUNNING" in ctr("task", "ls").stdout, what="the task to run")
    yield name
    ctr("task", "kill", "-a", "-s", "SIGKILL", name)
    wait_for(lambda: ctr("task", "delete", name).returncode == 0
             or name not in ctr("task", "ls").stdout, what="task delete")
    ctr("container", "delete", name)


def _status(ctr: Cmd, name: str) -> str:
    for line in ctr("task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == name:
            return fields[-1]
    return ""


def test_run_rm(ctr: Cmd, flags: list[str]) -> None:
    p = ctr("run", "--rm", *flags, BUSYBOX_REF, "run-rm", "echo", "hello from ctr")
    assert (p.returncode, p.stdout) == (0, "hello from ctr\n"), p.stderr
    assert "run-rm" not in ctr("container", "ls", "-q").stdout


def test_new_network_namespace_is_loopback_only(ctr: Cmd, flags: list[str]) -> None:
    """ctr run without --net-host or --cni: a new network namespace without a path,
    which runc leaves empty; net_bridge (installed here) stays out of it."""
    p = ctr("run", "--rm", *flags, BUSYBOX_REF, "netns-empty", "ip", "-o", "link", "show")
    assert p.returncode == 0, p.stderr
    assert link_names(p.stdout) == ["lo"], p.stdout


def test_exit_code(ctr: Cmd, flags: list[str]) -> None:
    p = ctr("run", "--rm", *flags, BUSYBOX_REF, "exit-code", "sh", "-c", "exit 9")
    assert p.returncode == 9, p.stderr


def test_tty(ctr: Cmd, flags: list[str]) -> None:
    # ctr -t wants a terminal on its own stdin: give it one through script(1).
    cmd = " ".join([*ctr.argv, "run", "--rm", "-t", *flags, BUSYBOX_REF, "tty-test", "sh",
                    "-c", "'[ -t 0 ] && [ -t 1 ] && echo ctr-has-tty'"])
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ctr-has-tty" in p.stdout


def test_detached_exec_ps(ctr: Cmd, task: str) -> None:
    p = ctr("task", "exec", "--exec-id", "e1", task, "sh", "-c", "echo exec-ok; exit 6")
    assert (p.returncode, p.stdout) == (6, "exec-ok\n"), p.stderr
    p = ctr("task", "ps", task)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) >= 2     # header and the sandbox process


def test_pause_resume(ctr: Cmd, task: str) -> None:
    assert ctr("task", "pause", task).returncode == 0
    assert _status(ctr, task) == "PAUSED"
    assert ctr("task", "resume", task).returncode == 0
    assert _status(ctr, task) == "RUNNING"
    p = ctr("task", "exec", "--exec-id", "after", task, "echo", "resumed")
    assert p.stdout == "resumed\n", p.stderr


def test_kill_all_and_delete(ctr: Cmd, task: str) -> None:
    assert ctr("task", "kill", "-a", "-s", "SIGKILL", task).returncode == 0
    wait_for(lambda: _status(ctr, task) == "STOPPED", what="STOPPED")
    p = ctr("task", "delete", task)
    assert p.returncode == 0, p.stderr
    assert task not in ctr("task", "ls").stdout
    assert ctr("container", "delete", task).returncode == 0
