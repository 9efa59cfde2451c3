"""Terminals: the pty of a `terminal: true` process and runc's console-socket convention.

runc (libcontainer/utils.SendFile) hands the pty master to whoever listens on
`--console-socket`: one message on an AF_UNIX stream socket whose payload is the
terminal's name (e.g. "/dev/pts/3") and whose ancillary data (SCM_RIGHTS) holds the
one master fd. conmon and containerd's shim (containerd/console) read it that way.
The slave becomes the process's stdin/stdout/stderr and controlling terminal.
"""

from __future__ import annotations

import os
import socket

from . import console_ffi
from .errors import OciError


class Pty:
    """A pty pair; `name` is the slave's path."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        os.set_inheritable(self.master, False)
        if width and height:
            set_size(self.slave, width, height)

    def close_master(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def close(self) -> None:
        self.close_master()
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1


def set_size(fd: int, width: int, height: int) -> None:
    console_ffi.set_winsize(fd, width, height)


def send_console(socket_path: str, pty: Pty) -> None:
    """Send the master of `pty` to `socket_path` as runc does. Raises OciError."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(socket_path)
            socket.send_fds(s, [pty.name.encode()], [pty.master])
    except OSError as e:
        raise OciError(f"sending the console to {socket_path}: {e.strerror or e}") from e


def recv_console(conn: socket.socket) -> tuple[str, int]:
    """The receiving side (tests, and `quark run` has no use for it): (name, fd)."""
    msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    if not fds:
        raise OciError("console socket: no file descriptor received")
    return msg.decode(errors="replace"), fds[0]


def make_controlling(slave: int) -> None:
    """In a fresh process: new session, `slave` as controlling tty and as fds 0-2.
    The caller must not be a process-group leader (a fork child is not)."""
    os.setsid()
    console_ffi.set_controlling_tty(slave)
    for fd in (0, 1, 2):
        if slave != fd:
            os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
