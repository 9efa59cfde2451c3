"""AddressSpace on a real machine's guest memory (needs /dev/kvm)."""

from __future__ import annotations

import os

import pytest

from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError

pytestmark = pytest.mark.kvm


@pytest.fixture
def machine():
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")
    from quark.core.vm import Machine
    m = Machine(64 << 20)
    yield m
    m.close()


def _space(machine):
    from quark.kernel.mm.address_space import AddressSpace
    return AddressSpace(machine)


def test_freed_frames_wait_for_sleeping_calls(machine) -> None:
    mm = _space(machine)
    addr = mm.mmap(0, 4096, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    mm.write(addr, b"secret")
    frame = mm.frames[addr] & ~0xFFF
    mm.pin()                            # a call sleeps with a view of that page
    mm.munmap(addr, 4096)
    taken = [machine.alloc.alloc() for _ in range(64)]
    assert frame not in taken, "a frame in use by a sleeping call was reused"
    mm.unpin()
    assert machine.alloc.alloc() == frame   # back in the allocator, zeroed
    assert bytes(machine.mem.map[frame:frame + 6]) == bytes(6)


def test_bad_and_partial_accesses(machine) -> None:
    mm = _space(machine)
    addr = mm.mmap(0, 8192, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    mm.munmap(addr + 4096, 4096)
    with pytest.raises(LinuxError):
        mm.iovecs(addr + 4000, 200, True)
    views = mm.iovecs(addr + 4000, 200, True, partial=True)
    assert sum(len(v) for v in views) == 96
    with pytest.raises(LinuxError):
        mm.read(0, 1)
    mm.write(addr + 4090, b"abcdef")
    with pytest.raises(LinuxError):
        mm.read_cstr(addr + 4090, 4096)     # runs into the hole before any NUL
    for v in views:
        v.release()


def test_fork_copies_and_release_frees(machine) -> None:
    mm = _space(machine)
    addr = mm.mmap(0, 4096, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    mm.write(addr, b"parent")
    child = mm.fork()
    child.write(addr, b"child!")
    assert mm.read(addr, 6) == b"parent" and child.read(addr, 6) == b"child!"
    used = machine.alloc.in_use
    child.release()
    assert machine.alloc.in_use < used


def test_fork_copy_on_write(machine, monkeypatch) -> None:
    from quark.kernel.mm import address_space as AS
    monkeypatch.setattr(AS, "COW_MIN_PAGES", 1)
    mm = _space(machine)
    addr = mm.mmap(0, 8192, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    mm.write(addr, b"A" * 8192)
    child = mm.fork()
    shared = mm.frames[addr] & ~0xFFF
    assert child.frames[addr] & ~0xFFF == shared and machine.alloc.holders(shared) == 2
    child.write(addr, b"child")                  # the child gets its own copy
    assert child.frames[addr] & ~0xFFF != shared
    assert mm.read(addr, 5) == b"AAAAA" and child.read(addr, 5) == b"child"
    assert machine.alloc.holders(shared) == 1
    child.release()                               # the parent's page survives
    mm.write(addr + 4096, b"parent")
    assert mm.read(addr + 4096, 6) == b"parent"


@pytest.mark.parametrize("cow_min", [1, 1 << 20], ids=["cow-fork", "copy-fork"])
def test_shared_anonymous_memory(machine, monkeypatch, cow_min) -> None:
    from quark.kernel.mm import address_space as AS
    monkeypatch.setattr(AS, "COW_MIN_PAGES", cow_min)
    before = machine.alloc.in_use
    mm = _space(machine)
    addr = mm.mmap(0, 1 << 20, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED | L.MAP_ANONYMOUS)
    mm.write(addr, b"parent")
    child = mm.fork()
    child.write(addr, b"child!")                 # no copy: both see it
    child.write(addr + 0x80000, b"late")         # first touched after the fork
    assert mm.read(addr, 6) == b"child!" and mm.read(addr + 0x80000, 4) == b"late"
    assert mm.frames[addr] & ~0xFFF == child.frames[addr] & ~0xFFF
    mm.munmap(addr, 1 << 20)
    assert child.read(addr + 0x80000, 4) == b"late"   # the child's mapping holds it
    child.release()
    mm.release()
    assert machine.alloc.in_use == before and not machine.alloc.refs, "frames leaked"


def test_shared_object_outlives_a_sleeping_call(machine) -> None:
    """Frames of a shared object freed while a call sleeps are quarantined and then
    released exactly once, whichever holder goes first."""
    before = machine.alloc.in_use
    mm = _space(machine)
    addr = mm.mmap(0, 8192, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED | L.MAP_ANONYMOUS)
    mm.write(addr, b"x" * 8192)
    mm.pin()
    mm.munmap(addr, 8192)                       # the object dies, frames quarantined
    mm.unpin()
    mm.release()
    assert machine.alloc.in_use == before and not machine.alloc.refs


def test_shared_futex_keys(machine) -> None:
    from quark.kernel.futex import FutexTable
    mm = _space(machine)
    a = mm.mmap(0, 8192, L.PROT_READ | L.PROT_WRITE, L.MAP_SHARED | L.MAP_ANONYMOUS)
    p = mm.mmap(0, 4096, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    child = mm.fork()
    assert FutexTable.key(mm, a + 4100) == FutexTable.key(child, a + 4100)
    assert FutexTable.key(mm, p) != FutexTable.key(child, p)
    child.release()
    mm.release()


def test_a_fault_on_a_page_another_vcpu_just_mapped_is_retried(machine) -> None:
    """Two threads fault on one page; the second finds it present and must retry,
    not get SIGSEGV (a spurious fault, as Linux calls it)."""
    from quark.kernel.mm import address_space as AS
    mm = _space(machine)
    rw = mm.mmap(0, 1 << 20, L.PROT_READ | L.PROT_WRITE | L.PROT_EXEC,
                 L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    ro = mm.mmap(0, 1 << 20, L.PROT_READ, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    page = rw + 0x80000
    assert mm.handle_fault(page, 0x6) == 0          # the first thread populates it
    for err in (0x4, 0x6, 0x7, 0x14):               # read, write, present write, fetch
        assert mm.handle_fault(page + 8, err) == 0
    mm.pt.unmap(page)                               # a lost entry is put back
    assert mm.handle_fault(page, 0x4) == 0 and mm.pt.entry(page)
    mm.read(ro + 0x80000, 1)
    assert mm.handle_fault(ro + 0x80000, 0x7) == AS.SEGV_ACCERR   # still a violation
    assert mm.handle_fault(ro + 0x80000, 0x15) == AS.SEGV_ACCERR
    mm.release()
