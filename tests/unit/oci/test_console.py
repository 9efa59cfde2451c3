"""The console socket: runc's convention (name as payload, one fd by SCM_RIGHTS)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from quark.oci.console import Pty, send_console
from quark.oci.errors import OciError

if TYPE_CHECKING:
    from tests.unit.oci.conftest import ConsoleReceiver


def test_master_reaches_the_socket_and_talks_to_the_slave(
        console_receiver: ConsoleReceiver) -> None:
    pty = Pty(width=100, height=40)
    try:
        send_console(console_receiver.path, pty)
        name, master = console_receiver.received()
        assert name == pty.name and name.startswith("/dev/pts/")
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


def test_unreachable_socket_is_one_line(tmp_path: Path) -> None:
    pty = Pty()
    try:
        with pytest.raises(OciError, match="sending the console to .*nope"):
            send_console(str(tmp_path / "nope"), pty)
    finally:
        pty.close()
