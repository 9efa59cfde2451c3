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
- Modified pages reach the file at msync and when the last mapping goes (munmap,
  exit, exec). read(2)/write(2) do not look at mapped pages in between; Linux's
  coherence there comes from a single page cache, which host files do not share
  with guest frames.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from quark.core.guest.layout import PAGE
from quark.core.memory import OutOfMemory
from quark.kernel.abi.linux import EIO, ENOMEM
from quark.kernel.errors import LinuxError


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
            registry(self.alloc).pop(self.key, None)
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
                _pwrite(self.writer, self.view[f:f + n], off)
            except (OSError, LinuxError):
                failed = True
        if failed:
            raise LinuxError(EIO)


def _pwrite(file: Any, data: memoryview, off: int) -> None:
    fd = file.host_fd
    if fd is not None:
        while len(data):
            n = os.pwrite(fd, data, off)
            if n <= 0:
                raise OSError("short write")
            data, off = data[n:], off + n
        return
    file.write_at([data], off)


def registry(alloc: Any) -> dict[Any, SharedPages]:
    """The machine's shared objects of files, by inode."""
    reg = getattr(alloc, "shared_objects", None)
    if reg is None:
        reg = alloc.shared_objects = {}
    return reg


def file_key(file: Any) -> Any:
    """The identity of ``file``'s inode, or None when it is no regular file (a shared
    mapping of /dev/zero and the like is anonymous shared memory, as in Linux)."""
    node = getattr(file, "node", None)
    if node is not None:
        return ("node", id(node))       # in-kernel inode (tmpfs, memfd): its identity
    try:
        st = file.stat()
    except LinuxError:
        return None
    if not st.is_reg():
        return None
    return ("host", st.dev, st.ino)


def for_mapping(alloc: Any, view: memoryview, file: Any) -> SharedPages:
    """The object a new MAP_SHARED mapping of ``file`` (None: anonymous) maps."""
    key = file_key(file) if file is not None else None
    if key is None:
        return SharedPages(alloc, view)
    reg = registry(alloc)
    obj = reg.get(key)
    if obj is None:
        obj = reg[key] = SharedPages(alloc, view, file, key)
    else:
        obj.note_file(file)
    return obj
