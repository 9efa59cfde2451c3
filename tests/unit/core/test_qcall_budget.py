"""The QCall gate's adaptive spin budget (quark.core.vcpu.Vcpu.qc_spin_*)."""

from __future__ import annotations

from types import SimpleNamespace

from quark.core.guest import layout as L
from quark.core.vcpu import Vcpu


def _vcpu(spin_max: int) -> SimpleNamespace:
    return SimpleNamespace(spin=spin_max, spin_max=spin_max, _mb32=[0] * 1024,
                           SPIN_MIN=Vcpu.SPIN_MIN, SPIN_STEP=Vcpu.SPIN_STEP)


def test_budget_halves_to_a_floor_a_serve_fits_in_and_grows_back() -> None:
    v = _vcpu(8000)
    for _ in range(40):                         # a loaded host: nothing answered in time
        Vcpu.qc_spin_timed_out(v)  # type: ignore[arg-type]
    # ~25 ns a pause here; a serve takes 3-5 µs: the floor must leave room for one,
    # or no call is ever answered in time again and the budget never recovers.
    assert v.spin == Vcpu.SPIN_MIN >= 400
    assert v._mb32[L.MB_SPIN // 4] == v.spin
    Vcpu.qc_spin_served(v)  # type: ignore[arg-type]
    assert v.spin == Vcpu.SPIN_MIN + Vcpu.SPIN_STEP
    for _ in range(100):
        Vcpu.qc_spin_served(v)  # type: ignore[arg-type]
    assert v.spin == 8000 == v._mb32[L.MB_SPIN // 4]


def test_a_budget_configured_below_the_floor_stays() -> None:
    v = _vcpu(100)
    Vcpu.qc_spin_timed_out(v)  # type: ignore[arg-type]
    assert v.spin == 100
