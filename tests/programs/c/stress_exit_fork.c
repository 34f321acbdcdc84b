/* stress-exit-fork [N]: a process exits while one of its threads is in the middle of a fork.
 *
 * N times (default 1000) the main process forks a child C. C starts a forker thread that
 * forks grandchildren as fast as it can, up to i % 3 + 2 of them (each writes one byte into a
 * pipe shared by all and exits 77), and C's main thread calls exit_group (_exit(42)) once the
 * forker has completed i % 3 forks — so mostly while the forker is inside fork(). Whatever
 * fork was under way either completes or does not; every grandchild that exists must run, be
 * reparented to the main process (pid 1 in a pvmux guest; natively it makes itself the
 * child subreaper) and be reaped with status 77.
 *
 * The main process reaps as it goes and, once every C is reaped, until no child is left; then
 * reads the pipe to its end. Every C must have exited 42, every other child 77, and the
 * number of grandchildren reaped must equal the number of bytes they wrote. Prints one line
 * and exits 0 only if all of that held; otherwise says what went wrong on stderr and exits
 * 1. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int pipe_w;
static atomic_int forks_done;
static int forks_max;

static void *forker(void *arg) {
    (void)arg;
    for (int k = 0; k < forks_max; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            char b = 'g';
            _exit(write(pipe_w, &b, 1) == 1 ? 77 : 1);
        }
        if (pid > 0)
            atomic_fetch_add(&forks_done, 1);
    }
    for (;;)
        pause();
    return NULL;
}

/* Child C of round i: forker thread, then exit_group once it has done i % 3 forks (the
 * forker stops after two more: a bound on the grandchildren when it outruns this thread). */
static void child(int i) {
    forks_max = i % 3 + 2;
    pthread_t t;
    if (pthread_create(&t, NULL, forker, NULL) != 0)
        _exit(2);
    while (atomic_load(&forks_done) < i % 3)
        sched_yield();
    _exit(42);
}

static long bytes_read;
static int pipe_r;

static int drain_pipe(void) {
    char buf[512];
    for (;;) {
        ssize_t n = read(pipe_r, buf, sizeof buf);
        if (n > 0)
            bytes_read += n;
        else if (n == 0 || errno == EAGAIN)
            return 0;
        else if (errno != EINTR)
            return -1;
    }
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 && getpid() != 1) {
        fprintf(stderr, "stress-exit-fork: neither pid 1 nor a child subreaper\n");
        return 1;
    }
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "stress-exit-fork: pipe failed\n");
        return 1;
    }
    pipe_r = fds[0];
    pipe_w = fds[1];
    fcntl(pipe_r, F_SETFL, O_NONBLOCK);
    int bad = 0;
    long grandchildren = 0, cs = 0;
    for (int i = 0; i < n; i++) {
        pid_t c = fork();
        if (c == 0)
            child(i);
        if (c < 0) {
            fprintf(stderr, "stress-exit-fork: fork %d failed: errno %d\n", i, errno);
            bad++;
            break;
        }
        /* Reap until C itself is reaped (grandchildren reparented to us come along). */
        for (;;) {
            int status = 0;
            pid_t got = waitpid(-1, &status, 0);
            if (got < 0) {
                fprintf(stderr, "stress-exit-fork: round %d: waitpid failed: errno %d\n", i,
                        errno);
                bad++;
                break;
            }
            int want = got == c ? 42 : 77;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != want) {
                fprintf(stderr, "stress-exit-fork: round %d: pid %d (%s) status %#x\n", i,
                        (int)got, got == c ? "child" : "grandchild", status);
                bad++;
            }
            if (got == c) {
                cs++;
                break;
            }
            grandchildren++;
        }
        if (drain_pipe() != 0)
            bad++;
    }
    close(pipe_w);
    /* The rest: grandchildren still running. */
    for (;;) {
        int status = 0;
        pid_t got = waitpid(-1, &status, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno != ECHILD) {
                fprintf(stderr, "stress-exit-fork: waitpid failed: errno %d\n", errno);
                bad++;
            }
            break;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 77) {
            fprintf(stderr, "stress-exit-fork: late pid %d status %#x\n", (int)got, status);
            bad++;
        }
        grandchildren++;
    }
    /* Every writer is gone: read to the end. */
    fcntl(pipe_r, F_SETFL, 0);
    if (drain_pipe() != 0)
        bad++;
    if (cs != n || grandchildren != bytes_read) {
        fprintf(stderr,
                "stress-exit-fork: %ld of %d children reaped; %ld grandchildren reaped, %ld "
                "reported in\n",
                cs, n, grandchildren, bytes_read);
        bad++;
    }
    if (bad)
        return 1;
    printf("stress-exit-fork: %d children exited while forking; every grandchild reparented "
           "and reaped\n",
           n);
    return 0;
}
