/* CPU faults become signals. In children: NULL write (SIGSEGV), ud2 (SIGILL), integer
 * division by zero (SIGFPE), int3 (SIGTRAP), write to read-only memory (SIGSEGV); the
 * parent reports the status a shell would see. Then the same faults caught by an
 * SA_SIGINFO handler, checking si_signo/si_code/si_addr and escaping with siglongjmp. */
#include "common.h"
#pragma GCC diagnostic ignored "-Warray-bounds"
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>

static volatile int zero = 0;
static const char rodata[4096] __attribute__((aligned(4096))) = "read only";

static void f_null(void) { *(volatile int *)0 = 1; }
static void f_ud2(void) { __asm__ volatile("ud2"); }
static void f_div(void)
{
    /* idiv by hand: compilers rewrite 1/x without a division */
    int q = 1, d = zero;
    __asm__ volatile("cltd; idivl %2" : "+a"(q) : "a"(q), "r"(d) : "edx");
    (void)q;
}
static void f_int3(void) { __asm__ volatile("int3"); }
static void f_rodata(void) { *(volatile char *)rodata = 'x'; }
static void f_badaddr(void) { *(volatile long *)0x10 = 1; }
static void f_noncanon(void) { *(volatile long *)0x8000000000000000UL = 1; }
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static void f_stack(void)
{
    volatile char big[1 << 16];
    big[0] = 1;
    f_stack();
    (void)big[1];
}
static void f_hlt(void) { __asm__ volatile("hlt"); }

static const struct { const char *name; void (*fn)(void); } faults[] = {
    {"NULL write", f_null}, {"ud2", f_ud2}, {"1/0", f_div}, {"int3", f_int3},
    {"write .rodata", f_rodata}, {"write 0x10", f_badaddr}, {"non-canonical", f_noncanon},
    {"stack overflow", f_stack}, {"hlt (privileged)", f_hlt},
};
#define NFAULTS (sizeof faults / sizeof faults[0])

static sigjmp_buf env;
static volatile int c_signo, c_code;
static volatile uintptr_t c_addr;

static void catcher(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    c_signo = sig;
    c_code = si->si_code;
    c_addr = (uintptr_t)si->si_addr;
    siglongjmp(env, 1);
}

static const char *code_name(int sig, int code)
{
    if (code == SI_KERNEL) return "SI_KERNEL";
    if (sig == SIGSEGV) return code == SEGV_MAPERR ? "SEGV_MAPERR" : code == SEGV_ACCERR ? "SEGV_ACCERR" : "?";
    if (sig == SIGILL) return code == ILL_ILLOPN ? "ILL_ILLOPN" : code == ILL_ILLOPC ? "ILL_ILLOPC" : "?";
    if (sig == SIGFPE) return code == FPE_INTDIV ? "FPE_INTDIV" : "?";
    if (sig == SIGTRAP) return code == TRAP_BRKPT ? "TRAP_BRKPT" : "?";
    return "?";
}

int main(void)
{
    for (unsigned i = 0; i < NFAULTS; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            faults[i].fn();
            _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        show_status(faults[i].name, st);
    }

    struct sigaction sa = {0};
    sa.sa_sigaction = catcher;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    static const int fault_sigs[] = {SIGSEGV, SIGILL, SIGFPE, SIGTRAP, SIGBUS};
    for (unsigned s = 0; s < sizeof fault_sigs / sizeof fault_sigs[0]; s++)
        sigaction(fault_sigs[s], &sa, NULL);
    for (unsigned i = 0; i < NFAULTS; i++) {
        if (faults[i].fn == f_stack || faults[i].fn == f_hlt)
            continue;  /* needs an alternate stack / GP addresses are not reported */
        c_signo = 0;
        if (sigsetjmp(env, 1) == 0) {
            faults[i].fn();
            say("%s: no signal\n", faults[i].name);
            continue;
        }
        const char *addr = "";
        if (c_signo == SIGSEGV)
            addr = c_addr == 0 ? " si_addr=0" : c_addr == 0x10 ? " si_addr=0x10"
                 : c_addr == (uintptr_t)rodata ? " si_addr=rodata" : " si_addr=other";
        if (c_signo == SIGILL || c_signo == SIGFPE)
            addr = c_addr >= (uintptr_t)faults[i].fn && c_addr < (uintptr_t)faults[i].fn + 64
                 ? " si_addr=in the function" : " si_addr=elsewhere";
        say("%s caught: %s %s%s\n", faults[i].name, sigabbrev_np(c_signo),
            code_name(c_signo, c_code), addr);
    }
    say("still alive after catching every fault\n");

    /* a fault in the handler's own path is fatal: SIGSEGV blocked while it happens */
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSEGV);
        sigprocmask(SIG_BLOCK, &set, NULL);
        f_null();
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    show_status("blocked SIGSEGV fault", st);
    pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_IGN);
        f_null();
        _exit(0);
    }
    waitpid(pid, &st, 0);
    show_status("ignored SIGSEGV fault", st);
    return 0;
}
