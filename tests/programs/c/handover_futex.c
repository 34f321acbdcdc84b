/* A relative futex wait across a kernel hand-over (tests/tests/upgrade.rs): writes
 * "waiting" to OUT, waits S seconds in FUTEX_WAIT_PRIVATE (relative timeout) on a word
 * nobody changes, then writes to OUT how the wait ended and when, in ms after it began:
 *   timedout MS   (or the errno's number)
 * The caller upgrades the kernel in between; the wait must end as without a switch. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "report_file.h"

/* <linux/futex.h> is not among musl's headers. */
#define FUTEX_WAIT_PRIVATE 128

static long long ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[2]) <= 0) {
        fprintf(stderr, "usage: handover-futex OUT SECONDS\n");
        return 2;
    }
    static int word;
    struct timespec ts = {.tv_sec = atoi(argv[2]), .tv_nsec = 0};
    say(argv[1], "waiting\n");
    long long start = ms();
    long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
    long long took = ms() - start;
    char out[64];
    if (r == -1 && errno == ETIMEDOUT) {
        snprintf(out, sizeof out, "timedout %lld\n", took);
    } else {
        snprintf(out, sizeof out, "%ld %d %lld\n", r, errno, took);
    }
    say(argv[1], out);
    return 0;
}
