"""epoll (fs/eventpoll.c).

Some facts about epoll this follows:
- An interest entry is keyed by (fd, open file): closing the fd does not remove it
  while a dup of the file lives on; it goes when the file is released. EPOLL_CTL_DEL
  names the fd's *current* file.
- Each entry hooks the file's wait queue (``wake_on``, Linux's ep_poll_callback):
  a keyed wake-up for events the entry does not watch is ignored; otherwise the entry
  joins the ready list (once) and the epoll's own waiters are woken.
- epoll_wait walks the ready list in order, re-polling each entry: one that is not
  ready any more is dropped; a reported level-triggered entry goes back to the tail;
  an edge-triggered one waits for its next wake-up; an EPOLLONESHOT one is disabled
  until EPOLL_CTL_MOD. Entries it had no room for stay at the head.
- Files whose readiness is a host fd's (stdio) have no wake-ups: they are re-polled
  on every scan; edge-triggered, they report when a watched bit newly appears.
- An epoll file is pollable (readable while an entry is ready), so epolls nest:
  adding one to itself is EINVAL, a cycle or more than 4 levels is ELOOP.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import O_RDWR, POLLERR, POLLHUP, POLLIN, POLLRDNORM
from quark.kernel.fs.anon.anon import AnonFile
from quark.kernel.polling import events_of, host_fds_of, queue_of
from quark.kernel.vfs.file import File
from quark.kernel.waiting import WaitQueue

EPOLLEXCLUSIVE = 1 << 28
EPOLLWAKEUP = 1 << 29
EPOLLONESHOT = 1 << 30
EPOLLET = 1 << 31
EP_PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
EP_MAX_NESTS = 4
EVENT = struct.Struct("<IQ")        # struct epoll_event, packed on x86-64: 12 bytes


class Epitem:
    """One interest entry; sits in its file's wait queue as a keyed waiter."""

    def __init__(self, ep: EpollFile, fd: int, file: File, events: int, data: int,
                 t: Any) -> None:
        self.ep = ep
        self.fd = fd
        self.file = file
        self.events = events
        self.data = data
        self.queue: WaitQueue = queue_of(file, t)
        self.host = file.host_poll_fd() is not None or hasattr(file, "poll_host_fds")
        self.last = 0                   # host-backed entries: the mask seen last
        self.queue.waiters.add(self)

    @property
    def enabled(self) -> bool:
        return bool(self.events & ~EP_PRIVATE_BITS)

    def wake_on(self, events: int) -> None:
        if not self.enabled or (events and not events & self.events):
            return
        self.ep.make_ready(self)

    def wake(self) -> None:
        self.wake_on(0)

    def unhook(self) -> None:
        self.queue.waiters.discard(self)


class EpollFile(AnonFile):
    def __init__(self, flags: int = 0) -> None:
        super().__init__(O_RDWR, "[eventpoll]")
        self.items: dict[tuple[int, int], Epitem] = {}
        self.ready: dict[Epitem, None] = {}          # an ordered set: the ready list

    # ---- the interest list (epoll_ctl)
    def find(self, fd: int, f: File) -> Epitem | None:
        return self.items.get((fd, id(f)))

    def add(self, t: Any, fd: int, f: File, events: int, data: int) -> None:
        it = Epitem(self, fd, f, events, data, t)
        self.items[(fd, id(f))] = it
        if events_of(f, t) & events:
            self.make_ready(it)

    def modify(self, t: Any, it: Epitem, events: int, data: int) -> None:
        it.events, it.data = events, data
        it.last = 0
        if events_of(it.file, t) & events & ~EP_PRIVATE_BITS:
            self.make_ready(it)

    def remove(self, it: Epitem) -> None:
        it.unhook()
        self.items.pop((it.fd, id(it.file)), None)
        self.ready.pop(it, None)

    def make_ready(self, it: Epitem) -> None:
        if it not in self.ready:
            self.ready[it] = None
        self.wait_queue.notify(POLLIN | POLLRDNORM)

    # ---- scanning (ep_send_events)
    def _poll_host_items(self, t: Any) -> None:
        for it in list(self.items.values()):
            if not it.host or not it.enabled or it in self.ready:
                continue
            got = events_of(it.file, t) & it.events
            new = got & ~it.last if it.events & EPOLLET else got
            it.last = got
            if new:
                self.ready[it] = None

    def collect(self, t: Any, maxevents: int) -> list[tuple[int, int]]:
        """Take up to ``maxevents`` (events, data) pairs off the ready list."""
        self._poll_host_items(t)
        out: list[tuple[int, int]] = []
        requeue: list[Epitem] = []
        for it in list(self.ready):
            if len(out) >= maxevents:
                break
            del self.ready[it]
            if it.file.released:
                self.remove(it)
                continue
            got = events_of(it.file, t) & it.events
            if not got or not it.enabled:
                continue
            out.append((got, it.data))
            if it.events & EPOLLONESHOT:
                it.events &= EP_PRIVATE_BITS
            elif not it.events & EPOLLET:
                requeue.append(it)
        for it in requeue:
            self.ready[it] = None
        return out

    def purge(self) -> None:
        """Drop entries whose file is gone (Linux does it in the file's release)."""
        for it in [i for i in self.items.values() if i.file.released]:
            self.remove(it)

    # ---- the epoll file itself
    def poll_events_for(self, t: Any) -> int:
        self._poll_host_items(t)
        for it in list(self.ready):
            if it.file.released:
                self.remove(it)
            elif it.enabled and events_of(it.file, t) & it.events:
                return POLLIN | POLLRDNORM
            else:
                del self.ready[it]
        return 0

    def poll_events(self) -> int:
        return POLLIN | POLLRDNORM if self.ready else 0

    def poll_host_fds(self) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for it in self.items.values():
            if it.host and it.enabled and not it.file.released:
                out += host_fds_of(it.file, it.events | POLLERR | POLLHUP)
        return out

    def release(self) -> None:
        for it in list(self.items.values()):
            self.remove(it)

    # ---- nesting limits (ep_loop_check)
    def depth_below(self, target: EpollFile) -> int | None:
        """Levels of epolls reachable below this one; None if ``target`` is among
        them (a loop)."""
        deepest = 0
        for it in self.items.values():
            f = it.file
            if isinstance(f, EpollFile):
                if f is target:
                    return None
                d = f.depth_below(target)
                if d is None:
                    return None
                deepest = max(deepest, d + 1)
        return deepest

    def depth_above(self) -> int:
        """Levels of epolls watching this one."""
        up = 0
        for w in list(self.wait_queue.waiters):
            if isinstance(w, Epitem):
                up = max(up, w.ep.depth_above() + 1)
        return up


def is_epoll(f: File) -> bool:
    return isinstance(f, EpollFile)


def pack_events(events: list[tuple[int, int]]) -> bytes:
    return b"".join(EVENT.pack(ev & 0xFFFFFFFF, data) for ev, data in events)
