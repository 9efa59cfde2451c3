"""Shared by the oci tests: the other end of a ``--console-socket``."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from quark.oci.console import recv_console


class ConsoleReceiver:
    """What a runc caller does with ``--console-socket PATH``: listen on PATH, accept
    one connection in a thread and keep what it sent (the pty's name, the master fd)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(path)
        self._srv.listen(1)
        self._got: dict[str, tuple[str, int]] = {}
        self._thread = threading.Thread(target=self._accept)
        self._thread.start()

    def _accept(self) -> None:
        conn, _ = self._srv.accept()
        with conn:
            self._got["console"] = recv_console(conn)

    def received(self, timeout: float = 5) -> tuple[str, int]:
        """(pty name, master fd) once the sender has been served; stops listening."""
        self._thread.join(timeout)
        self.close()
        return self._got["console"]

    def close(self) -> None:
        self._srv.close()


@pytest.fixture
def console_receiver(tmp_path: Path) -> Iterator[ConsoleReceiver]:
    """A ConsoleReceiver listening on ``tmp_path / "console.sock"``."""
    r = ConsoleReceiver(str(tmp_path / "console.sock"))
    yield r
    r.close()
