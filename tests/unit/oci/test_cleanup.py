"""delete's cleanup asks the network plugins to release a container only when they
may hold something of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from quark.oci import lifecycle
from quark.oci.state import State, StateDir


@pytest.mark.parametrize("wired, asked", [(True, True), (False, False)])
def test_cleanup_asks_the_network_plugins_only_if_they_were(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wired: bool, asked: bool) -> None:
    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "_network_teardown",
                        lambda cid, plugins=None: calls.append(cid))
    sdir = StateDir(tmp_path, "c1")
    sdir.make()
    st = State(id="c1", bundle=str(tmp_path), network_plugins=wired)
    sdir.save(st)
    lifecycle._cleanup(sdir, sdir.load())
    assert calls == (["c1"] if asked else [])
    assert not sdir.path.exists()


def test_a_state_without_the_field_is_torn_down(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """state.json written before the field existed: the plugins are asked, as before."""
    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "_network_teardown",
                        lambda cid, plugins=None: calls.append(cid))
    sdir = StateDir(tmp_path, "old")
    sdir.make()
    sdir.state_file.write_text('{"id": "old", "bundle": "/b", "pid": 0}')
    lifecycle._cleanup(sdir, sdir.load())
    assert calls == ["old"]


def test_create_records_whether_the_plugins_wire(tmp_path: Path) -> None:
    from quark.oci.defaults import default_spec
    from quark.oci.spec import parse_config, wire_network_default
    (tmp_path / "rootfs").mkdir()
    spec = parse_config(default_spec(["true"], terminal=False), bundle=tmp_path,
                        container_id="c1")
    assert lifecycle._new_state(spec).network_plugins is True
    assert lifecycle._new_state(wire_network_default(spec, False)).network_plugins is False
