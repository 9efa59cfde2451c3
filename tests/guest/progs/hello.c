/* The smallest guest: raw write(2) to stdout, then argv through stdio, exit 0. */
#include "common.h"

int main(int argc, char **argv)
{
    static const char msg[] = "hello, world\n";
    if (write(1, msg, sizeof msg - 1) != sizeof msg - 1)
        return 1;
    say("argc=%d\n", argc);
    for (int i = 1; i < argc; i++)
        say("argv[%d]=%s\n", i, argv[i]);
    return 0;
}
