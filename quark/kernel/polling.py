"""Readiness of open files, for poll/select/epoll (fs/select.c, fs/eventpoll.c).

Some facts this rests on:
- A file's readiness is ``File.poll_events()``; a few files answer for the task asking
  (a signalfd is readable when *that* task has a matching signal pending), so they
  offer ``poll_events_for(t)`` and ``wait_queue_for(t)`` instead.
- Whatever changes a file's readiness notifies its ``wait_queue`` under the kernel
  lock. Files whose readiness is a host fd's (stdio, host FIFOs) never notify: the
  waiter hands their host fds to ``t.block`` with the events it cares about (only
  those: a writable stdout polled for POLLIN must not wake the sleeper at once).
- Linux's ``file_can_poll``: only files with a ``poll`` operation can join an epoll
  set (EPERM otherwise); plain poll/select treat the others as always ready.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from quark.kernel.abi.linux import (
    EINVAL,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)
from quark.kernel.errors import LinuxError
from quark.kernel.signals import UNCATCHABLE
from quark.kernel.vfs.file import File
from quark.kernel.waiting import WaitQueue

# What a host fd is polled for when a guest waits for these POLL* bits.
_HOST_BITS = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM | POLLWRBAND


def events_of(f: File, t: Any) -> int:
    """The file's current POLL* mask as task ``t`` sees it."""
    fn = getattr(f, "poll_events_for", None)
    if fn is not None:
        return int(fn(t))
    return int(f.poll_events())


def queue_of(f: File, t: Any) -> WaitQueue:
    fn = getattr(f, "wait_queue_for", None)
    if fn is not None:
        q: WaitQueue = fn(t)
        return q
    return f.wait_queue


def can_poll(f: File) -> bool:
    """``file_can_poll``: the file has its own poll operation (pipes, ttys, eventfd,
    epoll ...); regular files, directories and /dev/null do not."""
    return type(f).poll_events is not File.poll_events and not f.seekable


def host_fds_of(f: File, events: int) -> list[tuple[int, int]]:
    """(host fd, poll events) pairs whose readiness may change ``f``'s."""
    fn = getattr(f, "poll_host_fds", None)
    if fn is not None:
        out: list[tuple[int, int]] = fn()
        return out
    fd = f.host_poll_fd()
    if fd is None:
        return []
    return [(fd, (events & _HOST_BITS) or POLLIN)]


class Sources:
    """What a poller sleeps on: wait queues and host fds, without duplicates."""

    def __init__(self) -> None:
        self.queues: dict[int, WaitQueue] = {}
        self.host_fds: dict[int, int] = {}

    def add(self, f: File, t: Any, events: int) -> None:
        q = queue_of(f, t)
        self.queues[id(q)] = q
        for fd, ev in host_fds_of(f, events | POLLERR | POLLHUP):
            self.host_fds[fd] = self.host_fds.get(fd, 0) | ev

    def add_all(self, items: Iterable[tuple[File, int]], t: Any) -> None:
        for f, ev in items:
            self.add(f, t, ev)

    async def sleep(self, t: Any, deadline_ns: int | None) -> bool:
        """Block until a source fires or ``deadline_ns`` (time.monotonic_ns) passes;
        False once the deadline has passed. Signals raise ERESTARTSYS."""
        timeout = None
        if deadline_ns is not None:
            left = deadline_ns - time.monotonic_ns()
            if left <= 0:
                return False
            timeout = min(left / 1e9, MAX_SLEEP)
        await t.block(tuple(self.queues.values()), timeout, tuple(self.host_fds.items()))
        return deadline_ns is None or time.monotonic_ns() < deadline_ns


# One host sleep at most this long (seconds): host poll(2) takes an int of
# milliseconds; callers loop until their own deadline.
MAX_SLEEP = 7 * 86400.0


def deadline_after(sec: int, nsec: int) -> int:
    """time.monotonic_ns() + a relative timeout, saturating like timespec64_add_safe."""
    return min(time.monotonic_ns() + sec * 1_000_000_000 + nsec, (1 << 63) - 1)


def remaining_ns(deadline_ns: int) -> int:
    return max(deadline_ns - time.monotonic_ns(), 0)


# ---- the temporary signal mask of ppoll, pselect6 and epoll_pwait -----------------

SIGSET_SIZE = 8


def set_user_sigmask(t: Any, addr: int, size: int) -> None:
    """Linux's set_user_sigmask: install the caller's mask for the wait, keeping the
    old one in ``t.saved_sigmask`` (EINVAL for a size other than 8, EFAULT)."""
    if not addr:
        return
    if size != SIGSET_SIZE:
        raise LinuxError(EINVAL)
    mask = t.mm.read_u64(addr)
    t.saved_sigmask = t.sigmask
    t.sigmask = mask & ~UNCATCHABLE


def restore_sigmask_unless(t: Any, interrupted: bool) -> None:
    """restore_saved_sigmask_unless: after an interrupted wait the saved mask stays for
    the signal delivery (the handler runs under the temporary one and returns to the
    saved one); otherwise it comes back now."""
    if interrupted or getattr(t, "saved_sigmask", None) is None:
        return
    t.sigmask, t.saved_sigmask = t.saved_sigmask, None
