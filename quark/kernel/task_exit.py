"""Thread and process exit, zombies, reparenting, and wait4/waitid.

Wait status encoding (what WIFEXITED & co. decode): exit ``(code & 0xff) << 8``;
killed ``sig | 0x80 if core dumped``; stopped ``(sig << 8) | 0x7f``; continued 0xffff.
"""

from __future__ import annotations

from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.futex_robust import exit_robust_list
from quark.kernel.signals import (
    CLD_DUMPED,
    CLD_EXITED,
    CLD_KILLED,
    SA_NOCLDWAIT,
    SI_KERNEL,
    SIG_IGN,
    SigInfo,
)
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.task_signals import group_exit, pgrp_orphaned, send_to_group


def exit_task(t: Task) -> None:
    """The last act of a task's thread (kernel lock held). Idempotent."""
    if t.exited:
        return
    t.exited = True
    k = t.kernel
    if k.write_behind.ring is not None:
        k.write_behind.drop(t)      # its ring is in the memory about to go
    if t.parked is not None and t.parked[0] is not None:
        t.mm.unpin()            # a call the poller parked will never resume
    t.parked = None
    tg = t.tg
    t.dead = True
    exit_robust_list(t)
    if t.clear_child_tid:
        try:
            t.mm.write_u32(t.clear_child_tid, 0)
            futex = getattr(k, "futex", None)
            if futex is not None:
                futex.wake(t.mm, t.clear_child_tid, 1)
        except LinuxError:
            pass
    _release_vfork(t)
    if t in tg.threads:
        tg.threads.remove(t)
    k.tasks.pop(t.tid, None)
    t.mm.users -= 1
    if t.mm.users <= 0:
        t.mm.release()
    t.fds.users -= 1
    t.waker.close()
    t.thread = None
    if tg.threads:
        return
    status = tg.exiting if tg.exiting is not None else (t.exit_code & 0xFF) << 8
    _group_dead(tg, t, status)


def _release_vfork(t: Task) -> None:
    p = t.vfork_parent
    if p is not None:
        t.vfork_parent = None
        p.tg.vfork_done.notify()
        t.tg.vfork_released = True  # type: ignore[attr-defined]


def _group_dead(tg: ThreadGroup, last: Task, status: int) -> None:
    k = tg.kernel
    tg.wait_status = status
    if last.fds.users <= 0:
        # A process that shared its table (CLONE_FILES without CLONE_THREAD) must
        # not close the files of the one still using it.
        last.fds.close_all()
    if tg.itimer_real is not None:
        tg.itimer_real.cancel()
        tg.itimer_real = None
    reaper = _reaper_for(tg)
    for child in list(tg.children):
        leader = child.leader
        death = getattr(getattr(leader, "misc", None), "pdeathsig", 0) if leader else 0
        if death:
            send_to_group(child, SigInfo(death, 0, pid=tg.pid))
        child.parent = reaper
        if reaper is not None:
            reaper.children.append(child)
            if child.zombie:
                reaper.child_wq.notify()
        _kill_orphaned_pgrp(child, tg, None)
    tg.children.clear()
    _kill_orphaned_pgrp(tg, tg.parent, tg)
    tg.zombie = True
    parent = tg.parent
    if tg is k.init_tg:
        for other in list(k.groups.values()):
            if other is not tg and not other.zombie:
                group_exit(other, L.SIGKILL)
        k.groups.pop(tg.pid, None)
        k.init_exited(status)
        return
    if parent is None:
        # A process started from outside (exec): nobody in the container reaps it;
        # the sandbox learns its status through the callback.
        k.groups.pop(tg.pid, None)
        if tg.on_exit is not None:
            tg.on_exit(status)
        return
    act = parent.sighand.actions[L.SIGCHLD]
    autoreap = tg.exit_signal == L.SIGCHLD and (act.handler == SIG_IGN or act.flags & SA_NOCLDWAIT)
    if tg.exit_signal and not autoreap:
        if status & 0x7F == 0:
            code, st = CLD_EXITED, (status >> 8) & 0xFF
        else:
            code, st = (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F
        send_to_group(parent, SigInfo(tg.exit_signal, code, pid=tg.pid, status=st,
                                      uid=last.creds.uid))
    if autoreap:
        reap(tg)
    parent.child_wq.notify()


def _kill_orphaned_pgrp(g: ThreadGroup, parent: ThreadGroup | None,
                        leaving: ThreadGroup | None) -> None:
    """POSIX 3.2.2.2: when a process group becomes orphaned (``g`` loses its parent
    ``parent``, or is ``leaving``, and that was the group's last link to another
    group of its session) while some of it is stopped, it gets SIGHUP then SIGCONT:
    no shell is left to continue it."""
    pg = g.pgid
    if parent is None or parent.pgid == pg or parent.sid != g.sid:
        return
    k = g.kernel
    members = [m for m in k.groups.values() if m.pgid == pg and not m.zombie]
    if not any(m.stopped for m in members) or not pgrp_orphaned(k, pg, leaving):
        return
    for sig in (L.SIGHUP, L.SIGCONT):
        for m in members:
            if m is not leaving:
                send_to_group(m, SigInfo(sig, SI_KERNEL))


def _reaper_for(tg: ThreadGroup) -> ThreadGroup | None:
    """The nearest living ancestor marked PR_SET_CHILD_SUBREAPER, else init."""
    k = tg.kernel
    p = tg.parent
    while p is not None:
        lead = p.leader
        if not p.zombie and lead is not None and getattr(getattr(lead, "misc", None),
                                                          "child_subreaper", False):
            return p
        p = p.parent
    return k.init_tg if k.init_tg is not tg else None


def reap(tg: ThreadGroup) -> None:
    k = tg.kernel
    if tg.parent is not None and tg in tg.parent.children:
        tg.parent.children.remove(tg)
    k.groups.pop(tg.pid, None)
    k.free_pid(tg.pid)


# ---- waiting for children -----------------------------------------------------

def _matches(child: ThreadGroup, pid: int, caller: ThreadGroup, options: int) -> bool:
    if pid > 0:
        ok = child.pid == pid
    elif pid == -1:
        ok = True
    elif pid == 0:
        ok = child.pgid == caller.pgid
    else:
        ok = child.pgid == -pid
    if not ok:
        return False
    # __WCLONE waits only for children whose exit signal is not SIGCHLD.
    if options & L.__WALL:
        return True
    clone = child.exit_signal != L.SIGCHLD
    return clone == bool(options & L.__WCLONE)


async def wait_child(t: Task, pid: int, options: int) -> tuple[int, int, ThreadGroup | None]:
    """Find a child in a reportable state; returns (pid, status, child) or (0, 0, None)
    for WNOHANG. Raises ECHILD when nothing can ever match."""
    tg = t.tg
    while True:
        candidates = [c for c in tg.children if _matches(c, pid, tg, options)]
        if not candidates:
            raise LinuxError(L.ECHILD)
        for c in candidates:
            if c.zombie and options & L.WEXITED:
                st = c.wait_status
                if not options & L.WNOWAIT:
                    tg.cutime += c.utime + c.cutime
                    reap(c)
                return c.pid, st, c
            if c.stop_report and c.stop_report != 0xFFFF and c.stopped and options & L.WUNTRACED:
                st = c.stop_report
                if not options & L.WNOWAIT:
                    c.stop_report = 0
                return c.pid, st, c
            if c.stop_report == 0xFFFF and options & L.WCONTINUED:
                if not options & L.WNOWAIT:
                    c.stop_report = 0
                return c.pid, 0xFFFF, c
        if options & L.WNOHANG:
            return 0, 0, None
        await t.block((tg.child_wq,))


def exit_now(t: Task, code: int, group: bool) -> None:
    """exit/exit_group: make the task (or its whole group) leave at the syscall exit."""
    t.exit_code = code & 0xFF
    if group or len(t.tg.threads) <= 1:
        group_exit(t.tg, (code & 0xFF) << 8)
    t.dead = True


