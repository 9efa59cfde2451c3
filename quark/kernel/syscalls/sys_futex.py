"""futex(2)."""

from __future__ import annotations

import struct
import time

from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.futex import BITSET_ANY
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.task import Task

FUTEX_WAIT, FUTEX_WAKE, FUTEX_FD, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE, FUTEX_WAKE_OP = 0, 1, 2, 3, 4, 5
FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET = 9, 10
FUTEX_PRIVATE_FLAG = 128
FUTEX_CLOCK_REALTIME = 256


def _timeout(t: Task, ts_p: int, absolute: bool, realtime: bool) -> float | None:
    if not ts_p:
        return None
    sec, nsec = struct.unpack("<qq", t.mm.read(ts_p, 16))
    if sec < 0 or not 0 <= nsec < 1_000_000_000:
        raise LinuxError(L.EINVAL)
    v = sec + nsec / 1e9
    if not absolute:
        return v
    now = time.time() if realtime else time.monotonic()
    return v - now


async def _wait(t: Task, addr: int, val: int, timeout: float | None, bitset: int) -> int:
    if addr & 3:
        raise LinuxError(L.EINVAL)
    if bitset == 0:
        raise LinuxError(L.EINVAL)
    table = t.kernel.futex
    if t.mm.read_u32(addr) != val & 0xFFFFFFFF:
        raise LinuxError(L.EAGAIN)
    w = table.enqueue(t.mm, addr, bitset)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not w.woken:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise LinuxError(L.ETIMEDOUT)
            await t.block((w.queue,), timeout=left)
    finally:
        if not w.woken:
            table.dequeue(w)
    return 0


def _wake_op(t: Task, addr: int, addr2: int, n: int, n2: int, op: int) -> int:
    kind, cmp = (op >> 28) & 0xF, (op >> 24) & 0xF
    oparg, cmparg = (op >> 12) & 0xFFF, op & 0xFFF
    if kind & 8:
        kind &= 7
        oparg = 1 << oparg
    old = t.mm.read_u32(addr2)
    new = {0: oparg, 1: old + oparg, 2: old | oparg, 3: old & ~oparg, 4: old ^ oparg}.get(kind)
    if new is None:
        raise LinuxError(L.ENOSYS)
    t.mm.write_u32(addr2, new)
    table = t.kernel.futex
    done = table.wake(t.mm, addr, n)
    ok = {0: old == cmparg, 1: old != cmparg, 2: old < cmparg, 3: old <= cmparg,
          4: old > cmparg, 5: old >= cmparg}.get(cmp)
    if ok is None:
        raise LinuxError(L.ENOSYS)
    if ok:
        done += table.wake(t.mm, addr2, n2)
    return done


@syscall(202, "futex", partial="no PI futexes")
async def sys_futex(t: Task, a: SyscallArgs) -> int:
    addr, op, val, ts_p, addr2, val3 = a.ptr(0), a.int(1), a.uint(2), a.ptr(3), a.ptr(4), a.uint(5)
    cmd = op & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
    realtime = bool(op & FUTEX_CLOCK_REALTIME)
    table = t.kernel.futex
    if cmd == FUTEX_WAIT:
        return await _wait(t, addr, val, _timeout(t, ts_p, False, realtime), BITSET_ANY)
    if cmd == FUTEX_WAIT_BITSET:
        return await _wait(t, addr, val, _timeout(t, ts_p, True, realtime), val3)
    if cmd == FUTEX_WAKE:
        return table.wake(t.mm, addr, val)
    if cmd == FUTEX_WAKE_BITSET:
        if val3 == 0:
            raise LinuxError(L.EINVAL)
        return table.wake(t.mm, addr, val, val3)
    if cmd in (FUTEX_REQUEUE, FUTEX_CMP_REQUEUE):
        if cmd == FUTEX_CMP_REQUEUE and t.mm.read_u32(addr) != val3:
            raise LinuxError(L.EAGAIN)
        return table.requeue(t.mm, addr, addr2, val, a.uint(3))
    if cmd == FUTEX_WAKE_OP:
        return _wake_op(t, addr, addr2, val, a.uint(3), val3)
    raise LinuxError(L.ENOSYS)
