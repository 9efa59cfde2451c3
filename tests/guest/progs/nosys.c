/* System call numbers Linux does not have fail with ENOSYS and nothing else happens. */
#include "common.h"

int main(void)
{
    SHOW("syscall(500)", syscall(500));
    SHOW("syscall(-1)", syscall(-1));
    SHOW("syscall(400) (in the unassigned 335..423 gap)", syscall(400));
    SHOW("syscall(1000000)", syscall(1000000));
    SHOW("syscall(0x7fffffff)", syscall(0x7fffffff));
    SHOW("syscall(500) with arguments", syscall(500, 1, 2, 3, 4, 5, 6));
    /* removed in x86-64 Linux long ago */
    SHOW("create_module (174)", syscall(174));
    SHOW("get_kernel_syms (177)", syscall(177));
    SHOW("uselib (134)", syscall(134, "/x"));
    SHOW("tuxcall (184)", syscall(184));
    SHOW("afs_syscall (183)", syscall(183));
    SHOW("vserver (236)", syscall(236));
    say("getpid still works: %d\n", getpid() > 0);
    return 0;
}
