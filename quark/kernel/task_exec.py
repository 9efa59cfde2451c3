"""execve: replace a process image.

Until the new image is fully loaded nothing of the caller changes (a failing execve
returns an error to the old image); after that point, failure kills the process,
as in Linux.
"""

from __future__ import annotations

import posixpath

from quark.core.kvm_ffi import Regs
from quark.kernel.abi import linux as L
from quark.kernel.errors import LinuxError
from quark.kernel.futex_robust import exit_robust_list
from quark.kernel.loader import elf
from quark.kernel.mm.address_space import AddressSpace
from quark.kernel.task import Task
from quark.kernel.vfs import perm
from quark.kernel.vfs.at import lookup
from quark.kernel.vfs.path import Location, fsdecode, fsencode

MAX_INTERP_DEPTH = 4      # Linux's BINPRM_MAX_RECURSION
BINPRM_BUF = 256
# Stack below the initial frame backed at exec: static glibc's start and a first
# printf reach ~10 KiB deep (busybox, bench/syscalls.c).
STACK_PREFAULT = 4 * 4096
MAX_ARGS = 0x7FFFFFFF // 8


def open_exec(t: Task, dirfd: int, path: str, flags: int = 0) -> tuple[object, str]:
    """Open ``path`` for execution: a regular file with execute permission on a
    mount that allows exec. Returns (file, path as the process will see it)."""
    r = lookup(t, dirfd, path, flags)
    if not isinstance(r, Location):
        loc = r.loc
        if loc is None:
            raise LinuxError(L.EACCES)
    else:
        loc = r
    st = loc.node.stat()
    if st.mode & L.S_IFMT != L.S_IFREG:
        raise LinuxError(L.EACCES)
    if getattr(loc.mount, "noexec", False):
        raise LinuxError(L.EACCES)
    perm.check(t, st, 1)      # MAY_EXEC
    f = loc.node.open(t, L.O_RDONLY, loc)
    return f, loc.path


def _release(f: object) -> None:
    refs = getattr(f, "refs", 1)
    if refs <= 0 and hasattr(f, "decref"):
        f.incref()  # type: ignore[attr-defined]
        f.decref()  # type: ignore[attr-defined]


def _shebang(f: object) -> tuple[str, str] | None:
    buf = bytearray(BINPRM_BUF)
    n = f.read_at([memoryview(buf)], 0)  # type: ignore[attr-defined]
    head = bytes(buf[:n])
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].strip(b" \t")
    if not line:
        raise LinuxError(L.ENOEXEC)
    parts = line.split(None, 1)
    interp = fsdecode(parts[0])
    arg = fsdecode(parts[1].strip(b" \t")) if len(parts) > 1 else ""
    return interp, arg


def read_strv(t: Task, addr: int) -> list[bytes]:
    """A NULL-terminated array of string pointers (argv/envp); NULL means empty."""
    out: list[bytes] = []
    if addr == 0:
        return out
    total = 0
    while True:
        p = t.mm.read_u64(addr + 8 * len(out))
        if p == 0:
            return out
        s = t.mm.read_cstr(p, elf.MAX_ARG_STRLEN)
        total += len(s) + 1
        if len(out) >= MAX_ARGS or total > elf.STACK_MAX // 4:
            raise LinuxError(L.E2BIG)
        out.append(s)


async def do_execve(t: Task, dirfd: int, path: str, argv: list[bytes] | int,
                    envp: list[bytes] | int, flags: int) -> int:
    """``argv`` and ``envp``: the strings, or the guest address of their arrays,
    read once the file is open (Linux's order: a missing file is ENOENT even
    when the arrays are bad, and a PATH search fails fast)."""
    if flags & ~(L.AT_EMPTY_PATH | L.AT_SYMLINK_NOFOLLOW):
        raise LinuxError(L.EINVAL)
    if not path and not flags & L.AT_EMPTY_PATH:
        raise LinuxError(L.ENOENT)
    f, shown = open_exec(t, dirfd, path, flags)
    execfn = fsencode(path)
    try:
        if isinstance(argv, int):
            argv = read_strv(t, argv)
        if isinstance(envp, int):
            envp = read_strv(t, envp)
        for _ in range(MAX_INTERP_DEPTH + 1):
            sb = _shebang(f)
            if sb is None:
                break
            interp, arg = sb
            new_argv = [fsencode(interp)] + ([fsencode(arg)] if arg else []) + [fsencode(path)]
            argv = new_argv + argv[1:]
            _release(f)
            f, shown = open_exec(t, L.AT_FDCWD, interp)
            path = interp
        else:
            raise LinuxError(L.ELOOP)

        mm = AddressSpace(t.kernel.machine)
        try:
            def open_interp(p: str) -> object:
                fi, _ = open_exec(t, L.AT_FDCWD, p)
                return fi

            image = elf.load(mm, f, open_interp, shown)
            st = f.stat()  # type: ignore[attr-defined]
            mm.hold_text(t.kernel.text_busy, (st.dev, st.ino))
            vdso = t.kernel.vdso.map_into(mm) if t.kernel.vdso is not None else 0
            sp = elf.build_stack(mm, image, argv, envp, execfn, t.creds, vdso)
            # What every program touches first, backed now rather than through a
            # guest fault each: its first instructions (the interpreter's, and the
            # program's it jumps to) and the stack just below the initial frame.
            mm.prefault(image.entry, write=False)
            if image.exe_entry != image.entry:
                mm.prefault(image.exe_entry, write=False)
            mm.prefault(sp - STACK_PREFAULT, write=True)
        except BaseException:
            mm.release()
            raise
    finally:
        _release(f)

    # ---- the point of no return
    tg = t.tg
    for other in list(tg.threads):
        if other is not t:
            other.dead = True
            other.waker.wake()
            if other.vcpu is not None:
                from quark.kernel.task_signals import KICK_SIGNAL
                other.vcpu.kick(KICK_SIGNAL)
    exit_robust_list(t)         # while the old memory is still the task's
    old = t.mm
    if t.vcpu is not None:          # the gate and mailbox move to the new space
        t.vcpu.detach(old.pt)
        t.vcpu.attach(mm.pt)
    t.mm = mm
    old.users -= 1
    if old.users <= 0:
        old.release()
    t.fds.close_on_exec()
    t.creds = t.creds.after_exec()
    if any(g.sighand is tg.sighand for g in t.kernel.groups.values() if g is not tg):
        tg.sighand = tg.sighand.copy()
    tg.sighand.reset_for_exec()
    t.altstack = (0, 2, 0)
    t.fs_base = 0
    t.clear_child_tid = 0
    tg.comm = posixpath.basename(shown)[:15]
    tg.exe = shown
    tg.execed = True
    tg.cmdline = b"".join(a + b"\0" for a in argv)
    tg.environ = b"".join(e + b"\0" for e in envp)
    from quark.kernel.task_exit import _release_vfork
    _release_vfork(t)
    regs = Regs()
    regs.rip, regs.rsp, regs.rflags = image.entry, sp, 0x202
    t.enter = (mm.cr3, 0, regs)
    return 0
