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
 *                   see it in sigpending */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

    handled_by = 0;
    main_thread = pthread_self();
    pthread_create(&t, NULL, survivor, NULL);
    kill(getpid(), SIGUSR1);
    pthread_exit(NULL);
}
