/* sigmask-wait: the signal mask of ppoll, pselect and sigsuspend is in force exactly for the
 * wait: a pending signal it unblocks interrupts the wait with EINTR and its handler runs
 * with that mask (plus the signal), the old mask is back afterwards; a signal it keeps
 * blocked does not interrupt; a ready file wins over a pending signal; after SIGCHLD's
 * handler ran, `waitpid(WNOHANG)` finds the child. One line per case,
 * "NAME: ok" or "NAME: FAIL ..."; the exit status is the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static volatile int handled;
/* The mask in force while the handler ran, and the one rt_sigreturn will restore. */
static sigset_t in_handler, to_restore;

static void handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    sigprocmask(SIG_BLOCK, NULL, &in_handler);
    to_restore = ((ucontext_t *)ctx)->uc_sigmask;
    handled++;
}

static sigset_t set_of(int a, int b) {
    sigset_t s;
    sigemptyset(&s);
    if (a)
        sigaddset(&s, a);
    if (b)
        sigaddset(&s, b);
    return s;
}

static int mask_is(int a, int b) {
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, SIGUSR1) == (a == SIGUSR1 || b == SIGUSR1) &&
           sigismember(&cur, SIGUSR2) == (a == SIGUSR2 || b == SIGUSR2);
}

enum waiter { PPOLL, PSELECT, SIGSUSPEND };
static const char *names[] = {"ppoll", "pselect", "sigsuspend"};

/* Waits with temporary mask `m`, a pipe read end `fd` (or -1), a timeout of `ms`. */
static int wait_with(enum waiter w, const sigset_t *m, int fd, int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    switch (w) {
    case PPOLL: {
        struct pollfd p = {fd, POLLIN, 0};
        return ppoll(fd >= 0 ? &p : NULL, fd >= 0 ? 1 : 0, &ts, m);
    }
    case PSELECT: {
        fd_set r;
        FD_ZERO(&r);
        if (fd >= 0)
            FD_SET(fd, &r);
        return pselect(fd + 1, &r, NULL, NULL, &ts, m);
    }
    default:
        return sigsuspend(m);
    }
}

static void interrupted(enum waiter w) {
    char name[96], d[160];
    /* USR1 and USR2 blocked; USR1 pending; the wait blocks nothing. */
    sigset_t both = set_of(SIGUSR1, SIGUSR2), none = set_of(0, 0);
    sigprocmask(SIG_SETMASK, &both, NULL);
    raise(SIGUSR1);
    handled = 0;
    errno = 0;
    int r = wait_with(w, &none, -1, 10000);
    int e = errno;
    snprintf(name, sizeof name, "%s: a signal its mask unblocks interrupts it (EINTR)", names[w]);
    snprintf(d, sizeof d, "returned %d errno %d, handled %d", r, e, handled);
    report(name, r == -1 && e == EINTR && handled == 1, d);
    snprintf(name, sizeof name, "%s: the handler runs with the wait's mask plus the signal",
             names[w]);
    report(name, sigismember(&in_handler, SIGUSR1) && !sigismember(&in_handler, SIGUSR2) &&
                     sigismember(&to_restore, SIGUSR1) && sigismember(&to_restore, SIGUSR2),
           "wrong mask in the handler or in uc_sigmask");
    snprintf(name, sizeof name, "%s: the old mask is back afterwards", names[w]);
    report(name, mask_is(SIGUSR1, SIGUSR2), "mask not restored");
}

static void still_blocked(enum waiter w) {
    char name[96], d[160];
    /* USR1 pending and blocked by the wait's mask too: no interruption, a timeout. */
    sigset_t one = set_of(SIGUSR1, 0), none = set_of(0, 0);
    sigprocmask(SIG_SETMASK, &one, NULL);
    raise(SIGUSR1);
    handled = 0;
    int r = wait_with(w, &one, -1, 30);
    snprintf(name, sizeof name, "%s: a signal its mask blocks does not interrupt it", names[w]);
    snprintf(d, sizeof d, "returned %d, handled %d", r, handled);
    report(name, r == 0 && handled == 0, d);
    sigprocmask(SIG_SETMASK, &none, NULL);
    snprintf(name, sizeof name, "%s: that signal is delivered once unblocked", names[w]);
    report(name, handled == 1, "not delivered");
}

static void ready_wins(enum waiter w) {
    char name[96], d[160];
    int fd[2];
    if (pipe(fd) != 0)
        return;
    (void)!write(fd[1], "x", 1);
    sigset_t one = set_of(SIGUSR1, 0), none = set_of(0, 0);
    sigprocmask(SIG_SETMASK, &one, NULL);
    raise(SIGUSR1);
    handled = 0;
    int r = wait_with(w, &none, fd[0], 10000);
    snprintf(name, sizeof name, "%s: a ready file wins over a pending signal", names[w]);
    snprintf(d, sizeof d, "returned %d, handled %d", r, handled);
    report(name, r == 1 && handled == 0 && mask_is(SIGUSR1, 0), d);
    sigset_t pending;
    sigpending(&pending);
    snprintf(name, sizeof name, "%s: the signal stays pending under the old mask", names[w]);
    report(name, sigismember(&pending, SIGUSR1), "not pending");
    sigprocmask(SIG_SETMASK, &none, NULL);
    close(fd[0]);
    close(fd[1]);
}

/* The signal comes from another process while the wait sleeps (or just before). */
static void from_child(enum waiter w) {
    char name[96], d[160];
    sigset_t one = set_of(SIGUSR1, 0), none = set_of(0, 0);
    sigprocmask(SIG_SETMASK, &one, NULL);
    handled = 0;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        usleep(20000);
        kill(parent, SIGUSR1);
        _exit(0);
    }
    errno = 0;
    int r = wait_with(w, &none, -1, 20000);
    int e = errno;
    waitpid(pid, NULL, 0);
    snprintf(name, sizeof name, "%s: a signal from another process interrupts it", names[w]);
    snprintf(d, sizeof d, "returned %d errno %d, handled %d", r, e, handled);
    report(name, r == -1 && e == EINTR && handled == 1 && mask_is(SIGUSR1, 0), d);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static volatile sig_atomic_t chld_seen;
static void on_chld(int sig) {
    (void)sig;
    chld_seen = 1;
}

/* timeout(1)'s wait: SIGCHLD blocked, then `while (waitpid(WNOHANG) == 0) sigsuspend(old)`.
 * Once SIGCHLD's handler has run, the child is a zombie: waitpid finds it (a kernel that
 * marks the child a zombie after sending the signal lets the parent sleep again, until a
 * timer ends it). Each child ends while the parent is about to wait or already waits. */
static void sigchld_then_wnohang(void) {
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sigaction(SIGCHLD, &sa, &old_sa);
    sigset_t chld = set_of(SIGCHLD, 0), none = set_of(0, 0);
    int late = 0, rounds = 200;
    for (int i = 0; i < rounds; i++) {
        sigprocmask(SIG_SETMASK, &chld, NULL);
        /* The previous child's signal is still pending if waitpid found it first. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&chld, NULL, &zero) == SIGCHLD)
            ;
        chld_seen = 0;
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        int status = 0;
        pid_t r;
        while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
            if (chld_seen) {
                /* The handler ran and the child is still not waitable. */
                late++;
                waitpid(pid, &status, 0);
                break;
            }
            sigsuspend(&none);
        }
    }
    sigprocmask(SIG_SETMASK, &none, NULL);
    sigaction(SIGCHLD, &old_sa, NULL);
    char d[64];
    snprintf(d, sizeof d, "%d of %d children not waitable after SIGCHLD", late, rounds);
    report("sigsuspend: SIGCHLD's handler ran, so waitpid(WNOHANG) finds the child", late == 0,
           d);
}

int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    /* SA_RESTART must not restart these waits (Linux never does). */
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    for (int w = PPOLL; w <= SIGSUSPEND; w++) {
        interrupted(w);
        if (w != SIGSUSPEND) {
            still_blocked(w);
            ready_wins(w);
        }
        from_child(w);
    }
    sigchld_then_wnohang();
    printf("failures: %d\n", failures);
    return failures;
}
