"""The entry-point cache (quark.plugins.entry_points): same answers as
importlib.metadata, a rescan whenever an install could have changed them, and no
trust in a cache someone else could write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quark.plugins import entry_points as ep_mod

REPO = Path(__file__).resolve().parents[3]


def _dist(site: Path, name: str, entry: str) -> Path:
    d = site / f"{name}-1.0.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (d / "entry_points.txt").write_text(f"[quark]\n{entry}\n")
    return d


@pytest.fixture
def scans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "qtest_mod.py").write_text("plugin = 'the plugin'\nclass A:\n    b = 42\n")
    _dist(site, "qtestplugin", "qtest = qtest_mod:plugin")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(ep_mod.ENV_DIR, str(tmp_path / "cache"))
    calls: list[int] = []
    real = ep_mod._scan

    def counting() -> tuple[list[ep_mod.Entry], list[str]]:
        calls.append(1)
        return real()
    monkeypatch.setattr(ep_mod, "_scan", counting)
    return calls


def test_cached_until_an_install_changes_something(tmp_path: Path, scans: list[int]) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    first = ep_mod.entries()
    mine = [e for e in first if e.name == "qtest"]
    assert mine == [ep_mod.Entry("qtest", "qtest_mod:plugin", "qtestplugin", "1.0")]
    assert mine[0].load() == "the plugin"
    assert len(scans) == 1
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache / ep_mod.file_name()).st_mode) == 0o600
    assert ep_mod.entries() == first and len(scans) == 1       # from the cache

    # An edited entry_points.txt (an upgrade in place): scanned again.
    (site / "qtestplugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[quark]\nqtest = qtest_mod:A.b\n")
    changed = [e for e in ep_mod.entries() if e.name == "qtest"]
    assert len(scans) == 2 and changed[0].value == "qtest_mod:A.b" and changed[0].load() == 42

    # A new distribution changes its directory.
    _dist(site, "qtestother", "qother = qtest_mod:plugin")
    assert "qother" in {e.name for e in ep_mod.entries()} and len(scans) == 3
    ep_mod.entries()
    assert len(scans) == 3


@pytest.mark.parametrize("what", ["dir", "file"])
def test_a_cache_others_can_write_is_not_used(tmp_path: Path, scans: list[int],
                                              what: str) -> None:
    cache = tmp_path / "cache"
    first = ep_mod.entries()
    os.chmod(cache if what == "dir" else cache / ep_mod.file_name(), 0o777 if what == "dir" else 0o666)
    assert ep_mod.entries() == first and ep_mod.entries() == first
    if what == "dir":
        assert len(scans) == 3      # scanned each time, never read
    else:                           # not read, replaced by a private one
        assert len(scans) == 2
        assert stat.S_IMODE(os.stat(cache / ep_mod.file_name()).st_mode) == 0o600


def test_each_sys_path_keeps_its_own_cache(tmp_path: Path, scans: list[int],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout's launcher and an installed one (different sys.path) alternating:
    each scans once, not at every switch."""
    first = ep_mod.entries()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.syspath_prepend(str(other))
    second = ep_mod.entries()
    assert len(scans) == 2 and second == first
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(other)])
    assert ep_mod.entries() == first and len(scans) == 2
    monkeypatch.syspath_prepend(str(other))
    assert ep_mod.entries() == second and len(scans) == 2
    assert len(list((tmp_path / "cache").glob("entry-points-*.json"))) == 2


def test_cache_files_are_bounded(tmp_path: Path, scans: list[int],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(ep_mod.KEEP + 3):
        d = tmp_path / f"p{i}"
        d.mkdir()
        monkeypatch.syspath_prepend(str(d))
        ep_mod.entries()
    assert len(scans) == ep_mod.KEEP + 3
    assert len(list((tmp_path / "cache").glob("entry-points-*.json"))) == ep_mod.KEEP
    assert ep_mod.entries() and len(scans) == ep_mod.KEEP + 3     # the newest is kept


def test_off_and_a_cache_hit_skips_importlib_metadata(tmp_path: Path) -> None:
    code = ("import sys; from quark.plugins import entry_points as e; "
            "names = sorted(x.name for x in e.entries()); "
            "print(names, 'importlib.metadata' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(REPO), **{ep_mod.ENV_DIR: str(tmp_path / "c")})
    out = [subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True).stdout for _ in range(2)]
    assert out[0].endswith("True\n") and out[1].endswith("False\n")
    assert out[0].split("]")[0] == out[1].split("]")[0]      # the same names
    env[ep_mod.ENV_DIR] = "off"
    off = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert off.endswith("True\n") and not (tmp_path / "off").exists()
