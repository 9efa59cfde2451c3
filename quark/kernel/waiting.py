"""Blocking inside the kernel: wait queues and the awaitable a handler suspends on.

Some facts this rests on:
- Each task runs its system calls on its own vCPU thread holding the kernel lock.
  A handler that must wait does ``await t.block(...)``; the coroutine yields a
  :class:`Block` to whoever drives it (the vCPU thread), which releases the kernel
  lock, sleeps in ``poll`` on the task's wake eventfd (plus any host fds), retakes the
  lock and resumes the handler. Handlers re-check their condition in a loop, exactly
  like Linux's ``wait_event`` pattern, so spurious wake-ups are harmless.
- No wake-up is lost: a waker changes state under the kernel lock and then writes the
  eventfd; if that happens between the lock release and ``poll``, the eventfd is
  already readable.
- A pending, unblocked signal ends the wait with ``ERESTARTSYS``; the dispatcher
  turns that into EINTR or a restart according to SA_RESTART.
"""

from __future__ import annotations

from typing import Any, Generator

# Kernel-internal restart codes (include/linux/errno.h); never reach user space.
ERESTARTSYS = 512
ERESTARTNOINTR = 513
ERESTARTNOHAND = 514
ERESTART_RESTARTBLOCK = 516


class WaitQueue:
    """Tasks sleeping until some state changes. Call :meth:`notify` with the kernel
    lock held after changing that state."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: set[Any] = set()  # Waker objects of sleeping tasks

    def notify(self, events: int = 0) -> None:
        """Wake every waiter. ``events`` (POLL* bits; 0: unspecified) says what the
        change is about: waiters with a ``wake_on(events)`` method (epoll entries)
        filter on it, like Linux's keyed wake-ups."""
        for w in tuple(self.waiters):
            on = getattr(w, "wake_on", None)
            if on is not None:
                on(events)
            else:
                w.wake()


class Block:
    """The request a suspended handler yields to its driver.

    :param queues: wait queues whose :meth:`WaitQueue.notify` wakes the task.
    :param timeout: seconds, or None to wait without limit.
    :param host_fds: (fd, poll events) pairs whose readiness also wakes the task.
    :param interruptible: False for the rare waits signals must not end.
    The driver sends back True when woken (or an fd became ready), False on timeout,
    and raises ``LinuxError(ERESTARTSYS)`` into the handler when a signal is pending.
    """

    __slots__ = ("queues", "timeout", "host_fds", "interruptible")

    def __init__(self, queues: tuple[WaitQueue, ...], timeout: float | None,
                 host_fds: tuple[tuple[int, int], ...], interruptible: bool) -> None:
        self.queues = queues
        self.timeout = timeout
        self.host_fds = host_fds
        self.interruptible = interruptible

    def __await__(self) -> Generator["Block", bool, bool]:
        woken = yield self
        return woken
