"""The virtual machine: KVM VM fd, guest memory, the machine's own pages (IDT, stub,
per-vCPU pages) and a pool of vCPUs."""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
from pathlib import Path

from quark.core import kvm_ffi
from quark.core.guest import layout as L
from quark.core.memory import FrameAllocator
from quark.core.memory_ffi import PhysMem
from quark.core.pagetable import NX, PageTable
from quark.core.vcpu import Vcpu, VcpuState

log = logging.getLogger("quark.core")

# Vectors user mode may raise with an `int n` instruction (Linux: int3 and into).
_USER_VECTORS = {3, 4}


class Machine:
    """One KVM VM with ``mem_size`` bytes of guest memory."""

    def __init__(self, mem_size: int, stub: bytes | None = None, qcall: bool = False,
                 qcall_spin: int = 8000) -> None:
        self.qcall = qcall             # vCPUs enter syscalls through the QCall gate
        self.qcall_spin = qcall_spin
        self.kvm_fd = kvm_ffi.open_kvm()
        try:
            self.vm_fd = kvm_ffi.create_vm(self.kvm_fd)
        except kvm_ffi.KvmError as e:
            raise kvm_ffi.KvmError(e.errno, f"creating the VM: {e.strerror}") from e
        self.mem = PhysMem(mem_size)
        kvm_ffi.set_memory_region(self.vm_fd, 0, 0, mem_size, self.mem.host_addr)
        self.alloc = FrameAllocator(self.mem)
        # A page of its own memory slot past guest memory, nothing maps it: deleting
        # a slot is what makes KVM drop every shadow page table (drop_shadows).
        self._spare = PhysMem(L.PAGE, "quark-spare-slot")
        self._spare_gpa = (mem_size + L.PAGE - 1) & ~(L.PAGE - 1)
        self._spare_lock = threading.Lock()
        self.drops = 0
        try:
            kvm_ffi.set_memory_region(self.vm_fd, 1, self._spare_gpa, L.PAGE,
                                      self._spare.host_addr)
        except kvm_ffi.KvmError as e:
            # A host that refuses a second slot still runs containers, with freed
            # tables reused at once as before the drop existed (on a shadow MMU,
            # with the risks FrameAllocator.retire_tables describes).
            log.warning("no spare memory slot (%s): page-table frames are reused "
                        "without dropping KVM's shadows", e)
            self._spare_gpa = 0
        else:
            self.alloc.drop_shadows = self.drop_shadows
        self.cpuid = kvm_ffi.supported_cpuid(self.kvm_fd)
        self.run_size = kvm_ffi.vcpu_mmap_size(self.kvm_fd)
        self.stub = stub if stub is not None else load_stub()
        self._lock = threading.Lock()
        self.vcpus: list[Vcpu] = []
        # (mailbox words, vCPU) of every vCPU: what the QCall poller scans.
        self.qcall_slots: tuple[tuple[memoryview, Vcpu], ...] = ()
        self._next_index = 0
        self._idle: list[Vcpu] = []

        self.mem.map[L.STUB_PA:L.STUB_PA + L.PAGE] = self.stub[:L.PAGE]
        self.mem.map[L.IDT_PA:L.IDT_PA + 4096] = self._idt()
        self._kpt = _KernelTables(self.mem, self.alloc)
        self.kernel_pdpt = self._kpt.pdpt
        self.map_machine_pages([(L.IDT_PA, NX), (L.STUB_PA, 0)])

    def _idt(self) -> bytes:
        out = bytearray(4096)
        for v in range(32):
            off = L.kva(L.STUB_PA + L.STUB_VECTORS + v * L.STUB_VECTOR_SIZE)
            dpl = 3 if v in _USER_VECTORS else 0
            lo = ((off & 0xFFFF) | (L.SEL_KCODE << 16) | ((0x8E | dpl << 5) << 40)
                  | (((off >> 16) & 0xFFFF) << 48))
            struct.pack_into("<QQ", out, v * 16, lo, off >> 32)
        return bytes(out)

    def map_machine_pages(self, pages: list[tuple[int, int]]) -> None:
        """Map fixed-region frames at KBASE+pa in every address space (adding
        mappings is always safe under the shadow MMU)."""
        with self._lock:
            for pa, flags in pages:
                self._kpt.map(L.kva(pa), pa, flags)

    def new_page_table(self) -> PageTable:
        return PageTable(self.mem, self.alloc, self.kernel_pdpt)

    def get_vcpu(self) -> Vcpu:
        """An idle vCPU, creating one if none is free."""
        with self._lock:
            if self._idle:
                v = self._idle.pop()
                v.state = VcpuState.RUNNING
                return v
            index = self._next_index
            if index >= L.MAX_VCPUS:
                raise kvm_ffi.KvmError(11, "no vCPU left")
            self._next_index += 1   # reserved now: concurrent creators get others
        v = Vcpu(self, index)       # maps pages: outside our lock (map takes it)
        with self._lock:
            self.vcpus.append(v)
            self.qcall_slots = (*self.qcall_slots, (v.qcall_slot, v))
        v.state = VcpuState.RUNNING
        return v

    def add_doorbell(self, efd: int) -> None:
        """Signal ``efd`` (inside KVM, no exit) on every write to the QCall port."""
        kvm_ffi.add_pio_eventfd(self.vm_fd, L.PORT_DOORBELL, efd)

    def tsc_khz(self) -> int:
        """The guest TSC frequency (asked of a vCPU, creating one if needed)."""
        v = self.vcpus[0] if self.vcpus else None
        if v is None:
            v = self.get_vcpu()
            self.put_vcpu(v)
        return kvm_ffi.tsc_khz(v.fd)

    def drop_shadows(self) -> None:
        """Make KVM forget every shadow page table of this VM; the vCPUs rebuild
        what they use from the guest's tables, on their next accesses.

        Deleting a memory slot makes x86 KVM mark every shadow page obsolete
        (kvm_mmu_zap_all_fast); the spare slot is deleted and made again. Measured
        here: a present PTE the host changed is seen by the guest after this call,
        never before (tests/unit/core/test_shadow_drop.py). ~0.2 ms. A no-op
        where the spare slot could not be made."""
        if not self._spare_gpa:
            return
        with self._spare_lock:
            kvm_ffi.set_memory_region(self.vm_fd, 1, self._spare_gpa, 0, self._spare.host_addr)
            kvm_ffi.set_memory_region(self.vm_fd, 1, self._spare_gpa, L.PAGE,
                                      self._spare.host_addr)
            self.drops += 1

    def put_vcpu(self, v: Vcpu) -> None:
        with self._lock:
            v.state = VcpuState.IDLE
            v.thread_ident = 0
            self._idle.append(v)

    def close(self) -> None:
        self.qcall_slots = ()
        for v in self.vcpus:
            v.close()
        os.close(self.vm_fd)
        os.close(self.kvm_fd)
        self.mem.close()
        self._spare.close()


# A machine made ahead by a template's spare run (quark/template/server.py), before
# its request: taken by the run's sandbox when the parameters match.
_prepared: tuple[tuple[int, bool, int], Machine] | None = None


def prepare(mem_size: int, qcall: bool, qcall_spin: int) -> None:
    """Make the machine a run is expected to ask for (see take_prepared)."""
    global _prepared
    m = Machine(mem_size, qcall=qcall, qcall_spin=qcall_spin)
    _prepared = ((mem_size, qcall, qcall_spin), m)


def take_prepared(mem_size: int, qcall: bool, qcall_spin: int) -> Machine | None:
    """The machine made ahead if it is the one wanted (else it is closed): None
    when there is none."""
    global _prepared
    got, _prepared = _prepared, None
    if got is None:
        return None
    params, m = got
    if params == (mem_size, qcall, qcall_spin):
        return m
    m.close()
    return None


class _KernelTables(PageTable):
    """The tables behind PML4 slot 255, shared by every address space."""

    def __init__(self, mem: PhysMem, alloc: FrameAllocator) -> None:
        super().__init__(mem, alloc, None)
        self._leaf_table(L.KBASE, True)          # create the PDPT now
        e = struct.unpack_from("<Q", mem.map, self.root + 8 * ((L.KBASE >> 39) & 511))[0]
        self.pdpt = e & 0x000F_FFFF_FFFF_F000


@functools.cache
def load_stub() -> bytes:
    """The assembled supervisor (built by the package build from supervisor_pvm.S),
    read once per process."""
    here = Path(__file__).parent / "guest"
    binary = here / "supervisor_pvm.bin"
    if not binary.exists() or binary.stat().st_mtime < (here / "supervisor_pvm.S").stat().st_mtime:
        try:
            from quark.core.guest.build import ensure_built
            binary = ensure_built() / "supervisor_pvm.bin"
        except ImportError:
            _assemble(here / "supervisor_pvm.S", binary)
    return binary.read_bytes()


def _assemble(src: Path, dst: Path) -> None:
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        obj = Path(d) / "stub.o"
        subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True)
        subprocess.run(["objcopy", "-O", "binary", str(obj), str(dst)], check=True)
