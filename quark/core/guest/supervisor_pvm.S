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


        /* The fast path's ABI (layout.py). */
        .set GATE_FDS, 64
        .set FAST_MAX, 0x100000
        .set USER_TOP, 0x7f8000000000
        .set K_READ_ZERO, 1
        .set K_READ_EOF, 2
        .set K_WRITE_DISCARD, 4
        .set K_WRITE_RING, 8

        /* The system call number and its six arguments, into this vCPU's mailbox, and
         * the two registers the gate needs: RCX (return RIP) and R11 (RFLAGS). */
        .macro POST_ARGS
        mov [rip + mb_nr], rax
        mov [rip + mb_a0], rdi
        mov [rip + mb_a1], rsi
        mov [rip + mb_a2], rdx
        mov [rip + mb_a3], r10
        mov [rip + mb_a4], r8
        mov [rip + mb_a5], r9
        mov [rip + mb_ret], rcx
        mov [rip + mb_r11], r11
        .endm

        /* The user's arithmetic flags back from R11 (syscall saved RFLAGS there):
         * SF ZF AF PF CF through AH and sahf, OF through an add that overflows
         * exactly when R11's OF is set. Clobbers EAX and ECX. DF, TF and AC are
         * never changed by the gate. */
        .macro RESTORE_FLAGS
        mov eax, r11d
        shl eax, 8
        mov ecx, r11d
        shr ecx, 11
        and ecx, 1
        add cl, 0x7f
        sahf
        .endm

        /* ---- the gate: user-executable, read-only to user mode ---------------- */
        .org 0x1000
gate:
        /* syscall: RCX = return RIP, R11 = RFLAGS (SFMASK is 0, so flags are the
         * user's). Only RAX, RCX and R11 may change, as on Linux. Every call tries
         * the fast path first; what it does not answer comes back to mb_slow. */
        POST_ARGS
        jmp gate_fast

        /* The exit path: registers and flags as the call entered. */
        .org 0x1080
gate_exit:
        out 0x80, al
        mov rax, [rip + mb_nr]
        jmp rcx

        /* The host sends a call here when the fast path could not finish it (a
         * fault it cannot fix, a signal): the exit path serves it from the start,
         * as the QCall path's bounce does. Flags were restored by the host. */
        .org 0x10c0
gate_restart:
        mov rdi, [rip + mb_a0]
        mov rsi, [rip + mb_a1]
        mov rdx, [rip + mb_a2]
        mov r11, [rip + mb_r11]
        mov dword ptr [rip + mb_bounce], 1
        mov rax, [rip + mb_nr]
        mov rcx, [rip + mb_ret]
        jmp gate_exit

        /* ---- the fast path (quark/kernel/gateio.py): calls answered inside the
         * gate, with no exit and no doorbell, on fds the host granted in this
         * mailbox. read of /dev/zero and /dev/null, write to /dev/null and the
         * like, and write(2) into the write ring of a file the host's write-behind
         * took (the host drains the ring into the file; see writebehind.py).
         * The gate runs in user mode, so it touches user memory with the user's
         * own rights: a fault on a user buffer stops the vCPU like any user fault,
         * the host fixes it and the gate resumes, or the host sends the call to
         * gate_restart. Everything before fast_done can be abandoned at any point:
         * the host rewinds to the syscall instruction (a signal) or restarts the
         * call (a fault). The store at fast_done commits a ring write; from
         * fast_committed on, the call is complete. Those offsets are ABI
         * (layout.py). Grants are guest-writable like the whole mailbox: lying to
         * the gate only changes what this task's own calls do to its own memory
         * and its own ring, which the host reads through the task's page tables. */
        .org 0x1100
gate_fast:
        mov ecx, [rip + mb_grants]
        jecxz fast_none                         /* nothing granted: no flags touched */
        jmp fast_check
fast_slow:
        RESTORE_FLAGS
fast_none:
        mov rax, [rip + mb_nr]
        /* Calls only the task's own thread can serve (taskrun.NEEDS_VCPU, which a
         * test keeps equal to this list): straight to the exit path, instead of
         * posting them and spinning until the poller wakes up only to bounce them.
         * lea + jrcxz compare without touching the flags. */
        .irp n, 15, 56, 57, 58, 59, 60, 131, 158, 231, 322, 435
        lea rcx, [rax - \n]
        jrcxz fast_exit_only
        .endr
        mov rdi, [rip + mb_a0]
        mov rsi, [rip + mb_a1]
        mov rdx, [rip + mb_a2]
        mov rcx, [rip + mb_ret]
        jmp qword ptr [rip + mb_slow]           /* gate_exit or gate_qcall_post */
fast_exit_only:
        mov dword ptr [rip + mb_bounce], 1      /* the QCall side: serve from the start */
        mov rdi, [rip + mb_a0]
        mov rsi, [rip + mb_a1]
        mov rdx, [rip + mb_a2]
        mov rcx, [rip + mb_ret]
        jmp gate_exit
fast_check:
        test r11d, 0x40500                      /* DF, TF or AC set: the slow path */
        jnz fast_slow
        cmp rax, 1
        ja fast_slow                            /* only read (0) and write (1) */
        cmp edi, GATE_FDS - 1                   /* fd: an unsigned int, as Linux */
        ja fast_slow
        cmp rdx, FAST_MAX
        ja fast_slow
        mov rcx, rsi
        add rcx, rdx
        jc fast_slow
        movabs rax, USER_TOP
        cmp rcx, rax
        ja fast_slow                            /* access_ok(buf, count) */
        mov ecx, edi
        lea rdi, [rip + mb_fdkind]
        movzx edi, byte ptr [rdi + rcx]
        cmp qword ptr [rip + mb_nr], 0
        jne fast_write
        test edi, K_READ_EOF
        jnz fast_eof
        test edi, K_READ_ZERO
        jz fast_slow
        /* Zeros may not land in the write ring: that is file data in flight. */
        mov rax, [rip + mb_wbase]
        mov ecx, [rip + mb_wcap]
        add rcx, rax
        cmp rsi, rcx
        jae 1f
        lea rcx, [rsi + rdx]
        cmp rcx, rax
        ja fast_slow
1:      mov rdi, rsi
        mov rcx, rdx
        xor eax, eax
fast_stos:
        rep stosb
fast_count:
        mov [rip + mb_res], rdx
fast_keep:
        mov eax, [rip + mb_whead]               /* the ring stays as it is */
        mov [rip + mb_wnew], eax
        jmp fast_done
fast_eof:
        mov qword ptr [rip + mb_res], 0
        jmp fast_keep
fast_write:
        test edi, K_WRITE_DISCARD
        jnz fast_count
        test edi, K_WRITE_RING
        jz fast_slow
        test rdx, rdx
        jz fast_slow
        /* The ring is circular: head and tail count bytes (mod 2^32), the gate
         * moves the head, the host the tail; the size is a power of two. */
        mov eax, [rip + mb_whead]
        mov edi, eax
        sub edi, [rip + mb_wtail]               /* bytes in the ring */
        mov ecx, [rip + mb_wcap]
        cmp edi, ecx
        ja fast_slow                            /* nonsense: the host sorts it out */
        sub ecx, edi                            /* room */
        cmp rdx, rcx
        ja fast_slow
        mov ecx, [rip + mb_wcap]
        lea edi, [rcx - 1]
        and edi, eax                            /* where the head is */
        add eax, edx
        mov [rip + mb_wnew], eax                /* the head once this write is in */
        sub ecx, edi                            /* bytes from there to the end */
        add rdi, [rip + mb_wbase]
        cmp rdx, rcx
        jbe 3f
        mov [rip + mb_res], rcx                 /* it wraps: the first piece, */
fast_movs_wrap:
        rep movsb
        mov rdi, [rip + mb_wbase]               /* then the rest at the start */
        mov rcx, rdx
        sub rcx, [rip + mb_res]
        jmp fast_movs
3:      mov rcx, rdx
fast_movs:
        rep movsb
        mov [rip + mb_res], rdx
        jmp fast_done

        /* Two instructions of fixed length (6 bytes each): fast_committed is
         * fast_done + 12 (layout.FAST_COMMITTED; a test checks the bytes). */
        .org 0x1780
fast_done:
        mov eax, [rip + mb_wnew]
        mov [rip + mb_whead], eax               /* commits a ring write */
fast_committed:
        /* Host readers learn of ring data from the poller; when it asked to be
         * told (it drained everything and may sleep), ring its doorbell once. The
         * mfence orders the head store before the load (the poller's side is in
         * quark/core/qcall.py). */
        mfence
        mov ecx, [rip + mb_wkick]
        jecxz 2f
        mov dword ptr [rip + mb_wkick], 0
        out 0x82, al
2:      RESTORE_FLAGS
        mov rax, [rip + mb_res]
        mov rdi, [rip + mb_a0]
        mov rsi, [rip + mb_a1]
        mov rdx, [rip + mb_a2]
        mov rcx, [rip + mb_ret]
        jmp rcx
        /* .org checks that nothing above ran past its place. */

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
        jmp gate_fast
        .org 0x1850
gate_qcall_post:
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
        .org 0x18c0, 0x90       /* the spin loop starts at a known offset (taskrun) */
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
mb_wkick: .long 0   /* 1: ring the doorbell after the next ring write */
mb_r11:   .quad 0   /* the caller's R11 (RFLAGS) */
mb_res:   .quad 0   /* a fast-path result */
mb_slow:  .quad 0   /* where calls the fast path leaves go (host-written) */
mb_grants: .long 0  /* nonzero: some fd has a grant in mb_fdkind */
mb_wcap:  .long 0   /* the write ring: its size, */
mb_whead: .long 0   /* bytes ever written into it (mod 2^32), */
mb_wnew:  .long 0   /* the head after the write in progress, */
mb_wbase: .quad 0   /* its user address, */
mb_wtail: .long 0   /* and the host's tail (bytes drained) */
mb_pad:   .long 0
mb_fdkind: .fill GATE_FDS, 1, 0  /* per fd: K_* bits the host granted */
        .org 0x3000
