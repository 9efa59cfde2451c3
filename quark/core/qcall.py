"""The QCall poller: serves system calls that guests post to their mailbox slots and
announce with a doorbell (an ioeventfd), without the vCPU leaving the guest.

Some facts this rests on (PVM.md): a doorbell `out` costs the guest 2-3 µs and no
return to user space; waking a Python thread blocked on an eventfd costs tens of µs;
a thread that keeps polling answers in a few µs but burns a CPU. So the poller is
adaptive: after any activity it keeps polling for ``window`` seconds (yielding the
CPU and the GIL between passes), then sleeps on the doorbell eventfd. An idle
sandbox therefore costs no CPU, and a syscall-heavy one gets the fast path.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("quark.core")


class Poller:
    def __init__(self, machine: Any, serve: Callable[[], bool], window: float = 200e-6,
                 idle: Callable[[], float | None] | None = None,
                 pending: Callable[[], bool] | None = None) -> None:
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        machine.add_doorbell(self.efd)
        self.serve = serve
        # Called before each sleep on the doorbell; returns the longest that sleep
        # may be (seconds) for work it will do when asked again, or None.
        self.idle = idle
        # Asked after the barrier before a sleep: work a gate left without ringing
        # (it rings only when ``idle`` asked it to; see gate_fast's fast_committed).
        self.pending = pending
        self.machine = machine
        self.window = window
        self.thread = threading.Thread(target=self._run, name="qcall-poller", daemon=True)
        self._stopping = False
        self.wakeups = 0

    def start(self) -> None:
        self.thread.start()

    def poke(self) -> None:
        """Wake it as a doorbell would (it then polls for its window, then idles)."""
        os.eventfd_write(self.efd, 1)

    def stop(self) -> None:
        self._stopping = True
        os.eventfd_write(self.stop_fd, 1)
        self.thread.join(timeout=2.0)

    def _run(self) -> None:
        p = select.poll()
        p.register(self.efd, select.POLLIN)
        p.register(self.stop_fd, select.POLLIN)
        serve, window = self.serve, self.window
        monotonic, yield_cpu = time.monotonic, os.sched_yield
        polling = self._set_polling
        last = monotonic()
        polling(True)
        try:
            while not self._stopping:
                if serve():
                    last = monotonic()
                    continue
                if monotonic() - last < window:
                    yield_cpu()          # lets vCPU threads have the GIL and the CPU
                    continue
                timeout = self.idle() if self.idle is not None else None
                # About to sleep: gates must ring again. The eventfd read below is a
                # locked instruction in the host kernel, so the cleared flags are
                # visible before the last pass reads the slots (see gate_qcall).
                polling(False)
                try:
                    os.eventfd_read(self.efd)
                except BlockingIOError:
                    pass
                if serve() or (self.pending is not None and self.pending()):
                    # a call posted before the flags went down, or ring data
                    # written before the gate could see the request to ring
                    polling(True)
                    last = monotonic()
                    continue
                p.poll(None if timeout is None else timeout * 1000.0)
                polling(True)
                self.wakeups += 1
                last = monotonic()
        except Exception:   # the exit path still serves every call
            log.exception("QCall poller stopped; calls fall back to the exit path")
        finally:
            polling(False)

    def _set_polling(self, on: bool) -> None:
        for v in list(self.machine.vcpus):
            try:
                v.qc_set_polling(on)
            except ValueError:
                pass            # a vCPU closed meanwhile: its mailbox view is gone
