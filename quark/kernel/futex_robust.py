"""Robust futex lists: what a thread's exit does for the locks it still holds.

Some facts this follows (kernel/futex/core.c, exit_robust_list and handle_futex_death):
- set_robust_list registers ``struct robust_list_head { struct robust_list list;
  long futex_offset; struct robust_list *list_op_pending; }`` (24 bytes). Each list
  entry is a ``struct robust_list { next }`` inside a lock; the lock's futex word is
  at entry + futex_offset. Bit 0 of a pointer marks a PI futex.
- At exit (and at execve) the kernel walks the list from head.list.next until it
  comes back to &head.list, at most ROBUST_LIST_LIMIT entries (lists may be circular
  or garbage), then handles list_op_pending, the lock being added or removed when
  the thread died, unless the walk already met it.
- For each word whose TID bits are the dying thread's tid: the word becomes
  FUTEX_OWNER_DIED, keeping FUTEX_WAITERS, and one waiter is woken when it was set
  (PI futexes are woken elsewhere; there are none here). A pending word with no
  owner wakes one waiter untouched: its unlocker died between release and wake.
- Any fault (bad pointer, misaligned or read-only word) ends the walk silently.
- There is no atomic compare-and-swap on guest memory here: the word is read and
  rewritten under the kernel lock. A user-space locker racing in between only sets
  FUTEX_WAITERS; its FUTEX_WAIT then sees another value and it retries.
"""

from __future__ import annotations

import struct

from quark.kernel.errors import LinuxError
from quark.kernel.task import Task

ROBUST_LIST_LIMIT = 2048
ROBUST_HEAD_SIZE = 24
FUTEX_WAITERS = 0x80000000
FUTEX_OWNER_DIED = 0x40000000
FUTEX_TID_MASK = 0x3FFFFFFF
_HEAD = struct.Struct("<QqQ")


def exit_robust_list(t: Task) -> None:
    """Release the robust futexes ``t`` holds; runs with the kernel lock held, before
    the task's memory goes. Never raises for bad guest data."""
    head, t.robust_list = t.robust_list, 0
    if not head:
        return
    mm = t.mm
    try:
        nxt, offset, pending = _HEAD.unpack(mm.read(head, ROBUST_HEAD_SIZE))
    except LinuxError:
        return
    entry, pi = nxt & ~1, nxt & 1
    pending, pending_pi = pending & ~1, pending & 1
    limit = ROBUST_LIST_LIMIT
    while entry != head:
        try:
            nxt = mm.read_u64(entry)
        except LinuxError:
            nxt = None
        if entry != pending and not _futex_death(t, entry + offset, pi, False):
            return
        if nxt is None:
            return
        entry, pi = nxt & ~1, nxt & 1
        limit -= 1
        if not limit:
            break
    if pending:
        _futex_death(t, pending + offset, pending_pi, True)


def _futex_death(t: Task, addr: int, pi: int, pending: bool) -> bool:
    """handle_futex_death; False when the walk must stop (a fault)."""
    addr &= 0xFFFFFFFFFFFFFFFF
    if addr & 3:
        return False
    mm = t.mm
    try:
        val = mm.read_u32(addr)
        owner = val & FUTEX_TID_MASK
        if pending and not pi and not owner:
            _wake(t, addr)
            return True
        if owner != t.tid:
            return True
        mm.write_u32(addr, (val & FUTEX_WAITERS) | FUTEX_OWNER_DIED)
    except LinuxError:
        return False
    if not pi and val & FUTEX_WAITERS:
        _wake(t, addr)
    return True


def _wake(t: Task, addr: int) -> None:
    futex = getattr(t.kernel, "futex", None)
    if futex is not None:
        futex.wake(t.mm, addr, 1)
