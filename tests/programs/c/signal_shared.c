/* signal_shared: signals sent to a process (kill, not tgkill) are pending process-wide, as on
 * Linux: one shared set, taken by whichever thread does not block the signal — however the
 * threads' masks change after it was sent, and whichever thread exits meanwhile. Prints one
 * line per check (the same natively and in a guest).
 *
 *   unblock-later   every thread blocks SIGUSR1 when it is sent; a worker then unblocks it and
 *                   runs the handler at once
 *   sigpending      a process-directed SIGUSR2 that every thread blocks shows in every
 *                   thread's sigpending; sigwaitinfo in a worker takes it, and then it shows
 *                   in none
 *   sender-exits    the main thread sends SIGUSR1 to its process with every thread blocking
 *                   it and exits (pthread_exit); the worker finds it pending and takes it
 *   thread-directed a tgkill'ed signal stays the target thread's: another thread does not
 *                   see it in sigpending
 *   read-restart    a reader blocked in read() and a thread making system calls in a loop both
 *                   leave SIGUSR1 (a handler
 *                   without SA_RESTART) unblocked; the process is sent SIGUSR1 each round:
 *                   the read fails with EINTR only when the handler ran in the reader, and
 *                   goes on (returns the byte written later) when the other thread took it */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile pid_t handled_by;
static pid_t worker_tid;
static pthread_t main_thread;

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void on_usr1(int sig) {
    (void)sig;
    handled_by = gettid_();
}

static void set_mask(int how, int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(how, &s, NULL);
}

static int is_pending(int sig) {
    sigset_t s;
    sigpending(&s);
    return sigismember(&s, sig);
}

static pthread_barrier_t bar;

static void *unblock_later(void *arg) {
    (void)arg;
    worker_tid = gettid_();
    pthread_barrier_wait(&bar); /* main sends now */
    pthread_barrier_wait(&bar); /* sent */
    set_mask(SIG_UNBLOCK, SIGUSR1);
    printf("unblock-later: handler ran in the worker at unblock: %s\n",
           handled_by == worker_tid ? "yes" : "no");
    set_mask(SIG_BLOCK, SIGUSR1);
    return NULL;
}

static void *pending_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&bar); /* main sends now */
    pthread_barrier_wait(&bar); /* sent */
    printf("sigpending: SIGUSR2 pending in the worker: %s\n", is_pending(SIGUSR2) ? "yes" : "no");
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    siginfo_t si;
    int got = sigwaitinfo(&s, &si);
    printf("sigpending: sigwaitinfo in the worker took %s from pid %s\n",
           got == SIGUSR2 ? "SIGUSR2" : "nothing", si.si_pid == getpid() ? "self" : "other");
    pthread_barrier_wait(&bar); /* taken */
    return NULL;
}

static void *survivor(void *arg) {
    (void)arg;
    worker_tid = gettid_();
    pthread_join(main_thread, NULL);
    printf("sender-exits: SIGUSR1 pending in the survivor: %s\n", is_pending(SIGUSR1) ? "yes" : "no");
    set_mask(SIG_UNBLOCK, SIGUSR1);
    printf("sender-exits: handler ran in the survivor: %s\n", handled_by == worker_tid ? "yes" : "no");
    fflush(stdout);
    exit(0);
}

static void *directed_worker(void *arg) {
    (void)arg;
    pthread_barrier_wait(&bar); /* main tgkills itself */
    pthread_barrier_wait(&bar); /* sent */
    printf("thread-directed: the main thread's SIGUSR2 pending in the worker: %s\n",
           is_pending(SIGUSR2) ? "yes" : "no");
    pthread_barrier_wait(&bar);
    return NULL;
}

/* read-restart */
enum { ROUNDS = 40 };
static int rr_pipe[2];
static volatile int rr_stop;
static volatile pid_t reader_tid, busy_tid;

static void *rr_reader(void *arg) {
    int *bad = arg;
    reader_tid = gettid_();
    set_mask(SIG_UNBLOCK, SIGUSR1);
    for (int i = 0; i < ROUNDS; i++) {
        pthread_barrier_wait(&bar); /* round starts: main sends once this thread blocks */
        char c;
        ssize_t n = read(rr_pipe[0], &c, 1);
        int interrupted = n < 0 && errno == EINTR;
        if (interrupted)
            n = read(rr_pipe[0], &c, 1); /* the round's byte */
        pid_t by = handled_by;
        /* EINTR only for a handler that ran in this thread (it may also have run just
         * before the read began: then the read simply waits for the byte). */
        if (n != 1 || (interrupted && by != reader_tid))
            (*bad)++;
        pthread_barrier_wait(&bar); /* round done */
    }
    return NULL;
}

static void *rr_busy(void *arg) {
    (void)arg;
    busy_tid = gettid_();
    set_mask(SIG_UNBLOCK, SIGUSR1);
    while (!rr_stop)
        getppid(); /* in and out of the kernel, where pending signals are taken */
    return NULL;
}

static void read_restart(void) {
    int bad = 0, by_reader = 0, by_busy = 0;
    pipe(rr_pipe);
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t r, b;
    /* The reader first: a kernel that wakes the first thread not blocking the signal wakes
     * it, and the busy thread may still take the signal on its way through the kernel. */
    pthread_create(&r, NULL, rr_reader, &bad);
    pthread_create(&b, NULL, rr_busy, NULL);
    for (int i = 0; i < ROUNDS; i++) {
        handled_by = 0;
        pthread_barrier_wait(&bar);
        usleep(2000); /* the reader is blocked in read() by now */
        kill(getpid(), SIGUSR1);
        while (handled_by == 0)
            usleep(100);
        if (handled_by == reader_tid)
            by_reader++;
        else if (handled_by == busy_tid)
            by_busy++;
        write(rr_pipe[1], "x", 1);
        pthread_barrier_wait(&bar);
    }
    rr_stop = 1;
    pthread_join(r, NULL);
    pthread_join(b, NULL);
    printf("read-restart: EINTR only when the reader ran the handler, else the byte: %s\n",
           bad == 0 ? "yes" : "no");
    printf("read-restart: every signal handled by one of the two threads: %s\n",
           by_reader + by_busy == ROUNDS ? "yes" : "no");
    fflush(stdout);
    if (getenv("SIGNAL_SHARED_VERBOSE"))
        fprintf(stderr, "read-restart: reader %d, busy %d, bad %d\n", by_reader, by_busy, bad);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    set_mask(SIG_BLOCK, SIGUSR1);
    set_mask(SIG_BLOCK, SIGUSR2);
    pthread_barrier_init(&bar, NULL, 2);
    pthread_t t;

    pthread_create(&t, NULL, unblock_later, NULL);
    pthread_barrier_wait(&bar);
    kill(getpid(), SIGUSR1);
    pthread_barrier_wait(&bar);
    pthread_join(t, NULL);
    printf("unblock-later: still pending afterwards: %s\n", is_pending(SIGUSR1) ? "yes" : "no");

    pthread_create(&t, NULL, pending_worker, NULL);
    pthread_barrier_wait(&bar);
    kill(getpid(), SIGUSR2);
    printf("sigpending: SIGUSR2 pending in the main thread: %s\n", is_pending(SIGUSR2) ? "yes" : "no");
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    printf("sigpending: SIGUSR2 pending in the main thread after: %s\n",
           is_pending(SIGUSR2) ? "yes" : "no");
    pthread_join(t, NULL);

    pthread_create(&t, NULL, directed_worker, NULL);
    pthread_barrier_wait(&bar);
    syscall(SYS_tgkill, getpid(), gettid_(), SIGUSR2);
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar);
    printf("thread-directed: pending in the main thread: %s\n", is_pending(SIGUSR2) ? "yes" : "no");
    sigset_t s2;
    sigemptyset(&s2);
    sigaddset(&s2, SIGUSR2);
    int sig;
    sigwait(&s2, &sig);
    pthread_join(t, NULL);

    read_restart();

    handled_by = 0;
    main_thread = pthread_self();
    pthread_create(&t, NULL, survivor, NULL);
    kill(getpid(), SIGUSR1);
    pthread_exit(NULL);
}
