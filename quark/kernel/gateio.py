"""Calls the gate answers by itself: grants for the fast path of supervisor_pvm.S.

Some facts this rests on (bench/README.md): a system call served by the host costs
5-10 µs here, most of it Python; `dd bs=4k` makes two per 4 KiB. The gate runs in
user mode on the task's own page tables, so it can move a caller's bytes itself
(rep stos/movs) with the caller's own rights. What it may answer is what the host
wrote into this vCPU's mailbox, per fd below ``GATE_FDS``:

- K_READ_ZERO / K_READ_EOF: read(2) of /dev/zero (and /dev/full) / of /dev/null;
- K_WRITE_DISCARD: write(2) to /dev/null and /dev/zero, which never read the buffer
  (/dev/random's writes do: no grant);
- K_WRITE_RING: write(2) into the task's write ring, which write-behind drains into
  a rootfs file (fs/host/writebehind.py).

Anything else, a length over the gate's ``FAST_MAX`` (1 MiB, supervisor_pvm.S), a
buffer reaching past the user range, DF/TF/AC set: the call goes on to the host as
before, which decides as Linux does.

The rules that keep grants true:
- Only for a task whose fd table is its own and while no plugin observes calls
  (strace sees every call). A ring also needs the address space to be its own.
- A grant is written only while its task is stopped in the host, and every call the
  host serves for the task other than read and write clears them all first
  (``settle``): that is where an fd could be closed, dup'ed over or the address
  space replaced. Read and write change no fd.
- A vCPU stopped inside the fast path is made to look as Linux would (the vCPU's
  ``gate_rewind``): a signal finds the call either not started (the syscall
  instruction runs again after the handler) or complete. A fault the host cannot
  fix (a bad buffer) sends the call to the exit path, which returns what Linux does
  (EFAULT, a short count), instead of a SIGSEGV.
"""

from __future__ import annotations

from typing import Any

from quark.core.guest.layout import GATE_FDS


def eligible(t: Any, ring: bool = False) -> bool:
    """May ``t``'s gate answer calls on its own? Kernel lock held, ``t`` stopped."""
    k = t.kernel
    if not k.gate_calls or k.syscall_observer is not None or t.vcpu is None:
        return False
    if t.fds.users != 1:
        return False
    return not ring or (t.mm.users == 1 and len(t.tg.threads) == 1)


def grant_device(t: Any, fd: int, f: Any, write: bool) -> None:
    """A read or write of a memory device just succeeded on ``fd``: let the gate
    answer the next ones."""
    kinds = f.gate_kinds
    if kinds is None or not 0 <= fd < GATE_FDS:
        return
    kind = kinds[1] if write else kinds[0]
    if not kind or not eligible(t):
        return
    v = t.vcpu
    cur = v.gate_kind(fd)
    if not cur & kind:
        v.gate_grant(fd, cur | kind)


def settle(t: Any, vcpu: Any, nr: int, rw_too: bool) -> None:
    """``t`` is stopped at system call ``nr``, about to be served: what is pending
    (a write-behind run, the write ring) reaches the file first, and a call other
    than read or write takes back the task's grants. ``rw_too``: flush before read
    and write as well (the exit path never extends a run). Kernel lock held."""
    wb = t.kernel.write_behind
    if wb.file is not None and (rw_too or nr > 1):
        wb.flush(t, drop=nr > 1)
    if vcpu.grants and nr > 1:
        vcpu.gate_clear()
