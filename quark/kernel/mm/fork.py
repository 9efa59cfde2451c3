"""fork(2) of an address space (AddressSpace.fork): how the child gets the
parent's frames. A small space is copied at once: under PVM each later
copy-on-write fault costs a guest exit (tens of µs) while copying a page costs a
few µs. A large one shares its frames copy-on-write, and the parent's writable
translations are downgraded and invalidated (PVM.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quark.core.guest.layout import PAGE
from quark.core.memory import OutOfMemory
from quark.kernel.abi.linux import ENOMEM, PROT_WRITE
from quark.kernel.errors import LinuxError
from quark.kernel.mm.address_space import COW, PROT_MASK, SHM, _LOW, _pte_flags

if TYPE_CHECKING:
    from quark.kernel.mm.address_space import AddressSpace


def share_all(mm: AddressSpace, child: AddressSpace) -> None:
    """Fork of a large space: every frame shared copy-on-write."""
    downgraded = []
    for page, e in mm.frames.items():
        if page in mm.special:
            _special_into(child, page, e)
        elif _share_into(mm, child, page, e):
            downgraded.append(e & ~_LOW)
    # The parent's writable translations must go (PVM.md): invalidate the
    # downgraded frames, in runs of contiguous frames (one madvise each).
    mm.alloc._runs(sorted(downgraded), mm.mem.invalidate)


def _special_into(child: AddressSpace, page: int, e: int) -> None:
    """A machine frame (vDSO, gate, mailbox): the child maps the same one."""
    child.frames[page] = e
    child.special.add(page)
    child.pt.map(page, e & ~_LOW, _pte_flags(e & PROT_MASK))


def _share_into(mm: AddressSpace, child: AddressSpace, page: int, e: int) -> bool:
    """Give the child this page's frame: shared memory stays shared and
    writable; any other page becomes copy-on-write in both. True when the
    parent's translation was writable and has been downgraded: the caller must
    invalidate the frame."""
    f = e & ~_LOW
    prot = e & PROT_MASK
    mm.alloc.share(f)
    if e & SHM:
        child.frames[page] = e
        if prot:
            child.pt.map(page, f, _pte_flags(prot))
        return False
    mm.frames[page] = child.frames[page] = e | COW
    if prot:
        child.pt.map(page, f, _pte_flags(prot & ~PROT_WRITE))
    if prot & PROT_WRITE and not e & COW:
        mm.pt.set_flags(page, _pte_flags(prot & ~PROT_WRITE))
        return True
    return False


def copy_small(mm: AddressSpace, child: AddressSpace) -> None:
    """Fork of a small space: writable private pages copied at once, the rest
    shared (read-only already, or shared memory)."""
    view = mm.view
    plain: list[tuple[int, int]] = []
    shared: list[tuple[int, int]] = []
    for page, e in mm.frames.items():
        if page in mm.special:
            _special_into(child, page, e)
        elif e & SHM:
            _share_into(mm, child, page, e)
        elif e & COW or not e & PROT_WRITE:
            # Copy-on-write from an earlier fork, or a page this mapping cannot
            # write (program text, rodata: most of a small process): shared on,
            # nothing to downgrade; a later mprotect to writable copies it.
            shared.append((page, e))
        else:
            plain.append((page, e))
    _share_many_into(mm, child, shared)
    try:
        new = mm.alloc.alloc_overwritten(len(plain))     # each is copied over whole
    except OutOfMemory:
        child.release()
        raise LinuxError(ENOMEM) from None
    # Copy, then map in runs of consecutive pages with the same rights (the
    # frames dict keeps insertion order, which is mostly address order).
    run_va = run_flags = 0
    run: list[int] = []
    for (page, e), f in zip(plain, new):
        old = e & ~_LOW
        view[f:f + PAGE] = view[old:old + PAGE]
        prot = e & PROT_MASK           # writable: the others were shared above
        child.frames[page] = f | prot
        flags = _pte_flags(prot)
        if run and (page != run_va + len(run) * PAGE or flags != run_flags):
            child.pt.map_run(run_va, run, run_flags)
            run = []
        if not run:
            run_va, run_flags = page, flags
        run.append(f)
    if run:
        child.pt.map_run(run_va, run, run_flags)


def _share_many_into(mm: AddressSpace, child: AddressSpace, pages: list[tuple[int, int]]) -> None:
    """_share_into for pages whose parent translation is read-only already: one
    allocator round, and the child's entries mapped in runs."""
    mm.alloc.share_many([e & ~_LOW for _, e in pages])
    mine, theirs, map_run = mm.frames, child.frames, child.pt.map_run
    flags_of: dict[int, int] = {}
    run_va = run_flags = next_va = 0
    run: list[int] = []
    for page, e in pages:       # a few hundred pages a fork: kept lean
        e |= COW
        mine[page] = theirs[page] = e
        prot = e & PROT_MASK
        if not prot:
            continue
        flags = flags_of.get(prot)
        if flags is None:
            flags = flags_of[prot] = _pte_flags(prot & ~PROT_WRITE)
        if page == next_va and flags == run_flags:
            run.append(e & ~_LOW)
        else:
            if run:
                map_run(run_va, run, run_flags)
            run, run_va, run_flags = [e & ~_LOW], page, flags
        next_va = page + PAGE
    if run:
        map_run(run_va, run, run_flags)
