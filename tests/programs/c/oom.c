/* oom [child]: allocates and touches memory 1 MiB at a time until the kernel kills it (run it
 * only in a small guest). With "child", a forked child does it and the parent, which stays
 * small, reports how the child ended and exits 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void hog(void) {
    for (unsigned long mib = 0;; mib++) {
        char *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                       0);
        if (p == MAP_FAILED) {
            printf("mmap failed after %lu MiB\n", mib);
            exit(2);
        }
        memset(p, 0x5a, 1 << 20);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) {
        pid_t pid = fork();
        if (pid == 0)
            hog();
        int st;
        waitpid(pid, &st, 0);
        if (WIFSIGNALED(st))
            printf("child killed by signal %d\n", WTERMSIG(st));
        else
            printf("child exited %d\n", WEXITSTATUS(st));
        return 0;
    }
    hog();
}
