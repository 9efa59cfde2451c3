"""config.toml: defaults, overrides, one-line errors, and docs/config.md in step."""

from __future__ import annotations

import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from quark.config import Config, ConfigError, load_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_missing_default_file_gives_defaults(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("QUARK_CONFIG", raising=False)
    monkeypatch.setattr("quark.config.DEFAULT_PATH", tmp_path / "absent.toml")
    assert load_config() == Config()


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kernel]\nmemory_mib = 256\nstrace = true\n[log]\nformat = "json"\n')
    monkeypatch.setenv("QUARK_CONFIG", str(path))
    cfg = load_config()
    assert cfg.kernel.memory_mib == 256 and cfg.kernel.strace is True
    assert cfg.log.format == "json" and cfg.log.level == "info"
    assert cfg.source == path


def test_explicit_missing_file_is_an_error(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("QUARK_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config()


@pytest.mark.parametrize("text, expected", [
    ("[kernel]\nmemory_mib = 'x'\n", "kernel.memory_mib must be int, not str"),
    ("[kernel]\nmemory_mib = 0\n", "kernel.memory_mib must be positive"),
    ("[kernel]\nbogus = 1\n", "unknown key kernel.bogus"),
    ("[nosuch]\n", "unknown section [nosuch]"),
    ("[log]\nformat = 'xml'\n", "log.format must be one of text, json"),
    ("[platform]\nkind = 'tcg'\n", "platform.kind must be one of auto, pvm, vmx"),
    ("[log\n", "c.toml:"),
])
def test_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_flags_override() -> None:
    cfg = Config().with_overrides(log_path="/tmp/x.log", log_format="json", debug=True)
    assert (cfg.log.path, cfg.log.format, cfg.log.level) == ("/tmp/x.log", "json", "debug")


def test_every_key_is_documented() -> None:
    doc = DOC.read_text()
    module_doc = sys.modules["quark.config"].__doc__ or ""
    defaults = Config()
    for section in ("kernel", "log", "platform"):
        for f in fields(getattr(defaults, section)):
            value = getattr(getattr(defaults, section), f.name)
            shown = str(value).lower() if isinstance(value, bool) else (
                f'"{value}"' if isinstance(value, str) else str(value))
            assert re.search(rf"`{section}\.{f.name}` \| `{re.escape(shown)}`", doc), \
                f"{section}.{f.name} = {shown} missing from docs/config.md"
            assert re.search(rf"^{f.name} = {re.escape(shown)}", module_doc, re.M), \
                f"{section}.{f.name} missing from quark/config.py's docstring"
