"""exit_robust_list against hand-built lists in fake guest memory."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from quark.kernel.futex import FutexTable
from quark.kernel.futex_robust import FUTEX_OWNER_DIED, FUTEX_WAITERS, exit_robust_list
from tests.unit.kernel.fakes import FakeMemory

TID = 42
OFF = 8      # the word sits 8 bytes after each entry's next pointer


def _task(mm: FakeMemory, head: int) -> Any:
    k = SimpleNamespace(futex=FutexTable())
    return SimpleNamespace(tid=TID, mm=mm, kernel=k, robust_list=head)


def _build(mm: FakeMemory, words: list[int], nexts: list[int | None],
           pending: int | None = None) -> tuple[int, list[int]]:
    """A head and one 16-byte lock per word; nexts[i] is the index entry i points to
    (None: back to the head). Returns (head, entry addresses)."""
    head = mm.alloc(24)
    entries = [mm.alloc(16) for _ in words]
    for e, w, n in zip(entries, words, nexts):
        mm.write_u64(e, head if n is None else entries[n])
        mm.write_u32(e + OFF, w)
    mm.write_u64(head, entries[0] if entries else head)
    mm.write_u64(head + 8, OFF)
    mm.write_u64(head + 16, 0 if pending is None else entries[pending])
    return head, entries


def test_owned_words_get_owner_died_and_waiters_are_woken() -> None:
    mm = FakeMemory()
    head, e = _build(mm, [TID, TID | FUTEX_WAITERS, 7, TID], [1, 2, None, None], pending=3)
    t = _task(mm, head)
    w = t.kernel.futex.enqueue(mm, e[1] + OFF)
    idle = t.kernel.futex.enqueue(mm, e[0] + OFF)
    exit_robust_list(t)
    assert [mm.read_u32(x + OFF) for x in e] == [
        FUTEX_OWNER_DIED, FUTEX_OWNER_DIED | FUTEX_WAITERS, 7, FUTEX_OWNER_DIED]
    assert w.woken and not idle.woken
    assert t.robust_list == 0


def test_pending_unowned_word_wakes_one_untouched() -> None:
    mm = FakeMemory()
    head, e = _build(mm, [0], [None], pending=0)
    t = _task(mm, head)
    mm.write_u64(head, head)                    # empty list; only the pending op
    w = t.kernel.futex.enqueue(mm, e[0] + OFF)
    exit_robust_list(t)
    assert mm.read_u32(e[0] + OFF) == 0 and w.woken


def test_circular_and_broken_lists_end_quietly() -> None:
    mm = FakeMemory()
    head, e = _build(mm, [TID, TID], [0, None])          # entry 0 points to itself
    exit_robust_list(_task(mm, head))
    assert mm.read_u32(e[0] + OFF) == FUTEX_OWNER_DIED
    assert mm.read_u32(e[1] + OFF) == TID                # never reached
    head, e = _build(mm, [TID], [None])
    mm.write_u64(e[0], 16)                               # garbage next pointer
    exit_robust_list(_task(mm, head))
    assert mm.read_u32(e[0] + OFF) == FUTEX_OWNER_DIED
    for bad_head in (8, 1 << 63, 0xFFFFFFFFFFFFFFF0):
        exit_robust_list(_task(mm, bad_head))
    head, e = _build(mm, [TID], [None])
    mm.write_u64(head + 8, (1 << 64) - 5)                # offset -5: misaligned word
    exit_robust_list(_task(mm, head))
    assert mm.read_u32(e[0] + OFF) == TID
