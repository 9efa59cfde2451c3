"""The advisory lock table (vfs/locks.py) and its fcntl/flock front (sys_fd.py)."""

from __future__ import annotations

import struct
from collections.abc import Coroutine
from typing import Any

import pytest

from quark.kernel.abi.linux import (
    EAGAIN,
    EBADF,
    EDEADLK,
    EFAULT,
    EINVAL,
    F_OFD_GETLK,
    F_OFD_SETLK,
    F_RDLCK,
    F_SETLK,
    F_UNLCK,
    F_WRLCK,
    LOCK_EX,
    LOCK_NB,
    O_RDONLY,
    O_RDWR,
)
from quark.kernel.errors import LinuxError
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import load
from quark.kernel.vfs.fdtable import FdTable
from quark.kernel.vfs.file import File
from quark.kernel.vfs.locks import OFD, OFFSET_MAX, POSIX, Lock, LockTable
from quark.kernel.waiting import ERESTARTSYS, Block, WaitQueue
from tests.unit.kernel.fakes import FakeMemory


class Inode:
    """Stands for a tmpfs node: the lock key is the object."""


class FakeFile(File):
    def __init__(self, node: Inode, flags: int = O_RDWR) -> None:
        super().__init__(flags, "/f")
        self.node = node


class T:
    """A task as the lock code sees it."""

    def __init__(self, table: LockTable, pid: int) -> None:
        self.pid = pid
        self.fds = FdTable()
        self.mm = FakeMemory()
        self.kernel = type("K", (), {"locks": table})()

    def block(self, queues: tuple[WaitQueue, ...] = (), timeout: float | None = None,
              host_fds: tuple[tuple[int, int], ...] = (), interruptible: bool = True) -> Block:
        return Block(tuple(queues), timeout, host_fds, interruptible)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive to the end: the result, ('blocked', coro) or -errno."""
    try:
        coro.send(None)
    except StopIteration as e:
        return e.value
    except LinuxError as e:
        return -e.errno
    return ("blocked", coro)


def resume(coro: Coroutine[Any, Any, Any], exc: BaseException | None = None) -> Any:
    try:
        if exc is not None:
            coro.throw(exc)
        else:
            coro.send(True)
    except StopIteration as e:
        return e.value
    except LinuxError as e:
        return -e.errno
    return "blocked"


def posix(t: T, f: File, ltype: int, start: int, end: int) -> Lock:
    return Lock(POSIX, ltype, start, end, t.fds, t.pid, f)


def ranges(table: LockTable, f: File) -> list[tuple[int, int, int, int]]:
    ctx = table.context(f, False)
    return [] if ctx is None else [(lk.pid, lk.type, lk.start, lk.end) for lk in ctx.posix]


@pytest.fixture
def env() -> tuple[LockTable, T, T, FakeFile, FakeFile]:
    table = LockTable()
    node = Inode()
    return table, T(table, 10), T(table, 20), FakeFile(node), FakeFile(node)


def test_ranges_split_retype_and_merge(env: Any) -> None:
    table, a, _, f, _ = env
    W, R = F_WRLCK, F_RDLCK
    assert run(table.setlk(a, f, posix(a, f, W, 0, 99), False)) is None
    run(table.setlk(a, f, posix(a, f, F_UNLCK, 40, 59), False))
    assert ranges(table, f) == [(10, W, 0, 39), (10, W, 60, 99)]
    run(table.setlk(a, f, posix(a, f, R, 60, 69), False))
    assert ranges(table, f) == [(10, W, 0, 39), (10, R, 60, 69), (10, W, 70, 99)]
    run(table.setlk(a, f, posix(a, f, W, 40, 69), False))
    assert ranges(table, f) == [(10, W, 0, 99)]
    run(table.setlk(a, f, posix(a, f, W, 100, OFFSET_MAX), False))
    assert ranges(table, f) == [(10, W, 0, OFFSET_MAX)]
    run(table.setlk(a, f, posix(a, f, F_UNLCK, 0, OFFSET_MAX), False))
    assert table.contexts == {}


def test_conflicts_and_first_reported(env: Any) -> None:
    table, a, b, f, g = env
    run(table.setlk(a, f, posix(a, f, F_RDLCK, 20, 29), False))
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, 9), False))
    assert run(table.setlk(b, g, posix(b, g, F_RDLCK, 25, 25), False)) is None
    assert run(table.setlk(b, g, posix(b, g, F_WRLCK, 5, 25), False)) == -EAGAIN
    found = table.test(g, posix(b, g, F_WRLCK, 0, OFFSET_MAX))
    assert found is not None and (found.pid, found.start, found.end) == (10, 0, 9)
    assert table.test(f, posix(a, f, F_WRLCK, 0, OFFSET_MAX)) is not None   # b's read lock
    assert table.test(g, posix(b, g, F_RDLCK, 20, 24)) is None


def test_flock_conversion_drops_the_old_lock_first(env: Any) -> None:
    table, a, b, f, g = env
    assert run(table.flock(a, f, F_RDLCK, False)) is None
    assert run(table.flock(b, g, F_RDLCK, False)) is None
    assert run(table.flock(a, f, F_WRLCK, False)) == -EAGAIN
    assert run(table.flock(b, g, F_WRLCK, False)) is None
    f.incref()
    f.decref()          # a's file released: nothing of it remains
    g.incref()
    g.decref()
    assert table.contexts == {}


def test_waiter_granted_after_unlock(env: Any) -> None:
    table, a, b, f, g = env
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, 0), False))
    state, coro = run(table.setlk(b, g, posix(b, g, F_WRLCK, 0, 10), True))
    assert state == "blocked"
    run(table.setlk(a, f, posix(a, f, F_UNLCK, 0, 0), False))
    assert resume(coro) is None
    assert ranges(table, f) == [(20, F_WRLCK, 0, 10)]
    assert table.blocked == {}


def test_deadlock_two_owners(env: Any) -> None:
    table, a, b, f, g = env
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, 0), False))
    run(table.setlk(b, g, posix(b, g, F_WRLCK, 1, 1), False))
    _, coro = run(table.setlk(b, g, posix(b, g, F_WRLCK, 0, 0), True))
    assert run(table.setlk(a, f, posix(a, f, F_WRLCK, 1, 1), True)) == -EDEADLK
    # OFD waiters are not processes: no detection, they just wait
    ofd = Lock(OFD, F_WRLCK, 1, 1, f, -1, f)
    state, coro2 = run(table.setlk(a, f, ofd, True))
    assert state == "blocked"
    assert resume(coro2, LinuxError(ERESTARTSYS)) == -ERESTARTSYS
    assert resume(coro, LinuxError(ERESTARTSYS)) == -ERESTARTSYS
    assert table.blocked == {}
    ctx = table.context(f, False)
    assert ctx is not None and ctx.sleepers == 0 and ctx.waiters == []


def test_interrupted_wait_leaves_nothing(env: Any) -> None:
    table, a, b, f, g = env
    run(table.flock(a, f, F_WRLCK, False))
    _, coro = run(table.flock(b, g, F_WRLCK, True))
    assert resume(coro, LinuxError(ERESTARTSYS)) == -ERESTARTSYS
    run(table.flock(a, f, F_UNLCK, False))
    assert table.contexts == {}


def test_close_of_any_fd_drops_posix_locks(env: Any) -> None:
    table, a, _, f, g = env
    fa = a.fds.install(f)
    fg = a.fds.install(g)
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, 9), False))
    assert a.fds.posix_locked
    a.fds.close(fg)             # another open file of the same inode
    assert table.contexts == {} and not a.fds.posix_locked
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, 9), False))
    child = a.fds.fork()        # not inherited: the child's closes leave them alone
    child.close(fa)
    assert ranges(table, f) == [(10, F_WRLCK, 0, 9)]
    a.fds.close_all()
    assert table.contexts == {}


def test_proc_locks_text(env: Any) -> None:
    table, a, b, f, g = env
    run(table.setlk(a, f, posix(a, f, F_WRLCK, 0, OFFSET_MAX), False))
    run(table.flock(b, g, F_RDLCK, False))
    assert table.proc_text() == ("1: POSIX  ADVISORY  WRITE 10 00:00:0 0 EOF\n"
                                 "2: FLOCK  ADVISORY  READ  20 00:00:0 0 EOF\n")


# ---- the system calls
_FLOCK = struct.Struct("<hh4xqqi4x")


def sys(t: T, nr: int, *args: int) -> Any:
    raw = tuple((list(args) + [0] * 6)[:6])
    entry = load()[nr]
    assert entry.handler is not None
    return run(entry.handler(t, SyscallArgs(nr, raw)))  # type: ignore[arg-type]


def test_fcntl_checks_and_getlk_writeback(env: Any) -> None:
    _, a, b, f, g = env
    fd = a.fds.install(f)
    ro = b.fds.install(FakeFile(f.node, O_RDONLY))
    gd = b.fds.install(g)
    buf = a.mm.put(_FLOCK.pack(F_WRLCK, 0, 0, 10, 0))
    assert sys(a, 72, fd, F_SETLK, buf) == 0
    assert sys(a, 72, fd, F_SETLK, 8) == -EFAULT
    assert sys(b, 72, ro, F_SETLK, b.mm.put(_FLOCK.pack(F_WRLCK, 0, 0, 1, 0))) == -EBADF
    assert sys(b, 72, gd, F_OFD_SETLK, b.mm.put(_FLOCK.pack(F_RDLCK, 0, 0, 1, 7))) == -EINVAL
    raw = bytearray(_FLOCK.pack(F_RDLCK, 1, 3, 0, 0))
    raw[4:8] = b"PADX"          # Linux copies the user's struct back, padding and all
    q = b.mm.put(bytes(raw))
    assert sys(b, 72, gd, F_OFD_GETLK, q) == 0
    out = b.mm.read(q, _FLOCK.size)
    assert _FLOCK.unpack(out) == (F_WRLCK, 0, 0, 10, 10) and out[4:8] == b"PADX"
    assert sys(b, 73, gd, LOCK_EX | LOCK_NB) == 0
    assert sys(a, 73, fd, LOCK_EX | LOCK_NB) == -EAGAIN
    assert sys(a, 73, fd, 3) == -EINVAL
    assert sys(a, 73, 99, LOCK_EX) == -EBADF


# ---- real files through the VFS: host files by (dev, ino), tmpfs and memfd by node
def test_vfs_files_and_proc_locks(tmp_path: Any) -> None:
    from quark.kernel.abi.linux import LOCK_SH, O_CREAT
    from tests.unit.kernel.fakes import FakeKernel, call

    (tmp_path / "rootfs/tmp").mkdir(parents=True)
    k = FakeKernel(str(tmp_path / "rootfs"))
    k.vfs.mount("/proc", "proc", "proc", [])
    k.vfs.mount("/dev/shm", "tmpfs", "shm", [])
    a, b = k.task(1), k.task(2)
    for path in ("/tmp/f", "/dev/shm/f"):
        fa = call(a, 2, a.mm.cstr(path), O_RDWR | O_CREAT, 0o644)
        fb = call(b, 2, b.mm.cstr(path), O_RDWR, 0)
        assert fa >= 0 and fb >= 0
        assert call(a, 73, fa, LOCK_EX | LOCK_NB) == 0
        assert call(b, 73, fb, LOCK_SH | LOCK_NB) == -EAGAIN, path
        lk = a.mm.put(_FLOCK.pack(F_WRLCK, 0, 5, 0, 0))
        assert call(a, 72, fa, F_SETLK, lk) == 0
        assert call(b, 72, fb, F_SETLK, b.mm.put(_FLOCK.pack(F_RDLCK, 0, 9, 1, 0))) == -EAGAIN
        fd = call(a, 2, a.mm.cstr("/proc/locks"), O_RDONLY, 0)
        buf = a.mm.alloc(4096)
        text = a.mm.read(buf, call(a, 0, fd, buf, 4096)).decode()
        call(a, 3, fd)
        lines = [ln.split(" ", 1)[1].split() for ln in text.splitlines()]
        assert [(ln[0], ln[2], ln[3], ln[5], ln[6]) for ln in lines] == \
            [("POSIX", "WRITE", "1", "5", "EOF"), ("FLOCK", "WRITE", "1", "0", "EOF")], text
        call(a, 3, fa)          # the last reference: flock and POSIX locks both go
        assert call(b, 73, fb, LOCK_EX | LOCK_NB) == 0
        call(b, 3, fb)
        assert k.locks.contexts == {}
    mfd = call(a, 319, a.mm.cstr("m"), 0)   # memfd_create
    dup = call(a, 32, mfd)
    assert call(a, 73, mfd, LOCK_EX | LOCK_NB) == 0 and call(a, 73, dup, LOCK_EX | LOCK_NB) == 0
    call(a, 3, mfd)
    call(a, 3, dup)
    assert k.locks.contexts == {}
