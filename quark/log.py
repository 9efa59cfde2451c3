"""Quark's own log: a file (never stdout/stderr, which belong to the container).

Two formats, the ones runc writes for containerd and podman to read:
- json: one object a line, `{"level": "info", "msg": "...", "time": "<RFC 3339>", ...}`
- text: logfmt, `time=... level=info msg="..." key=value`

`setup_logging()` configures structlog once per process; before it (or if the file
cannot be opened) log calls go nowhere. structlog is imported only here, and only
when a record is to be written: importing it costs ~50 ms (its stdlib module imports
asyncio), which start, kill and delete would pay on every call for the warnings they
seldom write (podman calls two of them for each container).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from .config import LogConfig

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_file: TextIO | None = None
# Set up, but structlog not imported yet: the configuration the first record applies.
_pending: LogConfig | None = None
# Records below this level go nowhere: the set-up level, or none before set-up.
_threshold = 100
_phases: list[tuple[str, float]] = [("main", time.monotonic())]


def phase(name: str) -> None:
    """Mark the end of start-up or teardown phase `name` (see `log_phases`).

    Issue 6 asks where every millisecond of `quark run` goes; the marks cost a
    list append, so they stay in."""
    _phases.append((name, time.monotonic()))


def restart_phases(t0: float) -> None:
    """Count phases from monotonic time `t0` (a template's run: its caller's start)."""
    _phases[:] = [("main", t0)]


def log_phases(what: str) -> None:
    """One debug record: the milliseconds each marked phase took since the one
    before it (the first since this module was imported, i.e. the command's start)."""
    fields = {name: round((t - _phases[i][1]) * 1000, 1)
              for i, (name, t) in enumerate(_phases[1:])}
    get_logger("phases").debug(what, total_ms=round((_phases[-1][1] - _phases[0][1]) * 1000, 1),
                               **fields)


def _open(path: str) -> TextIO | None:
    """Open the log for appending, creating its directory; None if impossible.

    Not being able to log must not stop a container, so failures are swallowed.
    """
    if not path:
        return None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Line-buffered: a crash loses at most the line being written, and readers
        # (containerd tails the log on failure) see whole lines.
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError:
        return None


def _drop(_logger: Any, _method: str, _event: Any) -> Any:
    import structlog

    raise structlog.DropEvent


class _ToStructlog(logging.Handler):
    """Routes the kernel's and core's stdlib ``logging`` records (``quark.*``) into
    the structlog file, so nothing of ours reaches the container's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        log = _structlog().get_logger(record.name)
        kw: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            kw["exc_info"] = record.exc_info
        try:
            log.log(record.levelno, record.getMessage(), **kw)
        except Exception:  # noqa: BLE001 - logging must never break the sandbox
            pass


def _bridge_stdlib(level: str, enabled: bool) -> None:
    root = logging.getLogger("quark")
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_ToStructlog() if enabled else logging.NullHandler())
    root.setLevel(_LEVELS.get(level, logging.INFO))


def _configure_silent(structlog: Any) -> None:
    """Every record dropped: structlog's default would print to stdout, which is the
    container's."""
    structlog.configure(
        processors=[_drop],
        logger_factory=structlog.ReturnLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS["error"]),
        cache_logger_on_first_use=False,
    )


def setup_logging(cfg: LogConfig) -> bool:
    """Send structlog output to `cfg.path` in `cfg.format` at `cfg.level` and above
    (structlog is configured now if it is imported, else by the first record).

    Returns False (and logs nothing) when the file cannot be opened.
    """
    global _file, _pending, _threshold
    f = _open(cfg.path)
    _pending = None
    if f is None:
        _threshold = 100
        if "structlog" in sys.modules:
            _configure_silent(sys.modules["structlog"])
        _bridge_stdlib(cfg.level, False)
        return False
    if _file is not None and _file is not f:
        _file.close()
    _file = f
    _threshold = _LEVELS[cfg.level]
    if "structlog" in sys.modules:
        _configure(sys.modules["structlog"], cfg, f)
    else:
        _pending = cfg
    _bridge_stdlib(cfg.level, True)
    return True


def _configure(structlog: Any, cfg: LogConfig, f: TextIO) -> None:
    common: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        structlog.processors.format_exc_info,
        structlog.processors.EventRenamer("msg"),
    ]
    renderer: Any
    if cfg.format == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.processors.LogfmtRenderer(key_order=["time", "level", "msg"],
                                                       drop_missing=True)
    structlog.configure(
        processors=[*common, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=f),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[cfg.level]),
        cache_logger_on_first_use=False,
    )


def _structlog() -> Any:
    """structlog, imported and configured as set up (see setup_logging)."""
    global _pending
    import structlog

    if _pending is not None and _file is not None:
        cfg, _pending = _pending, None
        _configure(structlog, cfg, _file)
    elif not structlog.is_configured():
        _configure_silent(structlog)     # before setup_logging: nowhere, never stdout
    return structlog


def flush() -> None:
    """Flush the log file (before an ``os._exit``)."""
    if _file is not None:
        try:
            _file.flush()
        except (OSError, ValueError):
            pass


def get_logger(name: str | None = None, **context: Any) -> Any:
    """A structlog logger bound to `logger=name` and `context` (while structlog is not
    imported, a stand-in that imports it for the first record that goes somewhere)."""
    if name:
        context["logger"] = name
    if "structlog" not in sys.modules:
        return _Deferred(context)
    log = _structlog().get_logger()
    return log.bind(**context) if context else log


def _at(level: str, method: str) -> Any:
    """_Deferred's ``method``, which logs at ``level``."""
    n = _LEVELS[level]

    def call(self: _Deferred, event: Any = None, *args: Any, **kw: Any) -> None:
        if n >= _threshold:
            getattr(self._real(), method)(event, *args, **kw)
    return call


class _Deferred:
    """get_logger's logger before structlog is imported. A record below the set-up
    level (any record, before set-up) is dropped here, as structlog's filtering
    logger would drop it; anything else goes to the real logger."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def _real(self) -> Any:
        log = _structlog().get_logger()
        return log.bind(**self._context) if self._context else log

    def bind(self, **values: Any) -> _Deferred:
        return _Deferred({**self._context, **values})

    def log(self, level: int, event: Any = None, *args: Any, **kw: Any) -> None:
        if level >= _threshold:
            self._real().log(level, event, *args, **kw)

    debug = _at("debug", "debug")
    info = _at("info", "info")
    warning = _at("warning", "warning")
    error = _at("error", "error")
    exception = _at("error", "exception")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)    # the rest of structlog's API


def write_error(path: str | None, fmt: str, msg: str) -> None:
    """Append one error record to `path` without setting up structlog.

    For the CLI's last word on a failure, which may come before logging is set up
    (a bad config file, a bad flag). Same shape as the structlog output above.
    """
    f = _open(path or "")
    if f is None:
        return
    now = _dt.datetime.now(_dt.timezone.utc).isoformat().replace("+00:00", "Z")
    with f:
        if fmt == "json":
            f.write(json.dumps({"level": "error", "msg": msg, "time": now}) + "\n")
        else:
            f.write(f"time={now} level=error msg={json.dumps(msg)}\n")
