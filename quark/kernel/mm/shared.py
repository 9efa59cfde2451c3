"""The pages behind MAP_SHARED mappings: Linux's shmem object / a file's page cache.

Some facts this rests on:
- Every mapping of one shared object sees the same frames: a page is allocated (and,
  for a file, read from it) once, by the first process to touch it, and later faults
  anywhere map that frame. Anonymous shared memory gets a fresh object per mmap
  (inherited by fork); a regular file has one object per inode, found in the
  machine-wide registry, so unrelated processes mapping one file share it too
  (multiprocessing's /dev/shm arenas, POSIX semaphores, sqlite's -shm file).
- Frame ownership uses the allocator's holder counts: the object holds each of its
  frames once, and every address space mapping it holds it once more, so a frame is
  discarded only after the object and every mapping let go (memory.FrameAllocator).
- Host files do not share a page cache with guest frames, so coherence with
  read(2)/write(2) is kept by hand, as Linux keeps it for a page cache: before a
  read of a file with a live shared object the pages it covers are written back,
  and after a write the pages it covers are read again (``before_read`` /
  ``after_write``). Modified pages also reach the file at msync and when the last
  mapping goes (munmap, exit, exec). Both hooks cost one dict test while no file
  is mapped shared.
"""

from __future__ import annotations

import contextlib
from typing import Any

from quark.core.guest.layout import PAGE
from quark.core.memory import OutOfMemory
from quark.kernel.abi.linux import EIO, ENOMEM
from quark.kernel.errors import LinuxError
from quark.kernel.vfs.locks import inode_key


class SharedPages:
    """One shared memory object; ``refs`` counts the VMAs that map it."""

    def __init__(self, alloc: Any, view: memoryview, file: Any = None, key: Any = None) -> None:
        self.alloc = alloc
        self.view = view
        self.pages: dict[int, int] = {}     # page index in the object -> frame
        self.refs = 0
        self.key = key
        self.file = file                    # the file whose pages these are, if any
        self.writer: Any = None             # a writable open file of it, for write-back
        if file is not None:
            file.incref()
            self.note_file(file)

    def note_file(self, file: Any) -> None:
        """A mapping through ``file``: remember a writable description for write-back."""
        if self.writer is None and file.writable:
            file.incref()
            self.writer = file

    def incref(self) -> None:
        self.refs += 1

    def decref(self) -> None:
        self.refs -= 1
        if self.refs > 0:
            return
        with contextlib.suppress(LinuxError):
            self.write_back(0, None)
        if self.key is not None:
            objs = live.get(self.key, [])
            if self in objs:
                objs.remove(self)
            if not objs:
                live.pop(self.key, None)
        frames, self.pages = list(self.pages.values()), {}
        self.alloc.free_many(frames)
        for f in (self.file, self.writer):
            if f is not None:
                f.decref()
        self.file = self.writer = None

    def frame(self, index: int) -> int:
        """The frame of page ``index``, allocated (and read from the file) on first use."""
        f = self.pages.get(index)
        if f is not None:
            return f
        try:
            f = self.alloc.alloc()
        except OutOfMemory:
            raise LinuxError(ENOMEM) from None
        if self.file is not None:
            v = self.view[f:f + PAGE]
            try:
                self.file.read_at([v], index * PAGE)
            except LinuxError:
                pass            # unreadable or past EOF: the fault path decides SIGBUS
            finally:
                v.release()
        self.pages[index] = f
        return f

    def write_back(self, first: int, last: int | None) -> None:
        """Write pages ``first`` .. ``last`` (inclusive; None: all) to the file, never
        past its current size (a mapping does not extend a file)."""
        if self.writer is None or not self.pages:
            return
        size = self.writer.stat().size
        failed = False
        for index in sorted(self.pages):
            if index < first or (last is not None and index > last):
                continue
            off = index * PAGE
            n = min(PAGE, size - off)
            if n <= 0:
                continue
            f = self.pages[index]
            try:
                if self.writer.write_at([self.view[f:f + n]], off) != n:
                    failed = True
            except LinuxError:
                failed = True
        if failed:
            raise LinuxError(EIO)


    def reload(self, first: int, last: int | None) -> None:
        """Read pages ``first`` .. ``last`` (None: all) again from the file, after a
        write(2) changed it underneath the mappings."""
        if self.file is None:
            return
        for index, f in self.pages.items():
            if index < first or (last is not None and index > last):
                continue
            v = self.view[f:f + PAGE]
            try:
                n = self.file.read_at([v], index * PAGE)
            except LinuxError:
                n = 0
            v[n:] = bytes(PAGE - n)     # past the end of the file a page reads zeros
            v.release()


def _pages(offset: int | None, n: int) -> tuple[int, int | None]:
    if offset is None:
        return 0, None          # the file position is the host's: cover everything
    return offset // PAGE, (offset + max(n, 1) - 1) // PAGE


def _covering(file: Any, offset: int | None, n: int) -> list[tuple[SharedPages, int, int | None]]:
    """The live objects of ``file``'s inode, each with the pages ``n`` bytes at
    ``offset`` cover."""
    objs = live.get(inode_key(file)[0]) if live else None
    if not objs:
        return []
    first, last = _pages(offset, n)
    return [(o, first, last) for o in objs]


def before_read(file: Any, offset: int | None, n: int) -> None:
    """read(2) of ``file`` is about to read ``n`` bytes at ``offset``."""
    for o, first, last in _covering(file, offset, n):
        with contextlib.suppress(LinuxError):
            o.write_back(first, last)


def after_write(file: Any, offset: int | None, n: int) -> None:
    """write(2) of ``file`` changed ``n`` bytes at ``offset``."""
    for o, first, last in _covering(file, offset, n):
        o.reload(first, last)


# The shared objects of files, by inode: one per machine (a process normally has
# one machine; tests make several).
live: dict[Any, list[SharedPages]] = {}


def file_key(file: Any) -> Any:
    """The identity of ``file``'s inode (the lock table's, cached on the File), or
    None when it is no regular file: a shared mapping of /dev/zero and the like is
    anonymous shared memory, as in Linux."""
    try:
        if not file.stat().is_reg():
            return None
    except LinuxError:
        return None
    return inode_key(file)[0]


def for_mapping(alloc: Any, view: memoryview, file: Any) -> SharedPages:
    """The object a new MAP_SHARED mapping of ``file`` (None: anonymous) maps."""
    key = file_key(file) if file is not None else None
    if key is None:
        return SharedPages(alloc, view)
    objs = live.setdefault(key, [])
    for obj in objs:
        if obj.alloc is alloc:
            obj.note_file(file)
            return obj
    obj = SharedPages(alloc, view, file, key)
    objs.append(obj)
    return obj
