"""A fake task with the signal state poll/epoll/signalfd use, and helpers to drive a
handler that blocks: resume it as woken, timed out, or interrupted by a signal."""

from __future__ import annotations

import struct
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from quark.kernel.errors import LinuxError
from quark.kernel.signals import UNCATCHABLE, Pending, SigHandlers
from quark.kernel.waiting import ERESTARTSYS
from tests.unit.kernel.fakes import FakeKernel, FakeTask


class FakeGroup:
    def __init__(self) -> None:
        self.shared_pending = Pending()
        self.sighand = SigHandlers()


class EventTask(FakeTask):
    def __init__(self, kernel: FakeKernel, pid: int = 1) -> None:
        super().__init__(kernel, pid)
        self.sigmask = 0
        self.saved_sigmask: int | None = None
        self.pending = Pending()
        self.tg = FakeGroup()

    def signal_pending(self) -> bool:
        blocked = self.sigmask & ~UNCATCHABLE
        return bool((self.pending.mask | self.tg.shared_pending.mask) & ~blocked)


def make_task(tmp_path: Path) -> EventTask:
    root = tmp_path / "rootfs"
    (root / "tmp").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "f").write_text("0123456789")
    k = FakeKernel(str(root))
    k.lock = threading.RLock()  # type: ignore[attr-defined]
    t = EventTask(k)
    k.tasks.append(t)
    return t


def interrupt(coro: Coroutine[Any, Any, int]) -> Any:
    """Resume a blocked handler as the driver does when a signal is pending."""
    try:
        return coro.throw(LinuxError(ERESTARTSYS))
    except StopIteration as e:
        return ("done", e.value)
    except LinuxError as e:
        return ("done", -e.errno)


def pipe(t: EventTask, call: Any) -> tuple[int, int]:
    a = t.mm.alloc(8)
    assert call(t, 293, a, 0) == 0
    r, w = struct.unpack("<ii", t.mm.read(a, 8))
    return r, w
