/* What fork copies after madvise, across a kernel hand-over (tests/tests/upgrade.rs):
 * a region of 3 pages ('a', 'b', 'c') gets MADV_WIPEONFORK on page 0 and MADV_DONTFORK on
 * page 2, then the program writes "ready" to OUT and waits for the file GO (the caller
 * upgrades the kernel in between, or creates GO at once for the native run). Then it forks;
 * the child reports the first byte of each page ('0' for a zero page, '-' for SIGSEGV):
 *   child 0 b -
 * then "end". */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "report_file.h"

#define PAGE 4096UL

static sigjmp_buf env;

static void on_segv(int sig) {
    siglongjmp(env, sig);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: handover-madvise OUT GO\n");
        return 2;
    }
    char *r = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 3; i++)
        memset(r + i * PAGE, 'a' + i, PAGE);
    if (madvise(r, PAGE, MADV_WIPEONFORK) != 0 || madvise(r + 2 * PAGE, PAGE, MADV_DONTFORK) != 0) {
        perror("madvise");
        return 1;
    }
    say(argv[1], "ready\n");
    while (access(argv[2], F_OK) != 0)
        usleep(10000);
    int p[2];
    if (pipe(p) != 0)
        return 1;
    pid_t c = fork();
    if (c == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = on_segv;
        sigaction(SIGSEGV, &sa, NULL);
        char seen[3];
        for (int i = 0; i < 3; i++) {
            if (sigsetjmp(env, 1) == 0) {
                char v = r[i * PAGE];
                seen[i] = v ? v : '0';
            } else {
                seen[i] = '-';
            }
        }
        if (write(p[1], seen, 3) != 3)
            _exit(1);
        _exit(0);
    }
    char seen[3] = {'?', '?', '?'};
    if (read(p[0], seen, 3) != 3)
        return 1;
    waitpid(c, NULL, 0);
    char line[64];
    snprintf(line, sizeof line, "child %c %c %c\nparent %c %c %c\nend\n", seen[0], seen[1],
             seen[2], r[0], r[PAGE], r[2 * PAGE]);
    say(argv[1], line);
    return 0;
}
