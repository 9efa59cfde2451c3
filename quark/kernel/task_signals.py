"""Sending signals, taking them at the return to user mode, and rt_sigreturn.

All functions run with the kernel lock held. ``regs`` is a ``kvm_ffi.Regs`` holding
the *user* view of the registers (rip/rsp/rflags of user mode), built by taskrun.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.core.guest.layout import USER_TOP
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.signals import (
    DEFAULT_CONT,
    DEFAULT_CORE,
    DEFAULT_IGNORE,
    DEFAULT_STOP,
    FIX_EFLAGS,
    FRAME_INFO,
    FRAME_SIZE,
    FRAME_UC,
    SA_NODEFER,
    SA_ONSTACK,
    SA_RESETHAND,
    SA_RESTART,
    SI_USER,
    SIG_DFL,
    SIG_IGN,
    SIGCONTEXT_SIZE,
    SS_AUTODISARM,
    SS_DISABLE,
    SS_ONSTACK,
    UC_MCONTEXT,
    UC_SIGCONTEXT_SS,
    UC_SIGMASK,
    UC_STACK,
    UC_STRICT_RESTORE_SS,
    UNCATCHABLE,
    SigAction,
    SigInfo,
    bit,
    default_action,
    pack_sigcontext,
    unpack_sigcontext,
)
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.waiting import (
    ERESTART_RESTARTBLOCK,
    ERESTARTNOHAND,
    ERESTARTNOINTR,
    ERESTARTSYS,
)

XSAVE_BYTES = 1024        # XCR0 = x87|SSE|AVX: the image ends at 832 bytes
_RESTART = {-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK}

NR_RESTART_SYSCALL = 219
KICK_SIGNAL = 38          # SIGRTMIN+4 of the host: interrupts KVM_RUN (see taskrun)


def is_restart(result: int) -> bool:
    return result in _RESTART


# ---- sending ----------------------------------------------------------------

def _wake(t: Task) -> None:
    t.waker.wake()
    if t.vcpu is not None and not t.dead:
        t.vcpu.kick(KICK_SIGNAL)


def init_ignores(tg: ThreadGroup, sig: int, outside: bool, blocked: int = 0) -> bool:
    """The container's init is like a pid namespace's init (SIGNAL_UNKILLABLE): a
    signal it has no handler for is dropped, except SIGKILL/SIGSTOP from outside.
    A signal the receiver blocks is kept (sig_ignored: it may be read by signalfd or
    sigwait, or get a handler before it is unblocked)."""
    if blocked & bit(sig) or tg is not tg.kernel.init_tg \
            or tg.sighand.actions[sig].handler != SIG_DFL:
        return False
    return not (outside and sig in (L.SIGKILL, L.SIGSTOP))


def send_to_group(tg: ThreadGroup, info: SigInfo, outside: bool = False) -> None:
    """kill(2) semantics: a process-directed signal; ``outside`` when the runtime
    (not a process of the container) sends it."""
    sig = info.signo
    lead = tg.leader
    blocked = lead.sigmask if lead is not None else 0
    if tg.zombie or not tg.threads or init_ignores(tg, sig, outside, blocked):
        return
    if sig == L.SIGKILL:
        group_exit(tg, L.SIGKILL)
        return
    if sig == L.SIGCONT:
        _continue(tg)
    elif default_action(sig) == DEFAULT_STOP or sig == L.SIGSTOP:
        tg.shared_pending.discard(L.SIGCONT)
    if _ignored_everywhere(tg, sig) and not blocked & bit(sig):
        return          # blocked signals are never ignored (sig_ignored)
    tg.shared_pending.add(info)
    _queued(tg)
    for t in tg.threads:
        if not t.sigmask & bit(sig):
            _wake(t)
            return


def send_to_task(t: Task, info: SigInfo) -> None:
    """tgkill(2) semantics, and synchronous faults (``force``) go through force_fault."""
    sig = info.signo
    if t.dead or init_ignores(t.tg, sig, False, t.sigmask):
        return
    if sig == L.SIGKILL:
        group_exit(t.tg, L.SIGKILL)
        return
    if sig == L.SIGCONT:
        _continue(t.tg)
    if _ignored_everywhere(t.tg, sig) and not t.sigmask & bit(sig):
        return
    t.pending.add(info)
    _queued(t.tg)
    if not t.sigmask & bit(sig):
        _wake(t)


def _queued(tg: ThreadGroup) -> None:
    """A signal was queued: wake signalfd readers and pollers (signalfd_notify)."""
    wq = getattr(tg.sighand, "signalfd_wq", None)
    if wq is not None:
        wq.notify(L.POLLIN)


def sigpipe(t: Task) -> LinuxError:
    """A write found no reader: queue SIGPIPE for the writer, as Linux's pipe_write
    and socket send paths do, and return the EPIPE to raise. (Unit-test fakes
    without signal state get only the error.)"""
    if hasattr(t, "pending") and hasattr(t, "tg"):
        send_to_task(t, SigInfo(L.SIGPIPE, SI_USER, pid=t.tg.pid, uid=t.creds.uid))
    return LinuxError(L.EPIPE)


def force_fault(t: Task, info: SigInfo) -> None:
    """A synchronous fault: blocked or ignored, it still kills (force_sig_info)."""
    sig = info.signo
    act = t.tg.sighand.actions[sig]
    if act.handler == SIG_IGN or t.sigmask & bit(sig):
        t.tg.sighand.actions[sig] = SigAction()
        t.sigmask &= ~bit(sig)
    t.pending.add(info)


def _ignored_everywhere(tg: ThreadGroup, sig: int) -> bool:
    a = tg.sighand.actions[sig]
    if a.handler == SIG_IGN:
        return True
    return a.handler == SIG_DFL and default_action(sig) in (DEFAULT_IGNORE, DEFAULT_CONT)


def _continue(tg: ThreadGroup) -> None:
    for s in (L.SIGSTOP, L.SIGTSTP, L.SIGTTIN, L.SIGTTOU):
        tg.shared_pending.discard(s)
    if tg.stopped:
        tg.stopped = False
        tg.stop_report = 0xFFFF          # WIFCONTINUED
        tg.kernel.thaw_wq.notify()
        if tg.parent:
            tg.parent.child_wq.notify()
            if not tg.parent.sighand.actions[L.SIGCHLD].flags & 1:   # SA_NOCLDSTOP
                from quark.kernel.signals import CLD_CONTINUED
                send_to_group(tg.parent, SigInfo(L.SIGCHLD, CLD_CONTINUED, pid=tg.pid,
                                                 status=L.SIGCONT))


def group_exit(tg: ThreadGroup, status: int) -> None:
    """Start killing every thread of ``tg`` with wait status ``status``."""
    if tg.exiting is not None:
        return
    tg.exiting = status
    tg.stopped = False
    for t in tg.threads:
        _wake(t)


# ---- taking signals at the return to user mode ------------------------------

class UserCtx:
    """What the return path knows: user registers and the syscall being finished."""

    __slots__ = ("changed", "cr2", "err", "nr", "regs", "result", "trapno")

    def __init__(self, regs: Any, nr: int = -1, result: int = 0, trapno: int = 0,
                 err: int = 0, cr2: int = 0) -> None:
        self.regs = regs
        self.nr, self.result = nr, result
        self.trapno, self.err, self.cr2 = trapno, err, cr2
        self.changed = False


def next_signal(t: Task) -> tuple[int, Any]:
    sig = t.pending.first(t.sigmask)
    if sig:
        return sig, t.pending
    sig = t.tg.shared_pending.first(t.sigmask)
    return sig, t.tg.shared_pending


def deliver(t: Task, ctx: UserCtx) -> bool:
    """Take pending signals; returns False when the task must die instead."""
    tg = t.tg
    while True:
        if tg.exiting is not None:
            return False
        sig, queue = next_signal(t)
        if not sig:
            break
        info = queue.take(sig)
        act = tg.sighand.actions[sig]
        if act.handler == SIG_IGN:
            continue
        if act.handler == SIG_DFL:
            da = default_action(sig)
            if da in (DEFAULT_IGNORE, DEFAULT_CONT):
                continue
            if da == DEFAULT_STOP:
                # The terminal stop signals do nothing in an orphaned group: no job
                # control shell is left to continue it. SIGSTOP always stops.
                if sig == L.SIGSTOP or not pgrp_orphaned(tg.kernel, tg.pgid):
                    group_stop(t, sig)
                continue
            group_exit(tg, sig | (0x80 if da == DEFAULT_CORE else 0))
            return False
        _restart_for_handler(ctx, act)
        if not setup_frame(t, ctx, sig, info, act):
            group_exit(tg, L.SIGSEGV | 0x80)
            return False
        if act.flags & SA_RESETHAND:
            tg.sighand.actions[sig] = SigAction()
        mask = act.mask | (0 if act.flags & SA_NODEFER else bit(sig))
        t.sigmask = (t.sigmask | mask) & ~UNCATCHABLE
    if ctx.nr >= 0 and is_restart(ctx.result):
        _restart(ctx)           # no handler ran: the call starts over
    if t.saved_sigmask is not None:
        t.sigmask, t.saved_sigmask = t.saved_sigmask, None
    return True


def _restart_for_handler(ctx: UserCtx, act: SigAction) -> None:
    if ctx.nr < 0 or not is_restart(ctx.result):
        return
    r = ctx.result
    if r == -ERESTARTNOINTR or (r == -ERESTARTSYS and act.flags & SA_RESTART):
        _restart(ctx)
    else:
        ctx.regs.rax = -L.EINTR & 0xFFFFFFFFFFFFFFFF
        ctx.result = -L.EINTR
    ctx.nr = -1


def _restart(ctx: UserCtx) -> None:
    """Back up over the ``syscall`` instruction with the original number in RAX (or
    restart_syscall's, for a call that keeps its progress in a restart block)."""
    nr = NR_RESTART_SYSCALL if ctx.result == -ERESTART_RESTARTBLOCK else ctx.nr
    ctx.regs.rip -= 2
    ctx.regs.rax = nr
    ctx.result = nr
    ctx.nr = -1
    ctx.changed = True


def pgrp_orphaned(k: Any, pgid: int, leaving: ThreadGroup | None = None) -> bool:
    """will_become_orphaned_pgrp: no member (but ``leaving``) has a parent in another
    group of its own session, the link a job control shell keeps."""
    for g in k.groups.values():
        if g.pgid != pgid or g is leaving or g.zombie:
            continue
        p = g.parent
        if p is not None and p.pgid != pgid and p.sid == g.sid:
            return False
    return True


def group_stop(t: Task, sig: int) -> None:
    tg = t.tg
    if tg.stopped:
        return
    tg.stopped = True
    tg.stop_report = (sig << 8) | 0x7F
    for th in tg.threads:
        _wake(th)
    if tg.parent:
        tg.parent.child_wq.notify()
        if not tg.parent.sighand.actions[L.SIGCHLD].flags & 1:
            from quark.kernel.signals import CLD_STOPPED
            send_to_group(tg.parent, SigInfo(L.SIGCHLD, CLD_STOPPED, pid=tg.pid, status=sig))


def _on_altstack(t: Task, sp: int) -> bool:
    ss_sp, flags, size = t.altstack
    return not flags & SS_DISABLE and ss_sp < sp <= ss_sp + size


def setup_frame(t: Task, ctx: UserCtx, sig: int, info: SigInfo, act: SigAction) -> bool:
    regs = ctx.regs
    sp = regs.rsp - 128                                 # the ABI's red zone
    ss_sp, ss_flags, ss_size = t.altstack
    if act.flags & SA_ONSTACK and not ss_flags & SS_DISABLE and not _on_altstack(t, regs.rsp):
        sp = ss_sp + ss_size
    try:
        xsave = t.vcpu.fpu_state()[:XSAVE_BYTES]
    except OSError:
        xsave = bytes(XSAVE_BYTES)
    sp = (sp - XSAVE_BYTES) & ~63
    fpstate = sp
    sp -= FRAME_SIZE
    sp = ((sp + 8) & ~15) - 8
    frame = bytearray(FRAME_SIZE)
    struct.pack_into("<Q", frame, 0, act.restorer)
    uc = FRAME_UC
    struct.pack_into("<QQ", frame, uc, UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS, 0)
    struct.pack_into("<QiiQ", frame, uc + UC_STACK, ss_sp,
                     ss_flags | (SS_ONSTACK if _on_altstack(t, regs.rsp) else 0), 0, ss_size)
    # sigsuspend & co. run the handler under their temporary mask but return to the
    # caller's own (saved_sigmask), as Linux's sigmask_to_save() does.
    to_save = t.saved_sigmask if t.saved_sigmask is not None else t.sigmask
    t.saved_sigmask = None
    frame[uc + UC_MCONTEXT:uc + UC_MCONTEXT + SIGCONTEXT_SIZE] = pack_sigcontext(
        regs, ctx.trapno, ctx.err, to_save & 0xFFFFFFFFFFFFFFFF, ctx.cr2, fpstate)
    struct.pack_into("<Q", frame, uc + UC_SIGMASK, to_save)
    frame[FRAME_INFO:FRAME_INFO + 128] = info.pack()
    try:
        t.mm.write(fpstate, xsave)
        t.mm.write(sp, frame)
    except LinuxError:
        return False
    if act.flags & SA_ONSTACK and ss_flags & SS_AUTODISARM:
        t.altstack = (0, SS_DISABLE, 0)
    regs.rsp = sp
    regs.rip = act.handler
    regs.rdi = sig
    regs.rsi = sp + FRAME_INFO
    regs.rdx = sp + FRAME_UC
    regs.rax = 0
    regs.rflags &= ~(0x100 | 0x400 | 0x10000)          # TF, DF, RF
    ctx.changed = True
    return True


def sigreturn(t: Task, regs: Any) -> None:
    """rt_sigreturn: restore what setup_frame saved; ``regs`` is updated in place.
    A frame that cannot be read or restored kills the process with SIGSEGV."""
    t.restart_block = None      # a restart_syscall after a handler: EINTR
    frame = regs.rsp - 8
    try:
        raw = t.mm.read(frame + FRAME_UC, UC_SIGMASK + 8)
    except LinuxError:
        force_fault(t, SigInfo(L.SIGSEGV, 0x80))
        return
    saved, fpstate = unpack_sigcontext(raw[UC_MCONTEXT:UC_MCONTEXT + SIGCONTEXT_SIZE])
    for name, v in saved.items():
        if name == "rflags":
            v = (regs.rflags & ~FIX_EFLAGS) | (v & FIX_EFLAGS)
        setattr(regs, name, v)
    if not regs.rip < USER_TOP:
        regs.rip = 0            # faults at once: SIGSEGV, never a machine address
    mask = struct.unpack_from("<Q", raw, UC_SIGMASK)[0]
    t.sigmask = mask & ~UNCATCHABLE
    ss_sp, ss_flags, _pad, ss_size = struct.unpack_from("<QiiQ", raw, UC_STACK)
    if not _on_altstack(t, regs.rsp) and ss_flags & SS_DISABLE == 0 and ss_size:
        t.altstack = (ss_sp, ss_flags & ~SS_ONSTACK, ss_size)
    if fpstate:
        try:
            image = t.mm.read(fpstate, XSAVE_BYTES) + bytes(4096 - XSAVE_BYTES)
            t.vcpu.set_fpu_state(image)
        except (LinuxError, OSError):
            force_fault(t, SigInfo(L.SIGSEGV, 0x80))
