"""The kernel object: global state of one sandbox's application kernel.

Lock order: ``Kernel.lock`` (the kernel lock) is the outermost kernel lock; the
frame allocator's and the machine's internal locks nest inside it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from quark.kernel.syscalls import table as systable
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.waiting import WaitQueue

log = logging.getLogger("quark.kernel")


class Kernel:
    def __init__(self, machine: Any, vfs: Any, hostname: str = "quark") -> None:
        self.lock = threading.Lock()
        self.machine = machine
        # tmpfs data (host memory of this process) is bounded by the guest's RAM.
        from quark.kernel.fs.tmpfs.fs import set_memory_budget
        set_memory_budget(machine.mem.size)
        self.vfs = vfs
        # Program text shared by the sandbox's address spaces: up to a quarter of
        # guest memory, given back when frames run out (mm/textcache.py).
        from quark.kernel.mm.textcache import TextCache
        machine.text_cache = TextCache(machine.alloc, machine.mem.size // 4096 // 4)
        self.hostname = hostname
        self.domainname = "(none)"
        self.boot_time = time.time()
        self.boot_monotonic = time.monotonic()
        self.ncpus = len(os.sched_getaffinity(0))
        self.tasks: dict[int, Task] = {}
        self.groups: dict[int, ThreadGroup] = {}
        self.init_tg: ThreadGroup | None = None
        self.table = systable.load()
        self.enosys_seen: set[int] = set()
        # Set by the sandbox when a plugin observes system calls (quark_syscall_*):
        # an object with .enter(task, nr, args) / .exit(task, nr, args, result), each
        # None if unobserved. None here costs one test per call (taskrun).
        self.syscall_observer: Any = None
        self.exit_status: int | None = None
        self.on_init_exit: Callable[[int], None] | None = None
        self._next_pid = 1
        self._free_pids: set[int] = set()
        from quark.kernel.futex import FutexTable
        self.futex = FutexTable()
        # Executables of live address spaces, (st_dev, st_ino) -> count: opening
        # one for writing or truncating it is ETXTBSY (Linux's deny_write_access
        # for an mm's exe_file).
        self.text_busy: dict[tuple[object, int], int] = {}
        from quark.kernel.vfs.locks import LockTable
        self.locks = LockTable()
        self.threads: list[threading.Thread] = []
        self.vdso: Any = None             # set by start_time(): vDSO + time page
        self.timekeeper: Any = None
        from quark.kernel.fs.host.writebehind import WriteBehind
        self.write_behind = WriteBehind()  # enabled by the sandbox (kernel.write_behind)
        self.gate_calls = False            # set by the sandbox (kernel.gate_calls, gateio.py)
        # Wakes the QCall poller (set by the sandbox when it has one): a write
        # gathered on the exit path is then flushed by the poller's idle pass.
        self.poke_poller: Callable[[], None] | None = None
        self.frozen = False               # pause: no task runs user code
        self.thaw_wq = WaitQueue()        # notified by resume and SIGCONT

    def start_time(self) -> None:
        """Map a vDSO into every process from now on, with its time page kept
        current (clock_gettime & co. then never leave the guest)."""
        from quark.kernel.loader.vdso import Vdso
        from quark.kernel.timekeeper import Timekeeper
        self.vdso = Vdso(self.machine)
        self.timekeeper = Timekeeper(self.machine, self.vdso.vvar_frame)
        self.timekeeper.start()

    # ---- pause / resume (the OCI freezer): vCPUs stop at their next exit
    def freeze(self) -> None:
        """Kernel lock held. Every running vCPU is kicked and parks in the kernel."""
        from quark.kernel.task_signals import KICK_SIGNAL
        self.frozen = True
        for t in self.tasks.values():
            if t.vcpu is not None:
                t.vcpu.kick(KICK_SIGNAL)

    def thaw(self) -> None:
        self.frozen = False
        self.thaw_wq.notify()

    # ---- pids
    def alloc_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def free_pid(self, pid: int) -> None:
        """Pids are not reused while the sandbox lives (4M pid space; simpler /proc)."""

    def find_task(self, tid: int) -> Task | None:
        return self.tasks.get(tid)

    def find_group(self, pid: int) -> ThreadGroup | None:
        return self.groups.get(pid)

    # ---- task threads
    def start(self, t: Task) -> None:
        """Start ``t``'s vCPU thread (``t.start_regs`` set). Kernel lock held."""
        from quark.kernel.taskrun import run_task
        th = threading.Thread(target=run_task, args=(t,), name=f"task-{t.tid}", daemon=True)
        t.thread = th
        self.tasks[t.tid] = t
        self.threads.append(th)
        th.start()

    def init_exited(self, status: int) -> None:
        """Container init is gone (kernel lock held): report it once."""
        if self.exit_status is None:
            self.exit_status = status
            if self.on_init_exit is not None:
                self.on_init_exit(status)

    def live_threads(self) -> list[threading.Thread]:
        self.threads = [th for th in self.threads if th.is_alive()]
        return self.threads

    # ---- for /proc
    def procs(self) -> list[Any]:
        from quark.kernel.procinfo import proc_infos
        return proc_infos(self)

    def proc(self, pid: int) -> Any | None:
        from quark.kernel.procinfo import proc_info
        return proc_info(self, pid)

    def proc_owner(self, pid: int) -> tuple[int, int] | None:
        from quark.kernel.procinfo import proc_owner
        return proc_owner(self, pid)


