"""The vCPU thread of a task: KVM_RUN, system calls, faults, signals, exit.

Some facts this rests on:
- Each live task owns a vCPU and a host thread; the thread releases the GIL inside
  KVM_RUN, so tasks run in parallel and a blocked task blocks nobody else.
- Kernel code runs on this thread with the kernel lock held. A handler that must wait
  yields a ``Block``; the driver sleeps with the lock released (``_wait``).
- A system call stops the vCPU in the gate (CPL 3): the result goes to the mailbox,
  and nothing else is touched unless registers must change (signal frame, restart,
  sigreturn), then KVM_SET_REGS puts the user state back directly.
- A fault stops the vCPU in a vector stub (CPL 0): user state is in the iret frame.
- Another thread interrupts KVM_RUN with ``immediate_exit`` plus a host signal
  (``KICK_SIGNAL``). If the vCPU was in user code, signals are taken right there; if
  it was inside the gate or a stub, it runs on: that stop is a few instructions away.
"""

from __future__ import annotations

import logging
import select
import signal
import threading
from collections.abc import Coroutine
from typing import Any

from quark.core import kvm_ffi
from quark.core.guest.layout import (
    KBASE,
    MB_STATE,
    MB_WAIT,
    PORT_EXCEPTION,
    PORT_SYSCALL,
    QC_SUBMITTED,
)
from quark.core.vcpu import user_rflags
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.fs.host.writebehind import DRAIN_AT
from quark.kernel.gateio import settle
from quark.kernel.signals import (
    FPE_INTDIV,
    ILL_ILLOPN,
    SI_KERNEL,
    SigInfo,
)
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import FAST
from quark.kernel.task import Task
from quark.kernel.task_signals import KICK_SIGNAL, UserCtx, deliver, force_fault, is_restart
from quark.kernel.waiting import ERESTARTSYS, Block

log = logging.getLogger("quark.kernel")

STOP_SYSCALL, STOP_FAULT, STOP_KICK = 1, 2, 3
_QC_STATE, _QC_WAIT = MB_STATE // 4, MB_WAIT // 4     # words of a vCPU's qcall_slot
_M64 = (1 << 64) - 1


def install_kick_handler() -> None:
    """A handler (not SIG_IGN) so the kick signal interrupts KVM_RUN; main thread only."""
    signal.signal(KICK_SIGNAL, lambda *_: None)


def run_task(t: Task) -> None:
    """Thread body: run ``t`` until it exits."""
    k = t.kernel
    vcpu = k.machine.get_vcpu()
    vcpu.thread_ident = threading.get_ident()
    try:
        with k.lock:
            vcpu.attach(t.mm.pt)    # its gate and mailbox, in this task's space only
            t.vcpu = vcpu
            vcpu.task = t
            regs = t.start_regs
            t.start_regs = None
            dead = t.tg.exiting is not None
        if not dead:
            vcpu.enter_user(t.mm.cr3, t.fs_base, regs)
            _loop(t, vcpu)
    except Exception:
        log.exception("task %d: internal error; killing its process", t.tid)
        with k.lock:
            from quark.kernel.task_signals import group_exit
            group_exit(t.tg, L.SIGKILL)
    finally:
        with k.lock:
            from quark.kernel.task_exit import exit_task
            vcpu.detach(t.mm.pt)    # before the space may be released with it
            exit_task(t)
            vcpu.gate_clear()       # pooled: the next task starts with no grants
            t.vcpu = None
            vcpu.task = None
        vcpu.run.set_immediate_exit(False)
        k.machine.put_vcpu(vcpu)


def _loop(t: Task, vcpu: Any) -> None:
    run = vcpu.run
    fd = vcpu.fd
    k = t.kernel
    redone = -1         # rip of an instruction KVM failed to emulate, run again once
    while True:
        if kvm_ffi.run(fd):
            run.set_immediate_exit(False)
            if not _on_kick(t, vcpu):
                return
            continue
        reason = run.exit_reason()
        if reason == kvm_ffi.KVM_EXIT_IO:
            redone = -1
            port = run.io_port()
            if port == PORT_SYSCALL:
                if not _on_syscall(t, vcpu):
                    return
                continue
            if port == PORT_EXCEPTION:
                if not _on_exception(t, vcpu):
                    return
                continue
        detail = run.suberror() if reason == kvm_ffi.KVM_EXIT_INTERNAL_ERROR else 0
        data = run.internal_data() if reason == kvm_ffi.KVM_EXIT_INTERNAL_ERROR else ()
        try:
            rip = vcpu.get_regs().rip
        except Exception:   # noqa: BLE001 - only for the message
            rip = 0
        if detail == kvm_ffi.KVM_INTERNAL_ERROR_EMULATION and rip != redone:
            # KVM emulates a store into a frame it still shadows as a page table, and
            # cannot emulate vector stores. Retired tables wait for a drop of the
            # shadows (FrameAllocator.retire_tables), so this should not happen; if
            # it does, a drop lets the instruction run natively.
            redone = rip
            log.warning("task %d: KVM could not emulate the instruction at %#x; "
                        "dropping the shadow page tables and running it again", t.tid, rip)
            k.machine.drop_shadows()
            continue
        log.error("task %d: unexpected vCPU exit %d (%d) at rip %#x, data %s; killing its "
                  "process", t.tid, reason, detail, rip, " ".join(f"{d:#x}" for d in data))
        with k.lock:
            from quark.kernel.task_signals import group_exit
            group_exit(t.tg, L.SIGKILL)
        return


# ---- system calls ----------------------------------------------------------

def _on_syscall(t: Task, vcpu: Any) -> bool:
    k = t.kernel
    with k.lock:
        t.stop = STOP_SYSCALL
        if vcpu.qcall:
            return _on_qcall_exit(t, vcpu)
        nr, *raw = vcpu.syscall_args()
        return _syscall(t, vcpu, nr, raw, None)


def _syscall(t: Task, vcpu: Any, nr: int, raw: list[int], parked: Any) -> bool:
    """Run system call ``nr`` on the task's own thread and return to user mode.
    ``parked`` continues a call the QCall poller began (coroutine, Block) or
    finished with a restart code (None, result)."""
    k = t.kernel
    wb = k.write_behind
    # With write-behind on, read and write go through their plain twins here too and
    # decide for themselves what to flush, as on the QCall path: a run (and a write
    # ring) then starts whichever path the writes take. A gate whose spin budget
    # sank to its floor sends every call here, and dd then never got a ring.
    rw = nr <= 1 and wb.enabled and parked is None
    if wb.file is not None or vcpu.grants:
        settle(t, vcpu, nr, not rw)
    entry = k.table.get(nr)
    args = SyscallArgs(nr, tuple(raw))  # type: ignore[arg-type]
    obs = k.syscall_observer            # plugins' quark_syscall_enter/exit, or None
    if obs is not None and obs.enter is not None and parked is None:
        obs.enter(t, nr, args)
    if parked is not None:
        coro, pending = parked
        result = pending if coro is None else drive(t, coro, pending)
    elif entry is not None and entry.handler is not None:
        result = _plain(t, FAST[nr], raw) if rw else None
        if result is None:
            result = drive(t, entry.handler(t, args))
        elif wb.file is not None and k.poke_poller is not None:
            k.poke_poller()     # its idle pass flushes what this left pending
    elif entry is not None:
        result = -entry.errno
    else:
        result = -L.ENOSYS
        if nr not in k.enosys_seen:
            k.enosys_seen.add(nr)
            log.warning("unknown syscall %d from task %d (%s): ENOSYS", nr, t.tid, t.comm)
    if obs is not None and obs.exit is not None:
        obs.exit(t, nr, args, result)
    if t.dead or t.tg.exiting is not None:
        return False
    if t.enter is not None:
        cr3, fs_base, regs = t.enter
        t.enter = None
        if k.poke_poller is not None:
            # A new program makes a dozen calls at once (brk, arch_prctl, rseq, ...)
            # and the poller has slept through the exec: waking it now keeps them
            # off the exit path (fork+exec of a static program: -9-10 %).
            k.poke_poller()
        vcpu.enter_user(cr3, fs_base, regs)
        return _after_enter(t, vcpu)
    if t.set_regs is None and not is_restart(result) and not t.signal_pending() \
            and not k.frozen:
        vcpu.set_syscall_result(result)
        return True
    if not _freeze_point(t):
        return False
    return _return_slow(t, vcpu, nr, result)


def _plain(t: Task, fast: Any, raw: list[int]) -> int | None:
    """A call through its plain twin (syscalls.table.fast); None: the twin hands it
    to the handler (a file whose I/O may sleep), with any write-behind run flushed
    first."""
    try:
        result: int | None = fast(t, raw)
    except LinuxError as e:
        result = -e.errno
    except Exception:
        log.exception("syscall handler failed in task %d (%s)", t.tid, t.comm)
        result = -L.ENOSYS
    if result is None and t.kernel.write_behind.file is not None:
        t.kernel.write_behind.flush(t)
    return result


def _return_slow(t: Task, vcpu: Any, nr: int, result: int) -> bool:
    if t.set_regs is not None:
        regs, t.set_regs = t.set_regs, None
        ctx = UserCtx(regs)
    else:
        regs = vcpu.get_regs()
        regs.rip, regs.rflags = regs.rcx, user_rflags(regs.r11)   # R11: the guest's
        regs.rax = result & _M64
        ctx = UserCtx(regs, nr, result)
    if not deliver(t, ctx) or not _freeze_point(t):
        return False
    vcpu.set_regs(ctx.regs)
    return True


def _after_enter(t: Task, vcpu: Any) -> bool:
    """Signals pending right after execve are taken on the first exit instead."""
    if t.signal_pending():
        vcpu.run.set_immediate_exit(True)
    return True


def drive(t: Task, coro: Coroutine[Any, Any, int], blocked: Block | None = None) -> int:
    """Run a handler coroutine to completion on this thread; returns -errno on
    failure. ``blocked``: the coroutine is suspended on that request already.
    Kernel lock held on entry and exit."""
    send: Any = None
    throw: BaseException | None = None
    if blocked is not None:
        # Continue as a (possibly spurious) wake-up: what the handler waits for may
        # have happened while no waker was registered (between the poller parking
        # the call and now), and every handler re-checks its condition after a wake.
        send = True
        t.mm.unpin()                    # pinned by the poller when it parked the call
    while True:
        try:
            req = coro.throw(throw) if throw is not None else coro.send(send)
        except StopIteration as e:
            return int(e.value) if e.value is not None else 0
        except LinuxError as e:
            return -e.errno
        except Exception:
            log.exception("syscall handler failed in task %d (%s)", t.tid, t.comm)
            return -L.ENOSYS
        send, throw = None, None
        if not isinstance(req, Block):
            throw = RuntimeError(f"handler yielded {req!r}")
            continue
        try:
            send = _wait(t, req)
        except LinuxError as e:
            throw = e


def _wait(t: Task, req: Block) -> bool:
    if req.interruptible and t.signal_pending():
        raise LinuxError(ERESTARTSYS)
    k = t.kernel
    w = t.waker
    for q in req.queues:
        q.waiters.add(w)
    p = select.poll()
    p.register(w.fd, select.POLLIN)
    for fd, ev in req.host_fds:
        p.register(fd, ev)
    # poll(2) takes an int of milliseconds; longer sleeps end early and the
    # handler, which re-checks its deadline, sleeps again.
    timeout = None if req.timeout is None else min(max(req.timeout, 0) * 1000.0, 2**31 - 1)
    mm = t.mm
    mm.pin()
    k.lock.release()
    try:
        events = p.poll(timeout)
    finally:
        k.lock.acquire()
        mm.unpin()
        for q in req.queues:
            q.waiters.discard(w)
    w.drain()
    if (req.interruptible and t.signal_pending()) or t.dead:
        raise LinuxError(ERESTARTSYS)
    return bool(events)


# ---- the QCall path ------------------------------------------------------------

# Calls that need the caller's vCPU (its registers, FS base, FPU state) or end the
# task: the poller bounces them to the exit path.
NEEDS_VCPU = frozenset({15, 56, 57, 58, 59, 60, 131, 158, 231, 322, 435})


def _on_qcall_exit(t: Task, vcpu: Any) -> bool:
    """The QCall gate took the exit path: bounced, parked, timed out, or (a race)
    already done. Kernel lock held."""
    parked, t.parked = t.parked, None
    waiting, bounced = vcpu.qc_waiting(), vcpu.qc_bounced()
    vcpu.qc_reset()
    if parked is None and not waiting and not bounced:
        # The poller finished it while the gate gave up spinning: the result is in
        # the mailbox already; only signals may still need the slow return.
        result = vcpu.syscall_args()[0]
        if t.signal_pending() or k_frozen(t):
            return _return_slow(t, vcpu, -1, _signed(result))
        return True
    if parked is None and waiting and not bounced:
        vcpu.qc_spin_timed_out()    # nobody picked it up while the gate spun
    nr, *raw = vcpu.syscall_args()
    return _syscall(t, vcpu, nr, raw, parked)


def k_frozen(t: Task) -> bool:
    return bool(t.kernel.frozen or t.tg.stopped)


def _signed(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def qcall_idle(k: Any) -> float | None:
    """The poller is about to sleep: a pending write-behind run reaches the host
    now, so host readers see it within the poller's window; a gate filling a write
    ring is asked to ring the doorbell after its next write; the frames finished
    address spaces left are discarded once none has come for WARM_QUIET (a quiet
    sandbox holds none back, a busy one reuses them). Returns how long the poller
    may sleep before asking again (None: until a doorbell)."""
    wb = k.write_behind
    if wb.file is not None:
        with k.lock:
            wb.flush()
            wb.want_kick()
    return k.machine.alloc.clean_warm_when_quiet()  # type: ignore[no-any-return]



def qcall_serve_all(k: Any) -> bool:
    """One poller pass over every vCPU's slot; True if any call was served.
    The scan reads the slot words directly: it runs once per call and once per
    idle pass of the poller, so its cost is part of every call's latency."""
    served = False
    wb = k.write_behind
    if wb.ring is not None and wb.backlog() >= DRAIN_AT:
        with k.lock:        # a gate filling its ring: make room while it runs on
            wb.flush()
        served = True
    for mb, v in k.machine.qcall_slots:
        if mb[_QC_STATE] != QC_SUBMITTED or not mb[_QC_WAIT]:
            continue
        with k.lock:
            t = getattr(v, "task", None)
            if t is None or t.vcpu is not v or mb[_QC_STATE] != QC_SUBMITTED:
                continue
            _qcall_serve(t, v)
            served = True
    return served


def _qcall_serve(t: Task, vcpu: Any) -> None:
    k = t.kernel
    nr, *raw = vcpu.syscall_args()
    if (t.parked is not None or k.syscall_observer is not None or k.frozen or t.tg.stopped
            or t.signal_pending()):
        vcpu.qc_bounce()
        return
    wb = k.write_behind
    fast = FAST.get(nr)
    if wb.file is not None or vcpu.grants:
        settle(t, vcpu, nr, False)  # read and write decide for themselves (sys_file.py)
    if fast is not None:
        # A plain call for what cannot sleep (read/write of regular files): no
        # coroutine, no SyscallArgs. It cannot restart or change registers either.
        vcpu.qc_running()
        result = _plain(t, fast, raw)
        if result is not None:
            _qcall_finish(t, vcpu, result)
            return
    entry = k.table.get(nr)
    if nr in NEEDS_VCPU or entry is None or entry.handler is None:
        vcpu.qc_bounce()
        return
    vcpu.qc_running()
    coro = entry.handler(t, SyscallArgs(nr, tuple(raw)))  # type: ignore[arg-type]
    try:
        req = coro.send(None)
    except StopIteration as e:
        result = int(e.value) if e.value is not None else 0
    except LinuxError as e:
        result = -e.errno
    except Exception:
        log.exception("syscall handler failed in task %d (%s)", t.tid, t.comm)
        result = -L.ENOSYS
    else:
        # It must wait: the task's own thread continues it (the poller never sleeps).
        t.parked = (coro, req if isinstance(req, Block) else Block((), 0, (), True))
        t.mm.pin()
        vcpu.qc_bounce()
        return
    _qcall_finish(t, vcpu, result)


def _qcall_finish(t: Task, vcpu: Any, result: int) -> None:
    k = t.kernel
    if (is_restart(result) or t.set_regs is not None or t.enter is not None
            or t.signal_pending() or k.frozen or t.tg.stopped):
        # The return needs this vCPU (a restart, a signal taken right at the return
        # as Linux does, a freeze): its thread finishes with this result.
        t.parked = (None, result)
        vcpu.qc_bounce()
        return
    vcpu.qc_complete(result)
    vcpu.qc_spin_served()


# ---- exceptions --------------------------------------------------------------

_FAULT_SIGNALS = {
    0: (L.SIGFPE, FPE_INTDIV),
    1: (L.SIGTRAP, 2),           # TRAP_TRACE
    3: (L.SIGTRAP, SI_KERNEL),   # int3: Linux reports SI_KERNEL
    4: (L.SIGSEGV, SI_KERNEL),   # into
    5: (L.SIGSEGV, SI_KERNEL),   # bound
    6: (L.SIGILL, ILL_ILLOPN),
    7: (L.SIGFPE, SI_KERNEL),
    13: (L.SIGSEGV, SI_KERNEL),  # #GP: privileged instruction, non-canonical address
    16: (L.SIGFPE, SI_KERNEL),
    17: (L.SIGBUS, 1),           # BUS_ADRALN
    19: (L.SIGFPE, SI_KERNEL),
}


def _on_exception(t: Task, vcpu: Any) -> bool:
    vector, err, rip, cs, rflags, rsp, _ss = vcpu.fault_frame()
    k = t.kernel
    if cs != 0x33:
        log.error("task %d: exception %d inside the supervisor at %#x", t.tid, vector, rip)
        with k.lock:
            from quark.kernel.task_signals import group_exit
            group_exit(t.tg, L.SIGKILL)
        return False
    with k.lock:
        if k.write_behind.file is not None:
            k.write_behind.flush()  # a fault may read a mapped file
        t.stop = STOP_FAULT
        if rip >= KBASE and vcpu.in_gate_fast(rip):
            return _on_gate_fault(t, vcpu, vector, err, rsp)
        cr2 = 0
        if vector == 14:
            cr2 = vcpu.cr2()
            code = t.mm.handle_fault(cr2, err)
            if code == 0 and not t.signal_pending() and not k_frozen(t):
                return True
            if code < 0:
                force_fault(t, SigInfo(L.SIGBUS, -code, addr=cr2))
            elif code:
                force_fault(t, SigInfo(L.SIGSEGV, code, addr=cr2))
        else:
            sig, code = _FAULT_SIGNALS.get(vector, (L.SIGSEGV, SI_KERNEL))
            addr = rip if sig in (L.SIGILL, L.SIGFPE) else 0
            force_fault(t, SigInfo(sig, code, addr=addr))
        if code:
            # What Linux's show_signal_msg prints: the first look at a crash.
            log.info("%s[%d]: fault vector %d at %#x ip %#x sp %#x error %#x code %d",
                     t.comm, t.tid, vector, cr2, rip, rsp, err, code)
        if not _freeze_point(t):
            return False
        regs = vcpu.get_regs()
        stub_rip, stub_rsp, stub_flags = regs.rip, regs.rsp, regs.rflags
        regs.rip, regs.rsp, regs.rflags = rip, rsp, rflags
        ctx = UserCtx(regs, trapno=vector, err=err, cr2=cr2)
        if not deliver(t, ctx) or not _freeze_point(t):
            return False
        if ctx.changed:
            vcpu.set_fault_return(regs.rip, regs.rsp, regs.rflags)
            regs.rip, regs.rsp, regs.rflags = stub_rip, stub_rsp, stub_flags
            vcpu.set_regs(regs)
        return True


def _on_gate_fault(t: Task, vcpu: Any, vector: int, err: int, rsp: int) -> bool:
    """The gate's fast path faulted on a user buffer (kernel/gateio.py). A fault
    the task's memory explains is fixed and the copy goes on; anything else (a bad
    buffer, a signal or a freeze waiting) sends the call to the exit path, which
    does what Linux does: EFAULT or a short count, not a SIGSEGV. Kernel lock held."""
    k = t.kernel
    code = t.mm.handle_fault(vcpu.cr2(), err) if vector == 14 else -1
    if code == 0 and not t.signal_pending() and not k_frozen(t):
        return True
    rip, rflags = vcpu.gate_restart()
    vcpu.set_fault_return(rip, rsp, rflags)
    return True


# ---- kicks -------------------------------------------------------------------

def _freeze_point(t: Task) -> bool:
    """Hold the task here while the sandbox is paused or its group is stopped;
    False when it must exit instead. Kernel lock held."""
    k = t.kernel
    while (k.frozen or t.tg.stopped) and not t.dead and t.tg.exiting is None:
        try:
            _wait(t, t.block((k.thaw_wq,), None, interruptible=False))
        except LinuxError:
            pass
    return not (t.dead or t.tg.exiting is not None)


def _on_kick(t: Task, vcpu: Any) -> bool:
    k = t.kernel
    with k.lock:
        if not _freeze_point(t):
            return False
        if not t.signal_pending():
            return True
        regs = vcpu.get_regs()
        if regs.rip >= KBASE and not vcpu.gate_rewind(regs):
            # (gate_rewind: in a gate's prologue or fast path, which may return
            # without an exit: the call becomes not started, or complete)
            if not vcpu.qc_returning(regs.rip):
                return True      # inside the gate or a stub: its own exit is near
            vcpu.qc_finish_return(regs)   # a served QCall: finish the gate's return here
        t.stop = STOP_KICK
        ctx = UserCtx(regs)
        if not deliver(t, ctx) or not _freeze_point(t):
            return False
        if ctx.changed:
            vcpu.set_regs(ctx.regs)
        return True


