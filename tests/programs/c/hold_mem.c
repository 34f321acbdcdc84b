/* hold_mem MIB: mallocs MIB MiB, touches every page, prints "held MIB MiB" and keeps the
 * memory until it is killed (the balloon tests: memory a shrink cannot take). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t len = mib << 20;
    volatile unsigned char *p = malloc(len);
    if (p == NULL) {
        printf("malloc failed\n");
        return 1;
    }
    for (size_t i = 0; i < len; i += 4096)
        p[i] = 1;
    printf("held %zu MiB\n", mib);
    fflush(stdout);
    for (;;)
        pause();
}
