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


def _fresh(code: str) -> str:
    """Run `code` in a new interpreter (structlog not imported yet); its stdout."""
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert p.stderr == ""
    return p.stdout


def test_structlog_waits_for_a_record_that_goes_somewhere(tmp_path: Path) -> None:
    """start, kill and delete set logging up and seldom log: importing structlog
    (~50 ms, with asyncio) waits for a record at or above the set-up level."""
    path = tmp_path / "q.log"
    out = _fresh(
        "import sys\n"
        "from quark.config import LogConfig\n"
        "from quark.log import get_logger, setup_logging\n"
        f"assert setup_logging(LogConfig(path={str(path)!r}, format='json', level='info'))\n"
        "log = get_logger('oci', id='c1').bind(op='start')\n"
        "log.debug('below the level')\n"
        "print('structlog' in sys.modules, 'asyncio' in sys.modules)\n"
        "log.warning('written', n=2)\n"
        "print('structlog' in sys.modules)\n")
    assert out.split() == ["False", "False", "True"]
    (rec,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert rec["msg"] == "written" and rec["level"] == "warning"
    assert (rec["logger"], rec["id"], rec["op"], rec["n"]) == ("oci", "c1", "start", 2)
    assert rec["time"].endswith("Z")


def test_a_stdlib_record_applies_the_waiting_setup(tmp_path: Path) -> None:
    """The kernel's and plugins' stdlib records (quark.*) reach the file through the
    same waiting set-up; one below the level imports nothing."""
    path = tmp_path / "q.log"
    out = _fresh(
        "import logging, sys\n"
        "from quark.config import LogConfig\n"
        "from quark.log import setup_logging\n"
        f"setup_logging(LogConfig(path={str(path)!r}, format='text', level='warning'))\n"
        "logging.getLogger('quark.plugins.x').info('below')\n"
        "print('structlog' in sys.modules)\n"
        "logging.getLogger('quark.plugins.x').warning('from a plugin')\n")
    assert out.split() == ["False"]
    (line,) = path.read_text().splitlines()
    assert 'level=warning msg="from a plugin" logger=quark.plugins.x' in line


def test_nothing_is_written_when_the_log_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    out = _fresh(
        "import sys\n"
        "from quark.config import LogConfig\n"
        "from quark.log import get_logger, setup_logging\n"
        f"print(setup_logging(LogConfig(path={str(tmp_path / 'file' / 'q.log')!r})))\n"
        "get_logger('x').error('goes nowhere')\n"
        "print('structlog' in sys.modules)\n")
    assert out.split() == ["False", "False"]


def test_the_control_client_does_not_import_asyncio() -> None:
    """start and kill reach the sandbox through quark.sandbox.control's client side,
    which needs no event loop (~25 ms of imports)."""
    out = _fresh("import sys\nimport quark.sandbox.control\nprint('asyncio' in sys.modules)\n")
    assert out.split() == ["False"]
