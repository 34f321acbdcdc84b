/* cpu-fork-busy N: the hidden-CPU attack on a per-process budget. Forks N children that
 * spin forever, and spins itself; prints "spinning N" once all are started. It never ends
 * by itself: a CPU-time budget that covers the whole tenant must end it (a budget per
 * process let such a tenant use N + 1 times its budget). Exits 1 if a fork fails. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned long sink;

static void spin(void) {
    for (;;)
        sink++;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 4;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            spin();
        if (pid < 0) {
            perror("cpu-fork-busy: fork");
            return 1;
        }
    }
    printf("spinning %d\n", n);
    fflush(stdout);
    spin();
}
