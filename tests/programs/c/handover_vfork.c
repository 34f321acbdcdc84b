/* handover-vfork FILE MS: a loop of vfork children that each spin MS milliseconds in user
 * code (the vDSO's clock, no system call) before they exec /bin/true, for pvmux upgrade's
 * freeze: while such a child runs, its parent is blocked in vfork, so the freeze must let
 * the child reach its exec. After each child the parent appends the round's number (1, 2,
 * 3, ...) to FILE. Exits 1, saying why on stderr, if a vfork, exec or wait goes wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: handover-vfork FILE MS\n");
        return 2;
    }
    long spin = atol(argv[2]);
    for (unsigned long round = 1;; round++) {
        pid_t pid = vfork();
        if (pid == 0) {
            long long end = now_ms() + spin;
            while (now_ms() < end) {
            }
            execl("/bin/true", "true", (char *)0);
            _exit(127);
        }
        if (pid < 0) {
            perror("vfork");
            return 1;
        }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "round %lu: child %d ended with status %#x\n", round, pid, status);
            return 1;
        }
        FILE *f = fopen(argv[1], "a");
        if (!f || fprintf(f, "%lu\n", round) < 0 || fclose(f) != 0) {
            perror(argv[1]);
            return 1;
        }
    }
}
