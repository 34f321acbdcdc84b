/* hello-c [CODE]: a C program linked statically against glibc, run as a pvmux guest user
 * process. It prints with printf, allocates with malloc, checks getpid/getppid and time,
 * and exits with CODE (default 0). The output is deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int code = argc > 1 ? atoi(argv[1]) : 0;
    int failures = 0;

    printf("hello from a static C program\n");
    printf("argc: %d\n", argc);
    for (int i = 1; i < argc; i++)
        printf("argv[%d]: %s\n", i, argv[i]);

    /* malloc: small and large (mmap-backed) blocks, filled and summed. */
    size_t sizes[] = {16, 4096, 1 << 20, 8 << 20};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        unsigned char *p = malloc(n);
        if (!p) {
            printf("malloc(%zu): failed\n", n);
            failures++;
            continue;
        }
        memset(p, 0, n);
        for (size_t i = 0; i < n; i += 16)
            p[i] = (unsigned char)(i / 16);
        unsigned long sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += p[i];
        printf("malloc(%zu): sum %lu\n", n, sum);
        free(p);
    }
    char *grown = NULL;
    size_t len = 0;
    for (int i = 0; i < 1000; i++) {
        char *q = realloc(grown, len + 8);
        if (!q) {
            failures++;
            break;
        }
        grown = q;
        memcpy(grown + len, "abcdefg", 8);
        len += 7;
    }
    printf("realloc: %zu bytes\n", len);
    free(grown);

    pid_t pid = getpid(), ppid = getppid();
    printf("getpid positive: %s\n", pid > 0 ? "yes" : "no");
    printf("getppid non-negative and different: %s\n", ppid >= 0 && ppid != pid ? "yes" : "no");
    failures += pid <= 0;

    time_t now = time(NULL);
    /* 2020-01-01 .. 2100-01-01 */
    int plausible = now > 1577836800 && now < 4102444800;
    printf("time plausible: %s\n", plausible ? "yes" : "no");
    failures += !plausible;

    printf("failures: %d\n", failures);
    fflush(stdout);
    return failures ? 1 : code;
}
