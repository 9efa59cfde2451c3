"""clone/fork/vfork/clone3: new tasks, new processes.

A child starts on its own vCPU thread from the parent's user registers at the
``syscall`` (RIP = the instruction after it, RAX = 0). Address spaces are copied
eagerly for fork (every populated page), shared for CLONE_VM.
"""

from __future__ import annotations

from quark.core.kvm_ffi import Regs
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.task import Task, ThreadGroup

_NAMESPACES = 0x7E020080  # CLONE_NEW{NS,CGROUP,UTS,IPC,USER,PID,NET} and CLONE_NEWTIME
_SUPPORTED = (L.CSIGNAL | L.CLONE_VM | L.CLONE_FS | L.CLONE_FILES | L.CLONE_SIGHAND
              | L.CLONE_VFORK | L.CLONE_PARENT | L.CLONE_THREAD | L.CLONE_SYSVSEM
              | L.CLONE_SETTLS | L.CLONE_PARENT_SETTID | L.CLONE_CHILD_CLEARTID
              | L.CLONE_DETACHED | L.CLONE_UNTRACED | L.CLONE_CHILD_SETTID | L.CLONE_PTRACE
              | L.CLONE_PIDFD | L.CLONE_NEWNS | _NAMESPACES)


async def do_clone(t: Task, flags: int, newsp: int, parent_tid: int, child_tid: int,
                   tls: int, exit_signal: int) -> int:
    if flags & ~_SUPPORTED:
        raise LinuxError(L.EINVAL)
    if flags & L.CLONE_THREAD and not flags & L.CLONE_SIGHAND:
        raise LinuxError(L.EINVAL)
    if flags & L.CLONE_SIGHAND and not flags & L.CLONE_VM:
        raise LinuxError(L.EINVAL)
    if flags & (L.CLONE_NEWNS | _NAMESPACES):
        raise LinuxError(L.EPERM)   # the sandbox is already its own world
    if flags & L.CLONE_PIDFD:
        raise LinuxError(L.EINVAL)
    if not 0 <= exit_signal <= L.NSIG:
        raise LinuxError(L.EINVAL)
    k = t.kernel
    parent_regs = t.vcpu.get_regs()
    regs = Regs.from_buffer_copy(parent_regs)
    regs.rip, regs.rflags, regs.rax = parent_regs.rcx, parent_regs.r11, 0
    if newsp:
        regs.rsp = newsp

    if flags & L.CLONE_VM:
        mm = t.mm
        mm.users += 1
    else:
        mm = t.mm.fork()
    fds = t.fds if flags & L.CLONE_FILES else t.fds.fork()
    if fds is t.fds:
        fds.users += 1
    fs = t.fs if flags & L.CLONE_FS else t.fs.fork()
    tid = k.alloc_pid()
    if flags & L.CLONE_THREAD:
        tg = t.tg
    else:
        parent = t.tg.parent if flags & L.CLONE_PARENT and t.tg.parent else t.tg
        tg = ThreadGroup(k, tid, parent)
        tg.pgid, tg.sid = t.tg.pgid, t.tg.sid
        tg.sighand = t.tg.sighand if flags & L.CLONE_SIGHAND else t.tg.sighand.copy()
        tg.exit_signal = exit_signal
        tg.comm, tg.exe, tg.cmdline, tg.environ = t.tg.comm, t.tg.exe, t.tg.cmdline, t.tg.environ
        tg.rlimits = t.tg.rlimits.fork() if hasattr(t.tg.rlimits, "fork") else t.tg.rlimits
        parent.children.append(tg)
        k.groups[tid] = tg
    child = Task(k, tid, tg, mm, fds, fs, t.creds)
    tg.threads.append(child)
    child.sigmask = t.sigmask
    misc = getattr(t, "misc", None)
    if misc is not None:
        child.misc = misc.fork()          # nice, no_new_privs ... (sys_misc.MiscState)
    child.fs_base = tls if flags & L.CLONE_SETTLS else t.fs_base
    if not (flags & L.CLONE_VM and not flags & L.CLONE_VFORK):
        child.altstack = t.altstack
    if flags & L.CLONE_CHILD_CLEARTID:
        child.clear_child_tid = child_tid
    try:
        if flags & L.CLONE_PARENT_SETTID:
            t.mm.write_u32(parent_tid, tid)
        if flags & L.CLONE_CHILD_SETTID:
            mm.write_u32(child_tid, tid)
    except LinuxError:
        pass        # Linux ignores a bad *_tid pointer here: the child still runs
    child.start_regs = regs
    if flags & L.CLONE_VFORK:
        child.vfork_parent = t
    k.start(child)
    if flags & L.CLONE_VFORK:
        await _wait_vfork(t, child)
    return tid


async def _wait_vfork(t: Task, child: Task) -> None:
    """The parent sleeps until the child execs or exits (signals other than fatal
    ones do not end this wait, as in Linux's killable wait)."""
    while child.vfork_parent is t and t.tg.exiting is None:
        await t.block((t.tg.vfork_done,), interruptible=False)
