"""Tasks (threads) and thread groups (processes).

Lock order: the kernel lock (``Kernel.lock``) protects every field here; it is held
by whichever vCPU thread runs kernel code, released only inside ``t.block``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from quark.kernel.signals import UNCATCHABLE, Pending, SigHandlers
from quark.kernel.waiting import Block, WaitQueue

if TYPE_CHECKING:
    from quark.kernel.kernel import Kernel
    from quark.kernel.mm.address_space import AddressSpace


class Waker:
    """A task's wake-up eventfd: wait queues and signal senders write it; the task
    sleeps on it in ``poll`` with the kernel lock released."""

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

    def wake(self) -> None:
        try:
            os.eventfd_write(self.fd, 1)
        except BlockingIOError:
            pass        # counter saturated: it is readable anyway

    def drain(self) -> None:
        try:
            os.eventfd_read(self.fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


class ThreadGroup:
    """A process: what the threads of one thread group share."""

    def __init__(self, kernel: Kernel, pid: int, parent: ThreadGroup | None) -> None:
        self.kernel = kernel
        self.pid = pid
        self.parent = parent
        self.children: list[ThreadGroup] = []
        self.threads: list[Task] = []
        self.sighand = SigHandlers()
        self.shared_pending = Pending()
        self.pgid = parent.pgid if parent else pid
        self.sid = parent.sid if parent else pid
        self.exit_signal = 17        # SIGCHLD unless clone said otherwise
        self.exiting: int | None = None   # group exit in progress: the wait status
        self.zombie = False
        self.wait_status = 0         # Linux wait status once a zombie
        self.stopped = False
        self.stop_report = 0         # pending WUNTRACED / WCONTINUED report (status)
        self.child_wq = WaitQueue()  # a child changed state
        self.vfork_done = WaitQueue()
        self.comm = "init"
        self.exe = ""
        self.cmdline = b""
        self.environ = b""
        self.start_time = time.monotonic()
        self.utime = 0.0
        self.stime = 0.0
        self.cutime = 0.0
        self.subreaper = False
        self.execed = False          # has called execve (setpgid on it: EACCES)
        self.rlimits: Any = None
        self.itimer_real: Any = None
        self.on_exit: Any = None     # callback(status) for processes without a parent

    @property
    def ppid(self) -> int:
        return self.parent.pid if self.parent else 0

    @property
    def leader(self) -> Task | None:
        return self.threads[0] if self.threads else None


class Task:
    """A thread: a vCPU's worth of user state plus its kernel context."""

    def __init__(self, kernel: Kernel, tid: int, tg: ThreadGroup, mm: AddressSpace,
                 fds: Any, fs: Any, creds: Any) -> None:
        self.kernel = kernel
        self.tid = tid
        self.tg = tg
        self.mm = mm
        self.fds = fds
        self.fs = fs
        self.creds = creds
        self.sigmask = 0
        self.saved_sigmask: int | None = None   # restored after sigsuspend's handler
        self.pending = Pending()
        self.altstack = (0, 2, 0)     # ss_sp, ss_flags (SS_DISABLE), ss_size
        self.clear_child_tid = 0
        self.fs_base = 0
        self.waker = Waker()
        self.vcpu: Any = None
        self.thread: Any = None
        self.start_regs: Any = None   # user registers to start (or restart) from
        self.enter: Any = None        # (cr3, fs_base, regs) set by execve
        self.set_regs: Any = None     # full user registers set by rt_sigreturn
        self.dead = False             # leaving: the vCPU loop stops at its next exit
        self.exited = False           # exit_task has run
        self.exit_code = 0
        self.vfork_parent: Task | None = None
        self.robust_list = 0
        self.restart_block: Any = None   # async fn(task) restart_syscall continues with
        self.stop = 0                 # how the vCPU last stopped (taskrun.STOP_*)
        self.parked: Any = None       # a QCall the poller began: (coroutine, Block)

    # ---- identity used across the kernel
    @property
    def pid(self) -> int:
        return self.tg.pid

    @property
    def ppid(self) -> int:
        return self.tg.ppid

    @property
    def comm(self) -> str:
        return self.tg.comm

    @comm.setter
    def comm(self, v: str) -> None:
        self.tg.comm = v

    @property
    def rlimits(self) -> Any:
        return self.tg.rlimits

    # ---- blocking
    def block(self, queues: tuple[WaitQueue, ...] | list[WaitQueue] = (),
              timeout: float | None = None,
              host_fds: tuple[tuple[int, int], ...] | list[tuple[int, int]] = (),
              interruptible: bool = True) -> Block:
        return Block(tuple(queues), timeout, tuple(host_fds), interruptible)

    # ---- signals
    def signal_pending(self) -> bool:
        # A group stop interrupts every thread's wait, as Linux's JOBCTL_STOP_PENDING
        # does: each stops at its return to user mode and its call restarts later.
        if self.tg.exiting is not None or self.dead or self.tg.stopped:
            return True
        blocked = self.sigmask & ~UNCATCHABLE
        return bool((self.pending.mask | self.tg.shared_pending.mask) & ~blocked)

    def __repr__(self) -> str:
        return f"<Task {self.tid} of {self.tg.pid} {self.comm!r}>"
