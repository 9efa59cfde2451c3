"""The console socket: runc's convention (name as payload, one fd by SCM_RIGHTS)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from quark.oci.console import Pty, recv_console, send_console
from quark.oci.errors import OciError


def test_master_reaches_the_socket_and_talks_to_the_slave(tmp_path: Path) -> None:
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: dict[str, object] = {}

    def accept() -> None:
        conn, _ = srv.accept()
        with conn:
            got["name"], got["fd"] = recv_console(conn)

    th = threading.Thread(target=accept)
    th.start()
    pty = Pty(width=100, height=40)
    try:
        send_console(path, pty)
        th.join(5)
        assert got["name"] == pty.name and str(got["name"]).startswith("/dev/pts/")
        master = int(got["fd"])  # type: ignore[call-overload]
        os.write(pty.slave, b"hello\n")
        assert b"hello" in os.read(master, 100)
        import fcntl
        import struct
        import termios
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(master, termios.TIOCGWINSZ,
                                                       b"\0" * 8))[:2]
        assert (rows, cols) == (40, 100)
        os.close(master)
    finally:
        pty.close()
        srv.close()


def test_unreachable_socket_is_one_line(tmp_path: Path) -> None:
    pty = Pty()
    try:
        with pytest.raises(OciError, match="sending the console to .*nope"):
            send_console(str(tmp_path / "nope"), pty)
    finally:
        pty.close()
