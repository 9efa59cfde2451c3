"""Test doubles for kernel unit tests: a bytearray-backed GuestMemory, a Task with
the attributes handlers use, and helpers to drive handler coroutines."""

from __future__ import annotations

import errno
import struct
from collections.abc import Coroutine
from typing import Any

from quark.kernel.creds import Creds
from quark.kernel.errors import LinuxError
from quark.kernel.fs.host.writebehind import WriteBehind
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import load
from quark.kernel.vfs.fdtable import FdTable
from quark.kernel.vfs.locks import LockTable
from quark.kernel.vfs.mount import VFS
from quark.kernel.waiting import Block, WaitQueue


class FakeMemory:
    """Guest memory [base, base+size) over a bytearray; anything else is EFAULT.
    iovecs() splits buffers at 4 KiB boundaries, like non-contiguous guest pages."""

    def __init__(self, base: int = 0x10000, size: int = 1 << 21) -> None:
        self.base = base
        self.buf = bytearray(size)
        self.brk = base

    def _off(self, addr: int, n: int) -> int:
        if addr < self.base or addr + n > self.base + len(self.buf) or n < 0:
            raise LinuxError(errno.EFAULT)
        return addr - self.base

    def read(self, addr: int, n: int) -> bytes:
        o = self._off(addr, n)
        return bytes(self.buf[o:o + n])

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        o = self._off(addr, len(data))
        self.buf[o:o + len(data)] = data

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        o = self._off(addr, 1)
        end = self.buf.find(b"\0", o, o + limit)
        if end < 0:
            if o + limit > len(self.buf):
                raise LinuxError(errno.EFAULT)
            raise LinuxError(errno.ENAMETOOLONG)
        return bytes(self.buf[o:end])

    def read_u32(self, addr: int) -> int:
        return int(struct.unpack("<I", self.read(addr, 4))[0])

    def read_u64(self, addr: int) -> int:
        return int(struct.unpack("<Q", self.read(addr, 8))[0])

    def write_u32(self, addr: int, v: int) -> None:
        self.write(addr, struct.pack("<I", v & 0xFFFFFFFF))

    def write_u64(self, addr: int, v: int) -> None:
        self.write(addr, struct.pack("<Q", v & (1 << 64) - 1))

    def iovecs(self, addr: int, n: int, write: bool, partial: bool = False) -> list[memoryview]:
        o = self._off(addr, n)
        mv = memoryview(self.buf)
        out = []
        while n > 0:
            k = min(n, 4096 - (o % 4096))
            out.append(mv[o:o + k])
            o += k
            n -= k
        return out

    # ---- test helpers
    def alloc(self, n: int) -> int:
        a = self.brk
        self.brk += (n + 15) & ~15
        assert self.brk <= self.base + len(self.buf)
        return a

    def put(self, data: bytes) -> int:
        a = self.alloc(len(data) + 1)
        self.write(a, data)
        return a

    def cstr(self, s: str | bytes) -> int:
        return self.put((s.encode() if isinstance(s, str) else s) + b"\0")


class FakeTask:
    def __init__(self, kernel: FakeKernel, pid: int = 1, creds: Creds | None = None) -> None:
        self.kernel = kernel
        self.pid = self.tid = pid
        self.ppid = 0
        self.pgid = self.sid = pid
        self.comm = "init"
        self.mm = FakeMemory()
        self.fds = FdTable()
        self.fs = kernel.vfs.new_fs_context()
        self.creds = creds or Creds.root()
        self.rlimits = None
        self.blocked: list[Block] = []

    def block(self, queues: tuple[WaitQueue, ...] = (), timeout: float | None = None,
              host_fds: tuple[tuple[int, int], ...] = (), interruptible: bool = True) -> Block:
        return Block(queues, timeout, host_fds, interruptible)


class FakeKernel:
    def __init__(self, rootfs: str, **kw: Any) -> None:
        self.vfs = VFS(rootfs, kernel=self, **kw)
        self.hostname = "quark-test"
        self.boot_time = 0.0
        self.tasks: list[FakeTask] = []
        self.locks = LockTable()
        self.write_behind = WriteBehind()
        self.gate_calls = False             # no vCPU, no gate

    def procs(self) -> list[Any]:
        from quark.kernel.fs.proc.info import ProcInfo
        out = []
        for t in self.tasks:
            fds = {fd: f.path for fd, f in t.fds}
            out.append(ProcInfo(
                pid=t.pid, ppid=t.ppid, pgid=t.pgid, sid=t.sid, comm=t.comm, state="R",
                cmdline=b"/bin/sh\0-c\0true\0", environ=b"PATH=/bin\0", exe="/bin/sh",
                cwd=t.fs.cwd_path(), root="/", uid=t.creds.uid, gid=t.creds.gid,
                threads=1, vm_size_kb=1024, vm_rss_kb=512, fds=fds,
                start_time_ticks=10, utime_ticks=1, stime_ticks=2))
        return out

    def task(self, pid: int = 1, creds: Creds | None = None) -> FakeTask:
        t = FakeTask(self, pid, creds)
        self.tasks.append(t)
        return t


def drive(coro: Coroutine[Any, Any, int]) -> int:
    """Run a handler that must not block; LinuxError becomes -errno."""
    try:
        coro.send(None)
    except StopIteration as e:
        return int(e.value)
    except LinuxError as e:
        return -e.errno
    coro.close()
    raise AssertionError("handler blocked")


def call(t: FakeTask, nr: int, *args: int) -> int:
    """Invoke syscall ``nr`` like the dispatcher would: -errno on failure."""
    raw = tuple((list(args) + [0] * 6)[:6])
    entry = load()[nr]
    assert entry.handler is not None
    return drive(entry.handler(t, SyscallArgs(nr, raw)))  # type: ignore[arg-type]


def fast_call(t: FakeTask, nr: int, *args: int) -> int | None:
    """Invoke syscall ``nr``'s plain twin (syscalls.table.FAST) as taskrun's QCall
    fast path does: -errno on failure, None when it hands the call over."""
    from quark.kernel.syscalls.table import FAST
    raw = tuple((list(args) + [0] * 6)[:6])
    try:
        return FAST[nr](t, raw)  # type: ignore[arg-type]
    except LinuxError as e:
        return -e.errno


def start(t: FakeTask, nr: int, *args: int) -> tuple[Coroutine[Any, Any, int], Any]:
    """Start a handler expected to block: (coroutine, yielded Block or result)."""
    raw = tuple((list(args) + [0] * 6)[:6])
    entry = load()[nr]
    assert entry.handler is not None
    coro = entry.handler(t, SyscallArgs(nr, raw))
    try:
        return coro, coro.send(None)  # type: ignore[union-attr]
    except StopIteration as e:
        return coro, ("done", e.value)


def resume(coro: Coroutine[Any, Any, int], value: Any = True) -> Any:
    """Resume a blocked handler; returns its result, -errno, or the next Block."""
    try:
        return coro.send(value)
    except StopIteration as e:
        return ("done", e.value)
    except LinuxError as e:
        return ("done", -e.errno)


def neg(code: int) -> int:
    return -code
