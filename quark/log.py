"""Quark's own log: a file (never stdout/stderr, which belong to the container).

Two formats, the ones runc writes for containerd and podman to read:
- json: one object a line, `{"level": "info", "msg": "...", "time": "<RFC 3339>", ...}`
- text: logfmt, `time=... level=info msg="..." key=value`

`setup_logging()` chooses the file, format and level; before it (or if the file
cannot be opened) log calls go nowhere. `get_logger()` gives structlog-style bound
loggers (`log.bind(id=...).info("msg", key=value)`), and the stdlib `logging`
records of `quark.*` are routed to the same file.

The records are the ones structlog 23-26 wrote with the processors this module
used to configure (merge_contextvars, add_log_level, TimeStamper(iso, utc, "time"),
format_exc_info, EventRenamer("msg"), then JSONRenderer(default=str) or
LogfmtRenderer(key_order=[time, level, msg], drop_missing=True)), byte for byte:
rendering them here saves importing and configuring structlog, ~15-25 ms of every
`quark` command that logs, i.e. of every container start.
"""

from __future__ import annotations

import logging

import datetime as _dt
import json
import os
import sys
import threading
import time
import traceback
from typing import Any, TextIO

from .config import LogConfig

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
_file: TextIO | None = None
# Where records go: (file, format, minimum level), or None to drop them all.
_sink: tuple[TextIO, str, int] | None = None
_write_lock = threading.Lock()
_phases: list[tuple[str, float]] = [("main", time.monotonic())]


def phase(name: str) -> None:
    """Mark the end of start-up or teardown phase `name` (see `log_phases`).

    Issue 6 asks where every millisecond of `quark run` goes; the marks cost a
    list append, so they stay in."""
    _phases.append((name, time.monotonic()))


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


def _utc_now() -> str:
    return _dt.datetime.now(tz=_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _exc_text(exc_info: Any) -> str | None:
    """structlog's format_exc_info: a traceback from an exception, an exc_info
    tuple, or True (the exception being handled)."""
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif not (isinstance(exc_info, tuple) and len(exc_info) == 3):
        if not exc_info:
            return None
        exc_info = sys.exc_info()
        if exc_info[0] is None:
            return None
    text = "".join(traceback.format_exception(*exc_info))
    return text.removesuffix("\n")


def _logfmt_value(key: str, value: Any) -> str:
    if value is None:
        return f"{key}="
    if isinstance(value, bool):
        return key if value else f"{key}=false"
    text = str(value)
    quote = " " in text or "=" in text or '"' in text
    if quote and "\\" in text:
        text = text.replace("\\", "\\\\")
    text = text.replace('"', '\\"').replace("\n", "\\n")
    return f'{key}="{text}"' if quote else f"{key}={text}"


def _render(fmt: str, method: str, event: Any, fields: dict[str, Any]) -> str:
    rec = dict(fields)
    exc = rec.pop("exc_info", None)
    rec["level"] = method
    rec["time"] = _utc_now()
    if exc is not None:
        text = _exc_text(exc)
        if text:
            rec["exception"] = text
    rec["msg"] = event
    if fmt == "json":
        return json.dumps(rec, default=str)
    head = [(k, rec.pop(k)) for k in ("time", "level", "msg") if k in rec]
    parts = []
    for key, value in [*head, *rec.items()]:
        if any(c <= " " for c in key):
            raise ValueError(f'Invalid key: "{key}"')
        parts.append(_logfmt_value(key, value))
    return " ".join(parts)


def _emit(level: int, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    sink = _sink
    if sink is None or level < sink[2]:
        return
    f, fmt, _min = sink
    line = _render(fmt, _NAMES[level], event % args if args else event, fields)
    with _write_lock:
        f.write(line + "\n")
        f.flush()


class BoundLogger:
    """structlog's filtering bound logger, as quark uses it: ``bind`` adds context,
    each level method writes one record (if the level passes)."""

    __slots__ = ("_context",)

    def __init__(self, context: dict[str, Any]) -> None:
        self._context = context

    def bind(self, **values: Any) -> BoundLogger:
        return BoundLogger({**self._context, **values})

    def log(self, level: int, event: Any, *args: Any, **kw: Any) -> None:
        _emit(level, event, args, {**self._context, **kw})

    def debug(self, event: Any, *args: Any, **kw: Any) -> None:
        _emit(10, event, args, {**self._context, **kw})

    def info(self, event: Any, *args: Any, **kw: Any) -> None:
        _emit(20, event, args, {**self._context, **kw})

    def warning(self, event: Any, *args: Any, **kw: Any) -> None:
        _emit(30, event, args, {**self._context, **kw})

    warn = warning

    def error(self, event: Any, *args: Any, **kw: Any) -> None:
        _emit(40, event, args, {**self._context, **kw})

    def exception(self, event: Any, *args: Any, **kw: Any) -> None:
        kw.setdefault("exc_info", True)
        _emit(40, event, args, {**self._context, **kw})

    def critical(self, event: Any, *args: Any, **kw: Any) -> None:
        _emit(50, event, args, {**self._context, **kw})


class _ToFile(logging.Handler):
    """Routes the kernel's and core's stdlib ``logging`` records (``quark.*``) into
    the log file, so nothing of ours reaches the container's stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        kw: dict[str, Any] = {"logger": record.name}
        if record.exc_info:
            kw["exc_info"] = record.exc_info
        try:
            _emit(record.levelno, record.getMessage(), (), kw)
        except Exception:  # noqa: BLE001 - logging must never break the sandbox
            pass


def _bridge_stdlib(level: str, enabled: bool) -> None:
    root = logging.getLogger("quark")
    root.propagate = False
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(_ToFile() if enabled else logging.NullHandler())
    root.setLevel(_LEVELS.get(level, logging.INFO))


def setup_logging(cfg: LogConfig) -> bool:
    """Send records to `cfg.path` in `cfg.format` at `cfg.level` and above.

    Returns False (and logs nothing) when the file cannot be opened.
    """
    global _file, _sink
    f = _open(cfg.path)
    if f is None:
        _sink = None
        _bridge_stdlib(cfg.level, False)
        return False
    if _file is not None and _file is not f:
        _file.close()
    _file = f
    _sink = (f, cfg.format, _LEVELS[cfg.level])
    _bridge_stdlib(cfg.level, True)
    return True


def flush() -> None:
    """Flush the log file (before an ``os._exit``)."""
    if _file is not None:
        try:
            _file.flush()
        except (OSError, ValueError):
            pass


def get_logger(name: str | None = None, **context: Any) -> BoundLogger:
    """A logger bound to `context` and `logger=name`."""
    if name:
        context["logger"] = name
    return BoundLogger(context)


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
