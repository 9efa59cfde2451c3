/*
 * Guest supervisor stub for PVM hosts (see shared/PVM.md).
 *
 * On PVM, `syscall` jumps to LSTAR but stays at CPL 3 on the user page tables, so the
 * system call entry is a user-executable "gate" page next to a per-vCPU mailbox page.
 * The gate leaves the arguments in the mailbox and executes `out 0x80` (the only port
 * the TSS I/O bitmap opens to CPL 3): KVM_RUN returns to the host, which reads the
 * mailbox, serves the call, writes the result, and re-enters. Nothing else of the
 * machine is visible to user mode: this page's first half (IDT entry stubs and the
 * iretq trampoline) is mapped supervisor-only.
 *
 * Binary layout (offsets are part of the host's ABI, see quark/core/guest/layout.py):
 *   0x000  enter_user   iretq through a frame the host wrote at RSP
 *   0x100  vector stubs, 16 bytes each, vectors 0..31
 *   0x1000 gate page    (copied once per vCPU; RIP-relative to the mailbox after it)
 *   0x2000 mailbox page (zero; not copied)
 */
        .intel_syntax noprefix
        .code64
        .text

        .org 0x000
enter_user:
        /* The host starts (or restarts) a vCPU here at CPL 0 with RSP pointing at an
         * iret frame: RIP, CS=0x33, RFLAGS, RSP, SS=0x2b. General registers were set
         * with KVM_SET_REGS and are untouched on the way to user mode. */
        iretq

        /* Exceptions from user mode arrive on the TSS's RSP0 stack. Each stub makes the
         * frame uniform (vector, error code, RIP, CS, RFLAGS, RSP, SS) and reports it
         * with `out 0x81`; the host reads the frame at the known RSP0 address, may
         * edit it (signal delivery) and general registers, and resumes here. */
        .macro VECTOR n, has_error
        .balign 16
        .if \has_error == 0
        push 0
        .endif
        push \n
        jmp exception_common
        .endm

        .org 0x100
vectors:
        VECTOR 0, 0
        VECTOR 1, 0
        VECTOR 2, 0
        VECTOR 3, 0
        VECTOR 4, 0
        VECTOR 5, 0
        VECTOR 6, 0
        VECTOR 7, 0
        VECTOR 8, 1
        VECTOR 9, 0
        VECTOR 10, 1
        VECTOR 11, 1
        VECTOR 12, 1
        VECTOR 13, 1
        VECTOR 14, 1
        VECTOR 15, 0
        VECTOR 16, 0
        VECTOR 17, 1
        VECTOR 18, 0
        VECTOR 19, 0
        VECTOR 20, 0
        VECTOR 21, 1
        VECTOR 22, 0
        VECTOR 23, 0
        VECTOR 24, 0
        VECTOR 25, 0
        VECTOR 26, 0
        VECTOR 27, 0
        VECTOR 28, 0
        VECTOR 29, 1
        VECTOR 30, 1
        VECTOR 31, 0

        .balign 16
exception_common:
        out 0x81, al
        add rsp, 16
        iretq

        /* ---- the gate: user-executable, read-only to user mode ---------------- */
        .org 0x1000
gate:
        /* syscall: RCX = return RIP, R11 = RFLAGS (SFMASK is 0, so flags are the
         * user's). Only RAX, RCX and R11 may change, as on Linux. */
        mov [rip + mb_nr], rax
        mov [rip + mb_a0], rdi
        mov [rip + mb_a1], rsi
        mov [rip + mb_a2], rdx
        mov [rip + mb_a3], r10
        mov [rip + mb_a4], r8
        mov [rip + mb_a5], r9
        out 0x80, al
        mov rax, [rip + mb_nr]
        jmp rcx

        /* ---- the mailbox: one per vCPU, user read-write ------------------------ */
        .org 0x2000
mailbox:
mb_nr:  .quad 0     /* in: syscall number; out: return value */
mb_a0:  .quad 0
mb_a1:  .quad 0
mb_a2:  .quad 0
mb_a3:  .quad 0
mb_a4:  .quad 0
mb_a5:  .quad 0
        .org 0x3000
