/* futex-ops: futex(2) called directly. FUTEX_WAKE_OP changes its second word atomically as
 * its encoded operation says (set, add, or, andn, xor, the shift flag) and wakes the second
 * word's waiters only if the old value passes the comparison; its errors; a wake count of 0
 * still wakes one waiter; stray bits and FUTEX_CLOCK_REALTIME anywhere but on
 * FUTEX_WAIT_BITSET are ENOSYS; a private waiter on shared memory is not woken by a shared
 * wake. One line per case, "NAME: ok" or "NAME: FAIL ...";
 * the exit status is the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* <linux/futex.h> (musl-gcc has no kernel headers). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_WAKE_OP 5
#define FUTEX_WAIT_BITSET 9
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_CLOCK_REALTIME 256
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_OP_PRIVATE (FUTEX_WAKE_OP | FUTEX_PRIVATE_FLAG)
#define FUTEX_OP_SET 0
#define FUTEX_OP_ADD 1
#define FUTEX_OP_OR 2
#define FUTEX_OP_ANDN 3
#define FUTEX_OP_XOR 4
#define FUTEX_OP_OPARG_SHIFT 8
#define FUTEX_OP_CMP_EQ 0
#define FUTEX_OP_CMP_NE 1
#define FUTEX_OP(op, oparg, cmp, cmparg)                                                  \
    ((((op)&0xf) << 28) | (((cmp)&0xf) << 24) | (((oparg)&0xfff) << 12) | ((cmparg)&0xfff))

static int failures;

static void report(const char *name, int ok, const char *detail) {
    if (ok)
        printf("%s: ok\n", name);
    else {
        printf("%s: FAIL %s\n", name, detail);
        failures++;
    }
    fflush(stdout);
}

static long futex(void *uaddr, int op, uint32_t val, uintptr_t val2, void *uaddr2, uint32_t val3) {
    return syscall(SYS_futex, uaddr, op, val, val2, uaddr2, val3);
}

/* Calls `f` until it returns `want` (a waiter has gone to sleep meanwhile), at most for
 * about 20 s; returns the last result. */
static long until(long (*f)(void), long want) {
    long r = -2;
    for (int i = 0; i < 20000; i++) {
        r = f();
        if (r == want)
            break;
        usleep(1000);
    }
    return r;
}

static uint32_t w1, w2;

/* A thread that sleeps on `word` until it holds something other than 0. */
struct waiter {
    uint32_t *word;
    int op;
    volatile int started, woken;
    pthread_t th;
};

static void *wait_main(void *arg) {
    struct waiter *w = arg;
    w->started = 1;
    while (__atomic_load_n(w->word, __ATOMIC_SEQ_CST) == 0)
        futex(w->word, w->op, 0, 0, NULL, 0);
    w->woken = 1;
    return NULL;
}

static void start(struct waiter *w, uint32_t *word, int op) {
    memset(w, 0, sizeof *w);
    w->word = word;
    w->op = op;
    pthread_create(&w->th, NULL, wait_main, w);
    while (!w->started)
        usleep(1000);
    usleep(20000); /* most likely asleep by now; nothing below depends on it */
}

static void finish(struct waiter *w) {
    __atomic_store_n(w->word, 1, __ATOMIC_SEQ_CST);
    int wake = w->op == FUTEX_WAIT_PRIVATE ? FUTEX_WAKE_PRIVATE : FUTEX_WAKE;
    while (!w->woken)
        futex(w->word, wake, 1 << 30, 0, NULL, 0);
    pthread_join(w->th, NULL);
}

static void wake_op_values(void) {
    char d[160];
    static const struct {
        const char *name;
        int op, oparg;
        uint32_t from, to;
    } cases[] = {
        {"set", FUTEX_OP_SET, 7, 5, 7},
        {"add", FUTEX_OP_ADD, 7, 5, 12},
        {"add of -1", FUTEX_OP_ADD, 0xfff, 5, 4},
        {"or", FUTEX_OP_OR, 3, 5, 7},
        {"andn", FUTEX_OP_ANDN, 4, 5, 1},
        {"xor", FUTEX_OP_XOR, 6, 5, 3},
        {"or with the shift flag", FUTEX_OP_OR | FUTEX_OP_OPARG_SHIFT, 4, 1, 0x11},
        {"set with a shift of 33", FUTEX_OP_SET | FUTEX_OP_OPARG_SHIFT, 33, 0, 2},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[96];
        w2 = cases[i].from;
        long r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2,
                       FUTEX_OP(cases[i].op, cases[i].oparg, FUTEX_OP_CMP_EQ, 0));
        snprintf(name, sizeof name, "wake-op %s changes the second word", cases[i].name);
        snprintf(d, sizeof d, "returned %ld, word %#x (want %#x)", r, w2, cases[i].to);
        report(name, r == 0 && w2 == cases[i].to, d);
    }
}

static long wake_op_second(void) {
    /* Adds 0 (the waiter's condition stays) and wakes the second word if it was 0. */
    return futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2,
                 FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_EQ, 0));
}

static long wake_op_first(void) {
    return futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2,
                 FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_NE, 0));
}

static void wake_op_wakes(void) {
    char d[160];
    struct waiter w;
    w1 = w2 = 0;
    start(&w, &w2, FUTEX_WAIT_PRIVATE);
    long bad = 0;
    for (int i = 0; i < 10; i++) {
        /* The comparison fails (0 != 0 is false): the second word's waiter stays. */
        long r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2,
                       FUTEX_OP(FUTEX_OP_ADD, 0, FUTEX_OP_CMP_NE, 0));
        if (r != 0)
            bad = r;
        usleep(2000);
    }
    snprintf(d, sizeof d, "a wake-up returned %ld", bad);
    report("wake-op: a failed comparison wakes no one on the second word", bad == 0 && !w.woken,
           d);
    long r = until(wake_op_second, 1);
    snprintf(d, sizeof d, "returned %ld", r);
    report("wake-op: a passed comparison wakes the second word's waiter", r == 1, d);
    finish(&w);

    w1 = w2 = 0;
    start(&w, &w1, FUTEX_WAIT_PRIVATE);
    r = until(wake_op_first, 1);
    snprintf(d, sizeof d, "returned %ld", r);
    report("wake-op: the first word's waiter is woken whatever the comparison", r == 1, d);
    finish(&w);
}

static void wake_op_errors(void) {
    char d[160];
    uint32_t words[2] = {0, 0};
    errno = 0;
    long r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, (char *)words + 1,
                   FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0));
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("wake-op: an unaligned second word is EINVAL", r == -1 && errno == EINVAL, d);

    errno = 0;
    r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, NULL,
              FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0));
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("wake-op: an unmapped second word is EFAULT", r == -1 && errno == EFAULT, d);

    uint32_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    errno = 0;
    r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, ro,
              FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0));
    snprintf(d, sizeof d, "returned %ld errno %d, word %u", r, errno, *ro);
    report("wake-op: a read-only second word is EFAULT and unchanged",
           r == -1 && errno == EFAULT && *ro == 0, d);
    munmap(ro, 4096);

    w2 = 5;
    errno = 0;
    r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2, FUTEX_OP(5, 1, FUTEX_OP_CMP_EQ, 0));
    snprintf(d, sizeof d, "returned %ld errno %d, word %u", r, errno, w2);
    report("wake-op: an unknown operation is ENOSYS and changes nothing",
           r == -1 && errno == ENOSYS && w2 == 5, d);

    errno = 0;
    r = futex(&w1, FUTEX_WAKE_OP_PRIVATE, 1, 1, &w2, FUTEX_OP(FUTEX_OP_SET, 9, 6, 0));
    snprintf(d, sizeof d, "returned %ld errno %d, word %u", r, errno, w2);
    report("wake-op: an unknown comparison is ENOSYS after the operation",
           r == -1 && errno == ENOSYS && w2 == 9, d);
}

static long wake_zero(void) {
    return futex(&w1, FUTEX_WAKE_PRIVATE, 0, 0, NULL, 0);
}

static void wake_counts(void) {
    char d[160];
    struct waiter w;
    w1 = 0;
    start(&w, &w1, FUTEX_WAIT_PRIVATE);
    long r = until(wake_zero, 1);
    snprintf(d, sizeof d, "returned %ld", r);
    report("wake: a count of 0 wakes one waiter", r == 1, d);
    finish(&w);
}

static void bad_ops(void) {
    char d[160];
    errno = 0;
    long r = futex(&w1, FUTEX_WAKE | 0x1000, 1, 0, NULL, 0);
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("an operation with stray bits is ENOSYS", r == -1 && errno == ENOSYS, d);
    errno = 0;
    r = futex(&w1, FUTEX_WAKE | FUTEX_CLOCK_REALTIME, 1, 0, NULL, 0);
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("FUTEX_CLOCK_REALTIME on a wake is ENOSYS", r == -1 && errno == ENOSYS, d);
}

static void realtime_wait(void) {
    char d[160];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* An absolute wall-clock time one second ago: the wait times out at once (read as a
     * duration it would last decades). */
    struct timespec past = {now.tv_sec - 1, now.tv_nsec};
    w1 = 0;
    errno = 0;
    long r = futex(&w1, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME, 0,
                   (uintptr_t)&past, NULL, ~0u);
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("wait-bitset with FUTEX_CLOCK_REALTIME takes an absolute wall-clock time",
           r == -1 && errno == ETIMEDOUT, d);
    struct timespec rel = {0, 1000};
    errno = 0;
    r = futex(&w1, FUTEX_WAIT_PRIVATE | FUTEX_CLOCK_REALTIME, 0, (uintptr_t)&rel, NULL, 0);
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("wait with FUTEX_CLOCK_REALTIME is ENOSYS", r == -1 && errno == ENOSYS, d);
    errno = 0;
    r = futex(&w1, FUTEX_WAIT_PRIVATE, 0, (uintptr_t)&rel, NULL, 0);
    snprintf(d, sizeof d, "returned %ld errno %d", r, errno);
    report("wait takes a duration", r == -1 && errno == ETIMEDOUT, d);
}

static uint32_t *shm;

static long shared_wake(void) {
    return futex(shm, FUTEX_WAKE, 1, 0, NULL, 0);
}

static long private_wake(void) {
    return futex(shm, FUTEX_WAKE_PRIVATE, 1, 0, NULL, 0);
}

static void private_and_shared(void) {
    char d[160];
    shm = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    struct waiter w;
    start(&w, shm, FUTEX_WAIT_PRIVATE);
    long bad = 0;
    for (int i = 0; i < 10; i++) {
        long r = shared_wake();
        if (r != 0)
            bad = r;
        usleep(2000);
    }
    snprintf(d, sizeof d, "a shared wake returned %ld", bad);
    report("a private waiter on shared memory is not woken by a shared wake", bad == 0, d);
    long r = until(private_wake, 1);
    snprintf(d, sizeof d, "returned %ld", r);
    report("a private wake wakes it", r == 1, d);
    finish(&w);
    *shm = 0;
    start(&w, shm, FUTEX_WAIT);
    r = until(shared_wake, 1);
    snprintf(d, sizeof d, "returned %ld", r);
    report("a shared waiter is woken by a shared wake", r == 1, d);
    finish(&w);
    munmap(shm, 4096);
}

int main(void) {
    wake_op_values();
    wake_op_wakes();
    wake_op_errors();
    wake_counts();
    bad_ops();
    realtime_wait();
    private_and_shared();
    printf("failures: %d\n", failures);
    return failures;
}
