/* stress-fork [N]: a tight fork loop. N times (default 1000): fork(); the child _exit()s at
 * once with a status of its own (i % 128); the parent waitpid()s for it — nothing else in
 * the loop (no printf, no other memory touched: a printf in the loop once hid a bug that
 * killed this loop with SIGSEGV after about ten iterations). Every child must be reaped with
 * its own pid and status, and no child may be left over. Prints one line and exits 0 only if
 * all of that held; otherwise says what went wrong on stderr and exits 1. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(i % 128);
        if (pid < 0) {
            fprintf(stderr, "stress-fork: fork %d failed: errno %d\n", i, errno);
            return 1;
        }
        int status = 0;
        pid_t got = waitpid(pid, &status, 0);
        if (got != pid || !WIFEXITED(status) || WEXITSTATUS(status) != i % 128) {
            fprintf(stderr, "stress-fork: child %d (pid %d): waitpid returned %d, status %#x\n",
                    i, (int)pid, (int)got, status);
            bad++;
        }
    }
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "stress-fork: children left over\n");
        bad++;
    }
    if (bad)
        return 1;
    printf("stress-fork: %d children forked, each reaped with its own status\n", n);
    return 0;
}
