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

        /* The system call number and its six arguments, into this vCPU's mailbox. */
        .macro POST_ARGS
        mov [rip + mb_nr], rax
        mov [rip + mb_a0], rdi
        mov [rip + mb_a1], rsi
        mov [rip + mb_a2], rdx
        mov [rip + mb_a3], r10
        mov [rip + mb_a4], r8
        mov [rip + mb_a5], r9
        .endm

        /* ---- the gate: user-executable, read-only to user mode ---------------- */
        .org 0x1000
gate:
        /* syscall: RCX = return RIP, R11 = RFLAGS (SFMASK is 0, so flags are the
         * user's). Only RAX, RCX and R11 may change, as on Linux. */
        POST_ARGS
        out 0x80, al
        mov rax, [rip + mb_nr]
        jmp rcx

        /* ---- the QCall gate (ARCHITECTURE.md): no exit for calls the host's poller
         * serves. The request goes to the mailbox, an `out` to the doorbell port
         * signals an ioeventfd inside KVM (the vCPU does not leave the guest), and
         * the gate spins until the host clears mb_wait. When the host bounces the
         * call (it needs this vCPU's registers) or the spin budget runs out, the gate
         * takes the exit path with the original registers and the vCPU's own thread
         * finishes the call. Only flag-neutral instructions are used (mov, lea,
         * jecxz/jrcxz, pause, out): RFLAGS survive the call as on Linux. RAX is free
         * (it becomes the result); RCX is kept in the mailbox meanwhile. */
        .org 0x1800
gate_qcall:
        POST_ARGS
        mov [rip + mb_ret], rcx
        mov dword ptr [rip + mb_bounce], 0
        mov dword ptr [rip + mb_wait], 1
        mov dword ptr [rip + mb_state], 1       /* SUBMITTED */
        /* While the poller is polling it will see the slot: skip the doorbell (2-3
         * µs). mfence orders our state store before the load of mb_polling; the host
         * clears mb_polling, then (after a locked instruction) reads every state, so
         * one side always sees the other. */
        mfence
        mov ecx, [rip + mb_polling]
        jecxz 5f
        jmp 6f
5:      out 0x82, al                            /* doorbell: an ioeventfd */
6:      mov eax, [rip + mb_spin]
        .org 0x1880, 0x90       /* the spin loop starts at a known offset (taskrun) */
1:      pause
        mov ecx, [rip + mb_wait]
        jecxz 2f                                /* served (or bounced) */
        lea rax, [rax - 1]
        mov rcx, rax
        jrcxz 3f                                /* spin budget spent */
        jmp 1b
2:      mov ecx, [rip + mb_state]
        lea ecx, [rcx - 3]                      /* DONE? (no flags touched) */
        jecxz 4f
3:      mov rax, [rip + mb_nr]
        mov rcx, [rip + mb_ret]
        out 0x80, al                            /* the exit path finishes the call */
4:      mov rax, [rip + mb_nr]
        mov rcx, [rip + mb_ret]
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
mb_state: .long 0   /* QCall slot: 0 idle, 1 submitted, 2 running, 3 done, 4 bounced */
mb_spin:  .long 0   /* QCall spin budget (pause iterations), written by the host */
mb_wait:  .long 0   /* 1 while the guest waits; the host clears it */
mb_bounce: .long 0  /* 1: finish through the exit path */
mb_ret:   .quad 0   /* the caller's RCX (return RIP) while the gate spins */
mb_polling: .long 0 /* 1 while the host's poller is polling (no doorbell needed) */
        .org 0x3000
