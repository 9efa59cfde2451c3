"""Futexes: wait queues keyed by a user address.

Keys come from the address space (``futex_key``): the shared object and offset for
MAP_SHARED memory, so processes mapping it meet; else (address space, address).
The private flag is not needed to tell them apart: a word in private memory has the
same key either way.
Each waiter has its own queue so a wake of N releases exactly N, in FIFO order.
"""

from __future__ import annotations

from typing import Any

from quark.kernel.waiting import WaitQueue

BITSET_ANY = 0xFFFFFFFF


class Waiter:
    __slots__ = ("bitset", "key", "queue", "woken")

    def __init__(self, key: tuple[int, int], bitset: int) -> None:
        self.key = key
        self.bitset = bitset
        self.woken = False
        self.queue = WaitQueue()


class FutexTable:
    def __init__(self) -> None:
        self._q: dict[tuple[int, int], list[Waiter]] = {}

    @staticmethod
    def key(mm: Any, addr: int) -> tuple[int, int]:
        fk = getattr(mm, "futex_key", None)
        return fk(addr) if fk is not None else (id(mm), addr)

    def enqueue(self, mm: Any, addr: int, bitset: int = BITSET_ANY) -> Waiter:
        w = Waiter(self.key(mm, addr), bitset)
        self._q.setdefault(w.key, []).append(w)
        return w

    def dequeue(self, w: Waiter) -> None:
        q = self._q.get(w.key)
        if q and w in q:
            q.remove(w)
            if not q:
                del self._q[w.key]

    def wake(self, mm: Any, addr: int, n: int, bitset: int = BITSET_ANY) -> int:
        key = self.key(mm, addr)
        q = self._q.get(key, [])
        woken = 0
        for w in list(q):
            if woken >= n:
                break
            if not w.bitset & bitset:
                continue
            q.remove(w)
            w.woken = True
            w.queue.notify()
            woken += 1
        if not q:
            self._q.pop(key, None)
        return woken

    def requeue(self, mm: Any, addr: int, addr2: int, n_wake: int, n_requeue: int) -> int:
        done = self.wake(mm, addr, n_wake)
        key, key2 = self.key(mm, addr), self.key(mm, addr2)
        q = self._q.get(key, [])
        moved = 0
        while q and moved < n_requeue:
            w = q.pop(0)
            w.key = key2
            self._q.setdefault(key2, []).append(w)
            moved += 1
        if not q:
            self._q.pop(key, None)
        return done + moved
