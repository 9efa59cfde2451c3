"""KVM's shadow MMU and page-table frames the kernel lets go of (PVM.md: the host's
writes to guest page tables are not seen by the shadows).

The drop (vm.Machine.drop_shadows) is checked on real /dev/kvm: a guest reads a page
whose PTE the host then points at another frame; the guest must see the new frame
after a drop. The allocator's side (FrameAllocator.retire_tables) needs no VM."""

from __future__ import annotations

import os
import struct

import pytest

from quark.core import kvm_ffi, memory
from quark.core.guest import layout as L
from quark.core.memory import FrameAllocator, OutOfMemory
from quark.core.memory_ffi import PhysMem
from quark.core.pagetable import NX, RW, US

# mov rdi, [0x600000]; mov eax, 39; syscall; jmp to the start
READER = bytes.fromhex("488b3c2500006000" "b827000000" "0f05" "ebf0")


@pytest.mark.kvm
def test_a_drop_makes_the_guest_see_a_changed_mapping() -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    from quark.core.vm import Machine
    m = Machine(64 << 20)
    try:
        pt = m.new_page_table()
        v = m.get_vcpu()
        v.attach(pt)
        code, old, new = m.alloc.alloc(), m.alloc.alloc(), m.alloc.alloc()
        m.mem.map[code:code + len(READER)] = READER
        struct.pack_into("<Q", m.mem.map, old, 0xAAAA)
        struct.pack_into("<Q", m.mem.map, new, 0xBBBB)
        pt.map(0x400000, code, US)
        pt.map(0x600000, old, US | RW | NX)

        def read() -> int:
            """Run the reader from its start; the value it read, at its syscall."""
            regs = kvm_ffi.Regs()
            regs.rip, regs.rsp, regs.rflags = 0x400000, 0x7FF000, 0x202
            v.enter_user(pt.root, 0, regs)
            for _ in range(20):
                kvm_ffi.run(v.fd)
                if v.run.exit_reason() == kvm_ffi.KVM_EXIT_IO and v.run.io_port() == L.PORT_SYSCALL:
                    return int(v.get_regs().rdi)
            raise AssertionError("the reader never made its call")

        assert read() == 0xAAAA
        pt.map(0x600000, new, US | RW | NX)     # a present PTE changed, nothing told
        stale = read()                           # 0xAAAA under PVM's shadow MMU
        m.drop_shadows()
        assert read() == 0xBBBB, f"after the drop (before it: {stale:#x})"
        assert m.drops == 1
    finally:
        m.close()


@pytest.mark.kvm
def test_a_host_without_a_spare_slot_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    from quark.core import vm
    real = kvm_ffi.set_memory_region

    def refuse_slot_1(vm_fd: int, slot: int, *rest: int) -> None:
        if slot == 1:
            raise kvm_ffi.KvmError(22, "refused")
        real(vm_fd, slot, *rest)

    monkeypatch.setattr(vm.kvm_ffi, "set_memory_region", refuse_slot_1)
    m = vm.Machine(64 << 20)
    try:
        assert m.alloc.drop_shadows is None
        m.drop_shadows()                        # nothing to delete: no error
        pt = m.new_page_table()
        tables = list(pt._tables)
        pt.release()
        assert set(tables) <= set(m.alloc._free)  # reused at once, as before
    finally:
        m.close()


def _allocator(drops: list[int], frames: int = 64) -> FrameAllocator:
    a = FrameAllocator(PhysMem(frames * L.PAGE), start=0)
    a.drop_shadows = lambda: drops.append(len(a._free))
    return a


def test_retired_tables_stay_out_of_use_until_one_drop() -> None:
    drops: list[int] = []
    a = _allocator(drops)
    a.retire_batch = 4
    tables = [a.alloc() for _ in range(3)]
    a.mem.map[tables[0]:tables[0] + 8] = b"\xff" * 8
    a.retire_tables(tables)
    assert a.in_use == 0 and not drops
    assert not set(a.alloc_many(8)) & set(tables)      # not handed out again yet
    a.retire_tables([a.alloc()])                          # the fourth: the batch is full
    assert len(drops) == 1
    got = [a.alloc() for _ in range(4)]
    assert set(tables) <= set(got)                        # free after the drop, zeroed
    assert a.mem.map[tables[0]:tables[0] + 8] == bytes(8)


def test_the_batch_is_a_share_of_guest_memory() -> None:
    assert FrameAllocator(PhysMem(1 << 30)).retire_batch == (1 << 30) // L.PAGE // memory.RETIRE_SHARE
    assert FrameAllocator(PhysMem(8 << 20)).retire_batch == memory.RETIRE_MIN


def test_running_out_of_frames_drops_the_shadows_first() -> None:
    drops: list[int] = []
    a = _allocator(drops, frames=8)
    a.retire_tables(a.alloc_many(2))
    a.alloc_many(6)
    with pytest.raises(OutOfMemory):
        a._alloc()
    a.alloc()                                             # from the retired two
    assert len(drops) == 1
    a.alloc()
    with pytest.raises(OutOfMemory):                      # nothing left anywhere
        a.alloc()
    assert len(drops) == 1


def test_frames_of_a_dead_space_are_kept_and_zeroed_when_reused() -> None:
    drops: list[int] = []
    a = _allocator(drops)
    mine = [a.alloc() for _ in range(3)]
    shared = a.alloc()
    a.share(shared)                                       # a fork's other holder
    for f in mine:
        a.mem.map[f:f + L.PAGE] = b"\xaa" * L.PAGE
    discards: list[tuple[int, int]] = []
    real = a.mem.discard
    a.mem.discard = lambda pa, n: (discards.append((pa, n)), real(pa, n))  # type: ignore[method-assign]
    a.free_dead(mine + [shared])
    assert a.holders(shared) == 1 and a.in_use == 1       # shared: one holder fewer
    assert a.warm == 3 and not discards                   # kept: no madvise
    got = [a.alloc(), *a.alloc_many(2)]
    assert sorted(got) == sorted(mine) and a.warm == 0
    assert all(a.mem.map[f:f + L.PAGE] == bytes(L.PAGE) for f in got)    # zeroed
    assert a.in_use == 4 and not discards


def test_overwritten_frames_come_kept_and_unzeroed() -> None:
    a = _allocator([])
    f = a.alloc()
    a.mem.map[f:f + 8] = b"\xaa" * 8
    a.free_dead([f])
    got = a.alloc_overwritten(2)
    assert got[0] == f and a.mem.map[f:f + 8] == b"\xaa" * 8    # its caller copies over it
    assert a.in_use == 2


def test_kept_frames_are_bounded_and_discarded_when_quiet(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "WARM_MAX", 4)
    a = _allocator([])
    frames = a.alloc_many(6)
    for f in frames:
        a.mem.map[f:f + 8] = b"\xaa" * 8
    a.free_dead(frames)
    assert a.warm == 4 and a.in_use == 0                  # the oldest two: discarded
    assert all(a.mem.map[f:f + 8] == bytes(8) for f in frames[:2])
    assert a.clean_warm() and a.warm == 0 and not a.clean_warm()
    assert all(a.mem.map[f:f + 8] == bytes(8) for f in frames)
    assert sorted(a.alloc_many(6)) == sorted(frames)


def test_the_poller_sleeps_until_kept_frames_are_due(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from quark.kernel import taskrun
    a = _allocator([])
    k = SimpleNamespace(write_behind=SimpleNamespace(file=None), machine=SimpleNamespace(alloc=a))
    assert taskrun.qcall_idle(k) is None                  # nothing kept: sleep on
    a.free_dead([a.alloc()])
    wait = taskrun.qcall_idle(k)
    assert wait is not None and 0 < wait <= memory.WARM_QUIET and a.warm == 1
    a._warm_since -= memory.WARM_QUIET
    assert taskrun.qcall_idle(k) is None and a.warm == 0


def test_running_out_uses_kept_frames_first() -> None:
    a = _allocator([], frames=4)
    frames = a.alloc_many(4)
    a.free_dead(frames[:2])
    assert sorted(a.alloc_many(2)) == sorted(frames[:2])
    with pytest.raises(OutOfMemory):
        a.alloc_many(1)
    assert a.in_use == 4


def test_without_drops_a_dead_space_frees_as_before() -> None:
    a = FrameAllocator(PhysMem(64 * L.PAGE), start=0)
    f = a.alloc()
    a.mem.map[f:f + 8] = b"\xaa" * 8
    a.free_dead([f])
    assert a.alloc() == f and a.mem.map[f:f + 8] == bytes(8)
