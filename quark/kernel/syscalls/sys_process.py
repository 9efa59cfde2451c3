"""Process and thread calls: identity, sessions, clone/fork/exec, exit, wait, kill."""

from __future__ import annotations

import struct

from quark.core.guest.layout import USER_TOP
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.signals import SI_TKILL, SI_USER, SigInfo, valid
from quark.kernel.syscalls.args import SyscallArgs
from quark.kernel.syscalls.table import error, fast, syscall
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.task_clone import do_clone
from quark.kernel.task_exec import do_execve
from quark.kernel.task_exit import exit_now, wait_child
from quark.kernel.task_signals import send_to_group, send_to_task
from quark.kernel.vfs.at import read_path

ARCH_SET_GS, ARCH_SET_FS, ARCH_GET_FS, ARCH_GET_GS = 0x1001, 0x1002, 0x1003, 0x1004
ARCH_GET_CPUID, ARCH_SET_CPUID = 0x1011, 0x1012
P_ALL, P_PID, P_PGID, P_PIDFD = 0, 1, 2, 3


# Plain functions the QCall fast path calls without a coroutine (syscalls.table.fast);
# the handlers (exit path, strace) answer through them.
@fast(39)
def fast_getpid(t: Task, raw: tuple[int, ...]) -> int:
    return t.tg.pid


@fast(110)
def fast_getppid(t: Task, raw: tuple[int, ...]) -> int:
    return t.tg.ppid


@fast(186)
def fast_gettid(t: Task, raw: tuple[int, ...]) -> int:
    return t.tid


@syscall(39, "getpid")
async def sys_getpid(t: Task, a: SyscallArgs) -> int:
    return fast_getpid(t, ())


@syscall(110, "getppid")
async def sys_getppid(t: Task, a: SyscallArgs) -> int:
    return fast_getppid(t, ())


@syscall(186, "gettid")
async def sys_gettid(t: Task, a: SyscallArgs) -> int:
    return fast_gettid(t, ())


@syscall(218, "set_tid_address")
async def sys_set_tid_address(t: Task, a: SyscallArgs) -> int:
    t.clear_child_tid = a.ptr(0)
    return t.tid


@syscall(273, "set_robust_list")
async def sys_set_robust_list(t: Task, a: SyscallArgs) -> int:
    if a.size(1) != 24:
        raise LinuxError(L.EINVAL)
    t.robust_list = a.ptr(0)
    return 0


@syscall(274, "get_robust_list", partial="own thread only")
async def sys_get_robust_list(t: Task, a: SyscallArgs) -> int:
    pid = a.int(0)
    if pid not in (0, t.tid):
        raise LinuxError(L.EPERM if t.kernel.find_task(pid) else L.ESRCH)
    t.mm.write_u64(a.ptr(1), t.robust_list)
    t.mm.write_u64(a.ptr(2), 24)
    return 0


def _group_of(t: Task, pid: int) -> ThreadGroup:
    if pid == 0:
        return t.tg
    tg = t.kernel.find_group(pid)
    if tg is None:
        raise LinuxError(L.ESRCH)
    return tg


@syscall(121, "getpgid")
async def sys_getpgid(t: Task, a: SyscallArgs) -> int:
    return _group_of(t, a.int(0)).pgid


@syscall(111, "getpgrp")
async def sys_getpgrp(t: Task, a: SyscallArgs) -> int:
    return t.tg.pgid


@syscall(124, "getsid")
async def sys_getsid(t: Task, a: SyscallArgs) -> int:
    return _group_of(t, a.int(0)).sid


@syscall(109, "setpgid")
async def sys_setpgid(t: Task, a: SyscallArgs) -> int:
    pid, pgid = a.int(0), a.int(1)
    # Linux's order of checks, which decides the errno when several apply.
    pid = pid or t.tg.pid
    pgid = pgid or pid
    if pgid < 0:
        raise LinuxError(L.EINVAL)
    tg = t.kernel.find_group(pid)
    if tg is None:
        raise LinuxError(L.EINVAL if t.kernel.find_task(pid) else L.ESRCH)
    if tg.parent is t.tg:
        if tg.sid != t.tg.sid:
            raise LinuxError(L.EPERM)
        if tg.execed:
            raise LinuxError(L.EACCES)
    elif tg is not t.tg:
        raise LinuxError(L.ESRCH)
    if tg.pid == tg.sid:
        raise LinuxError(L.EPERM)       # a session leader cannot move
    if pgid != tg.pid and not any(g.pgid == pgid and g.sid == t.tg.sid
                                  for g in t.kernel.groups.values()):
        raise LinuxError(L.EPERM)
    tg.pgid = pgid
    return 0


@syscall(112, "setsid")
async def sys_setsid(t: Task, a: SyscallArgs) -> int:
    tg = t.tg
    if any(g.pgid == tg.pid for g in t.kernel.groups.values()):
        raise LinuxError(L.EPERM)
    tg.sid = tg.pgid = tg.pid
    return tg.pid


@syscall(60, "exit")
async def sys_exit(t: Task, a: SyscallArgs) -> int:
    exit_now(t, a.int(0), group=False)
    return 0


@syscall(231, "exit_group")
async def sys_exit_group(t: Task, a: SyscallArgs) -> int:
    exit_now(t, a.int(0), group=True)
    return 0


_RUSAGE = struct.Struct("<4q14q")


@syscall(61, "wait4")
async def sys_wait4(t: Task, a: SyscallArgs) -> int:
    pid, status_p, options, rusage_p = a.int(0), a.ptr(1), a.int(2), a.ptr(3)
    if options & ~(L.WNOHANG | L.WUNTRACED | L.WCONTINUED | L.__WNOTHREAD | L.__WALL
                   | L.__WCLONE):
        raise LinuxError(L.EINVAL)
    if pid == -(1 << 31):
        raise LinuxError(L.ESRCH)
    got, status, child = await wait_child(t, pid, options | L.WEXITED)
    if got and status_p:
        t.mm.write_u32(status_p, status)
    if got and rusage_p:
        ut = child.utime if child else 0.0
        t.mm.write(rusage_p, _RUSAGE.pack(int(ut), int(ut % 1 * 1e6), 0, 0, *([0] * 14)))
    return got


@syscall(247, "waitid")
async def sys_waitid(t: Task, a: SyscallArgs) -> int:
    idtype, id_, info_p, options = a.int(0), a.int(1), a.ptr(2), a.int(3)
    if options & ~(L.WNOHANG | L.WEXITED | L.WSTOPPED | L.WCONTINUED | L.WNOWAIT
                   | L.__WNOTHREAD | L.__WALL | L.__WCLONE):
        raise LinuxError(L.EINVAL)
    if not options & (L.WEXITED | L.WSTOPPED | L.WCONTINUED):
        raise LinuxError(L.EINVAL)
    if idtype == P_ALL:
        pid = -1
    elif idtype == P_PID:
        if id_ <= 0:
            raise LinuxError(L.EINVAL)
        pid = id_
    elif idtype == P_PGID:
        if id_ < 0:
            raise LinuxError(L.EINVAL)
        pid = -id_ if id_ else 0
    else:
        raise LinuxError(L.EINVAL)
    got, status, child = await wait_child(t, pid, options)
    if info_p:
        if not got:
            t.mm.write(info_p, bytes(128))
        else:
            from quark.kernel.signals import (
                CLD_CONTINUED,
                CLD_DUMPED,
                CLD_EXITED,
                CLD_KILLED,
                CLD_STOPPED,
            )
            if status == 0xFFFF:
                code, st = CLD_CONTINUED, L.SIGCONT
            elif status & 0xFF == 0x7F:
                code, st = CLD_STOPPED, (status >> 8) & 0xFF
            elif status & 0x7F == 0:
                code, st = CLD_EXITED, (status >> 8) & 0xFF
            else:
                code, st = (CLD_DUMPED if status & 0x80 else CLD_KILLED), status & 0x7F
            t.mm.write(info_p, SigInfo(L.SIGCHLD, code, pid=got, status=st).pack())
    return 0


@syscall(56, "clone")
async def sys_clone(t: Task, a: SyscallArgs) -> int:
    flags = a.ulong(0)
    # x86-64 argument order: flags, newsp, parent_tid, child_tid, tls
    return await do_clone(t, flags & ~0xFF, a.ptr(1), a.ptr(2), a.ptr(3), a.ptr(4),
                          flags & 0xFF)


_CLONE_ARGS = struct.Struct("<11Q")


@syscall(435, "clone3", partial="no set_tid, cgroup or pidfd")
async def sys_clone3(t: Task, a: SyscallArgs) -> int:
    ptr, size = a.ptr(0), a.size(1)
    if size < 64 or size > 4096:
        raise LinuxError(L.EINVAL)
    raw = t.mm.read(ptr, min(size, _CLONE_ARGS.size)).ljust(_CLONE_ARGS.size, b"\0")
    if size > _CLONE_ARGS.size and any(t.mm.read(ptr + _CLONE_ARGS.size, size - _CLONE_ARGS.size)):
        raise LinuxError(L.E2BIG)
    flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, \
        set_tid_size, cgroup = _CLONE_ARGS.unpack(raw)
    if exit_signal > L.NSIG or flags & 0xFF or set_tid or set_tid_size:
        raise LinuxError(L.EINVAL)
    if (stack == 0) != (stack_size == 0) and not flags & L.CLONE_VM:
        raise LinuxError(L.EINVAL)
    sp = stack + stack_size if stack else 0
    return await do_clone(t, flags, sp, parent_tid, child_tid, tls, exit_signal)


@syscall(57, "fork")
async def sys_fork(t: Task, a: SyscallArgs) -> int:
    return await do_clone(t, 0, 0, 0, 0, 0, L.SIGCHLD)


@syscall(58, "vfork")
async def sys_vfork(t: Task, a: SyscallArgs) -> int:
    return await do_clone(t, L.CLONE_VM | L.CLONE_VFORK, 0, 0, 0, 0, L.SIGCHLD)


@syscall(59, "execve")
async def sys_execve(t: Task, a: SyscallArgs) -> int:
    return await do_execve(t, L.AT_FDCWD, read_path(t, a.ptr(0)), a.ptr(1), a.ptr(2), 0)


@syscall(322, "execveat")
async def sys_execveat(t: Task, a: SyscallArgs) -> int:
    return await do_execve(t, a.int(0), read_path(t, a.ptr(1)), a.ptr(2), a.ptr(3), a.int(4))


@syscall(158, "arch_prctl")
async def sys_arch_prctl(t: Task, a: SyscallArgs) -> int:
    code, addr = a.int(0), a.ulong(1)
    if code == ARCH_SET_FS:
        if addr >= USER_TOP:
            raise LinuxError(L.EPERM)
        t.fs_base = addr
        t.vcpu.set_fs_base(addr)
        return 0
    if code == ARCH_GET_FS:
        t.mm.write_u64(addr, t.fs_base)
        return 0
    if code == ARCH_SET_GS:
        raise LinuxError(L.EINVAL)      # user GS base is not kept across switches here
    if code == ARCH_GET_GS:
        t.mm.write_u64(addr, 0)
        return 0
    if code == ARCH_GET_CPUID:
        return 1
    raise LinuxError(L.EINVAL)


# ---- kill family ---------------------------------------------------------------

def _may_signal(t: Task, target: ThreadGroup, sig: int) -> None:
    c = t.creds
    if c.euid == 0:
        return
    leader = target.leader
    tc = leader.creds if leader else None
    if tc is None or not ({c.uid, c.euid} & {tc.uid, tc.suid}):
        if not (sig == L.SIGCONT and target.sid == t.tg.sid):
            raise LinuxError(L.EPERM)


def _info(t: Task, sig: int, code: int = SI_USER) -> SigInfo:
    return SigInfo(sig, code, pid=t.tg.pid, uid=t.creds.uid)


@syscall(62, "kill")
async def sys_kill(t: Task, a: SyscallArgs) -> int:
    pid, sig = a.int(0), a.int(1)
    if sig and not valid(sig):
        raise LinuxError(L.EINVAL)
    k = t.kernel
    if pid > 0:
        targets = [g for g in [k.find_group(pid)] if g is not None and not g.zombie]
        if not targets:
            raise LinuxError(L.ESRCH)
    elif pid == -1:
        targets = [g for g in k.groups.values() if g.pid != 1 and g is not t.tg and not g.zombie]
        if not targets and not sig:
            raise LinuxError(L.ESRCH)
    else:
        pg = t.tg.pgid if pid == 0 else -pid
        targets = [g for g in k.groups.values() if g.pgid == pg and not g.zombie]
        if not targets:
            raise LinuxError(L.ESRCH)
    sent = 0
    err = 0
    for g in targets:
        try:
            _may_signal(t, g, sig)
        except LinuxError as e:
            err = e.errno
            continue
        if sig:
            send_to_group(g, _info(t, sig))
        sent += 1
    if not sent and err:
        raise LinuxError(err)
    return 0


@syscall(234, "tgkill")
async def sys_tgkill(t: Task, a: SyscallArgs) -> int:
    tgid, tid, sig = a.int(0), a.int(1), a.int(2)
    if tgid <= 0 or tid <= 0 or (sig and not valid(sig)):
        raise LinuxError(L.EINVAL)
    target = t.kernel.find_task(tid)
    if target is None or target.tg.pid != tgid or target.dead:
        raise LinuxError(L.ESRCH)
    _may_signal(t, target.tg, sig)
    if sig:
        send_to_task(target, _info(t, sig, SI_TKILL))
    return 0


@syscall(200, "tkill")
async def sys_tkill(t: Task, a: SyscallArgs) -> int:
    tid, sig = a.int(0), a.int(1)
    if tid <= 0 or (sig and not valid(sig)):
        raise LinuxError(L.EINVAL)
    target = t.kernel.find_task(tid)
    if target is None or target.dead:
        raise LinuxError(L.ESRCH)
    _may_signal(t, target.tg, sig)
    if sig:
        send_to_task(target, _info(t, sig, SI_TKILL))
    return 0


# glibc registers rseq at start and falls back when it is missing, as under gVisor.
error(334, "rseq", L.ENOSYS, "restartable sequences are not implemented; libc falls back")
