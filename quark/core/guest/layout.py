"""Where things are in guest memory: the ABI between the host and the stub.

Guest physical memory starts with a fixed region for the machine itself (IDT, stub
code, per-vCPU GDT/TSS/stack/gate/mailbox); frames for page tables and user memory
come after it. The fixed region is mapped in every address space at ``KBASE + pa``,
in the last slot of the lower half (PML4 index 255), which user mmap never hands out,
except for the gate and mailbox pages: those are mapped at ``gate_kva(index)``, only in
the address spaces of the tasks running on that vCPU (see GATES_KVA).
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

# The gate and mailbox pages (two per vCPU, VCPU_GATE and VCPU_MAILBOX of its frames)
# are mapped here, in the second GiB of slot 255, whose tables every address space
# has of its own: only the address spaces whose tasks run on a vCPU map its mailbox,
# so no other process can read or rewrite the calls it posts there.
GATES_KVA = KBASE + (1 << 30)


def gate_kva(index: int) -> int:
    """Where vCPU ``index``'s gate page is mapped (its mailbox is the next page)."""
    return GATES_KVA + index * 2 * PAGE

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
STUB_QCALL_POST = 0x1850          # where it posts a call the fast path left
STUB_QCALL_SPIN = 0x18C0          # its spin loop; from here on the call was posted
STUB_GATE_PROLOGUE = 0x44         # each gate's first bytes: arguments to the mailbox
STUB_GATE_EXIT = 0x1080           # the exit path (calls the fast path left)
STUB_GATE_RESTART = 0x10C0        # the host restarts an abandoned fast call here
# The fast path (supervisor_pvm.S, quark/kernel/gateio.py): from STUB_FAST to
# STUB_FAST_COMMITTED a call can be abandoned (nothing it did is visible as a result);
# from there to STUB_FAST_END it is complete and only the return is left.
STUB_FAST = 0x1100
STUB_FAST_COMMITTED = 0x178C
STUB_FAST_END = 0x1800

# Mailbox words (supervisor_pvm.S: mb_nr, mb_a0..mb_a5).
MB_NR = 0
MB_ARGS = 8
MB_STATE = 0x38
MB_SPIN = 0x3C
MB_WAIT = 0x40
MB_BOUNCE = 0x44
MB_RET = 0x48
MB_POLLING = 0x50
MB_WKICK = 0x54
MB_R11 = 0x58
MB_RES = 0x60
MB_SLOW = 0x68
MB_GRANTS = 0x70
MB_WCAP = 0x74
MB_WHEAD = 0x78
MB_WNEW = 0x7C
MB_WBASE = 0x80
MB_WTAIL = 0x88
MB_FDKIND = 0x90
GATE_FDS = 64                     # fds below this may hold grants
K_READ_ZERO, K_READ_EOF, K_WRITE_DISCARD, K_WRITE_RING = 1, 2, 4, 8
QC_IDLE, QC_SUBMITTED, QC_RUNNING, QC_DONE, QC_BOUNCED = 0, 1, 2, 3, 4

# iret frame pushed on the RSP0 stack by a fault from user mode, after the stub's two
# words: vector, error, rip, cs, rflags, rsp, ss.
FRAME_WORDS = 7
FRAME_SIZE = FRAME_WORDS * 8


def vcpu_pa(index: int) -> int:
    return VCPU_BASE_PA + index * VCPU_STRIDE


def kva(pa: int) -> int:
    return KBASE + pa
