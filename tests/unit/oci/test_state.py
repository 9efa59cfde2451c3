"""The state directory: atomic state.json, live status from the pid and its start time."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from quark.oci.errors import OciError
from quark.oci.state import NotExistError, State, StateDir, list_states, pid_start_time


def test_make_save_load_roundtrip(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "root", "c1")
    sd.make()
    st = State(id="c1", bundle="/b", rootfs="/b/rootfs", annotations={"a": "b"})
    sd.save(st)
    assert sd.load() == st
    assert not [p for p in sd.path.iterdir() if p.name.startswith(".")]  # no temp left


def test_make_twice_is_already_exists(tmp_path: Path) -> None:
    StateDir(tmp_path, "c1").make()
    with pytest.raises(OciError, match='container with id "c1" already exists'):
        StateDir(tmp_path, "c1").make()


def test_missing_is_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(NotExistError, match='container "nope" does not exist'):
        StateDir(tmp_path, "nope").load()


def test_live_status_follows_the_process(tmp_path: Path) -> None:
    p = subprocess.Popen(["sleep", "30"])
    try:
        st = State(id="c", bundle="/b", pid=p.pid, pid_start=pid_start_time(p.pid),
                   status="running")
        assert st.live_status() == "running"
        assert st.oci()["pid"] == p.pid
        # Same pid, another start time: the pid was reused by someone else.
        st.pid_start = (st.pid_start or 0) + 1
        assert st.live_status() == "stopped"
    finally:
        p.kill()
        p.wait()
    st.pid_start = None
    assert st.live_status() == "stopped"
    assert st.oci()["pid"] == 0


def test_oci_document_has_runc_fields() -> None:
    doc = State(id="c", bundle="/b", rootfs="/b/r", pid=os.getpid(),
                pid_start=pid_start_time(os.getpid()), status="created",
                annotations={"k": "v"}).oci()
    assert list(doc) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                         "owner", "annotations"]
    assert doc["status"] == "created" and doc["annotations"] == {"k": "v"}


def test_zombie_is_not_alive() -> None:
    p = subprocess.Popen(["true"])
    start = pid_start_time(p.pid)
    import time
    time.sleep(0.3)     # exited, not reaped: a zombie
    assert pid_start_time(p.pid) is None
    p.wait()
    assert start is None or isinstance(start, int)


def test_list_skips_half_made(tmp_path: Path) -> None:
    for cid in ("b", "a"):
        sd = StateDir(tmp_path, cid)
        sd.make()
        sd.save(State(id=cid, bundle="/x"))
    (tmp_path / "half").mkdir()
    assert [s.id for s in list_states(tmp_path)] == ["a", "b"]
    assert list_states(tmp_path / "none") == []
