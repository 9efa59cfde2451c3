"""The KVM ioctl ABI: structures, request numbers, and the few calls quark makes.

Every ioctl of the project lives here (STYLE.md: unsafe code has an address). The
functions take file descriptors that the caller obtained from this module and
ctypes buffers allocated here, so each call's fd and buffer are valid by construction.
KVM_RUN goes through libc's ``ioctl`` via ctypes, which releases the GIL for the
duration of the guest run and returns EINTR to us (``fcntl.ioctl`` would retry it).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import struct

# Not ctypes.util.find_library: it runs `ldconfig -p` (2-6 ms of every start).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int


class KvmError(OSError):
    """A KVM ioctl failed; ``strerror`` names the request."""


# ---- request numbers (linux/kvm.h; _IO/_IOR/_IOW encodings for type 0xAE)
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_GET_SUPPORTED_CPUID = 0xC008AE05
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_GET_MSRS = 0xC008AE88
KVM_SET_MSRS = 0x4008AE89
KVM_SET_CPUID2 = 0x4008AE90
KVM_SET_XCRS = 0x4188AEA7
KVM_IOEVENTFD = 0x4040AE79
KVM_GET_TSC_KHZ = 0xAEA3
KVM_GET_XSAVE = 0x9000AEA4
KVM_SET_XSAVE = 0x5000AEA5

KVM_CAP_NR_VCPUS = 9
KVM_CAP_MAX_VCPUS = 66
KVM_CAP_IMMEDIATE_EXIT = 136
KVM_CAP_IOEVENTFD = 36

KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_INTERNAL_ERROR_EMULATION = 1


class Regs(ctypes.Structure):
    """struct kvm_regs { __u64 rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8 .. r15,
    rip, rflags; };"""

    _fields_ = [(n, ctypes.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class Segment(ctypes.Structure):
    """struct kvm_segment { __u64 base; __u32 limit; __u16 selector; __u8 type,
    present, dpl, db, s, l, g, avl, unusable, padding; };"""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("selector", ctypes.c_uint16)] + [(n, ctypes.c_uint8) for n in (
                    "type", "present", "dpl", "db", "s", "l", "g", "avl",
                    "unusable", "padding")]


class DTable(ctypes.Structure):
    """struct kvm_dtable { __u64 base; __u16 limit; __u16 padding[3]; };"""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16),
                ("padding", ctypes.c_uint16 * 3)]


class Sregs(ctypes.Structure):
    """struct kvm_sregs { struct kvm_segment cs, ds, es, fs, gs, ss, tr, ldt;
    struct kvm_dtable gdt, idt; __u64 cr0, cr2, cr3, cr4, cr8, efer, apic_base;
    __u64 interrupt_bitmap[4]; };"""

    _fields_ = [(n, Segment) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")] + [
        ("gdt", DTable), ("idt", DTable)] + [(n, ctypes.c_uint64) for n in (
            "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "apic_base")] + [
        ("interrupt_bitmap", ctypes.c_uint64 * 4)]


class MsrEntry(ctypes.Structure):
    """struct kvm_msr_entry { __u32 index; __u32 reserved; __u64 data; };"""

    _fields_ = [("index", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("data", ctypes.c_uint64)]


def _msrs_type(n: int) -> type[ctypes.Structure]:
    class Msrs(ctypes.Structure):
        """struct kvm_msrs { __u32 nmsrs; __u32 pad; struct kvm_msr_entry entries[]; };"""

        _fields_ = [("nmsrs", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                    ("entries", MsrEntry * n)]
    return Msrs


class CpuidEntry2(ctypes.Structure):
    """struct kvm_cpuid_entry2 { __u32 function, index, flags, eax, ebx, ecx, edx;
    __u32 padding[3]; };"""

    _fields_ = [(n, ctypes.c_uint32) for n in (
        "function", "index", "flags", "eax", "ebx", "ecx", "edx")] + [
        ("padding", ctypes.c_uint32 * 3)]


_MAX_CPUID = 256


class Cpuid2(ctypes.Structure):
    """struct kvm_cpuid2 { __u32 nent; __u32 padding; struct kvm_cpuid_entry2 entries[]; };"""

    _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                ("entries", CpuidEntry2 * _MAX_CPUID)]


class MemoryRegion(ctypes.Structure):
    """struct kvm_userspace_memory_region { __u32 slot; __u32 flags;
    __u64 guest_phys_addr; __u64 memory_size; __u64 userspace_addr; };"""

    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("guest_phys_addr", ctypes.c_uint64), ("memory_size", ctypes.c_uint64),
                ("userspace_addr", ctypes.c_uint64)]


class Xcr(ctypes.Structure):
    """struct kvm_xcr { __u32 xcr; __u32 reserved; __u64 value; };"""

    _fields_ = [("xcr", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                ("value", ctypes.c_uint64)]


class Xcrs(ctypes.Structure):
    """struct kvm_xcrs { __u32 nr_xcrs; __u32 flags; struct kvm_xcr xcrs[16];
    __u64 padding[16]; };"""

    _fields_ = [("nr_xcrs", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("xcrs", Xcr * 16), ("padding", ctypes.c_uint64 * 16)]


class IoEventFd(ctypes.Structure):
    """struct kvm_ioeventfd { __u64 datamatch; __u64 addr; __u32 len; __s32 fd;
    __u32 flags; __u8 pad[36]; };"""

    _fields_ = [("datamatch", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("len", ctypes.c_uint32), ("fd", ctypes.c_int32),
                ("flags", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 36)]


KVM_IOEVENTFD_FLAG_PIO = 1 << 1


def _check(rc: int, what: str) -> int:
    if rc < 0:
        e = ctypes.get_errno()
        raise KvmError(e, f"{what}: {os.strerror(e)}")
    return rc


def _call(fd: int, req: int, arg: object, what: str) -> int:
    """ioctl with a pointer argument: ``arg`` is a ctypes object owned by the caller."""
    return _check(_ioctl(fd, req, ctypes.byref(arg) if arg is not None else None), what)  # type: ignore[arg-type]


def _call_int(fd: int, req: int, arg: int, what: str) -> int:
    return _check(_ioctl(fd, req, ctypes.c_void_p(arg)), what)


# ---- system-level calls


def open_kvm(path: str = "/dev/kvm") -> int:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    # KVM_GET_API_VERSION takes no argument; fd is the /dev/kvm we just opened.
    v = _call_int(fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
    if v != 12:
        os.close(fd)
        raise KvmError(0, f"KVM API version {v}, expected 12")
    return fd


def check_extension(fd: int, cap: int) -> int:
    return _call_int(fd, KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")


def vcpu_mmap_size(kvm_fd: int) -> int:
    return _call_int(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")


_supported_cpuid: Cpuid2 | None = None


def supported_cpuid(kvm_fd: int) -> Cpuid2:
    """What KVM supports (a fresh copy each call: callers edit it). Asked once per
    process: it is the host's, and the ioctl took up to 6 ms here (a template's runs
    inherit the answer)."""
    global _supported_cpuid
    if _supported_cpuid is None:
        c = Cpuid2()
        c.nent = _MAX_CPUID
        _call(kvm_fd, KVM_GET_SUPPORTED_CPUID, c, "KVM_GET_SUPPORTED_CPUID")
        _supported_cpuid = c
    return Cpuid2.from_buffer_copy(_supported_cpuid)


# ---- VM-level calls


def create_vm(kvm_fd: int) -> int:
    return _call_int(kvm_fd, KVM_CREATE_VM, 0, "KVM_CREATE_VM")


def set_memory_region(vm_fd: int, slot: int, gpa: int, size: int, host_addr: int) -> None:
    r = MemoryRegion(slot, 0, gpa, size, host_addr)
    _call(vm_fd, KVM_SET_USER_MEMORY_REGION, r, "KVM_SET_USER_MEMORY_REGION")


def tsc_khz(vcpu_fd: int) -> int:
    return _call_int(vcpu_fd, KVM_GET_TSC_KHZ, 0, "KVM_GET_TSC_KHZ")


def create_vcpu(vm_fd: int, index: int) -> int:
    return _call_int(vm_fd, KVM_CREATE_VCPU, index, f"KVM_CREATE_VCPU {index}")


def add_pio_eventfd(vm_fd: int, port: int, efd: int) -> None:
    """Register ``efd`` to be signalled, inside KVM, on any 1-byte write to ``port``."""
    e = IoEventFd()
    e.addr, e.len, e.fd, e.flags = port, 1, efd, KVM_IOEVENTFD_FLAG_PIO
    _call(vm_fd, KVM_IOEVENTFD, e, "KVM_IOEVENTFD")


# ---- vCPU-level calls


def get_regs(vcpu_fd: int, regs: Regs) -> Regs:
    _call(vcpu_fd, KVM_GET_REGS, regs, "KVM_GET_REGS")
    return regs


def set_regs(vcpu_fd: int, regs: Regs) -> None:
    _call(vcpu_fd, KVM_SET_REGS, regs, "KVM_SET_REGS")


def get_sregs(vcpu_fd: int, sregs: Sregs) -> Sregs:
    _call(vcpu_fd, KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
    return sregs


def set_sregs(vcpu_fd: int, sregs: Sregs) -> None:
    _call(vcpu_fd, KVM_SET_SREGS, sregs, "KVM_SET_SREGS")


def set_msrs(vcpu_fd: int, msrs: dict[int, int]) -> None:
    m = _msrs_type(len(msrs))()
    m.nmsrs = len(msrs)
    for i, (idx, val) in enumerate(msrs.items()):
        m.entries[i].index, m.entries[i].data = idx, val
    n = _call(vcpu_fd, KVM_SET_MSRS, m, "KVM_SET_MSRS")
    if n != len(msrs):
        bad = list(msrs)[n]
        raise KvmError(0, f"KVM_SET_MSRS: MSR {bad:#x} refused")


def get_msr(vcpu_fd: int, index: int) -> int:
    m = _msrs_type(1)()
    m.nmsrs = 1
    m.entries[0].index = index
    if _call(vcpu_fd, KVM_GET_MSRS, m, "KVM_GET_MSRS") != 1:
        raise KvmError(0, f"KVM_GET_MSRS: MSR {index:#x} refused")
    return int(m.entries[0].data)


def set_cpuid(vcpu_fd: int, cpuid: Cpuid2) -> None:
    _call(vcpu_fd, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2")


def set_xcr0(vcpu_fd: int, value: int) -> None:
    x = Xcrs()
    x.nr_xcrs = 1
    x.xcrs[0].xcr, x.xcrs[0].value = 0, value
    _call(vcpu_fd, KVM_SET_XCRS, x, "KVM_SET_XCRS")


class Xsave(ctypes.Structure):
    """struct kvm_xsave { __u32 region[1024]; };"""

    _fields_ = [("region", ctypes.c_uint8 * 4096)]


def get_xsave(vcpu_fd: int) -> bytes:
    x = Xsave()
    _call(vcpu_fd, KVM_GET_XSAVE, x, "KVM_GET_XSAVE")
    return bytes(x.region)


def set_xsave(vcpu_fd: int, data: bytes) -> None:
    """Load FPU/vector state; KVM validates it (EINVAL for a malformed header)."""
    x = Xsave()
    ctypes.memmove(x.region, data, min(len(data), 4096))
    _call(vcpu_fd, KVM_SET_XSAVE, x, "KVM_SET_XSAVE")


# ---- the shared kvm_run page

# struct kvm_run: request_interrupt_window u8 @0, immediate_exit u8 @1, exit_reason
# u32 @8, ...; the exit union starts @32. For KVM_EXIT_IO: direction u8 @32, size u8
# @33, port u16 @34, count u32 @36, data_offset u64 @40.
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_IO_PORT = 34
RUN_IO_DATA_OFFSET = 40
RUN_INTERNAL_SUBERROR = 32

_EXIT = struct.Struct("=I")
_PORT = struct.Struct("=H")


class RunPage:
    """The vCPU's ``struct kvm_run``, mapped shared with KVM."""

    __slots__ = ("mem", "view")

    def __init__(self, vcpu_fd: int, size: int) -> None:
        self.mem = mmap.mmap(vcpu_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.view = memoryview(self.mem)

    def exit_reason(self) -> int:
        return int(_EXIT.unpack_from(self.mem, RUN_EXIT_REASON)[0])

    def io_port(self) -> int:
        return int(_PORT.unpack_from(self.mem, RUN_IO_PORT)[0])

    def suberror(self) -> int:
        return int(_EXIT.unpack_from(self.mem, RUN_INTERNAL_SUBERROR)[0])

    def internal_data(self) -> tuple[int, ...]:
        """KVM_EXIT_INTERNAL_ERROR's data words (ndata u32 @36, u64 data[16] @40):
        for an emulation failure, what KVM knows of the instruction."""
        (n,) = _EXIT.unpack_from(self.mem, RUN_INTERNAL_SUBERROR + 4)
        return struct.unpack_from(f"={min(n, 16)}Q", self.mem, RUN_INTERNAL_SUBERROR + 8)

    def set_immediate_exit(self, on: bool) -> None:
        self.mem[RUN_IMMEDIATE_EXIT] = 1 if on else 0

    def close(self) -> None:
        self.view.release()
        self.mem.close()


def run(vcpu_fd: int) -> int:
    """KVM_RUN once. Returns 0, or the errno (EINTR when kicked); raises on others.
    The GIL is released while the guest runs (ctypes drops it around foreign calls)."""
    if _ioctl(vcpu_fd, KVM_RUN, None) < 0:
        e = ctypes.get_errno()
        if e in (4, 11):  # EINTR, EAGAIN
            return e
        raise KvmError(e, f"KVM_RUN: {os.strerror(e)}")
    return 0


_pthread_kill = _libc.pthread_kill
_pthread_kill.argtypes = [ctypes.c_ulong, ctypes.c_int]


def kick_thread(ident: int, signo: int) -> None:
    """Interrupt a thread blocked in KVM_RUN (ident = threading.get_ident())."""
    _pthread_kill(ident, signo)
