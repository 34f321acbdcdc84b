/* stress-vfork-exec [N [THREADS]]: a vfork+exec storm. THREADS threads (default 4) together
 * run N (default 1000) rounds of vfork(); the child execve()s this very program (a small
 * static binary, found as argv[0]) in child mode with a status code, a token and an
 * environment of its own; the parent waitpid()s for it. A child in child mode checks that
 * its arguments and environment arrived intact and exits with the code (255 if anything
 * was wrong); an exec that fails exits 127. Every child must be reaped with its own pid and
 * status, and no child may be left over. Prints one line and exits 0 only if all of that
 * held; otherwise says what went wrong on stderr and exits 1. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_THREADS 16

static const char *self;
static int rounds_per_thread;

struct worker {
    pthread_t thread;
    int index;
    int bad;
    int done;
};

static int child_mode(int argc, char **argv) {
    if (argc != 4)
        return 255;
    int code = atoi(argv[2]);
    char token[32];
    snprintf(token, sizeof token, "tok-%d", code);
    const char *env = getenv("STRESS_VFORK");
    if (strcmp(argv[3], token) != 0 || !env || strcmp(env, "yes") != 0)
        return 255;
    return code;
}

/* vfork + execve in a frame of its own (the child only execs or _exits in it; the caller's
 * variables stay out of vfork's way). */
static __attribute__((noinline)) pid_t spawn(char **args, char **envp) {
    pid_t pid = vfork();
    if (pid == 0) {
        execve(args[0], args, envp);
        _exit(127);
    }
    return pid;
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    for (int r = 0; r < rounds_per_thread; r++) {
        int code = (w->index * 37 + r) % 200;
        /* Everything the child needs is prepared before vfork: it shares our memory. */
        char code_s[16], token[32];
        snprintf(code_s, sizeof code_s, "%d", code);
        snprintf(token, sizeof token, "tok-%d", code);
        char *args[] = {(char *)self, "child", code_s, token, NULL};
        char *envp[] = {"STRESS_VFORK=yes", NULL};
        pid_t pid = spawn(args, envp);
        if (pid < 0) {
            fprintf(stderr, "stress-vfork-exec: thread %d: vfork failed: errno %d\n", w->index,
                    errno);
            w->bad++;
            return NULL;
        }
        int status = 0;
        pid_t got = waitpid(pid, &status, 0);
        if (got != pid || !WIFEXITED(status) || WEXITSTATUS(status) != code) {
            fprintf(stderr,
                    "stress-vfork-exec: thread %d round %d (pid %d): waitpid returned %d, "
                    "status %#x, expected exit %d\n",
                    w->index, r, (int)pid, (int)got, status, code);
            w->bad++;
        }
        w->done++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child_mode(argc, argv);
    self = argv[0];
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int threads = argc > 2 ? atoi(argv[2]) : 4;
    if (threads < 1 || threads > MAX_THREADS || n % threads != 0) {
        fprintf(stderr, "stress-vfork-exec: bad arguments\n");
        return 1;
    }
    rounds_per_thread = n / threads;
    struct worker w[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++) {
        w[t].index = t;
        if (pthread_create(&w[t].thread, NULL, worker_main, &w[t]) != 0) {
            fprintf(stderr, "stress-vfork-exec: pthread_create failed\n");
            return 1;
        }
    }
    int bad = 0, done = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(w[t].thread, NULL);
        bad += w[t].bad;
        done += w[t].done;
    }
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD) {
        fprintf(stderr, "stress-vfork-exec: children left over\n");
        bad++;
    }
    if (bad || done != n) {
        fprintf(stderr, "stress-vfork-exec: %d of %d rounds done, %d failures\n", done, n, bad);
        return 1;
    }
    printf("stress-vfork-exec: %d vfork+exec children in %d threads, each reaped with its own "
           "status\n",
           n, threads);
    return 0;
}
