/* Buffered stdio output must be flushed by exit(); the status reaches the runtime. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    printf("buffered line 1\n");
    printf("buffered line 2\n");
    exit(argc > 1 ? atoi(argv[1]) : 3);
}
