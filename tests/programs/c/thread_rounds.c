/* The task limit counts a thread out when it exits: ROUNDS times (argument 1, default 300) a
 * child process starts THREADS threads (argument 2, default 6) that sleep, and exits; its
 * parent waits for it and starts the next. Run under a task limit that leaves room for init,
 * one child and its threads and no more (`pvmux run --pids-limit THREADS+2`), every thread of
 * every round must start: a parent that has waited for a child may start as many threads as
 * the child had, as on Linux, whose `pids` controller and `RLIMIT_NPROC` count a thread out
 * when it is released, before its parent can see it exit. Prints one line, and exits 1 if a
 * round failed. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

/* A child: start `n` threads, then exit 0, or exit 10 + i if thread i did not start. */
static void child(int n) {
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, sleeper, NULL) != 0)
            _exit(10 + i);
    }
    _exit(0);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 300;
    int threads = argc > 2 ? atoi(argv[2]) : 6;
    int bad = 0;
    char first[120] = "";
    for (int r = 0; r < rounds; r++) {
        pid_t pid = fork();
        if (pid < 0) {
            printf("round %d: fork failed: %s\n", r, strerror(errno));
            return 1;
        }
        if (pid == 0)
            child(threads);
        int status = 0;
        if (waitpid(pid, &status, 0) != pid) {
            printf("round %d: waitpid failed: %s\n", r, strerror(errno));
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            if (!bad++) {
                if (WIFEXITED(status) && WEXITSTATUS(status) >= 10)
                    snprintf(first, sizeof first, "; first: round %d, thread %d did not start", r,
                             WEXITSTATUS(status) - 10);
                else
                    snprintf(first, sizeof first, "; first: round %d, status %#x", r, status);
            }
        }
    }
    printf("%d rounds of %d threads: %d failed%s\n", rounds, threads, bad, first);
    return bad != 0;
}
