"""Keeps the vDSO's time page current.

Some facts this rests on:
- ``rdtsc`` runs natively in guest user mode here, and every vCPU of a VM shares one
  TSC (KVM synchronises vCPUs created later; measured). The host learns the guest TSC
  at a moment from the IA32_TSC MSR of a vCPU that never runs (an MSR read blocks
  while the vCPU is inside KVM_RUN), bracketed by host clock reads.
- The guest computes ``clock = base + (tsc - tsc_base) * mult >> shift``. The host
  re-bases every second against its own clocks; a re-base never moves the monotonic
  clocks backwards (it keeps the larger of the extrapolated and the true value).
- Writers bump the sequence count to odd, write, bump it to even; the vDSO retries
  a read that saw an odd or changed count.
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

MSR_IA32_TSC = 0x10
SHIFT = 32
REFRESH_SECONDS = 1.0

# struct vvar in quark/core/guest/vdso.c
_VVAR = struct.Struct("<IIQqqqQII")


class Timekeeper:
    def __init__(self, machine: Any, vvar_frame: int) -> None:
        self.machine = machine
        self.buf = machine.mem.map
        self.pa = vvar_frame
        # One aligned store per sequence update (struct.pack_into would zero-fill
        # first, and a reader could take that transient 0 for a stable count).
        self._seq = machine.mem.view[vvar_frame:vvar_frame + 4].cast("I")
        self.seq = 0
        self.khz = machine.tsc_khz()
        self.mult = (1_000_000 << SHIFT) // self.khz
        self._vcpu = machine.get_vcpu()     # never runs: only its TSC MSR is read
        self._last: tuple[int, int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.update()

    def _sample(self) -> tuple[int, int, int, int]:
        """(tsc, monotonic ns, realtime ns, boottime ns) at one moment."""
        m0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        tsc = self._vcpu.read_msr(MSR_IA32_TSC)
        m1 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        real = time.clock_gettime_ns(time.CLOCK_REALTIME) - (m1 - m0) // 2
        boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - (m1 - m0) // 2
        return tsc, (m0 + m1) // 2, real, boot

    def update(self) -> None:
        tsc, mono, real, boot = self._sample()
        if self._last is not None:
            ltsc, lmono, _lreal, lboot = self._last
            ahead = ((tsc - ltsc) * self.mult) >> SHIFT
            mono = max(mono, lmono + ahead)
            boot = max(boot, lboot + ahead)
        self._last = (tsc, mono, real, boot)
        seq = self.seq + 1
        self._seq[0] = seq                                      # odd: writing
        self.buf[self.pa + 4:self.pa + _VVAR.size] = _VVAR.pack(
            0, 1, tsc, mono, real, boot, self.mult, SHIFT, 0)[4:]
        self.seq = seq + 1
        self._seq[0] = self.seq                                 # even: consistent

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="timekeeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(REFRESH_SECONDS):
            self.update()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._seq.release()
