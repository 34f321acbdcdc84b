/* big_alloc MIB: mallocs MIB MiB, touches every page, prints a checksum of what it wrote
 * (or "malloc failed"). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 200;
    size_t len = mib << 20;
    unsigned char *p = malloc(len);
    if (p == NULL) {
        printf("malloc failed\n");
        return 1;
    }
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i += 4096)
        sum += p[i];
    printf("touched %zu MiB, sum %lu\n", mib, sum);
    free(p);
    return 0;
}
