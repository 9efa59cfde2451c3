"""A vCPU: its machine pages (GDT, TSS, RSP0 stack, gate, mailbox), its registers,
and the primitive ways into guest user mode.

A vCPU is driven by exactly one host thread at a time (the thread of the task that
owns it); these methods are not thread-safe and never touch asyncio objects.
Returning to user mode has three shapes, picked by where the vCPU stopped:
- after a system call (``out 0x80`` in the gate, CPL 3): write the result to the
  mailbox and re-run; to change user registers, KVM_SET_REGS directly;
- after an exception (``out 0x81`` in a vector stub, CPL 0): edit the iret frame on
  the RSP0 stack and general registers, re-run; the stub's ``iretq`` does the rest;
- from nothing (new task, exec, fork child): :meth:`enter_user` puts the vCPU at CPL 0
  on the ``enter_user`` trampoline with an iret frame describing the user state.
"""

from __future__ import annotations

import os
import struct
from enum import Enum
from typing import Any

from quark.core import kvm_ffi
from quark.core.guest import layout as L
from quark.core.pagetable import NX, RW, US

_Q = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_FRAME = struct.Struct("<7Q")
_IRET = struct.Struct("<5Q")
_MAILBOX = struct.Struct("<7Q")

CR0 = 0x80050033            # PG, AM, WP, NE, ET, MP, PE
CR4 = 0x10620 | 0x40000     # FSGSBASE, OSXMMEXCPT, OSFXSR, PAE, OSXSAVE (PVM.md)
EFER = 0xD01                # NXE, LMA, LME, SCE
_NO_GRANTS = bytes(L.GATE_FDS)
XCR0 = 7                    # x87, SSE, AVX state enabled for user code
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_CSTAR = 0xC0000083
MSR_SFMASK = 0xC0000084
MSR_FS_BASE = 0xC0000100
MSR_PVM_PROBE = 0x4B564D11

USER_RFLAGS = 0x202


class VcpuState(Enum):
    IDLE = "idle"          # in the pool, no task
    RUNNING = "running"    # a task's thread is driving it
    FINISHED = "finished"  # machine torn down


def _gdt(tss_kva: int, tss_limit: int) -> bytes:
    entries = [
        0,
        0,
        0x00AF9A000000FFFF,   # 0x10 kernel code, 64-bit
        0x00CF92000000FFFF,   # 0x18 kernel data
        0x00CFFA000000FFFF,   # 0x23 user code, 32-bit
        0x00CFF2000000FFFF,   # 0x2b user data
        0x00AFFA000000FFFF,   # 0x33 user code, 64-bit
    ]
    low = ((tss_limit & 0xFFFF) | ((tss_kva & 0xFFFFFF) << 16) | (0x89 << 40)
           | (((tss_limit >> 16) & 0xF) << 48) | (((tss_kva >> 24) & 0xFF) << 56))
    high = tss_kva >> 32
    return struct.pack("<9Q", *entries, low, high)


_IOMAP_BASE = 104
_IOMAP_BYTES = 32          # ports 0..255; everything past the limit is denied


def _tss(rsp0: int) -> tuple[bytes, int]:
    tss = bytearray(_IOMAP_BASE + _IOMAP_BYTES + 1)
    struct.pack_into("<Q", tss, 4, rsp0)
    struct.pack_into("<H", tss, 102, _IOMAP_BASE)
    bitmap = bytearray(b"\xff" * _IOMAP_BYTES)
    for port in (L.PORT_SYSCALL, L.PORT_DOORBELL):
        bitmap[port // 8] &= ~(1 << (port % 8)) & 0xFF
    tss[_IOMAP_BASE:_IOMAP_BASE + _IOMAP_BYTES] = bitmap
    tss[-1] = 0xFF          # the bitmap must end with a byte of ones
    return bytes(tss), len(tss) - 1


def user_rflags(value: int) -> int:
    """RFLAGS a guest value may give user mode (as enter_user): arithmetic flags, TF,
    DF, AC and ID; never IOPL, NT, RF or VM; IF always set. R11 and the mailbox
    are the guest's to write, so a value from them passes through here."""
    return value & 0x3C0FD5 | 0x202


class Vcpu:
    def __init__(self, machine: Machine, index: int) -> None:  # type: ignore[name-defined]  # noqa: F821
        self.machine = machine
        self.index = index
        self.state = VcpuState.IDLE
        self.thread_ident = 0
        mem = machine.mem
        base = L.vcpu_pa(index)
        self.base_pa = base
        self.mailbox_pa = base + L.VCPU_MAILBOX
        self.stack_top_kva = L.kva(base + L.VCPU_STACK_TOP)
        self.frame_pa = base + L.VCPU_STACK_TOP - 8 * 7       # fault frame (7 words)
        self.iret_pa = base + L.VCPU_STACK_TOP - 8 * 5        # enter_user frame
        self.gate_kva = L.gate_kva(index)       # mapped per address space (attach)
        self.qcall = bool(getattr(machine, "qcall", False))
        entry = self.gate_kva + (L.STUB_GATE_QCALL - L.STUB_GATE if self.qcall else 0)
        self.gate_end_kva = self.gate_kva + L.PAGE

        tss, tss_limit = _tss(self.stack_top_kva)
        mem.map[base + L.VCPU_TSS:base + L.VCPU_TSS + len(tss)] = tss
        gdt = _gdt(L.kva(base + L.VCPU_TSS), tss_limit)
        mem.map[base + L.VCPU_GDT:base + L.VCPU_GDT + len(gdt)] = gdt
        gate = machine.stub[L.STUB_GATE:L.STUB_GATE + L.PAGE]
        mem.map[base + L.VCPU_GATE:base + L.VCPU_GATE + L.PAGE] = gate
        machine.map_machine_pages([
            (base + L.VCPU_GDT, RW | NX),
            (base + L.VCPU_TSS, RW | NX),
            (base + L.VCPU_STACK, RW | NX),
            (base + L.VCPU_STACK + L.PAGE, RW | NX),
        ])

        self.fd = kvm_ffi.create_vcpu(machine.vm_fd, index)
        self.run = kvm_ffi.RunPage(self.fd, machine.run_size)
        kvm_ffi.set_cpuid(self.fd, machine.cpuid)
        kvm_ffi.set_msrs(self.fd, {
            MSR_STAR: 0x0023001000000000,
            MSR_LSTAR: entry,
            MSR_CSTAR: entry,
            MSR_SFMASK: 0,     # keep RFLAGS: the gate runs in user mode
        })

        self.sregs = kvm_ffi.get_sregs(self.fd, kvm_ffi.Sregs())
        self._init_sregs(base, tss_limit)
        kvm_ffi.set_xcr0(self.fd, XCR0)
        self.regs = kvm_ffi.Regs()
        # Word views of the mailbox: an item assignment is one aligned store.
        # (struct.pack_into zero-fills before writing, and a gate spinning on a
        # word may see that transient zero.)
        mbox = mem.view[self.mailbox_pa:self.mailbox_pa + L.PAGE]
        self._mb32 = mbox.cast("I")
        self._mb64 = mbox.cast("Q")
        mbox.release()
        # The slot's words for the poller's scan (see layout.MB_STATE, MB_WAIT):
        # guest-writable like every mailbox word, only a hint of where to look.
        self.qcall_slot = self._mb32
        self.spin_max = getattr(machine, "qcall_spin", 0)
        self.spin = self.spin_max
        self._mb32[L.MB_SPIN // 4] = self.spin
        # Where calls the fast path does not answer continue (supervisor_pvm.S).
        slow = L.STUB_QCALL_POST if self.qcall else L.STUB_GATE_EXIT
        self._mb64[L.MB_SLOW // 8] = self.gate_kva + slow - L.STUB_GATE
        self.grants = False             # some grant is set in the mailbox
        self._fdkind = mem.view[self.mailbox_pa + L.MB_FDKIND:
                                self.mailbox_pa + L.MB_FDKIND + L.GATE_FDS]

    def _init_sregs(self, base: int, tss_limit: int) -> None:
        s = self.sregs

        def seg(sg: kvm_ffi.Segment, sel: int, typ: int, code: bool) -> None:
            sg.base, sg.limit, sg.selector, sg.type = 0, 0xFFFFFFFF, sel, typ
            sg.present, sg.dpl, sg.s, sg.g, sg.avl, sg.unusable = 1, 0, 1, 1, 0, 0
            sg.l, sg.db = (1, 0) if code else (0, 1)

        seg(s.cs, L.SEL_KCODE, 11, True)
        for sg in (s.ds, s.es, s.ss):
            seg(sg, L.SEL_KDATA, 3, False)
        for sg in (s.fs, s.gs):
            seg(sg, 0, 3, False)
        s.tr.base, s.tr.limit, s.tr.selector, s.tr.type = L.kva(base + L.VCPU_TSS), tss_limit, L.SEL_TSS, 11
        s.tr.present, s.tr.s, s.tr.dpl, s.tr.g, s.tr.l, s.tr.db, s.tr.unusable = 1, 0, 0, 0, 0, 0, 0
        s.gdt.base, s.gdt.limit = L.kva(base + L.VCPU_GDT), 9 * 8 - 1
        s.idt.base, s.idt.limit = L.kva(L.IDT_PA), 256 * 16 - 1
        s.cr0, s.cr4, s.efer = CR0, CR4, EFER

    # ---- the gate and mailbox in the address spaces of the tasks running here

    def attach(self, pt: Any) -> None:
        """Map this vCPU's gate (user: read + execute) and mailbox (user: read +
        write) into ``pt``, before a task of that space runs here."""
        pt.map(self.gate_kva, self.base_pa + L.VCPU_GATE, US)
        pt.map(self.gate_kva + L.PAGE, self.mailbox_pa, US | RW | NX)

    def detach(self, pt: Any) -> None:
        """Unmap them from ``pt`` (the task left it: exit, exec). The translations
        must go from KVM's shadow too (PVM.md): the frames keep their content."""
        pt.unmap(self.gate_kva)
        pt.unmap(self.gate_kva + L.PAGE)
        self.machine.mem.invalidate(self.base_pa + L.VCPU_GATE, 2 * L.PAGE)  # + mailbox

    # ---- entering user mode

    def enter_user(self, cr3: int, fs_base: int, regs: kvm_ffi.Regs) -> None:
        """Set the vCPU to start user mode at ``regs`` (rip, rsp, rflags and all GPRs)
        in address space ``cr3`` the next time it runs."""
        _IRET.pack_into(self.machine.mem.map, self.iret_pa,
                        regs.rip, L.SEL_UCODE, user_rflags(regs.rflags),
                        regs.rsp, L.SEL_UDATA)
        s = self.sregs
        s.cr3 = cr3
        s.fs.base = fs_base
        s.cs.selector, s.cs.dpl, s.cs.type, s.cs.l, s.cs.db = L.SEL_KCODE, 0, 11, 1, 0
        s.ss.selector, s.ss.dpl, s.ss.type = L.SEL_KDATA, 0, 3
        kvm_ffi.set_sregs(self.fd, s)
        k = kvm_ffi.Regs.from_buffer_copy(regs)
        k.rip = L.kva(L.STUB_PA + L.STUB_ENTER_USER)
        k.rsp = L.kva(self.iret_pa)
        k.rflags = 0x2
        kvm_ffi.set_regs(self.fd, k)

    def set_fs_base(self, fs_base: int) -> None:
        s = kvm_ffi.get_sregs(self.fd, self.sregs)
        s.fs.base = fs_base
        kvm_ffi.set_sregs(self.fd, s)

    # ---- at a syscall exit

    def syscall_args(self) -> tuple[int, int, int, int, int, int, int]:
        return _MAILBOX.unpack_from(self.machine.mem.map, self.mailbox_pa)  # type: ignore[return-value]

    def set_syscall_result(self, value: int) -> None:
        self._mb64[L.MB_NR // 8] = value & 0xFFFFFFFFFFFFFFFF

    # ---- the QCall slot (see supervisor_pvm.S gate_qcall). Every field is guest
    # writable: the host trusts only its own transitions, made under the kernel lock.

    def qc_state(self) -> int:
        return int(self._mb32[L.MB_STATE // 4])

    def qc_waiting(self) -> bool:
        return bool(self._mb32[L.MB_WAIT // 4])

    def qc_bounced(self) -> bool:
        return bool(self._mb32[L.MB_BOUNCE // 4])

    def qc_set_polling(self, on: bool) -> None:
        """Tell the gate whether the poller is polling (then it skips the doorbell).
        Clearing must be followed by a locked instruction before the states are
        read again (the poller's eventfd read is one): see gate_qcall."""
        self._mb32[L.MB_POLLING // 4] = 1 if on else 0

    # The gate's spin budget adapts: a call the poller answered in time lets it grow
    # back towards qcall_spin; one that ran out of spins (the poller had no CPU, or
    # was asleep) halves it. On a loaded host the gate then takes the exit path
    # (~35 µs) instead of spinning for the whole budget (~200 µs) on a CPU the
    # poller needs; on a quiet one it stays at the budget configured.
    # The floor must outlast a serve (3-5 µs; a pause is ~25 ns here): at 64 pauses
    # no call was ever answered in time, so the budget never grew back and every
    # call took the exit path for the rest of the sandbox's life.
    SPIN_MIN = 512
    SPIN_STEP = 256

    def qc_spin_served(self) -> None:
        if self.spin < self.spin_max:
            self.spin = min(self.spin_max, self.spin + self.SPIN_STEP)
            self._mb32[L.MB_SPIN // 4] = self.spin

    def qc_spin_timed_out(self) -> None:
        if self.spin > self.SPIN_MIN:
            self.spin = max(self.SPIN_MIN, self.spin // 2)
            self._mb32[L.MB_SPIN // 4] = self.spin

    def qc_running(self) -> None:
        self._mb32[L.MB_STATE // 4] = L.QC_RUNNING

    def qc_bounce(self) -> None:
        """Send the gate to the exit path (MB_WAIT last: it releases the gate)."""
        mb = self._mb32
        mb[L.MB_BOUNCE // 4] = 1
        mb[L.MB_STATE // 4] = L.QC_BOUNCED
        mb[L.MB_WAIT // 4] = 0

    def qc_complete(self, value: int) -> None:
        mb = self._mb32
        self._mb64[L.MB_NR // 8] = value & 0xFFFFFFFFFFFFFFFF
        mb[L.MB_STATE // 4] = L.QC_DONE
        mb[L.MB_WAIT // 4] = 0

    def qc_reset(self) -> None:
        """The vCPU is stopped at the exit path: clear the slot."""
        mb = self._mb32
        mb[L.MB_BOUNCE // 4] = 0
        mb[L.MB_STATE // 4] = L.QC_IDLE
        mb[L.MB_WAIT // 4] = 0

    def qc_returning(self, rip: int) -> bool:
        """The gate is past posting its call and the host has answered it: the
        call is complete, only the gate's last instructions remain."""
        spin = self.gate_kva + (L.STUB_QCALL_SPIN - L.STUB_GATE)
        return (self.qcall and spin <= rip < self.gate_end_kva
                and not self.qc_waiting() and not self.qc_bounced())

    def qc_finish_return(self, regs: kvm_ffi.Regs) -> None:
        """Do in ``regs`` what the gate's tail would: result in RAX, back to RCX."""
        regs.rax = self._mb64[L.MB_NR // 8]
        regs.rcx = regs.rip = self._mb64[L.MB_RET // 8]

    # ---- the gate's fast path (quark/kernel/gateio.py). The host writes grants
    # only while this vCPU's task is stopped in the host; the guest may rewrite any
    # of these words, so what the host reads back (the ring's head) is clamped.

    def gate_grant(self, fd: int, kind: int) -> None:
        self._fdkind[fd] = kind
        self._mb32[L.MB_GRANTS // 4] = 1
        self.grants = True

    def gate_kind(self, fd: int) -> int:
        return int(self._fdkind[fd]) if 0 <= fd < L.GATE_FDS else 0

    def gate_clear(self) -> None:
        """No grants, no ring: every call takes the slow path."""
        mb = self._mb32
        mb[L.MB_GRANTS // 4] = 0
        self._fdkind[:] = _NO_GRANTS
        mb[L.MB_WCAP // 4] = 0
        mb[L.MB_WHEAD // 4] = 0
        mb[L.MB_WNEW // 4] = 0
        mb[L.MB_WTAIL // 4] = 0
        mb[L.MB_WKICK // 4] = 0
        self._mb64[L.MB_WBASE // 8] = 0
        self.grants = False

    def ring_arm(self, fd: int, base: int, cap: int, head: int = 0) -> None:
        """Give the gate the write ring at ``base``, holding ``head`` bytes, for
        writes to ``fd``."""
        mb = self._mb32
        mb[L.MB_WHEAD // 4] = head
        mb[L.MB_WNEW // 4] = head
        mb[L.MB_WTAIL // 4] = 0
        mb[L.MB_WCAP // 4] = cap
        self._mb64[L.MB_WBASE // 8] = base
        self.gate_grant(fd, self.gate_kind(fd) | L.K_WRITE_RING)

    def ring_stop(self, fd: int) -> None:
        """No more ring writes for ``fd`` (one byte store: safe while it runs)."""
        self._fdkind[fd] = self._fdkind[fd] & ~L.K_WRITE_RING

    def ring_head(self) -> int:
        return int(self._mb32[L.MB_WHEAD // 4])

    def ring_set_tail(self, tail: int) -> None:
        """The host drained the ring up to ``tail`` (a byte count mod 2^32)."""
        self._mb32[L.MB_WTAIL // 4] = tail

    def ring_want_kick(self, on: bool) -> None:
        """Ask the gate to ring the doorbell after its next ring write."""
        self._mb32[L.MB_WKICK // 4] = 1 if on else 0

    def in_gate_fast(self, rip: int) -> bool:
        """``rip`` is in the fast path, where a fault is the gate's, not the user's."""
        off = rip - self.gate_kva + L.STUB_GATE
        return L.STUB_FAST <= off < L.STUB_FAST_END

    def gate_rewind(self, regs: kvm_ffi.Regs) -> bool:
        """The vCPU stopped in a gate's prologue or fast path: make ``regs`` the
        user state Linux would show there, either before the call (back at the
        syscall instruction, which runs again) or after it (complete). False when
        ``rip`` is elsewhere: past the prologue the call was posted (QCall) or is at
        the exit path, and the gate's own exit comes next."""
        off = regs.rip - self.gate_kva + L.STUB_GATE
        mb64 = self._mb64
        if (L.STUB_GATE <= off < L.STUB_GATE + L.STUB_GATE_PROLOGUE
                or L.STUB_GATE_QCALL <= off < L.STUB_GATE_QCALL + L.STUB_GATE_PROLOGUE):
            # Posting the arguments changes no register: they are the user's.
            regs.rip, regs.rflags = regs.rcx - 2, user_rflags(regs.r11)
            return True
        if not L.STUB_FAST <= off < L.STUB_FAST_END:
            return False
        regs.rdi = mb64[(L.MB_ARGS) // 8]
        regs.rsi = mb64[(L.MB_ARGS + 8) // 8]
        regs.rdx = mb64[(L.MB_ARGS + 16) // 8]
        regs.rcx = mb64[L.MB_RET // 8]
        regs.r11 = mb64[L.MB_R11 // 8]
        regs.rflags = user_rflags(regs.r11)
        if off >= L.STUB_FAST_COMMITTED:
            regs.rax, regs.rip = mb64[L.MB_RES // 8], regs.rcx
        else:
            regs.rax, regs.rip = mb64[L.MB_NR // 8], regs.rcx - 2
        return True

    def gate_restart(self) -> tuple[int, int]:
        """(rip, rflags) that send an abandoned fast call to the exit path."""
        return (self.gate_kva + L.STUB_GATE_RESTART - L.STUB_GATE,
                int(self._mb64[L.MB_R11 // 8]))

    def get_regs(self) -> kvm_ffi.Regs:
        return kvm_ffi.get_regs(self.fd, kvm_ffi.Regs())

    def set_regs(self, regs: kvm_ffi.Regs) -> None:
        kvm_ffi.set_regs(self.fd, regs)

    def read_msr(self, index: int) -> int:
        """An MSR of a vCPU that is not running (the ioctl waits for KVM_RUN)."""
        return kvm_ffi.get_msr(self.fd, index)

    def fpu_state(self) -> bytes:
        """The XSAVE image of the vCPU's FPU/vector registers."""
        return kvm_ffi.get_xsave(self.fd)

    def set_fpu_state(self, image: bytes) -> None:
        kvm_ffi.set_xsave(self.fd, image)

    # ---- at an exception exit

    def fault_frame(self) -> tuple[int, int, int, int, int, int, int]:
        """(vector, error, rip, cs, rflags, rsp, ss) of the exception being reported."""
        return _FRAME.unpack_from(self.machine.mem.map, self.frame_pa)  # type: ignore[return-value]

    def set_fault_return(self, rip: int, rsp: int, rflags: int) -> None:
        """Make the stub's iretq resume user mode at rip/rsp (signal delivery)."""
        _IRET.pack_into(self.machine.mem.map, self.frame_pa + 16,
                        rip, L.SEL_UCODE, user_rflags(rflags), rsp, L.SEL_UDATA)

    def cr2(self) -> int:
        return int(kvm_ffi.get_sregs(self.fd, self.sregs).cr2)

    # ---- running

    def kick(self, signo: int) -> None:
        """Make a concurrent KVM_RUN of this vCPU return EINTR soon."""
        self.run.set_immediate_exit(True)
        if self.thread_ident:
            kvm_ffi.kick_thread(self.thread_ident, signo)

    def close(self) -> None:
        self.state = VcpuState.FINISHED
        self._mb32.release()
        self._mb64.release()
        self._fdkind.release()
        self.run.close()
        os.close(self.fd)

