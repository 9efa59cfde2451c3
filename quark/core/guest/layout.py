"""Where things are in guest memory: the ABI between the host and the stub.

Guest physical memory starts with a fixed region for the machine itself (IDT, stub
code, per-vCPU GDT/TSS/stack/gate/mailbox); frames for page tables and user memory
come after it. The fixed region is mapped in every address space at ``KBASE + pa``,
in the last slot of the lower half (PML4 index 255), which user mmap never hands out.
"""

from __future__ import annotations

PAGE = 4096

KBASE = 0x7F80_0000_0000          # PML4 slot 255: the machine's own pages
USER_TOP = KBASE                  # user mappings stay below this

IDT_PA = 0x1000
STUB_PA = 0x2000                  # first page of supervisor_pvm.bin (supervisor-only)
STUB_ENTER_USER = 0x000           # offsets inside the binary (see supervisor_pvm.S)
STUB_VECTORS = 0x100
STUB_VECTOR_SIZE = 16
STUB_GATE = 0x1000
STUB_MAILBOX = 0x2000

VCPU_BASE_PA = 0x10000
VCPU_STRIDE = 0x8000              # per vCPU: GDT, TSS, 8 KiB stack, gate, mailbox
VCPU_GDT = 0x0000
VCPU_TSS = 0x1000
VCPU_STACK = 0x2000
VCPU_STACK_TOP = 0x4000
VCPU_GATE = 0x4000
VCPU_MAILBOX = 0x5000
MAX_VCPUS = 256

FIXED_END = VCPU_BASE_PA + MAX_VCPUS * VCPU_STRIDE   # first dynamically allocated frame

# Selectors of the Linux-shaped GDT (PVM.md: user selectors must be the host's).
SEL_KCODE = 0x10
SEL_KDATA = 0x18
SEL_UCODE32 = 0x23
SEL_UDATA = 0x2B
SEL_UCODE = 0x33
SEL_TSS = 0x38

PORT_SYSCALL = 0x80
PORT_EXCEPTION = 0x81
PORT_DOORBELL = 0x82              # QCall: an ioeventfd, never a return to user space
STUB_GATE_QCALL = 0x1800          # the QCall gate, in the same per-vCPU gate page
STUB_QCALL_SPIN = 0x1880          # its spin loop; from here on the call was posted

# Mailbox words (supervisor_pvm.S: mb_nr, mb_a0..mb_a5).
MB_NR = 0
MB_ARGS = 8
MB_STATE = 0x38
MB_SPIN = 0x3C
MB_WAIT = 0x40
MB_BOUNCE = 0x44
MB_RET = 0x48
MB_POLLING = 0x50
QC_IDLE, QC_SUBMITTED, QC_RUNNING, QC_DONE, QC_BOUNCED = 0, 1, 2, 3, 4

# iret frame pushed on the RSP0 stack by a fault from user mode, after the stub's two
# words: vector, error, rip, cs, rflags, rsp, ss.
FRAME_WORDS = 7
FRAME_SIZE = FRAME_WORDS * 8


def vcpu_pa(index: int) -> int:
    return VCPU_BASE_PA + index * VCPU_STRIDE


def kva(pa: int) -> int:
    return KBASE + pa
