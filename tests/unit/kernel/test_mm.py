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


class _File:
    """What a private file mapping needs of a VFS file (counting reads)."""
    readable, writable, mmap_ok = True, False, True

    def __init__(self, path) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.reads = 0

    def read_at(self, views, offset: int) -> int:
        self.reads += 1
        return os.preadv(self.fd, views, offset)

    def incref(self) -> None:
        pass

    def decref(self) -> None:
        pass

    def stat(self):
        from types import SimpleNamespace
        return SimpleNamespace(size=os.fstat(self.fd).st_size)


def test_small_read_only_file_mappings_fill_whole_and_fork_shares_them(machine,
                                                                        tmp_path) -> None:
    """A read-only file mapping up to WHOLE_LIMIT is read in at its first fault (one
    guest exit instead of one per 16 pages); a fork shares such pages instead of
    copying them, and a child that makes one writable gets its own copy."""
    from quark.kernel.mm import address_space as AS
    data = os.urandom(300 * 4096 + 100)
    (tmp_path / "prog").write_bytes(data)
    f = _File(tmp_path / "prog")
    mm = _space(machine)
    rx = L.PROT_READ | L.PROT_EXEC
    text = mm.mmap(0, 301 * 4096, rx, L.MAP_PRIVATE, f, 0)
    assert not mm.frames                                  # larger than EAGER_LIMIT
    assert mm.handle_fault(text + 150 * 4096 + 8, 0x14) == 0
    assert f.reads == 1 and len(mm.frames) == 301
    assert mm.read(text, len(data)) == data
    assert mm.read(text + len(data), 4096 * 301 - len(data)) == bytes(4096 * 301 - len(data))

    rw = mm.mmap(0, 301 * 4096, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE, f, 0)
    assert mm.handle_fault(rw, 0x6) == 0                  # writable: fault-around only
    assert len([p for p in mm.frames if rw <= p < rw + 301 * 4096]) == AS.FAULT_AROUND
    big = mm.mmap(0, AS.WHOLE_LIMIT + 4096, L.PROT_READ, L.MAP_PRIVATE, f, 0)
    assert mm.handle_fault(big, 0x4) == 0                 # over the limit: fault-around
    assert len([p for p in mm.frames if big <= p < big + AS.WHOLE_LIMIT]) == AS.FAULT_AROUND

    before = machine.alloc.in_use
    child = mm.fork()                                     # small: a copying fork
    shared = mm.frames[text] & ~0xFFF
    assert child.frames[text] & ~0xFFF == shared and machine.alloc.holders(shared) == 2
    assert child.frames[rw] & ~0xFFF != mm.frames[rw] & ~0xFFF    # writable: copied
    # Frames for the writable pages and the child's tables only, not the 300+ shared.
    assert machine.alloc.in_use - before < 2 * AS.FAULT_AROUND + 16
    child.mprotect(text, 4096, L.PROT_READ | L.PROT_WRITE)
    child.write(text, b"patched")
    assert child.read(text, 7) == b"patched" and mm.read(text, 7) == data[:7]
    assert machine.alloc.holders(shared) == 1
    child.release()
    assert mm.read(text + 4096, 4096) == data[4096:8192]
    mm.release()
    os.close(f.fd)


def test_one_and_two_page_views_match_the_general_walk(machine, monkeypatch) -> None:
    """iovecs answers accesses of up to two present pages without its loop; the
    views must be what the page walk gives, and anything it cannot allow (a
    read-only page for a store, a copy-on-write page, a hole) must still go the
    general way: EFAULT, a short view, a private copy."""
    mm = _space(machine)
    rw = L.PROT_READ | L.PROT_WRITE
    addr = mm.mmap(0, 3 * 4096, rw, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    data = os.urandom(3 * 4096)
    mm.write(addr, data)
    for off in (0, 1, 100, 4095, 4096, 4000):
        for n in (1, 96, 4096, 8192 - off % 4096):
            views = mm.iovecs(addr + off, n, False)
            assert b"".join(bytes(v) for v in views) == data[off:off + n], (off, n)
            for v in views:
                v.release()
    mm.mprotect(addr + 4096, 4096, L.PROT_READ)
    with pytest.raises(LinuxError):
        mm.iovecs(addr + 4000, 200, True)               # a store into a read-only page
    views = mm.iovecs(addr + 4000, 200, True, partial=True)
    assert [len(v) for v in views] == [96]
    for v in views:
        v.release()
    from quark.kernel.mm import address_space as AS
    monkeypatch.setattr(AS, "COW_MIN_PAGES", 1)
    child = mm.fork()
    shared_frame = mm.frames[addr] & ~0xFFF
    assert child.frames[addr] & ~0xFFF == shared_frame
    views = mm.iovecs(addr + 10, 20, True)              # copy-on-write: broken first
    views[0][:] = b"x" * 20
    for v in views:
        v.release()
    assert mm.frames[addr] & ~0xFFF != shared_frame
    assert child.read(addr + 10, 20) == data[10:30]
    assert mm.read(addr + 10, 20) == b"x" * 20


class _CachedFile(_File):
    """A rootfs file as the text cache sees it (HostFile.cache_key)."""

    def cache_key(self):
        from quark.kernel.mm import textcache
        return textcache.file_key(os.fstat(self.fd))


def _with_cache(machine, limit: int = 1 << 20):
    from quark.kernel.mm.textcache import TextCache
    machine.text_cache = TextCache(machine.alloc, limit)
    return machine.text_cache


def test_text_pages_are_shared_between_spaces_and_copied_on_store(machine, tmp_path) -> None:
    """The text cache (mm/textcache.py): a second space mapping the same file pages
    read-only gets the same frames without reading the file; a store after mprotect
    copies the page, so neither the other space nor the cache sees it."""
    cache = _with_cache(machine)
    data = os.urandom(40 * 4096)
    (tmp_path / "prog").write_bytes(data)
    f = _CachedFile(tmp_path / "prog")
    rx = L.PROT_READ | L.PROT_EXEC
    a, b = _space(machine), _space(machine)
    ta = a.mmap(0, 40 * 4096, rx, L.MAP_PRIVATE, f, 0)
    assert a.handle_fault(ta, 0x14) == 0 and f.reads == 1
    tb = b.mmap(0, 40 * 4096, rx, L.MAP_PRIVATE, f, 0)
    assert b.handle_fault(tb + 5 * 4096, 0x14) == 0
    assert f.reads == 1, "the second space read the file again"
    assert b.frames[tb] & ~0xFFF == a.frames[ta] & ~0xFFF
    assert b.read(tb, len(data)) == data
    frame = a.frames[ta] & ~0xFFF
    assert machine.alloc.holders(frame) == 3              # a, b and the cache
    b.mprotect(tb, 4096, L.PROT_READ | L.PROT_WRITE)
    assert b.handle_fault(tb, 0x7) == 0                   # a store: b's own copy
    b.write(tb, b"patched")
    assert b.read(tb, 7) == b"patched"
    assert a.read(ta, 7) == data[:7] and bytes(machine.mem.map[frame:frame + 7]) == data[:7]
    # The loader's stores ignore protection (a .bss head in a read-only segment):
    # they too must get a private copy.
    a.write(ta + 4096, b"loader", force=True)
    assert a.read(ta + 4096, 6) == b"loader" and b.read(tb + 4096, 6) == data[4096:4102]
    a.release()
    b.release()
    assert machine.alloc.holders(frame) == 1              # the cache's, until reclaimed
    assert cache.shrink() and not cache.pages
    os.close(f.fd)


def test_text_cache_follows_the_file(machine, tmp_path) -> None:
    """A file written (or held open for writing) is never served from old pages,
    even when its size and timestamps do not change."""
    from quark.kernel.mm import textcache
    _with_cache(machine)
    path = tmp_path / "data"
    path.write_bytes(b"A" * 8192)
    f = _CachedFile(path)
    st = os.fstat(f.fd)
    ident = (st.st_dev, st.st_ino)

    def first_bytes() -> bytes:
        mm = _space(machine)
        addr = mm.mmap(0, 8192, L.PROT_READ, L.MAP_PRIVATE, f, 0)
        try:
            return mm.read(addr, 4)
        finally:
            mm.release()
    assert first_bytes() == b"AAAA"
    textcache.writer_opened(ident)          # what HostFile does for a write open
    try:
        with open(path, "r+b") as w:
            w.write(b"BBBB")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))   # same size, same mtime
        assert first_bytes() == b"BBBB"     # open for writing: not from the cache
    finally:
        textcache.writer_closed(ident)
    assert first_bytes() == b"BBBB"         # a new generation: not the old pages
    # ext4's timestamps are coarse: a write may leave all of stat unchanged. The
    # generation alone must then send the next mapping to the file.
    reads = f.reads
    assert first_bytes() == b"BBBB" and f.reads == reads        # cached now
    textcache.writer_opened(ident)
    textcache.writer_closed(ident)
    assert first_bytes() == b"BBBB" and f.reads == reads + 1
    # Files never cached leave no trace (a build writes millions).
    other = (ident[0], ident[1] + 1_000_000)
    textcache.writer_opened(other)
    textcache.writer_closed(other)
    assert other not in textcache.GENERATION and other not in textcache.WRITERS
    os.close(f.fd)


def test_text_cache_gives_frames_back_when_memory_runs_out(machine, tmp_path) -> None:
    cache = _with_cache(machine)
    (tmp_path / "prog").write_bytes(os.urandom(64 * 4096))
    f = _CachedFile(tmp_path / "prog")
    mm = _space(machine)
    addr = mm.mmap(0, 64 * 4096, L.PROT_READ, L.MAP_PRIVATE, f, 0)
    assert mm.handle_fault(addr, 0x4) == 0
    mm.release()
    assert len(cache.pages) == 64
    # Take every free frame (the released tables too): the next allocation must
    # come from the cache's.
    machine.alloc.release_retired()
    taken = []
    from quark.core.memory import OutOfMemory
    try:
        while True:
            taken.append(machine.alloc._alloc())
    except OutOfMemory:
        pass
    got = machine.alloc.alloc()
    assert not cache.pages and got not in taken
    machine.alloc.free_many(taken + [got])
    os.close(f.fd)


def test_prefault_backs_what_a_fault_would_and_nothing_it_may_not(machine) -> None:
    # exec backs the entry's text and the stack below the first frame this way
    # (task_exec.do_execve): each guest fault costs ~60-100 µs under PVM.
    mm = _space(machine)
    big = 1 << 20                       # small anonymous mappings are backed at mmap
    rw = mm.mmap(0, big, L.PROT_READ | L.PROT_WRITE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    assert rw not in mm.frames
    mm.prefault(rw + 4096 + 123, write=True)
    assert rw + 4096 in mm.frames and rw not in mm.frames          # from that page on
    none = mm.mmap(0, big, L.PROT_NONE, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    ro = mm.mmap(0, big, L.PROT_READ, L.MAP_PRIVATE | L.MAP_ANONYMOUS)
    mm.prefault(none, write=False)                                  # no access: nothing
    mm.prefault(ro, write=True)                                     # no write: nothing
    mm.prefault(0x1000, write=False)                                # no mapping: nothing
    assert none not in mm.frames and ro not in mm.frames and 0x1000 not in mm.frames
    mm.release()


def test_a_growing_heap_gets_its_first_new_page_backed(machine) -> None:
    mm = _space(machine)
    mm.brk_start = mm.brk = 0x600000
    assert mm.set_brk(0x600000 + 100 * 4096) == 0x600000 + 100 * 4096
    assert 0x600000 in mm.frames and 0x600000 + 99 * 4096 not in mm.frames
    assert mm.read(0x600000, 8) == bytes(8)
    mm.release()
