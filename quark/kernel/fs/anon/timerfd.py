"""timerfd (fs/timerfd.c).

Facts followed:
- A timer runs on CLOCK_REALTIME, MONOTONIC or BOOTTIME (the *_ALARM variants need
  CAP_WAKE_ALARM and then behave like their base clock here: nothing suspends).
- read needs 8 bytes and returns the number of expirations since the last read (or
  settime), blocking while there are none. A periodic timer's overruns count too.
- settime resets that count; a zero it_value disarms. gettime (and settime's old
  value) report the time to the next expiry and the interval; an expired one-shot
  timer reports zero.
- Expirations are computed lazily from the clock; a host ``threading.Timer`` wakes
  the file's waiters at the deadline, taking the kernel lock like any waker. As in
  Linux, an expired periodic timer is re-armed when it is read (or polled through
  gettime/settime), not on its own.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

from quark.kernel.abi.linux import (
    CLOCK_BOOTTIME,
    CLOCK_BOOTTIME_ALARM,
    CLOCK_MONOTONIC,
    CLOCK_REALTIME,
    CLOCK_REALTIME_ALARM,
    EAGAIN,
    EINVAL,
    O_NONBLOCK,
    O_RDWR,
    POLLIN,
    POLLRDNORM,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.anon.anon import AnonFile
from quark.kernel.vfs.file import copy_out, total_len

TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
HOST_CLOCK = {
    CLOCK_REALTIME: CLOCK_REALTIME,
    CLOCK_MONOTONIC: CLOCK_MONOTONIC,
    CLOCK_BOOTTIME: CLOCK_BOOTTIME,
    CLOCK_REALTIME_ALARM: CLOCK_REALTIME,
    CLOCK_BOOTTIME_ALARM: CLOCK_BOOTTIME,
}
ALARM_CLOCKS = (CLOCK_REALTIME_ALARM, CLOCK_BOOTTIME_ALARM)


class TimerFd(AnonFile):
    def __init__(self, lock: Any, clock: int, flags: int) -> None:
        super().__init__(O_RDWR | (flags & O_NONBLOCK), "[timerfd]")
        self.lock = lock                  # the kernel lock, taken by the host timer
        self.clock = clock
        self._host_clock = HOST_CLOCK[clock]
        self.deadline: int | None = None  # ns on the clock; None: disarmed
        self.interval = 0
        self.ticks = 0
        self._timer: threading.Timer | None = None
        self._timer_for: int | None = None

    def now(self) -> int:
        return time.clock_gettime_ns(self._host_clock)

    def _fold(self, now: int) -> None:
        """Count the expirations up to ``now`` into ``ticks``."""
        d = self.deadline
        if d is None or now < d:
            return
        if self.interval:
            n = 1 + (now - d) // self.interval
            self.deadline = d + n * self.interval
        else:
            n = 1
            self.deadline = None
        self.ticks += n

    def _arm(self, now: int) -> None:
        """Have a host timer notify waiters at the deadline (one timer per deadline)."""
        if self.deadline is None or self._timer_for == self.deadline or self.released:
            return
        self._cancel()
        delay = max(self.deadline - now, 0) / 1e9
        self._timer_for = self.deadline
        self._timer = threading.Timer(delay, self._fire, (self.deadline,))
        self._timer.daemon = True
        self._timer.start()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_for = None

    def _fire(self, deadline: int) -> None:
        with self.lock:
            if self._timer_for != deadline or self.released:
                return
            self._timer = None
            self._timer_for = None
            now = self.now()
            if self.deadline is not None and now < self.deadline:
                self._arm(now)          # the host timer ran early on this clock
                return
            self._fold(now)
            self.wait_queue.notify(POLLIN | POLLRDNORM)

    # ---- timerfd_settime / timerfd_gettime
    def get(self) -> tuple[int, int]:
        """(ns to the next expiry, interval ns)."""
        now = self.now()
        self._fold(now)
        self._arm(now)
        left = 0 if self.deadline is None else max(self.deadline - now, 0)
        return left, self.interval

    def set(self, flags: int, value: int, interval: int) -> tuple[int, int]:
        old = self.get()
        now = self.now()
        self._cancel()
        self.ticks = 0
        self.interval = interval
        if value == 0:
            self.deadline = None
        else:
            self.deadline = value if flags & TFD_TIMER_ABSTIME else now + value
            self._arm(now)
        return old

    # ---- file operations
    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if total_len(bufs) < 8:
            raise LinuxError(EINVAL)
        while True:
            now = self.now()
            self._fold(now)
            if self.ticks:
                break
            if self.nonblocking:
                raise LinuxError(EAGAIN)
            self._arm(now)
            await t.block((self.wait_queue,))
        n, self.ticks = self.ticks, 0
        self._arm(self.now())
        return copy_out(struct.pack("<Q", n), bufs)

    def poll_events(self) -> int:
        self._fold(self.now())
        return POLLIN | POLLRDNORM if self.ticks else 0

    def release(self) -> None:
        self._cancel()
