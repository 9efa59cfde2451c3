"""Advisory file locks (fs/locks.c): flock(2), fcntl record locks, OFD locks.

Some facts this follows:
- Locks belong to the inode, kept in a per-inode context (Linux's
  ``file_lock_context``) that exists only while it holds locks or waiters. The
  inode is a tmpfs/memfd node object, a host file's (st_dev, st_ino), or else the
  object behind the file (a pipe, the file itself).
- flock locks are owned by the open file description: dup'd and forked fds share
  them, another open() of the file conflicts. Converting SH<->EX first drops the
  old lock, then waits (or fails) for the new one: a failed LOCK_NB upgrade leaves
  no lock at all. They go when the File is released (its last reference).
- POSIX (fcntl) locks are owned by the fd table (``current->files``), so threads
  share them and fork does not inherit them; each owner's byte ranges never
  overlap, and same-type neighbours merge. Closing ANY fd of the inode drops all
  the owner's locks on it, and so does exit (every fd closed).
- OFD locks are POSIX ranges owned by the File; they and POSIX locks conflict
  with each other; F_GETLK reports their l_pid as -1.
- Waiting is interruptible: a signal ends it with ERESTARTSYS (both flock and
  F_SETLKW restart under SA_RESTART). Any change of a context wakes all its
  waiters, which re-check, as ``wait_event_interruptible`` does.
- Deadlock detection (posix_locks_deadlock) follows "owner waits for the owner of
  the lock blocking it" for at most 10 steps, for POSIX waiters only (OFD owners
  are not processes); the caller that would close a cycle gets EDEADLK.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

from quark.kernel.abi.linux import EAGAIN, EDEADLK, F_RDLCK, F_UNLCK, F_WRLCK
from quark.kernel.errors import LinuxError
from quark.kernel.waiting import WaitQueue

OFFSET_MAX = (1 << 63) - 1
MAX_DEADLK_ITERATIONS = 10

FLOCK, POSIX, OFD = "FLOCK", "POSIX", "OFDLCK"


class Lock:
    """One granted lock (or a request being decided): [start, end] inclusive."""

    __slots__ = ("end", "file", "kind", "owner", "pid", "start", "type")

    def __init__(self, kind: str, ltype: int, start: int, end: int, owner: Any,
                 pid: int, file: Any) -> None:
        self.kind = kind
        self.type = ltype
        self.start = start
        self.end = end
        self.owner = owner      # the File (flock, OFD) or the FdTable (POSIX)
        self.pid = pid          # tgid of the locker, for F_GETLK and /proc/locks
        self.file = file

    def overlaps(self, other: Lock) -> bool:
        return self.end >= other.start and other.end >= self.start

    def piece(self, start: int, end: int) -> Lock:
        return Lock(self.kind, self.type, start, end, self.owner, self.pid, self.file)

    def __repr__(self) -> str:
        return f"<Lock {self.kind} {self.type} {self.start}-{self.end} pid={self.pid}>"


class _Waiter:
    """A POSIX F_SETLKW asleep: its owner waits for ``blocker``'s owner (None once
    woken, until it tries again): the edges deadlock detection walks."""

    __slots__ = ("blocker", "owner")

    def __init__(self, owner: Any, blocker: Lock) -> None:
        self.owner = owner
        self.blocker: Lock | None = blocker


class LockContext:
    """The locks of one inode. POSIX and OFD locks are grouped by owner, each
    group sorted by start: F_GETLK reports the first conflict in this order."""

    def __init__(self, table: LockTable, key: Hashable, anchor: Any,
                 dev: tuple[int, int], ino: int) -> None:
        self.table = table
        self.key = key
        self.anchor = anchor        # keeps an id()-based key's object alive
        self.dev, self.ino = dev, ino
        self.flock: list[Lock] = []
        self.posix: list[Lock] = []
        self.wq = WaitQueue()
        self.sleepers = 0
        self.waiters: list[_Waiter] = []

    def changed(self) -> None:
        """Locks went or changed: wake every waiter to re-check. Those whose blocker
        is gone leave the deadlock graph until they block again, as Linux unhashes
        the waiters of a lock it deletes."""
        live = {id(lk) for lk in self.posix}
        for w in self.waiters:
            if w.blocker is not None and id(w.blocker) not in live:
                w.blocker = None
        self.wq.notify()

    def maybe_drop(self) -> None:
        if not self.flock and not self.posix and not self.sleepers \
                and self.table.contexts.get(self.key) is self:
            del self.table.contexts[self.key]

    async def sleep(self, t: Any, waiter: _Waiter | None) -> None:
        self.sleepers += 1
        if waiter is not None:
            self.waiters.append(waiter)
            self.table.blocked.setdefault(waiter.owner, []).append(waiter)
        try:
            await t.block((self.wq,))
        except BaseException:   # a signal: this request is abandoned
            self._unsleep(waiter)
            self.maybe_drop()
            raise
        self._unsleep(waiter)

    def _unsleep(self, waiter: _Waiter | None) -> None:
        self.sleepers -= 1
        if waiter is not None:
            self.waiters.remove(waiter)
            mine = self.table.blocked[waiter.owner]
            mine.remove(waiter)
            if not mine:
                del self.table.blocked[waiter.owner]


def _conflict(a: int, b: int) -> bool:
    return a == F_WRLCK or b == F_WRLCK


class LockTable:
    """Every inode's lock context, and the sleeping POSIX owners (for EDEADLK)."""

    def __init__(self) -> None:
        self.contexts: dict[Hashable, LockContext] = {}
        self.blocked: dict[Any, list[_Waiter]] = {}

    def context(self, f: Any, create: bool) -> LockContext | None:
        key, anchor = inode_key(f)
        ctx = self.contexts.get(key)
        if ctx is None and create:
            dev, ino = (0, 0), 0
            try:
                st = f.stat()
                dev, ino = st.dev, st.ino
            except LinuxError:
                pass
            ctx = self.contexts[key] = LockContext(self, key, anchor, dev, ino)
        return ctx

    # ---- flock(2)
    async def flock(self, t: Any, f: Any, ltype: int, wait: bool) -> None:
        """flock_lock_inode_wait: ``ltype`` F_RDLCK/F_WRLCK/F_UNLCK for ``f``."""
        ctx = self.context(f, ltype != F_UNLCK)
        if ctx is None:
            return
        while True:
            mine = next((lk for lk in ctx.flock if lk.file is f), None)
            if mine is not None:
                if mine.type == ltype:
                    return
                ctx.flock.remove(mine)
                ctx.changed()
            if ltype == F_UNLCK:
                ctx.maybe_drop()
                return
            if not any(lk.file is not f and _conflict(lk.type, ltype) for lk in ctx.flock):
                ctx.flock.append(Lock(FLOCK, ltype, 0, OFFSET_MAX, f, t.pid, f))
                f.lock_ctx = ctx
                return
            if not wait:
                ctx.maybe_drop()
                raise LinuxError(EAGAIN)
            await ctx.sleep(t, None)

    # ---- POSIX and OFD record locks
    def test(self, f: Any, req: Lock) -> Lock | None:
        """posix_test_lock: the first lock ``req`` conflicts with. An F_UNLCK
        request (F_OFD_GETLK since Linux 6.6) finds its own owner's locks."""
        ctx = self.context(f, False)
        if ctx is None:
            return None
        for lk in ctx.posix:
            if req.type == F_UNLCK:
                if lk.owner is req.owner and lk.overlaps(req):
                    return lk
            elif lk.owner is not req.owner and lk.overlaps(req) \
                    and _conflict(lk.type, req.type):
                return lk
        return None

    async def setlk(self, t: Any, f: Any, req: Lock, wait: bool) -> None:
        """posix_lock_inode (+ do_lock_file_wait): grant, fail or sleep."""
        ctx = self.context(f, req.type != F_UNLCK)
        if ctx is None:
            return
        while req.type != F_UNLCK:
            blocker = next((lk for lk in ctx.posix if lk.owner is not req.owner
                            and lk.overlaps(req) and _conflict(lk.type, req.type)), None)
            if blocker is None:
                break
            if not wait:
                ctx.maybe_drop()
                raise LinuxError(EAGAIN)
            if req.kind == POSIX and self._deadlock(req.owner, blocker):
                ctx.maybe_drop()
                raise LinuxError(EDEADLK)
            await ctx.sleep(t, _Waiter(req.owner, blocker) if req.kind == POSIX else None)
        self._apply(ctx, req)

    def _deadlock(self, owner: Any, blocker: Lock) -> bool:
        for _ in range(MAX_DEADLK_ITERATIONS + 1):
            nxt = next((w.blocker for w in self.blocked.get(blocker.owner, ())
                        if w.blocker is not None), None)
            if nxt is None:
                return False
            if nxt.owner is owner:
                return True
            blocker = nxt
        return False

    def _apply(self, ctx: LockContext, req: Lock) -> None:
        """Replace the owner's locks over [start, end] by ``req``, merging neighbours
        of the same type; the owner's group keeps its place in the list."""
        owner = req.owner
        at = next((i for i, lk in enumerate(ctx.posix) if lk.owner is owner), None)
        mine = [lk for lk in ctx.posix if lk.owner is owner]
        if at is None:
            at = len(ctx.posix)
        touched = False
        kept: list[Lock] = []
        for lk in mine:
            if lk.end < req.start - 1 or lk.start > req.end + 1:
                kept.append(lk)
                continue
            if lk.end < req.start or lk.start > req.end:     # only adjacent
                if lk.type == req.type:
                    touched = True
                else:
                    kept.append(lk)
                    continue
            touched = True
            if lk.start < req.start:
                kept.append(lk.piece(lk.start, req.start - 1))
            if lk.end > req.end:
                kept.append(lk.piece(req.end + 1, lk.end))
        if req.type != F_UNLCK:
            kept.append(req)
        kept.sort(key=lambda lk: lk.start)
        merged: list[Lock] = []
        for lk in kept:
            prev = merged[-1] if merged else None
            if prev is not None and prev.type == lk.type and prev.end >= lk.start - 1:
                merged[-1] = prev.piece(prev.start, max(prev.end, lk.end))
            else:
                merged.append(lk)
        rest = [lk for lk in ctx.posix if lk.owner is not owner]
        ctx.posix = rest[:at] + merged + rest[at:]
        _note_owner(owner, ctx, bool(merged))
        if touched:
            ctx.changed()
        ctx.maybe_drop()

    def remove_posix(self, ctx: LockContext, owner: Any) -> None:
        """locks_remove_posix: every lock of ``owner`` on this inode."""
        if any(lk.owner is owner for lk in ctx.posix):
            ctx.posix = [lk for lk in ctx.posix if lk.owner is not owner]
            ctx.changed()
        _note_owner(owner, ctx, False)
        ctx.maybe_drop()

    # ---- /proc/locks
    def proc_text(self) -> str:
        out: list[str] = []
        for ctx in self.contexts.values():
            for lk in ctx.posix + ctx.flock:
                if lk.kind == FLOCK:
                    head = "FLOCK  ADVISORY  "
                else:
                    head = ("OFDLCK" if lk.kind == OFD else "POSIX ") + " ADVISORY  "
                kind = "WRITE" if lk.type == F_WRLCK else "READ " if lk.type == F_RDLCK \
                    else "UNLCK"
                pid = -1 if lk.kind == OFD else lk.pid
                rng = "0 EOF" if lk.kind == FLOCK else \
                    f"{lk.start} {'EOF' if lk.end == OFFSET_MAX else lk.end}"
                out.append(f"{len(out) + 1}: {head}{kind} {pid} "
                           f"{ctx.dev[0]:02x}:{ctx.dev[1]:02x}:{ctx.ino} {rng}\n")
        return "".join(out)


def _note_owner(owner: Any, ctx: LockContext, holds: bool) -> None:
    """Record on the owner where it holds locks, so the close and release paths
    reach them without a table lookup: an fd table maps inode keys to contexts
    (``posix_locked``), a File remembers its one context (``lock_ctx``)."""
    held = getattr(owner, "posix_locked", None)
    if held is None:
        if holds:
            owner.lock_ctx = ctx
        return
    if holds:
        held[ctx.key] = ctx
    elif held.get(ctx.key) is ctx:
        del held[ctx.key]


def inode_key(f: Any) -> tuple[Hashable, Any]:
    """(key, anchor) naming ``f``'s inode; cached on the File, which never changes
    inode. The anchor is an object whose id() is in the key."""
    cached = getattr(f, "lock_key", None)
    if cached is not None:
        return cached      # type: ignore[no-any-return]
    key: tuple[Hashable, Any] | None = None
    hfd = getattr(f, "host_fd", None)
    if hfd is None:
        hfd = getattr(f, "dir_fd", None)
    if isinstance(hfd, int):
        try:
            st = os.fstat(hfd)
            key = (("host", st.st_dev, st.st_ino), None)
        except OSError:
            key = None
    if key is None:
        obj = getattr(f, "node", None) or getattr(f, "pipe", None)
        loc = getattr(f, "loc", None)
        if obj is None and loc is not None:
            node = loc.node
            key = (("node", id(node.fs), node.key()), node.fs)
        else:
            obj = f if obj is None else obj
            key = (("obj", id(obj)), obj)
    f.lock_key = key
    return key


# ---- the vfs hooks (fdtable close, File release)
def close_posix(f: Any, fds: Any) -> None:
    """filp_close: closing any fd of an inode drops the fd table's POSIX locks on
    it. Called only when ``fds`` holds some POSIX lock."""
    key, _ = inode_key(f)
    ctx = fds.posix_locked.get(key)
    if ctx is not None:
        ctx.table.remove_posix(ctx, fds)


def release_file(f: Any) -> None:
    """locks_remove_file: the File's OFD and flock locks go with its last reference."""
    ctx = f.lock_ctx
    f.lock_ctx = None
    ctx.table.remove_posix(ctx, f)
    if any(lk.file is f for lk in ctx.flock):
        ctx.flock = [lk for lk in ctx.flock if lk.file is not f]
        ctx.changed()
    ctx.maybe_drop()
