"""quark.log: records go to the file, in runc's shapes."""

from __future__ import annotations

import json
from pathlib import Path

from quark.config import LogConfig
from quark.log import get_logger, setup_logging, write_error


def test_json_records(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "q.log"
    assert setup_logging(LogConfig(path=str(path), format="json", level="info"))
    log = get_logger("test", id="c1")
    log.debug("hidden")
    log.info("started", pid=42)
    rec = json.loads(path.read_text().splitlines()[-1])
    assert rec["msg"] == "started" and rec["level"] == "info"
    assert rec["pid"] == 42 and rec["id"] == "c1" and rec["logger"] == "test"
    assert rec["time"].endswith("Z")
    assert "hidden" not in path.read_text()


def test_text_records(tmp_path: Path) -> None:
    path = tmp_path / "q.log"
    setup_logging(LogConfig(path=str(path), format="text", level="debug"))
    get_logger().debug("hello world", n=1)
    line = path.read_text().splitlines()[-1]
    assert line.startswith("time=")
    assert 'level=debug msg="hello world" n=1' in line


def test_unwritable_log_is_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert not setup_logging(LogConfig(path=str(tmp_path / "file" / "q.log")))
    get_logger().error("goes nowhere")


def test_write_error(tmp_path: Path) -> None:
    path = tmp_path / "q.log"
    write_error(str(path), "json", "bad thing")
    write_error(str(path), "text", 'say "hi"')
    first, second = path.read_text().splitlines()
    assert json.loads(first)["msg"] == "bad thing"
    assert second.endswith('level=error msg="say \\"hi\\""')


def test_nothing_reaches_stdout_before_setup() -> None:
    """stdout is the container's: a record logged before setup_logging (an early
    failure) goes nowhere, where structlog's default would print it."""
    import subprocess
    import sys
    code = ("from quark.log import get_logger\n"
            "get_logger('early').error('must not be printed', key=1)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert p.stdout == "" and p.stderr == ""
