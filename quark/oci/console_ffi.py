"""Terminal ioctls on host pty fds (STYLE.md: every ioctl lives in an *_ffi.py)."""

from __future__ import annotations

import fcntl
import struct
import termios


def set_winsize(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ; ``fd`` is a pty end the caller owns, the buffer a packed winsize."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def set_controlling_tty(fd: int) -> None:
    """TIOCSCTTY on ``fd``, a pty slave of the calling (new-session) process."""
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)
