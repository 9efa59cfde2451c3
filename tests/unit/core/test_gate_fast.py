"""The gate's fast path (supervisor_pvm.S, kernel/gateio.py): the offsets the host
relies on are where the assembler put the code, and a vCPU stopped anywhere in it
is shown to a signal as Linux would show the call: not started, or complete."""

from __future__ import annotations

import os

import pytest

from quark.core import kvm_ffi
from quark.core.guest import layout as L
from quark.core.vm import Machine, load_stub

pytestmark = pytest.mark.kvm


def test_the_offsets_hold_what_the_host_expects() -> None:
    stub = load_stub()

    def at(off: int, n: int) -> bytes:
        return stub[off:off + n]

    assert at(L.STUB_GATE, 3) == bytes.fromhex("488905")            # mov [mb_nr], rax
    assert at(L.STUB_GATE_QCALL, 3) == bytes.fromhex("488905")
    # Both prologues end with the jump into the fast path at PROLOGUE - 5.
    for entry in (L.STUB_GATE, L.STUB_GATE_QCALL):
        assert at(entry + L.STUB_GATE_PROLOGUE - 5, 1) == b"\xe9"
    assert at(L.STUB_GATE_EXIT, 2) == bytes.fromhex("e680")         # out 0x80
    assert at(L.STUB_GATE_RESTART, 3) == bytes.fromhex("488b3d")    # mov rdi, [mb_a0]
    assert at(L.STUB_FAST, 2) == bytes.fromhex("8b0d")              # mov ecx, [mb_grants]
    # fast_done: two 6-byte instructions, load of mb_wnew then the committing store.
    assert at(L.STUB_FAST_COMMITTED - 12, 2) == bytes.fromhex("8b05")
    assert at(L.STUB_FAST_COMMITTED - 6, 2) == bytes.fromhex("8905")
    assert at(L.STUB_FAST_COMMITTED, 3) == bytes.fromhex("0faef0")  # mfence
    assert at(L.STUB_QCALL_SPIN, 2) == bytes.fromhex("f390")        # pause


def test_the_gate_sends_exactly_the_vcpu_calls_straight_to_the_exit_path() -> None:
    # fast_none compares the number with each of them (lea rcx, [rax - n]; jrcxz):
    # those the poller would only bounce (taskrun.NEEDS_VCPU) skip it.
    import re
    import struct

    from quark.kernel.taskrun import NEEDS_VCPU
    gate = load_stub()[L.STUB_FAST:L.STUB_FAST_COMMITTED]
    found = {-struct.unpack("<b", m.group(1))[0]
             for m in re.finditer(rb"\x48\x8d\x48(.)\xe3", gate, re.S)}
    found |= {-struct.unpack("<i", m.group(1))[0]
              for m in re.finditer(rb"\x48\x8d\x88(.{4})\xe3", gate, re.S)}
    assert found == set(NEEDS_VCPU)


@pytest.fixture
def vcpus():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    made = []

    def make(qcall: bool):
        m = Machine(16 << 20, qcall=qcall)
        made.append(m)
        return m.get_vcpu()
    yield make
    for m in made:
        m.close()


@pytest.mark.parametrize("qcall", [False, True])
def test_calls_the_fast_path_leaves_go_on_to_the_right_gate(vcpus, qcall: bool) -> None:
    v = vcpus(qcall)
    want = L.STUB_QCALL_POST if qcall else L.STUB_GATE_EXIT
    assert v._mb64[L.MB_SLOW // 8] == v.gate_kva + want - L.STUB_GATE


def _regs(v, off: int, **kw: int) -> kvm_ffi.Regs:
    r = kvm_ffi.Regs()
    r.rip = v.gate_kva + off - L.STUB_GATE
    for k, val in kw.items():
        setattr(r, k, val)
    return r


def _post(v, nr: int, a0: int, a1: int, a2: int, ret: int, r11: int, res: int) -> None:
    mb = v._mb64
    mb[L.MB_NR // 8], mb[L.MB_ARGS // 8], mb[L.MB_ARGS // 8 + 1] = nr, a0, a1
    mb[L.MB_ARGS // 8 + 2], mb[L.MB_RET // 8], mb[L.MB_R11 // 8] = a2, ret, r11
    mb[L.MB_RES // 8] = res


def test_a_signal_finds_the_call_not_started_or_complete(vcpus) -> None:
    v = vcpus(True)
    ret, flags = 0x401002, 0x246
    # In a prologue the registers are the user's: back to the syscall instruction.
    r = _regs(v, L.STUB_GATE_QCALL + 8, rax=0, rdi=3, rcx=ret, r11=flags)
    assert v.gate_rewind(r)
    assert (r.rip, r.rflags, r.rax, r.rdi) == (ret - 2, flags, 0, 3)
    # In the fast path before the commit: the mailbox has the call; it runs again.
    _post(v, nr=1, a0=4, a1=0x7000, a2=4096, ret=ret, r11=flags, res=4096)
    r = _regs(v, L.STUB_FAST + 0x100, rax=99, rdi=0x123, rsi=0x456, rdx=7, rcx=5, r11=0)
    assert v.gate_rewind(r)
    assert (r.rip, r.rax, r.rdi, r.rsi, r.rdx, r.rcx, r.r11, r.rflags) == \
        (ret - 2, 1, 4, 0x7000, 4096, ret, flags, flags)
    r = _regs(v, L.STUB_FAST_COMMITTED - 6)     # the committing store not yet done
    assert v.gate_rewind(r) and r.rip == ret - 2
    # From the commit on: complete, with its result.
    for off in (L.STUB_FAST_COMMITTED, L.STUB_FAST_END - 1):
        r = _regs(v, off)
        assert v.gate_rewind(r)
        assert (r.rip, r.rax, r.rcx, r.rflags) == (ret, 4096, ret, flags)
    # RFLAGS come from R11 or the mailbox, the guest's to write: never IOPL or NT.
    _post(v, nr=0, a0=4, a1=0x7000, a2=4096, ret=ret, r11=0x7246, res=0)
    for off in (L.STUB_FAST + 0x10, L.STUB_FAST_COMMITTED):
        r = _regs(v, off)
        assert v.gate_rewind(r) and r.rflags == 0x246
    r = _regs(v, L.STUB_GATE + 8, rcx=ret, r11=0x7046)
    assert v.gate_rewind(r) and r.rflags == 0x246
    # Past the prologue of the QCall gate, or at the exit path: not the fast path's.
    for off in (L.STUB_QCALL_POST, L.STUB_QCALL_SPIN, L.STUB_GATE_EXIT, L.STUB_GATE_RESTART):
        assert not v.gate_rewind(_regs(v, off))


def test_grants_and_the_ring_are_cleared_for_the_next_task(vcpus) -> None:
    v = vcpus(True)
    v.gate_grant(0, L.K_READ_ZERO)
    v.ring_arm(1, 0x10000, 1 << 18, head=100)
    assert v.grants and v.gate_kind(1) == L.K_WRITE_RING and v.ring_head() == 100
    v.gate_clear()
    assert not v.grants and v.gate_kind(0) == 0 and v.gate_kind(1) == 0
    assert v._mb32[L.MB_GRANTS // 4] == 0 and v.ring_head() == 0
    assert v._mb64[L.MB_WBASE // 8] == 0 and v._mb32[L.MB_WCAP // 4] == 0
    assert v.gate_kind(-1) == 0 and v.gate_kind(L.GATE_FDS) == 0
