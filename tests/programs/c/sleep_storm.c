/* sleep_storm NTHREADS ITERS: NTHREADS threads each alternate a short busy spin (0-60 us of
 * reading the clock) with a short nanosleep (10-130 us), ITERS times, so that a kernel's
 * timer events, wake-ups and time-slice ends keep landing while threads are on their way into
 * a sleep. Prints "sleep-storm: T threads x I sleeps: done" once every thread has finished;
 * a sleep whose wake-up the kernel lost never returns (the test's timeout then says so). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long iters;

static unsigned long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long)t.tv_sec * 1000000000ul + (unsigned long)t.tv_nsec;
}

static void *worker(void *arg) {
    unsigned long x = (unsigned long)arg * 2654435761ul + 1;
    for (long i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned long spin = (x % 61) * 1000, until = now_ns() + spin;
        while (now_ns() < until)
            ;
        struct timespec d = {0, (long)(10000 + (x >> 8) % 120000)};
        if (nanosleep(&d, NULL) != 0) {
            perror("nanosleep");
            exit(1);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: sleep_storm NTHREADS ITERS\n");
        return 2;
    }
    int n = atoi(argv[1]);
    iters = atol(argv[2]);
    if (n < 1 || n > 64 || iters < 1)
        return 2;
    pthread_t t[64];
    for (int i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(long)(i + 1)) != 0)
            return 3;
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("sleep-storm: %d threads x %ld sleeps: done\n", n, iters);
    return 0;
}
