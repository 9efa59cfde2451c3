"""Signals: dispositions, pending sets, siginfo, and the x86-64 rt_sigframe.

Some facts this follows (kernel/signal.c, arch/x86/kernel/signal.c):
- Standard signals (1-31) do not queue: a second one while pending is dropped.
  Real-time signals (32-64) queue with their siginfo.
- A signal is taken at the return to user mode: the lowest-numbered pending,
  unblocked one first (thread-private before process-wide).
- The frame a handler sees: RSP points at ``pretcode`` (sa_restorer), followed by a
  ``struct ucontext`` and a ``siginfo``; the FPU/vector state lives below (here: the
  whole XSAVE image KVM reports), pointed at by ``uc_mcontext.fpstate``. RSP + 8 is
  16-byte aligned, as right after a ``call``.
- SIGKILL and SIGSTOP cannot be caught, blocked or ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from quark.kernel.abi import linux as L

SA_NOCLDSTOP = 0x00000001
SA_NOCLDWAIT = 0x00000002
SA_SIGINFO = 0x00000004
SA_RESTORER = 0x04000000
SA_ONSTACK = 0x08000000
SA_RESTART = 0x10000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000

SIG_DFL = 0
SIG_IGN = 1

SIG_BLOCK, SIG_UNBLOCK, SIG_SETMASK = 0, 1, 2

SS_ONSTACK = 1
SS_DISABLE = 2
SS_AUTODISARM = 1 << 31
MINSIGSTKSZ = 2048

# si_code values
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TKILL = -6
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_TRAPPED, CLD_STOPPED, CLD_CONTINUED = 1, 2, 3, 4, 5, 6
ILL_ILLOPN = 2
FPE_INTDIV = 1
SEGV_MAPERR, SEGV_ACCERR = 1, 2
BUS_ADRERR = 2
TRAP_BRKPT = 1

UNCATCHABLE = (1 << (L.SIGKILL - 1)) | (1 << (L.SIGSTOP - 1))
ALL_SIGNALS = (1 << 64) - 1

_IGNORE = {L.SIGCHLD, L.SIGURG, L.SIGWINCH, L.SIGCONT}
_STOP = {L.SIGSTOP, L.SIGTSTP, L.SIGTTIN, L.SIGTTOU}
_CORE = {L.SIGQUIT, L.SIGILL, L.SIGTRAP, L.SIGABRT, L.SIGBUS, L.SIGFPE, L.SIGSEGV,
         L.SIGXCPU, L.SIGXFSZ, L.SIGSYS}

DEFAULT_IGNORE, DEFAULT_STOP, DEFAULT_CORE, DEFAULT_TERM, DEFAULT_CONT = range(5)


def default_action(sig: int) -> int:
    if sig == L.SIGCONT:
        return DEFAULT_CONT
    if sig in _IGNORE:
        return DEFAULT_IGNORE
    if sig in _STOP:
        return DEFAULT_STOP
    if sig in _CORE:
        return DEFAULT_CORE
    return DEFAULT_TERM


def bit(sig: int) -> int:
    return 1 << (sig - 1)


def valid(sig: int) -> bool:
    return 1 <= sig <= L.NSIG


@dataclass
class SigAction:
    """struct sigaction as the kernel stores it (handler, flags, restorer, mask)."""

    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0

    _S = struct.Struct("<QQQQ")

    def pack(self) -> bytes:
        return self._S.pack(self.handler, self.flags, self.restorer, self.mask)

    @classmethod
    def unpack(cls, raw: bytes) -> SigAction:
        h, f, r, m = cls._S.unpack(raw)
        return cls(h, f & 0xFFFFFFFF, r, m & ~UNCATCHABLE)


class SigHandlers:
    """The dispositions of a thread group (shared by CLONE_SIGHAND)."""

    def __init__(self) -> None:
        self.actions = [SigAction() for _ in range(L.NSIG + 1)]

    def copy(self) -> SigHandlers:
        h = SigHandlers()
        h.actions = [SigAction(a.handler, a.flags, a.restorer, a.mask) for a in self.actions]
        return h

    def reset_for_exec(self) -> None:
        """execve: caught signals revert to default; ignored ones stay ignored."""
        for i, a in enumerate(self.actions):
            if a.handler != SIG_IGN:
                self.actions[i] = SigAction()
            else:
                a.flags, a.restorer, a.mask = 0, 0, 0

    def ignored(self, sig: int) -> bool:
        a = self.actions[sig]
        return a.handler == SIG_IGN or (a.handler == SIG_DFL and default_action(sig) == DEFAULT_IGNORE)


@dataclass
class SigInfo:
    signo: int
    code: int = SI_USER
    errno: int = 0
    pid: int = 0
    uid: int = 0
    status: int = 0
    addr: int = 0
    value: int = 0
    utime: int = 0
    stime: int = 0

    def pack(self) -> bytes:
        b = bytearray(128)
        struct.pack_into("<iii", b, 0, self.signo, self.errno, self.code)
        if self.signo in (L.SIGSEGV, L.SIGBUS, L.SIGILL, L.SIGFPE, L.SIGTRAP) and self.code > 0:
            struct.pack_into("<Q", b, 16, self.addr)
        elif self.signo == L.SIGCHLD and self.code > 0:
            struct.pack_into("<iIiiqq", b, 16, self.pid, self.uid, self.status, 0,
                             self.utime, self.stime)
        else:
            struct.pack_into("<iIQ", b, 16, self.pid, self.uid, self.value)
        return bytes(b)


@dataclass
class Pending:
    """A pending set with the queued siginfo of each signal."""

    mask: int = 0
    infos: dict[int, list[SigInfo]] = field(default_factory=dict)

    def add(self, info: SigInfo) -> bool:
        """Queue ``info``; False if a standard signal was already pending (dropped)."""
        sig = info.signo
        if self.mask & bit(sig) and sig < 32:
            return False
        self.mask |= bit(sig)
        self.infos.setdefault(sig, []).append(info)
        return True

    def take(self, sig: int) -> SigInfo:
        q = self.infos.get(sig) or [SigInfo(sig)]
        info = q.pop(0)
        if not q:
            self.infos.pop(sig, None)
            self.mask &= ~bit(sig)
        return info

    def discard(self, sig: int) -> None:
        self.infos.pop(sig, None)
        self.mask &= ~bit(sig)

    def first(self, blocked: int) -> int:
        """The lowest pending signal not in ``blocked`` (0 if none)."""
        ready = self.mask & ~(blocked & ~UNCATCHABLE)
        if not ready:
            return 0
        # Synchronous fault signals first, as Linux does (SYNCHRONOUS_MASK).
        sync = ready & (bit(L.SIGSEGV) | bit(L.SIGBUS) | bit(L.SIGILL) | bit(L.SIGTRAP)
                        | bit(L.SIGFPE) | bit(L.SIGSYS))
        pick = sync or ready
        return (pick & -pick).bit_length()


# ---- the frame --------------------------------------------------------------

# struct sigcontext (x86-64): r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip,
# eflags, cs/gs/fs/ss(16-bit each), err, trapno, oldmask, cr2, fpstate, reserved[8].
_SIGCONTEXT = struct.Struct("<18Q4H5Q8Q")
SIGCONTEXT_SIZE = _SIGCONTEXT.size                     # 256
UC_FLAGS, UC_LINK, UC_STACK, UC_MCONTEXT = 0, 8, 16, 40
UC_SIGMASK = UC_MCONTEXT + SIGCONTEXT_SIZE              # 296
UCONTEXT_SIZE = UC_SIGMASK + 8                          # 304 (+ padding to 8)
FRAME_UC = 8
FRAME_INFO = FRAME_UC + UCONTEXT_SIZE                   # 312
FRAME_SIZE = FRAME_INFO + 128                           # 440
UC_FP_XSTATE = 1
UC_SIGCONTEXT_SS = 2
UC_STRICT_RESTORE_SS = 4

GPR_ORDER = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp",
             "rbx", "rdx", "rax", "rcx", "rsp", "rip", "rflags")

# RFLAGS bits user mode may restore (arch/x86 FIX_EFLAGS): no IOPL, IF, NT, VM ...
FIX_EFLAGS = 0x40DD5 | 0x100 | 0x200000


def pack_sigcontext(regs: object, trapno: int, err: int, oldmask: int, cr2: int,
                    fpstate: int) -> bytes:
    gprs = [getattr(regs, n) for n in GPR_ORDER]
    return _SIGCONTEXT.pack(*gprs, 0x33, 0, 0, 0x2B, err, trapno, oldmask, cr2, fpstate,
                            *([0] * 8))


def unpack_sigcontext(raw: bytes) -> tuple[dict[str, int], int]:
    """The general registers of a sigcontext and its fpstate pointer."""
    vals = _SIGCONTEXT.unpack(raw)
    regs = dict(zip(GPR_ORDER, vals[:18]))
    return regs, vals[26]
