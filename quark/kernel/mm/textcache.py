"""Frames of read-only private file mappings, shared by every address space of a
sandbox that maps the same file page: what Linux's page cache gives program text.

Some facts this rests on:
- An exec reads its program's text and rodata into guest memory at the first
  faults (address_space._populate_whole). For busybox that is 1.9 MiB and ~2.5 ms
  of a ~12 ms fork+exec+exit on these hosts, and a shell script execs the same
  binary again and again while its own copy is mapped.
- A cached frame holds one allocator reference (FrameAllocator.share); every space
  that maps it holds one more and maps it copy-on-write, so a store after mprotect
  copies the page (address_space._break_cow) and the cached page stays the file's.
- A page is the file's only while the file is unchanged, so only rootfs files are
  cached (this container's alone), keyed by the file's (dev, ino, size, mtime,
  ctime) at fill time and by a generation that every open for writing and every
  truncation by path bumps; while any file description in the sandbox has the file
  open for writing it is not cached at all. Timestamps alone would not do: ext4's
  are coarse, and a write right after a fill could keep them.
- The cache is bounded (a quarter of guest memory) and gives back the frames no
  space maps whenever the allocator runs out (FrameAllocator.reclaim).
"""

from __future__ import annotations

from typing import Any

# Per process (one sandbox), by (st_dev, st_ino): open write descriptions; the
# generation of files that have (or had) cached pages; which files those are. Only
# files the cache took are counted, so these stay as small as the cache.
WRITERS: dict[tuple[int, int], int] = {}
GENERATION: dict[tuple[int, int], int] = {}
CACHED: set[tuple[int, int]] = set()


def writer_opened(ident: tuple[int, int]) -> None:
    WRITERS[ident] = WRITERS.get(ident, 0) + 1
    changed(ident)


def writer_closed(ident: tuple[int, int]) -> None:
    n = WRITERS.get(ident, 0) - 1
    if n > 0:
        WRITERS[ident] = n
    else:
        WRITERS.pop(ident, None)


def changed(ident: tuple[int, int]) -> None:
    """The file may have changed (a writer, a truncation): its cached pages go stale.
    A file with none needs no record: none can be cached while a writer has it."""
    if ident in CACHED:
        GENERATION[ident] = GENERATION.get(ident, 0) + 1


def file_key(st: Any) -> tuple[int, ...] | None:
    """The key of a file's current contents (an os.stat_result), or None while a
    writer has it open."""
    ident = (st.st_dev, st.st_ino)
    if ident in WRITERS:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            GENERATION.get(ident, 0))


class TextCache:
    """File page -> guest frame, for one machine's memory. Kernel lock held."""

    def __init__(self, alloc: Any, limit: int) -> None:
        self.alloc = alloc
        self.limit = limit                 # frames
        self.pages: dict[tuple[Any, int], int] = {}
        alloc.reclaim = self.shrink

    def get(self, key: tuple[Any, int]) -> int | None:
        return self.pages.get(key)

    def put(self, key: tuple[Any, int], frame: int) -> bool:
        """Keep ``frame`` (filled from the file page ``key``); False when full."""
        if key in self.pages or len(self.pages) >= self.limit and not (
                self.shrink() and len(self.pages) < self.limit):
            return False
        self.alloc.share(frame)
        self.pages[key] = frame
        CACHED.add((key[0][0], key[0][1]))
        return True

    def shrink(self) -> bool:
        """Give back every frame no address space maps (stale keys included);
        True if any went."""
        holders = self.alloc.holders
        idle = [k for k, f in self.pages.items() if holders(f) <= 1]
        if not idle:
            return False
        frames = [self.pages.pop(k) for k in idle]
        self.alloc.free_many(frames)
        return True
