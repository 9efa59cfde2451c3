"""A process's address space: VMAs, the frames behind them, and guest page tables.

Some facts this rests on:
- The page tables are the guest's view; ``frames`` is ours: page address -> frame
  address with the page's PROT bits in the low three bits. Both change together.
- Removing or downgrading a present mapping is invisible to KVM's shadow MMU until the
  old frame is invalidated (PVM.md); every path that does so here frees the frame
  (``discard``: zeroed, invalidated) or invalidates it (content kept).
- Memory is populated lazily: a guest #PF on a page of a VMA allocates it (with a
  little fault-around), and so does a kernel access to such a page.
- Callers hold the kernel lock; nothing here blocks.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.core.guest.layout import PAGE, USER_TOP
from quark.core.memory import OutOfMemory
from quark.core.pagetable import NX, RW, US
from quark.kernel.abi.linux import (
    EACCES,
    EEXIST,
    EFAULT,
    EINVAL,
    ENAMETOOLONG,
    ENODEV,
    ENOMEM,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_TYPE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from quark.kernel.errors import LinuxError
from quark.kernel.mm import shared
from quark.kernel.mm.vma import Vma, VmaList

PROT_MASK = PROT_READ | PROT_WRITE | PROT_EXEC
MMAP_MIN = 0x10000                      # vm.mmap_min_addr
STACK_TOP = 0x7F7F_FFFF_F000            # below the machine's slot (layout.KBASE)
STACK_MAX = 8 << 20
MMAP_TOP = STACK_TOP - STACK_MAX - (1 << 30)
FAULT_AROUND = 16                       # pages populated per fault when backed by a VMA
COW = 8                                 # frames entry bit: shared copy-on-write
SHM = 16                                # frames entry bit: a MAP_SHARED object's page
COW_MIN_PAGES = 1024                    # smaller spaces are copied at fork (see fork)
EAGER_LIMIT = 64 * PAGE                 # mappings up to this size are populated at mmap
WHOLE_LIMIT = 512 * PAGE                # read-only file mappings up to this size are
                                        # populated whole at their first fault

SEGV_MAPERR = 1
SEGV_ACCERR = 2
BUS_ADRERR = 2       # returned negated by handle_fault: SIGBUS rather than SIGSEGV

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_LOW = PAGE - 1
_TWO_PAGES = 2 * PAGE


def _pte_flags(prot: int) -> int:
    f = US
    if prot & PROT_WRITE:
        f |= RW
    if not prot & PROT_EXEC:
        f |= NX
    return f


def _page_down(x: int) -> int:
    return x & ~_LOW


def _page_up(x: int) -> int:
    return (x + _LOW) & ~_LOW


def _pages_in(pages: Any, start: int, end: int) -> list[int]:
    """The pages of ``pages`` (a dict or set of page addresses) in [start, end), in
    order. A range may span 2**28 pages (munmap of a terabyte): walk whichever of
    the two is smaller, as Linux walks page tables and never empty ranges."""
    if (end - start) // PAGE > len(pages):
        return sorted(p for p in pages if start <= p < end)
    return [p for p in range(start, end, PAGE) if p in pages]


class AddressSpace:
    """Implements ``mm/api.GuestMemory`` plus the mapping calls."""

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.mem = machine.mem
        self.buf = machine.mem.map
        self.view = machine.mem.view
        self.alloc = machine.alloc
        self.pt = machine.new_page_table()
        self.vmas = VmaList()
        self.frames: dict[int, int] = {}
        self.brk_start = 0
        self.brk = 0
        self.stack_top = STACK_TOP
        self.mmap_top = MMAP_TOP
        self.users = 1                  # threads sharing this space (CLONE_VM)
        self.special: set[int] = set()  # pages whose frames are shared, never freed
        self.blocked = 0                # calls asleep with views of this space
        self.quarantine: list[int] = [] # frames freed meanwhile (see _free_pages)
        self.exe_text: tuple[dict[Any, int], Any] | None = None   # see hold_text
        self.text_cache: Any = getattr(machine, "text_cache", None)  # mm/textcache.py
        self.write_ring = 0             # the gate's write ring (fs/host/writebehind.py)

    @property
    def cr3(self) -> int:
        return self.pt.root

    # ---- guest memory access for the kernel -------------------------------

    def _frame(self, va: int, write: bool) -> int:
        e = self.frames.get(va)
        if e is None:
            return self._populate(va, write, around=False, force=False)
        if write and not e & PROT_WRITE:
            raise LinuxError(EFAULT)
        if not e & PROT_MASK:
            raise LinuxError(EFAULT)
        if write and e & COW:
            return self._break_cow(va, e)
        return e & ~_LOW

    def _break_cow(self, page: int, e: int) -> int:
        """A write to a copy-on-write page: copy it unless this space is its last
        holder, then map it writable. The old translation must go (PVM.md), so the
        old frame is invalidated either way."""
        f = e & ~_LOW
        prot = e & PROT_MASK
        if self.alloc.holders(f) > 1:
            try:
                new = self.alloc.alloc_overwritten(1)[0]    # copied over whole
            except OutOfMemory:
                raise LinuxError(ENOMEM) from None
            self.buf[new:new + PAGE] = self.buf[f:f + PAGE]
            self.alloc.free_many([f])           # one holder fewer
        else:
            new = f
        self.frames[page] = new | prot
        self.pt.map(page, new, _pte_flags(prot))
        self.mem.invalidate(f, PAGE)
        return new

    def _check_range(self, addr: int, n: int) -> None:
        if addr < 0 or n < 0 or addr + n > USER_TOP or (n and addr < PAGE):
            raise LinuxError(EFAULT)

    def read(self, addr: int, n: int) -> bytes:
        self._check_range(addr, n)
        if n == 0:
            return b""
        off = addr & _LOW
        if off + n <= PAGE:
            pa = self._frame(addr - off, False) + off
            return self.buf[pa:pa + n]
        out = bytearray()
        for v in self.iovecs(addr, n, False):
            out += v
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview, force: bool = False) -> None:
        n = len(data)
        self._check_range(addr, n)
        if force:
            self._force_populate(addr, n)
            # A store that ignores protection still must not reach a frame others
            # hold (a fork's, the text cache's): it gets this space's own copy.
            for p in range(_page_down(addr), addr + n, PAGE):
                e = self.frames.get(p)
                if e is not None and e & COW:
                    self._break_cow(p, e)
        pos = 0
        for v in self.iovecs(addr, n, not force):
            ln = len(v)
            v[:] = data[pos:pos + ln]
            pos += ln

    def zero(self, addr: int, n: int) -> None:
        self.write(addr, bytes(n), force=True)

    def read_u32(self, addr: int) -> int:
        return int(_U32.unpack(self.read(addr, 4))[0])

    def read_u64(self, addr: int) -> int:
        return int(_U64.unpack(self.read(addr, 8))[0])

    def write_u32(self, addr: int, v: int) -> None:
        self.write(addr, _U32.pack(v & 0xFFFFFFFF))

    def write_u64(self, addr: int, v: int) -> None:
        self.write(addr, _U64.pack(v & 0xFFFFFFFFFFFFFFFF))

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        if addr < PAGE or addr >= USER_TOP:
            raise LinuxError(EFAULT)
        out = bytearray()
        while len(out) < limit:
            off = addr & _LOW
            pa = self._frame(addr - off, False)
            take = min(PAGE - off, limit - len(out))
            chunk = self.buf[pa + off:pa + off + take]
            z = chunk.find(b"\0")
            if z >= 0:
                out += chunk[:z]
                return bytes(out)
            out += chunk
            addr += take
            if addr >= USER_TOP:
                raise LinuxError(EFAULT)
        raise LinuxError(ENAMETOOLONG)

    def iovecs(self, addr: int, n: int, write: bool, partial: bool = False) -> list[memoryview]:
        """See mm/api.py. ``partial``: stop at the first bad page and return the
        views before it (a short read/write, as Linux's copy routines give);
        EFAULT only when not even the first byte is accessible."""
        frames = self.frames
        # a present page that allows the access as it is (every buffer of a read or
        # write loop after its first call); anything else goes through _frame
        need, stop = (PROT_WRITE, COW) if write else (PROT_MASK, 0)
        off = addr & _LOW
        if off + n <= _TWO_PAGES and n and PAGE <= addr and addr + n <= USER_TOP:
            # At most two such pages: what nearly every read or write of a few KiB
            # finds. No loop: this runs per call.
            e = frames.get(addr - off)
            if e is not None and e & need and not e & stop:
                pa = (e & ~_LOW) + off
                if off + n <= PAGE:
                    return [self.view[pa:pa + n]]
                e = frames.get(addr - off + PAGE)
                if e is not None and e & need and not e & stop:
                    first = PAGE - off
                    pa2 = e & ~_LOW
                    if pa2 == pa + first:
                        return [self.view[pa:pa + n]]
                    return [self.view[pa:pa + first], self.view[pa2:pa2 + n - first]]
        if partial and addr + n > USER_TOP and addr < USER_TOP:
            n = USER_TOP - addr
        self._check_range(addr, n)
        out: list[memoryview] = []
        run_pa = run_len = 0
        end = addr + n
        while addr < end:
            off = addr & _LOW
            take = min(PAGE - off, end - addr)
            e = frames.get(addr - off)
            if e is not None and e & need and not e & stop:
                pa = (e & ~_LOW) + off
            else:
                try:
                    pa = self._frame(addr - off, write) + off
                except LinuxError:
                    if not partial or (not out and not run_len):
                        raise
                    break
            if run_len and pa == run_pa + run_len:
                run_len += take
            else:
                if run_len:
                    out.append(self.view[run_pa:run_pa + run_len])
                run_pa, run_len = pa, take
            addr += take
        if run_len:
            out.append(self.view[run_pa:run_pa + run_len])
        return out

    # ---- populating pages --------------------------------------------------

    def _populate(self, va: int, write: bool, around: bool, force: bool,
                  eof_page: int | None = None) -> int:
        """Back page ``va`` with a frame; EFAULT when no VMA allows the access.
        ``eof_page``: the VMA's _eof_page when the caller has it (one stat less)."""
        vma = self.vmas.find(va)
        if vma is None or (not force and (
                not vma.prot & PROT_MASK or (write and not vma.prot & PROT_WRITE))):
            raise LinuxError(EFAULT)
        last = min(vma.end, va + FAULT_AROUND * PAGE) if around else va + PAGE
        if vma.file is not None:
            if eof_page is None:
                eof_page = self._eof_page(vma)
            if va >= eof_page:
                raise LinuxError(EFAULT)    # wholly past the end of the file
            last = min(last, eof_page)
            if around and vma.shm is None and not vma.prot & PROT_WRITE \
                    and vma.end - vma.start <= WHOLE_LIMIT:
                return self._populate_whole(vma, va, min(vma.end, eof_page))
        pages = [va]
        p = va + PAGE
        while p < last and p not in self.frames:
            pages.append(p)
            p += PAGE
        if vma.shm is not None:
            return self._populate_shared(vma, pages)
        return self._fill(vma, pages)

    def prefault(self, va: int, write: bool) -> None:
        """Back ``va``'s page (and what a fault there would bring in with it) now,
        if the mapping allows the access; otherwise nothing. For pages a new
        program is sure to touch at once: each guest fault costs ~60-100 µs under
        PVM (the exception stub's instructions are emulated, then an exit)."""
        page = _page_down(va)
        if page in self.frames:
            return
        try:
            self._populate(page, write, around=True, force=False)
        except (LinuxError, OutOfMemory):
            pass                # the access itself will say so, if it comes

    def _populate_whole(self, vma: Vma, va: int, last: int) -> int:
        """Every absent page of a small read-only file mapping (program text and
        rodata, a library's): one read for what ~16-page fault-arounds would take in
        as many guest exits, which cost ~60 µs each under PVM before any work (an
        echo's busybox took 25 faults in its text). Returns the frame of ``va``."""
        run: list[int] = []
        for p in range(vma.start, last, PAGE):
            if p not in self.frames:
                run.append(p)
            elif run:
                self._fill(vma, run)
                run = []
        if run:
            self._fill(vma, run)
        return self.frames[va] & ~_LOW

    def _fill(self, vma: Vma, pages: list[int]) -> int:
        """Back ``pages`` (consecutive, absent, in ``vma``) with new frames, read
        from the VMA's file if it has one; the first one's frame. Pages of a file
        mapping nobody can write come from, or go to, the text cache."""
        va = pages[0]
        if vma.file is not None and not vma.prot & PROT_WRITE and self.text_cache is not None \
                and not shared.live:
            key = vma.file.cache_key()
            if key is not None:
                return self._fill_cached(vma, pages, key)
        try:
            frames = self.alloc.alloc_many(len(pages))
        except OutOfMemory:
            raise LinuxError(ENOMEM) from None
        if vma.file is not None:
            if shared.live:     # a private copy of what shared mappings hold now
                shared.before_read(vma.file, vma.offset + (va - vma.start), len(pages) * PAGE)
            views = [self.view[f:f + PAGE] for f in frames]
            try:
                vma.file.read_at(views, vma.offset + (va - vma.start))
            except LinuxError:
                pass        # past EOF or unreadable: Linux gives SIGBUS; zeros here
            finally:
                for v in views:
                    v.release()
        prot = vma.prot & PROT_MASK
        self.frames.update(zip(pages, [f | prot for f in frames]))
        # pages are consecutive and were not present (the loop above stops at the
        # first present one): one run of empty entries
        self.pt.map_run(va, frames, _pte_flags(vma.prot))
        return frames[0]

    def _fill_cached(self, vma: Vma, pages: list[int], key: tuple[Any, ...]) -> int:
        """_fill for a read-only private file mapping: pages the text cache has are
        mapped from it; the rest are read and handed to it. A page in the cache is
        mapped copy-on-write, so a store after mprotect copies it. A page the cache
        cannot take (it is full, or the read failed) stays this space's own."""
        cache = self.text_cache
        first = (vma.offset + (pages[0] - vma.start)) // PAGE
        keys = [(key, first + i) for i in range(len(pages))]
        got = [cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(got) if f is None]
        frames = [0 if f is None else f for f in got]
        failed: set[int] = set()
        if missing:
            try:
                new = self.alloc.alloc_many(len(missing))
            except OutOfMemory:
                raise LinuxError(ENOMEM) from None
            for i, f in zip(missing, new):
                frames[i] = f
            # consecutive missing pages are read with one call
            run: list[int] = []
            for i in missing + [-1]:
                if run and (i != run[-1] + 1):
                    views = [self.view[frames[j]:frames[j] + PAGE] for j in run]
                    try:
                        vma.file.read_at(views, vma.offset + (pages[run[0]] - vma.start))
                    except LinuxError:
                        failed.update(run)  # unreadable: zeros here, never cached
                    finally:
                        for v in views:
                            v.release()
                    run = []
                run.append(i)
        # The cache takes what was read; a page it cannot take (it is full, or the
        # read failed) stays private. The pages it had gain this space as holder.
        prot = vma.prot & PROT_MASK
        bits = [prot | COW] * len(frames)
        for i in missing:
            if i in failed or not cache.put(keys[i], frames[i]):
                bits[i] = prot
        read = set(missing)
        self.alloc.share_many([f for i, f in enumerate(frames) if i not in read]
                              if missing else frames)
        self.frames.update(zip(pages, [f | b for f, b in zip(frames, bits)]))
        self.pt.map_run(pages[0], frames, _pte_flags(vma.prot))
        first_frame: int = frames[0]
        return first_frame

    def _populate_shared(self, vma: Vma, pages: list[int]) -> int:
        """Map the shared object's frames (made on first use anywhere); this space
        holds each one once more (see mm/shared.py)."""
        flags = _pte_flags(vma.prot)
        prot = vma.prot & PROT_MASK
        base = (vma.offset - vma.start) // PAGE
        first = -1
        for page in pages:
            f = vma.shm.frame(base + page // PAGE)
            self.alloc.share(f)
            self.frames[page] = f | prot | SHM
            self.pt.map(page, f, flags)
            if first < 0:
                first = f
        return first

    def futex_key(self, addr: int) -> tuple[int, int]:
        """Where a futex word lives: its shared object and offset for MAP_SHARED
        memory (so processes mapping it meet), else this space and the address."""
        vma = self.vmas.find(addr)
        if vma is not None and vma.shm is not None:
            return (id(vma.shm), vma.offset + (addr - vma.start))
        return (id(self), addr)

    def msync(self, start: int, end: int) -> None:
        """Write the shared file pages of ``[start, end)`` back to their files."""
        for v in self.vmas.overlapping(start, end):
            if v.shm is None or v.shm.file is None:
                continue
            lo, hi = max(v.start, start), min(v.end, end)
            v.shm.write_back((v.offset + lo - v.start) // PAGE,
                             (v.offset + hi - v.start) // PAGE - 1)

    @staticmethod
    def _eof_page(vma: Vma) -> int:
        """The first address of ``vma`` wholly past the end of its file."""
        try:
            size = vma.file.stat().size
        except Exception:  # noqa: BLE001 - unknown size: treat the mapping as backed
            return vma.end
        return vma.start + max(_page_up(size) - vma.offset, 0)

    def _force_populate(self, addr: int, n: int) -> None:
        """Populate pages for a kernel write that ignores protection (the loader)."""
        for p in range(_page_down(addr), addr + n, PAGE):
            if p not in self.frames:
                self._populate(p, True, around=False, force=True)

    def handle_fault(self, addr: int, error: int) -> int:
        """A guest page fault at ``addr``; returns 0 when fixed, else the SIGSEGV
        si_code (SEGV_MAPERR / SEGV_ACCERR), or -BUS_ADRERR for SIGBUS."""
        page = _page_down(addr)
        write, fetch = bool(error & 2), bool(error & 16)
        vma = self.vmas.find(page) if page < USER_TOP else None
        if vma is None:
            return SEGV_MAPERR
        if (write and not vma.prot & PROT_WRITE) or (fetch and not vma.prot & PROT_EXEC) \
                or not vma.prot & PROT_MASK:
            return SEGV_ACCERR
        e = self.frames.get(page)
        if e is not None:
            if write and e & COW and e & PROT_WRITE:
                try:
                    self._break_cow(page, e)
                except LinuxError:
                    return SEGV_MAPERR
                return 0
            # Present, and its VMA allows the access: another vCPU of this space
            # populated the page between the fault and now (Linux calls this a
            # spurious fault). Retry; the page-table entry is restored if missing.
            if not self.pt.entry(page):
                self.pt.map(page, e & ~_LOW, _pte_flags(e & PROT_MASK))
            return 0
        eof_page = None
        if vma.file is not None:
            eof_page = self._eof_page(vma)
            if page >= eof_page:
                return -BUS_ADRERR  # SIGBUS: a file mapping past the end of the file
        try:
            self._populate(page, write, around=True, force=False, eof_page=eof_page)
        except LinuxError:
            return SEGV_MAPERR
        return 0

    # ---- mapping calls -------------------------------------------------------

    def mmap(self, addr: int, length: int, prot: int, flags: int,
             file: Any = None, offset: int = 0, name: str = "") -> int:
        if length == 0 or offset & _LOW:
            raise LinuxError(EINVAL)
        typ = flags & MAP_TYPE
        if typ not in (MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE):
            raise LinuxError(EINVAL)
        if prot & ~PROT_MASK:
            raise LinuxError(EINVAL)
        length = _page_up(length)
        if length > USER_TOP or length == 0:
            raise LinuxError(ENOMEM)
        if file is not None and not flags & MAP_ANONYMOUS:
            if not file.readable:
                raise LinuxError(EACCES)
            if not getattr(file, "mmap_ok", False):
                raise LinuxError(ENODEV)    # a pipe, socket, /proc or device file
        else:
            file = None
        fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)
        if fixed:
            if addr & _LOW:
                raise LinuxError(EINVAL)
            if addr + length > USER_TOP or addr < MMAP_MIN:
                raise LinuxError(ENOMEM if addr + length > USER_TOP else EPERM_OR_EINVAL)
            if flags & MAP_FIXED_NOREPLACE and not flags & MAP_FIXED \
                    and self.vmas.overlapping(addr, addr + length):
                raise LinuxError(EEXIST)
            self.munmap(addr, length)
        else:
            addr = _page_down(addr)
            if not (addr >= MMAP_MIN and addr + length <= self.mmap_top
                    and not self.vmas.overlapping(addr, addr + length)):
                found = self.vmas.gap_below(self.mmap_top, length, MMAP_MIN)
                if found is None:
                    raise LinuxError(ENOMEM)
                addr = found
        shm = None
        if typ & MAP_SHARED:
            shm = shared.for_mapping(self.alloc, self.view, file)
            if file is None or shm.file is None:
                file, offset = None, 0      # anonymous shared memory (also /dev/zero)
                name = "/dev/zero (deleted)"   # what Linux's maps shows for it
        vma = Vma(addr, addr + length, prot, typ & MAP_SHARED, file, offset, name, shm)
        if flags & MAP_GROWSDOWN:
            vma.flags |= MAP_GROWSDOWN
        self.vmas.insert(vma)
        if prot & PROT_MASK and (flags & MAP_POPULATE or length <= EAGER_LIMIT):
            for p in range(addr, addr + length, FAULT_AROUND * PAGE):
                if p not in self.frames:
                    self._populate(p, False, around=True, force=True)
        return addr

    def map_special(self, addr: int, frames: list[int], prot: int, name: str) -> None:
        """Map frames owned by the machine (vDSO, its time page) read-only or
        read+exec; they are shared by every process and never freed here."""
        end = addr + len(frames) * PAGE
        self.munmap(addr, end - addr)
        self.vmas.insert(Vma(addr, end, prot, 0, None, 0, name))
        flags = _pte_flags(prot)
        for i, f in enumerate(frames):
            page = addr + i * PAGE
            self.frames[page] = f | prot
            self.special.add(page)
            self.pt.map(page, f, flags)

    def _free_pages(self, pages: list[tuple[int, int]]) -> None:
        """Frames removed from the page tables: owned ones are freed (zeroed and
        invalidated); shared special ones only invalidated."""
        owned, shared = [], []
        for page, f in pages:
            if page in self.special:
                self.special.discard(page)
                shared.append(f)
            else:
                owned.append(f)
        for f in shared:
            self.mem.invalidate(f, PAGE)
        if self.blocked:
            # A sleeping call of this space may still hold views of these frames
            # (taken before it slept): keep them out of the allocator until it
            # resumes, so its late copy can never land in another process's page.
            for f in owned:
                self.mem.invalidate(f, PAGE)
            self.quarantine.extend(owned)
            return
        self.alloc.free_many(owned)

    def pin(self) -> None:
        """A call of this space is about to sleep holding guest-memory views."""
        self.blocked += 1

    def unpin(self) -> None:
        self.blocked -= 1
        if not self.blocked and self.quarantine:
            frames, self.quarantine = self.quarantine, []
            self.alloc.free_many(frames)

    def munmap(self, addr: int, length: int) -> None:
        if addr & _LOW or length == 0:
            raise LinuxError(EINVAL)
        length = _page_up(length)
        end = addr + length
        if end > USER_TOP or end < addr:
            raise LinuxError(EINVAL)
        removed = self.vmas.carve(addr, end)
        dead = []
        for v in removed:
            v.drop()
            for p in _pages_in(self.frames, v.start, v.end):
                e = self.frames.pop(p, None)
                if e is not None:
                    self.pt.unmap(p)
                    dead.append((p, e & ~_LOW))
        self._free_pages(dead)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        if addr & _LOW or prot & ~(PROT_MASK | 0x01000000 | 0x02000000):
            raise LinuxError(EINVAL)
        prot &= PROT_MASK
        length = _page_up(length)
        end = addr + length
        if end > USER_TOP or end < addr:
            raise LinuxError(ENOMEM)
        if length == 0:
            return
        covered = addr
        for v in self.vmas.overlapping(addr, end):
            if v.start > covered:
                raise LinuxError(ENOMEM)
            covered = v.end
        if covered < end:
            raise LinuxError(ENOMEM)
        if prot & PROT_WRITE and _pages_in(self.special, addr, end):
            raise LinuxError(EACCES)   # shared machine pages never become writable
        if prot & PROT_WRITE and any(v.shm is not None and v.file is not None
                                     and not v.file.writable
                                     for v in self.vmas.overlapping(addr, end)):
            raise LinuxError(EACCES)   # a shared mapping of a file opened read-only
        for v in self.vmas.carve(addr, end):
            v.prot = prot
            self.vmas.insert(v)
        flags = _pte_flags(prot)
        downgraded = []
        for p in _pages_in(self.frames, addr, end):
            e = self.frames.get(p)
            if e is None:
                continue
            f = e & ~_LOW
            old = e & PROT_MASK
            if prot & PROT_MASK:
                self.pt.set_flags(p, _pte_flags(prot & ~PROT_WRITE) if e & COW else flags)
            else:
                self.pt.unmap(p)        # PROT_NONE: no access at all, frame kept
            self.frames[p] = f | prot | (e & (COW | SHM))
            if old & ~prot:
                downgraded.append(f)
        # One madvise per run of contiguous frames (glibc's RELRO: 4 pages, 1 call).
        self.alloc._runs(sorted(downgraded), self.mem.invalidate)
        self._remap_present(addr, end, flags if prot & PROT_MASK else 0)

    def _remap_present(self, start: int, end: int, flags: int) -> None:
        if not flags:
            return
        for p in _pages_in(self.frames, start, end):
            e = self.frames.get(p)
            if e is not None and not self.pt.entry(p):
                self.pt.map(p, e & ~_LOW, flags & ~RW if e & COW else flags)

    def drop_pages(self, start: int, end: int) -> None:
        """madvise(MADV_DONTNEED): populated pages go; anonymous ones read back as
        zeros, file-backed ones as the file's content, at the next touch."""
        dead = []
        for p in _pages_in(self.frames, start, end):
            if p in self.special:
                continue
            e = self.frames.pop(p, None)
            if e is not None:
                self.pt.unmap(p)
                dead.append((p, e & ~_LOW))
        self._free_pages(dead)

    def mremap(self, old: int, old_size: int, new_size: int, may_move: int,
               fixed: int | None, dontunmap: bool = False) -> int:
        """mremap(2). ``dontunmap``: the pages move and the old range stays mapped,
        empty (it faults in afresh: zeros, the file, or the shared object)."""
        old_size, new_size = _page_up(old_size), _page_up(new_size)
        vma = self.vmas.find(old)
        if vma is None or old + old_size > vma.end or old_size == 0:
            raise LinuxError(EFAULT)
        if dontunmap and (not may_move or old_size != new_size):
            raise LinuxError(EINVAL)
        if fixed is None and new_size <= old_size and not dontunmap:
            if new_size < old_size:
                self.munmap(old + new_size, old_size - new_size)
            return old
        end = old + old_size
        if fixed is None and not dontunmap and vma.end == end \
                and end + (new_size - old_size) <= self.mmap_top \
                and not self.vmas.overlapping(end, old + new_size):
            self.vmas.remove(vma)
            vma.end = old + new_size
            self.vmas.insert(vma)
            return old
        if not may_move:
            raise LinuxError(ENOMEM)
        if fixed is not None:
            if fixed & _LOW or fixed + new_size > USER_TOP:
                raise LinuxError(EINVAL)
            if fixed < old + old_size and old < fixed + new_size:
                raise LinuxError(EINVAL)
            self.munmap(fixed, new_size)
            dest = fixed
        else:
            found = self.vmas.gap_below(self.mmap_top, new_size, MMAP_MIN)
            if found is None:
                raise LinuxError(ENOMEM)
            dest = found
        moved = self.vmas.carve(old, end)
        if dontunmap:
            for v in moved:
                self.vmas.insert(v.copy())   # the old range stays, with no pages
        piece = moved[0]
        for extra in moved[1:]:
            extra.drop()
        new_vma = piece.copy(None, None)
        piece.drop()
        new_vma.start, new_vma.end = dest, dest + new_size
        self.vmas.insert(new_vma)
        flags = _pte_flags(new_vma.prot)
        stale, dropped = [], []
        for i in [p - old for p in _pages_in(self.frames, old, old + old_size)]:
            e = self.frames.pop(old + i, None)
            if e is None:
                continue
            self.pt.unmap(old + i)
            if i >= new_size:           # moved and shrunk: the tail goes
                dropped.append((old + i, e & ~_LOW))
                continue
            stale.append(e & ~_LOW)
            if old + i in self.special:     # the vDSO may move (CRIU does it)
                self.special.discard(old + i)
                self.special.add(dest + i)
            self.frames[dest + i] = e
            if e & PROT_MASK:
                self.pt.map(dest + i, e & ~_LOW, flags & ~RW if e & COW else flags)
        for f in stale:
            self.mem.invalidate(f, PAGE)   # the old address must stop reaching it
        self._free_pages(dropped)
        return dest

    def set_brk(self, new: int) -> int:
        """brk(2): returns the new break, or the old one when the request fails."""
        if new < self.brk_start:
            return self.brk
        old_end, new_end = _page_up(self.brk), _page_up(new)
        if new_end > old_end:
            if self.vmas.overlapping(old_end, new_end + PAGE) or new_end > self.mmap_top:
                return self.brk
            heap = self.vmas.find(old_end - PAGE) if old_end > self.brk_start else None
            if heap is not None and heap.name == "[heap]":
                self.vmas.remove(heap)
                heap.end = new_end
                self.vmas.insert(heap)
            else:
                self.vmas.insert(Vma(old_end, new_end, PROT_READ | PROT_WRITE, 0, name="[heap]"))
            # A program grows its heap to use it at once (glibc's TLS, malloc's
            # next chunk): the first new page, and what a fault there would bring.
            self.prefault(old_end, write=True)
        elif new_end < old_end:
            self.munmap(new_end, old_end - new_end)
        self.brk = new
        return new

    # ---- whole-space operations ---------------------------------------------

    def fork(self) -> AddressSpace:
        """A private copy: a small space's pages copied at once, a large one's
        shared copy-on-write (mm/fork.py says why)."""
        child = AddressSpace(self.machine)
        for v in self.vmas:
            child.vmas.insert(v.copy())
        from quark.kernel.mm import fork
        if len(self.frames) >= COW_MIN_PAGES:
            fork.share_all(self, child)
        else:
            fork.copy_small(self, child)
        child.brk_start, child.brk = self.brk_start, self.brk
        if self.exe_text is not None:
            child.hold_text(*self.exe_text)     # fork copies the mm's exe_file too
        child.stack_top, child.mmap_top = self.stack_top, self.mmap_top
        child.write_ring = self.write_ring      # its copy is the child's to use
        return child

    def hold_text(self, table: dict[Any, int], key: Any) -> None:
        """This space runs the executable ``key`` (kernel.text_busy) until released."""
        table[key] = table.get(key, 0) + 1
        self.exe_text = (table, key)

    def release(self) -> None:
        """Free every frame and table (exit, exec)."""
        if self.exe_text is not None:
            table, key = self.exe_text
            self.exe_text = None
            if table.get(key, 0) > 1:
                table[key] -= 1
            else:
                table.pop(key, None)
        if self.alloc.drop_shadows is None:
            for p in self.special:     # shared machine frames: drop our translations
                self.mem.invalidate(self.frames[p] & ~_LOW, PAGE)
        # (With shadow drops, this space's translations die with its retired
        # tables: FrameAllocator.free_dead.)
        self.pt.release()
        self.alloc.free_dead([e & ~_LOW for p, e in self.frames.items()
                              if p not in self.special] + self.quarantine)
        self.quarantine = []
        self.frames.clear()
        self.special.clear()
        for v in self.vmas:
            v.drop()
        self.vmas = VmaList()

    def maps_text(self) -> str:
        """/proc/pid/maps: one line per VMA, as Linux formats them."""
        lines = []
        for v in self.vmas:
            dev, ino, off = "00:00", 0, 0
            if v.file is not None:
                off = v.offset
                try:
                    st = v.file.stat()
                    dev = f"{st.dev[0]:02x}:{st.dev[1]:02x}"
                    ino = st.ino
                except Exception:  # noqa: BLE001 - a file without stat shows zeros
                    pass
            head = f"{v.start:08x}-{v.end:08x} {v.perms()} {off:08x} {dev} {ino}"
            lines.append(f"{head:<72} {v.name}".rstrip() if v.name else head)
        return "".join(line + "\n" for line in lines)

    def rss_pages(self) -> int:
        return len(self.frames)

    def size_bytes(self) -> int:
        return sum(v.end - v.start for v in self.vmas)


EPERM_OR_EINVAL = EINVAL  # Linux: MAP_FIXED below mmap_min_addr fails with EPERM for
# unprivileged callers and succeeds for CAP_SYS_RAWIO; we never map page zero.
