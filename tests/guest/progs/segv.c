/* Dies from a NULL write at top level: the runtime must exit with 139 (128 + SIGSEGV). */
#include "common.h"

int main(void)
{
    say("before the fault\n");
    *(volatile int *)0 = 1;
    say("after the fault (must not print)\n");
    return 0;
}
