"""A tiny task for unit-testing the identity, time and misc syscall handlers without KVM.

``FakeMem`` is guest memory over a bytearray at ``BASE``; pages can be made unmapped
to provoke EFAULT. ``run`` drives an ``async def`` handler with ``coro.send``: every
``Block`` it yields is answered by ``on_block`` (default: the timeout expired).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from quark.kernel.abi.linux import EFAULT, ENAMETOOLONG, PAGE_SIZE
from quark.kernel.creds import Creds
from quark.kernel.errors import LinuxError
from quark.kernel.rlimits import Rlimits
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.waiting import Block
from tests.unit.kernel.fakes import FakeMemory

BASE = 0x10000
SIZE = 16 * PAGE_SIZE


class FakeMem(FakeMemory):
    """fakes.FakeMemory at BASE, with pages that can be made unmapped."""

    def __init__(self) -> None:
        super().__init__(BASE, SIZE)
        self.unmapped: set[int] = set()  # page numbers relative to BASE

    def unmap_page(self, addr: int) -> None:
        self.unmapped.add((addr - BASE) // PAGE_SIZE)

    def _off(self, addr: int, n: int) -> int:
        off = super()._off(addr, n)
        for page in range(off // PAGE_SIZE, (off + max(n, 1) - 1) // PAGE_SIZE + 1):
            if page in self.unmapped:
                raise LinuxError(EFAULT)
        return off

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        out = bytearray()       # byte by byte: a string may run into an unmapped page
        while len(out) < limit:
            c = self.read(addr + len(out), 1)
            if c == b"\0":
                return bytes(out)
            out += c
        raise LinuxError(ENAMETOOLONG)


class FakeKernel:
    def __init__(self) -> None:
        self.hostname = "sandbox"
        self.domainname = "(none)"
        self.ncpus = 4
        self.tasks: dict[int, Any] = {}

    def find_task(self, pid: int) -> Any:
        return self.tasks.get(pid)

    def procs(self) -> list[Any]:
        return list(self.tasks.values())


class FakeFds:
    def __init__(self, fds: set[int] | None = None) -> None:
        self.fds = fds if fds is not None else {0, 1, 2}

    def get(self, fd: int) -> object:
        from quark.kernel.abi.linux import EBADF
        if fd not in self.fds:
            raise LinuxError(EBADF)
        return object()


class FakeTask:
    def __init__(self, pid: int = 1, creds: Creds | None = None,
                 kernel: FakeKernel | None = None) -> None:
        self.tid = self.pid = pid
        self.ppid = 0
        self.creds = creds or Creds.root()
        self.rlimits = Rlimits()
        self.mm = FakeMem()
        self.kernel = kernel or FakeKernel()
        self.kernel.tasks[pid] = self
        self.fds = FakeFds()
        self.comm = b"init"
        self.blocks: list[Block] = []
        # Answer to each Block: True woken, False timeout, or an exception to raise.
        self.on_block: Callable[[Block], bool | BaseException] = lambda b: False

    def block(self, queues: tuple[Any, ...], timeout: float | None = None,
              host_fds: tuple[tuple[int, int], ...] = ()) -> Block:
        return Block(tuple(queues), timeout, tuple(host_fds), True)


def run(t: FakeTask, coro: Coroutine[Any, Any, int]) -> int:
    """Drive a handler to completion; LinuxError propagates."""
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            req = coro.throw(exc) if exc is not None else coro.send(value)
        except StopIteration as e:
            return int(e.value)
        assert isinstance(req, Block), req
        t.blocks.append(req)
        answer = t.on_block(req)
        value, exc = (None, answer) if isinstance(answer, BaseException) else (answer, None)


def call(t: FakeTask, handler: Any, *args: int) -> int:
    """Run ``handler`` with raw arguments (negative ints become 64-bit words)."""
    raw = tuple(x & (1 << 64) - 1 for x in args) + (0,) * (6 - len(args))
    return run(t, handler(t, SyscallArgs(0, raw)))  # type: ignore[arg-type]


def errno_of(t: FakeTask, handler: Any, *args: int) -> int:
    """The errno ``handler`` fails with (AssertionError if it succeeds)."""
    try:
        r = call(t, handler, *args)
    except LinuxError as e:
        return e.errno
    raise AssertionError(f"{handler.__name__} succeeded with {r}")
