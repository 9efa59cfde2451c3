"""The control socket: how `quark start/exec/kill/ps/pause/...` reach a sandbox process.

Protocol: an AF_UNIX stream socket at `<root>/<id>/control.sock`. The client sends
one request, a JSON object on one line, e.g. `{"op": "kill", "signal": 15}`;
file descriptors travel with it as SCM_RIGHTS ancillary data (exec's stdio). The
server answers with JSON lines: `{"ok": true, ...}` or `{"ok": false, "error": "one
line"}`. Most requests get one answer and the connection ends; `exec` answers when
the process has started (`{"ok": true, "pid": N}`, a container pid) and later, on the
same connection, `{"exit": WAIT_STATUS}` when it is gone.

Requests: start, exec, kill {signal, all, pid?}, ps, pause, resume, stats, state.

Socket paths: containerd and docker state roots plus a 64-character id come close
to the 108-byte limit of sun_path, so both sides address the socket through
/proc/self/fd/<dirfd>/control.sock, which is always short.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio     # the server's loop; the client side (start, kill: ~25 ms less) needs none

MAX_FDS = 8
MAX_LINE = 1 << 20


class ControlError(Exception):
    """The sandbox could not be reached or refused the request (one line)."""


def _short(path: Path) -> tuple[str, int]:
    """A short address for `path` and the O_PATH dir fd keeping it valid."""
    dfd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    return f"/proc/self/fd/{dfd}/{path.name}", dfd


# -- client ---------------------------------------------------------------------------

def connect(path: Path, timeout: float | None = 30) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    addr, dfd = _short(path)
    try:
        s.connect(addr)
    except OSError as e:
        s.close()
        raise ControlError(f"connecting to the sandbox: {e.strerror or e}") from e
    finally:
        os.close(dfd)
    return s


def send_request(s: socket.socket, req: dict[str, Any], fds: Sequence[int] = ()) -> None:
    data = (json.dumps(req) + "\n").encode()
    try:
        if fds:
            n = socket.send_fds(s, [data], list(fds))
        else:
            n = s.send(data)
        if n < len(data):
            s.sendall(data[n:])
    except OSError as e:
        raise ControlError(f"talking to the sandbox: {e.strerror or e}") from e


class Reader:
    """JSON lines from a client-side socket (blocking)."""

    def __init__(self, s: socket.socket) -> None:
        self.s = s
        self.buf = b""

    def next(self) -> dict[str, Any] | None:
        while b"\n" not in self.buf:
            try:
                chunk = self.s.recv(65536)
            except OSError as e:
                raise ControlError(f"reading from the sandbox: {e.strerror or e}") from e
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg


def request(path: Path, req: dict[str, Any], fds: Sequence[int] = (),
            timeout: float | None = 30) -> dict[str, Any]:
    """One request, one answer. Raises ControlError with the sandbox's message."""
    with connect(path, timeout) as s:
        send_request(s, req, fds)
        reply = Reader(s).next()
    if reply is None:
        raise ControlError("the sandbox closed the connection")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "request failed"))
    return reply


# -- server (runs on the sandbox's event loop) -----------------------------------------

class Conn:
    """One client connection on the server side."""

    def __init__(self, server: "ControlServer", s: socket.socket) -> None:
        self.server, self.s = server, s
        self.buf = b""
        self.fds: list[int] = []
        self.closed = False
        # Called once if the client hangs up first (exec: its holder died).
        self.on_hangup: Callable[[], None] | None = None

    def send(self, msg: dict[str, Any]) -> None:
        if self.closed:
            return
        with contextlib.suppress(OSError):
            self.s.setblocking(True)
            self.s.settimeout(2.0)
            self.s.sendall((json.dumps(msg) + "\n").encode())

    def reply_error(self, text: str) -> None:
        self.send({"ok": False, "error": text})
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.server.loop.remove_reader(self.s.fileno())
        self.s.close()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def readable(self) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.s, 65536, MAX_FDS)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        self.fds += fds
        if not data:
            hangup, self.on_hangup = self.on_hangup, None
            self.close()
            if hangup is not None:
                hangup()
            return
        if self.buf is None:
            return      # a request is being handled; later bytes are ignored
        self.buf += data
        if b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                self.reply_error("request too long")
            return
        line, self.buf = self.buf.split(b"\n", 1)
        self.buf = None  # type: ignore[assignment]  # one request per connection
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError as e:
            self.reply_error(f"bad request: {e}")
            return
        self.server.dispatch(self, req)


Handler = Callable[[Conn, dict[str, Any]], None]


class ControlServer:
    """Listens on `path`; each request goes to `handler(conn, request)`, which
    answers with conn.send / conn.reply_error and closes the connection when done
    (conn.fds holds the fds that came with the request; the handler owns them)."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        addr, dfd = _short(path)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.sock.bind(addr)
        finally:
            os.close(dfd)
        os.chmod(path, 0o600)
        self.sock.listen(16)
        self.sock.setblocking(False)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            s, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        s.setblocking(False)
        conn = Conn(self, s)
        self.loop.add_reader(s.fileno(), conn.readable)

    def dispatch(self, conn: Conn, req: dict[str, Any]) -> None:
        try:
            self.handler(conn, req)
        except Exception as e:  # noqa: BLE001 - a bad request must not end the sandbox
            conn.reply_error(" ".join(str(e).split()) or type(e).__name__)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
