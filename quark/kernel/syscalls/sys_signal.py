"""Signal calls: dispositions, masks, sigreturn, alternate stacks, waiting, timers."""

from __future__ import annotations

import struct
import threading
import time

from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.signals import (
    MINSIGSTKSZ,
    SIG_BLOCK,
    SIG_SETMASK,
    SIG_UNBLOCK,
    SS_AUTODISARM,
    SS_DISABLE,
    SS_ONSTACK,
    UNCATCHABLE,
    SigAction,
    SigInfo,
    valid,
)
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import syscall
from quark.kernel.task import Task
from quark.kernel.task_signals import _on_altstack, send_to_group, sigreturn
from quark.kernel.waiting import ERESTARTNOHAND

SIGSET_SIZE = 8


@syscall(13, "rt_sigaction")
async def sys_rt_sigaction(t: Task, a: SyscallArgs) -> int:
    sig, act_p, old_p, size = a.int(0), a.ptr(1), a.ptr(2), a.size(3)
    if size != SIGSET_SIZE or not valid(sig):
        raise LinuxError(L.EINVAL)
    new = SigAction.unpack(t.mm.read(act_p, 32)) if act_p else None
    if new is not None and sig in (L.SIGKILL, L.SIGSTOP):
        raise LinuxError(L.EINVAL)
    actions = t.tg.sighand.actions
    old = actions[sig]
    if old_p:
        t.mm.write(old_p, old.pack())
    if new is not None:
        actions[sig] = new
        if t.tg.sighand.ignored(sig):
            # Setting SIG_IGN (or SIG_DFL for a default-ignored signal) discards
            # what is pending, in every thread.
            t.tg.shared_pending.discard(sig)
            for th in t.tg.threads:
                th.pending.discard(sig)
    return 0


@syscall(14, "rt_sigprocmask")
async def sys_rt_sigprocmask(t: Task, a: SyscallArgs) -> int:
    how, set_p, old_p, size = a.int(0), a.ptr(1), a.ptr(2), a.size(3)
    if size != SIGSET_SIZE:
        raise LinuxError(L.EINVAL)
    old = t.sigmask
    if set_p:
        s = t.mm.read_u64(set_p)
        if how == SIG_BLOCK:
            new = old | s
        elif how == SIG_UNBLOCK:
            new = old & ~s
        elif how == SIG_SETMASK:
            new = s
        else:
            raise LinuxError(L.EINVAL)
        t.sigmask = new & ~UNCATCHABLE
    if old_p:
        t.mm.write_u64(old_p, old)
    return 0


@syscall(15, "rt_sigreturn")
async def sys_rt_sigreturn(t: Task, a: SyscallArgs) -> int:
    regs = t.vcpu.get_regs()
    regs.rsp = regs.rsp          # the user RSP (the gate does not move it)
    sigreturn(t, regs)
    t.set_regs = regs
    return int(regs.rax)


@syscall(127, "rt_sigpending")
async def sys_rt_sigpending(t: Task, a: SyscallArgs) -> int:
    if a.size(1) > SIGSET_SIZE:
        raise LinuxError(L.EINVAL)
    pend = (t.pending.mask | t.tg.shared_pending.mask) & t.sigmask
    t.mm.write(a.ptr(0), struct.pack("<Q", pend)[:a.size(1)])
    return 0


@syscall(131, "sigaltstack")
async def sys_sigaltstack(t: Task, a: SyscallArgs) -> int:
    new_p, old_p = a.ptr(0), a.ptr(1)
    cur_sp, cur_flags, cur_size = t.altstack
    regs_sp = t.vcpu.get_regs().rsp
    on = _on_altstack(t, regs_sp)
    if old_p:
        flags = SS_ONSTACK if on else (cur_flags & ~SS_ONSTACK)
        t.mm.write(old_p, struct.pack("<QiiQ", cur_sp, flags, 0, cur_size))
    if new_p:
        sp, flags, _pad, size = struct.unpack("<QiiQ", t.mm.read(new_p, 24))
        if on:
            raise LinuxError(L.EPERM)
        mode = flags & ~SS_AUTODISARM
        if mode not in (0, SS_DISABLE, SS_ONSTACK):
            raise LinuxError(L.EINVAL)
        if mode == SS_DISABLE:
            t.altstack = (0, SS_DISABLE, 0)
        else:
            if size < MINSIGSTKSZ:
                raise LinuxError(L.ENOMEM)
            t.altstack = (sp, flags & SS_AUTODISARM, size)
    return 0


@syscall(219, "restart_syscall")
async def sys_restart_syscall(t: Task, a: SyscallArgs) -> int:
    """Where a call interrupted with ERESTART_RESTARTBLOCK resumes (the signal return
    path put this number in RAX); without a pending restart, EINTR."""
    resume, t.restart_block = t.restart_block, None
    if resume is None:
        raise LinuxError(L.EINTR)
    return int(await resume(t))


@syscall(130, "rt_sigsuspend")
async def sys_rt_sigsuspend(t: Task, a: SyscallArgs) -> int:
    if a.size(1) != SIGSET_SIZE:
        raise LinuxError(L.EINVAL)
    mask = t.mm.read_u64(a.ptr(0))
    old = t.sigmask
    t.sigmask = mask & ~UNCATCHABLE
    try:
        while True:
            await t.block(())
    except LinuxError:
        pass
    # The handler must run with the temporary mask; the old one returns after it
    # (Linux: saved_sigmask restored by sigreturn's mask in the frame).
    _deliver_with_mask(t, old)
    raise LinuxError(ERESTARTNOHAND)


def _deliver_with_mask(t: Task, old: int) -> None:
    """Make the frame built for the interrupting signal record ``old`` as the mask to
    restore: deliver() saves t.sigmask into the frame, so swap it in after taking."""
    t.saved_sigmask = old


@syscall(34, "pause")
async def sys_pause(t: Task, a: SyscallArgs) -> int:
    try:
        while True:
            await t.block(())
    except LinuxError:
        raise LinuxError(ERESTARTNOHAND) from None


@syscall(128, "rt_sigtimedwait")
async def sys_rt_sigtimedwait(t: Task, a: SyscallArgs) -> int:
    set_p, info_p, ts_p, size = a.ptr(0), a.ptr(1), a.ptr(2), a.size(3)
    if size != SIGSET_SIZE:
        raise LinuxError(L.EINVAL)
    want = t.mm.read_u64(set_p) & ~UNCATCHABLE
    deadline = None
    if ts_p:
        sec, nsec = struct.unpack("<qq", t.mm.read(ts_p, 16))
        if sec < 0 or not 0 <= nsec < 1_000_000_000:
            raise LinuxError(L.EINVAL)
        deadline = time.monotonic() + sec + nsec / 1e9
    old = t.sigmask
    t.sigmask = old & ~want          # let the awaited signals wake us
    try:
        while True:
            for q in (t.pending, t.tg.shared_pending):
                ready = q.mask & want
                if ready:
                    sig = (ready & -ready).bit_length()
                    info = q.take(sig)
                    if info_p:
                        t.mm.write(info_p, info.pack())
                    return sig
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise LinuxError(L.EAGAIN)
            try:
                await t.block((), timeout=remaining)
            except LinuxError:
                if not (t.pending.mask | t.tg.shared_pending.mask) & want:
                    raise LinuxError(L.EINTR) from None
    finally:
        t.sigmask = old


# ---- alarm / setitimer(ITIMER_REAL) -------------------------------------------------

ITIMER_REAL = 0
_ITIMERVAL = struct.Struct("<qqqq")


class _RealTimer:
    """ITIMER_REAL of a process: a host timer thread that sends SIGALRM."""

    def __init__(self, t: Task, value: float, interval: float) -> None:
        self.tg = t.tg
        self.interval = interval
        self.deadline = time.monotonic() + value
        self._timer = threading.Timer(value, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        k = self.tg.kernel
        with k.lock:
            if self.tg.itimer_real is not self:
                return
            send_to_group(self.tg, SigInfo(L.SIGALRM, 0x80))
            if self.interval > 0:
                self.deadline = time.monotonic() + self.interval
                self._timer = threading.Timer(self.interval, self._fire)
                self._timer.daemon = True
                self._timer.start()
            else:
                self.tg.itimer_real = None

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.0)

    def cancel(self) -> None:
        self._timer.cancel()


def _set_real_timer(t: Task, value: float, interval: float) -> tuple[float, float]:
    old = t.tg.itimer_real
    ov, oi = (old.remaining(), old.interval) if old else (0.0, 0.0)
    if old:
        old.cancel()
    t.tg.itimer_real = _RealTimer(t, value, interval) if value > 0 else None
    return ov, oi


@syscall(37, "alarm")
async def sys_alarm(t: Task, a: SyscallArgs) -> int:
    secs = a.uint(0)
    ov, _ = _set_real_timer(t, float(secs), 0.0)
    return int(ov + 0.5) if ov else 0


def _tv(x: float) -> tuple[int, int]:
    return int(x), int(round((x - int(x)) * 1e6))


@syscall(38, "setitimer", partial="ITIMER_REAL only")
async def sys_setitimer(t: Task, a: SyscallArgs) -> int:
    which, new_p, old_p = a.int(0), a.ptr(1), a.ptr(2)
    if which != ITIMER_REAL:
        raise LinuxError(L.EINVAL)
    if new_p:
        isec, iusec, vsec, vusec = _ITIMERVAL.unpack(t.mm.read(new_p, 32))
        if not (0 <= iusec < 1_000_000 and 0 <= vusec < 1_000_000) or isec < 0 or vsec < 0:
            raise LinuxError(L.EINVAL)
        ov, oi = _set_real_timer(t, vsec + vusec / 1e6, isec + iusec / 1e6)
    else:
        cur = t.tg.itimer_real
        ov, oi = (cur.remaining(), cur.interval) if cur else (0.0, 0.0)
    if old_p:
        t.mm.write(old_p, _ITIMERVAL.pack(*_tv(oi), *_tv(ov)))
    return 0


@syscall(36, "getitimer", partial="ITIMER_REAL only")
async def sys_getitimer(t: Task, a: SyscallArgs) -> int:
    if a.int(0) != ITIMER_REAL:
        raise LinuxError(L.EINVAL)
    cur = t.tg.itimer_real
    ov, oi = (cur.remaining(), cur.interval) if cur else (0.0, 0.0)
    t.mm.write(a.ptr(1), _ITIMERVAL.pack(*_tv(oi), *_tv(ov)))
    return 0


