/* cpu-fork-busy N: the hidden-CPU attack on a per-process budget. Forks N children that
 * spin forever, and spins itself; prints "spinning N" once all are started. It never ends
 * by itself: a CPU-time budget that covers the whole tenant must end it (a budget per
 * process let such a tenant use N + 1 times its budget). Exits 1 if a fork fails.
 *
 * The children start spinning only once the parent has printed (they wait on a pipe the
 * parent closes): forking while N children already spin on 2 vCPUs could take long enough
 * on a slow host that the budget ran out before the line, which the tests look for. */
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
    int gate[2];
    if (pipe(gate) != 0) {
        perror("cpu-fork-busy: pipe");
        return 1;
    }
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char c;
            close(gate[1]);
            /* EOF once the parent closed its end. */
            while (read(gate[0], &c, 1) > 0)
                ;
            spin();
        }
        if (pid < 0) {
            perror("cpu-fork-busy: fork");
            return 1;
        }
    }
    printf("spinning %d\n", n);
    fflush(stdout);
    close(gate[1]);
    spin();
}
