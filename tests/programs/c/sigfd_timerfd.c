/* sigfd_timerfd: timerfd (poll/select readiness, counts, absolute times, flags, errors),
 * signalfd (the fields of signalfd_siginfo for kill, tgkill, sigqueue, SIGCHLD and a POSIX
 * timer; several records per read; mask updates; poll), sigqueue's value in an SA_SIGINFO
 * handler and through sigtimedwait, sigtimedwait's timeout, and the order and multiplicity
 * of queued real-time signals. One line per case, "NAME: ok" or "NAME: FAIL ..."; the exit
 * status is the number of failures. Nothing timing-dependent is printed, so the output can
 * be compared with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
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

static char detail[256];

static void block(int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

static void unblock(int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

static void timerfd_poll(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    uint64_t n = 0;
    errno = 0;
    ssize_t r = read(fd, &n, 8);
    report("timerfd_unarmed_eagain", fd >= 0 && r == -1 && errno == EAGAIN, "read unarmed");
    report("timerfd_cloexec", (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0, "FD_CLOEXEC");
    struct pollfd p = {fd, POLLIN, 0};
    report("timerfd_not_ready", poll(&p, 1, 0) == 0, "poll before expiry");
    struct itimerspec its = {{0, 10000000}, {0, 20000000}}, cur;
    timerfd_settime(fd, 0, &its, NULL);
    int pr = poll(&p, 1, 10000);
    r = read(fd, &n, 8);
    snprintf(detail, sizeof detail, "poll %d revents %#x read %zd count %llu", pr, p.revents, r,
             (unsigned long long)n);
    report("timerfd_poll_read", pr == 1 && p.revents == POLLIN && r == 8 && n >= 1, detail);
    struct timespec nap = {0, 55000000};
    nanosleep(&nap, NULL);
    r = read(fd, &n, 8);
    snprintf(detail, sizeof detail, "read %zd count %llu", r, (unsigned long long)n);
    report("timerfd_counts_expirations", r == 8 && n >= 2, detail);
    timerfd_gettime(fd, &cur);
    report("timerfd_gettime", cur.it_interval.tv_nsec == 10000000 && cur.it_value.tv_sec == 0 &&
                                  cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 10000000,
           "interval and remaining time");
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(fd, &rd);
    int sr = select(fd + 1, &rd, NULL, NULL, NULL);
    report("timerfd_select", sr == 1 && FD_ISSET(fd, &rd), "select");
    struct itimerspec off = {{0, 0}, {0, 0}};
    timerfd_settime(fd, 0, &off, &cur);
    report("timerfd_disarm_old", cur.it_interval.tv_nsec == 10000000, "old value");
    errno = 0;
    report("timerfd_disarmed_eagain", read(fd, &n, 8) == -1 && errno == EAGAIN,
           "a settime resets the count");
    errno = 0;
    report("timerfd_short_read", read(fd, &n, 4) == -1 && errno == EINVAL, "4-byte read");
    close(fd);
}

static void timerfd_absolute(void) {
    int fd = timerfd_create(CLOCK_REALTIME, 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    now.tv_nsec += 20000000;
    if (now.tv_nsec >= 1000000000) {
        now.tv_sec++;
        now.tv_nsec -= 1000000000;
    }
    struct itimerspec its = {{0, 0}, now}, cur;
    int sr = timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL);
    uint64_t n = 0;
    ssize_t r = read(fd, &n, 8);
    timerfd_gettime(fd, &cur);
    snprintf(detail, sizeof detail, "settime %d read %zd count %llu", sr, r,
             (unsigned long long)n);
    report("timerfd_abstime_blocking_read", sr == 0 && r == 8 && n == 1 &&
                                                cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
           detail);
    errno = 0;
    report("timerfd_bad_flags", timerfd_settime(fd, 4, &its, NULL) == -1 && errno == EINVAL,
           "flags 4");
    close(fd);
    errno = 0;
    report("timerfd_bad_clock", timerfd_create(CLOCK_PROCESS_CPUTIME_ID, 0) == -1 &&
                                    errno == EINVAL, "CPU clock");
    int efd = eventfd(0, 0);
    errno = 0;
    report("timerfd_settime_not_timerfd", timerfd_settime(efd, 0, &its, NULL) == -1 &&
                                              errno == EINVAL, "an eventfd");
    close(efd);
    errno = 0;
    report("timerfd_settime_bad_fd", timerfd_settime(999, 0, &its, NULL) == -1 && errno == EBADF,
           "fd 999");
}

/* A 1 µs interval: every expiration is counted, and the kernel is not kept busy. */
static void timerfd_tiny_interval(void) {
    int fd = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec its = {{0, 1000}, {0, 1000}};
    timerfd_settime(fd, 0, &its, NULL);
    struct timespec nap = {0, 20000000};
    nanosleep(&nap, NULL);
    uint64_t n = 0;
    ssize_t r = read(fd, &n, 8);
    snprintf(detail, sizeof detail, "read %zd count %llu", r, (unsigned long long)n);
    report("timerfd_tiny_interval", r == 8 && n >= 1000, detail);
    close(fd);
}

static void signalfd_fields(void) {
    sigset_t m;
    sigemptyset(&m);
    sigaddset(&m, SIGUSR1);
    sigaddset(&m, SIGRTMIN);
    sigaddset(&m, SIGCHLD);
    sigprocmask(SIG_BLOCK, &m, NULL);
    int fd = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
    struct signalfd_siginfo rec[4];
    errno = 0;
    report("signalfd_empty_eagain", fd >= 0 && read(fd, rec, sizeof rec) == -1 && errno == EAGAIN,
           "read with nothing pending");
    errno = 0;
    report("signalfd_short_read", read(fd, rec, 100) == -1 && errno == EINVAL, "100 bytes");
    struct pollfd p = {fd, POLLIN, 0};
    report("signalfd_not_ready", poll(&p, 1, 0) == 0, "poll before a signal");
    kill(getpid(), SIGUSR1);
    int pr = poll(&p, 1, 1000);
    ssize_t r = read(fd, rec, sizeof rec);
    snprintf(detail, sizeof detail, "poll %d read %zd signo %u code %d pid %u (want %d) uid %u",
             pr, r, rec[0].ssi_signo, rec[0].ssi_code, rec[0].ssi_pid, getpid(), rec[0].ssi_uid);
    report("signalfd_kill", pr == 1 && r == (ssize_t)sizeof rec[0] && rec[0].ssi_signo == SIGUSR1 &&
                                rec[0].ssi_code == SI_USER && rec[0].ssi_pid == (uint32_t)getpid() &&
                                rec[0].ssi_uid == getuid(), detail);
    syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
    r = read(fd, rec, sizeof rec);
    report("signalfd_tgkill", r == (ssize_t)sizeof rec[0] && rec[0].ssi_code == SI_TKILL &&
                                  rec[0].ssi_pid == (uint32_t)getpid(), "SI_TKILL");
    for (int i = 1; i <= 3; i++) {
        union sigval v = {.sival_int = i * 10};
        sigqueue(getpid(), SIGRTMIN, v);
    }
    r = read(fd, rec, sizeof rec);
    snprintf(detail, sizeof detail, "read %zd ints %d %d %d codes %d", r, rec[0].ssi_int,
             rec[1].ssi_int, rec[2].ssi_int, rec[0].ssi_code);
    report("signalfd_sigqueue_three_records", r == 3 * (ssize_t)sizeof rec[0] &&
                                                  rec[0].ssi_int == 10 && rec[1].ssi_int == 20 &&
                                                  rec[2].ssi_int == 30 &&
                                                  rec[0].ssi_code == SI_QUEUE &&
                                                  rec[2].ssi_ptr == 30 &&
                                                  rec[1].ssi_pid == (uint32_t)getpid(), detail);
    pid_t child = fork();
    if (child == 0)
        _exit(3);
    p.revents = 0;
    pr = poll(&p, 1, 10000);
    r = read(fd, rec, sizeof rec);
    waitpid(child, NULL, 0);
    snprintf(detail, sizeof detail, "read %zd signo %u code %d status %d pid %u", r,
             rec[0].ssi_signo, rec[0].ssi_code, rec[0].ssi_status, rec[0].ssi_pid);
    report("signalfd_sigchld", r == (ssize_t)sizeof rec[0] && rec[0].ssi_signo == SIGCHLD &&
                                   rec[0].ssi_code == CLD_EXITED && rec[0].ssi_status == 3 &&
                                   rec[0].ssi_pid == (uint32_t)child, detail);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGRTMIN;
    ev.sigev_value.sival_int = 9;
    timer_t t;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 0}, {0, 10000000}};
    timer_settime(t, 0, &its, NULL);
    /* A new mask for the same descriptor (the same signals here): returns the descriptor. */
    int bfd = signalfd(fd, &m, 0);
    p.revents = 0;
    pr = poll(&p, 1, 10000);
    r = read(fd, rec, sizeof rec);
    snprintf(detail, sizeof detail, "same fd %d read %zd code %d int %d overrun %u", bfd == fd, r,
             rec[0].ssi_code, rec[0].ssi_int, rec[0].ssi_overrun);
    report("signalfd_timer", bfd == fd && r == (ssize_t)sizeof rec[0] &&
                                 rec[0].ssi_code == SI_TIMER && rec[0].ssi_int == 9 &&
                                 rec[0].ssi_overrun == 0 &&
                                 rec[0].ssi_tid == (uint32_t)(intptr_t)t, detail);
    timer_delete(t);
    /* A narrower mask: SIGUSR1 is no longer read. */
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, SIGRTMIN);
    signalfd(fd, &only, 0);
    kill(getpid(), SIGUSR1);
    errno = 0;
    r = read(fd, rec, sizeof rec);
    report("signalfd_mask_update", r == -1 && errno == EAGAIN, "SIGUSR1 left out");
    sigset_t pend;
    sigpending(&pend);
    report("signalfd_leaves_others_pending", sigismember(&pend, SIGUSR1) == 1, "SIGUSR1 pending");
    struct timespec zero = {0, 0};
    sigtimedwait(&m, NULL, &zero);
    int efd = eventfd(0, 0);
    errno = 0;
    report("signalfd_not_signalfd", signalfd(efd, &m, 0) == -1 && errno == EINVAL, "an eventfd");
    close(efd);
    close(fd);
    sigprocmask(SIG_UNBLOCK, &m, NULL);
}

static volatile sig_atomic_t handled;
static siginfo_t seen;

static void handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    seen = *si;
    handled++;
}

static void sigqueue_handler_and_wait(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 2, &sa, NULL);
    union sigval v = {.sival_int = 1234};
    sigqueue(getpid(), SIGRTMIN + 2, v);
    snprintf(detail, sizeof detail, "handled %d code %d value %d pid %d", (int)handled,
             seen.si_code, seen.si_value.sival_int, seen.si_pid);
    report("sigqueue_to_handler", handled == 1 && seen.si_code == SI_QUEUE &&
                                      seen.si_value.sival_int == 1234 && seen.si_pid == getpid() &&
                                      seen.si_uid == getuid(), detail);
    block(SIGRTMIN + 2);
    v.sival_int = 55;
    sigqueue(getpid(), SIGRTMIN + 2, v);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 2);
    siginfo_t si;
    struct timespec to = {1, 0};
    int r = sigtimedwait(&s, &si, &to);
    report("sigqueue_to_sigtimedwait", r == SIGRTMIN + 2 && si.si_code == SI_QUEUE &&
                                           si.si_value.sival_int == 55 && si.si_pid == getpid(),
           "value through sigtimedwait");
    struct timespec short_to = {0, 20000000};
    errno = 0;
    r = sigtimedwait(&s, &si, &short_to);
    report("sigtimedwait_timeout", r == -1 && errno == EAGAIN, "EAGAIN after the timeout");
    struct timespec zero = {0, 0};
    errno = 0;
    r = sigtimedwait(&s, &si, &zero);
    report("sigtimedwait_poll", r == -1 && errno == EAGAIN, "EAGAIN with a zero timeout");
    struct timespec bad = {0, 1000000000};
    errno = 0;
    r = sigtimedwait(&s, &si, &bad);
    report("sigtimedwait_bad_timeout", r == -1 && errno == EINVAL, "tv_nsec 1e9");
    unblock(SIGRTMIN + 2);
}

static volatile int waiter_got;

static void *waiter(void *arg) {
    sigset_t *s = arg;
    siginfo_t si;
    waiter_got = sigwaitinfo(s, &si);
    return NULL;
}

/* A process-directed signal sent while every thread blocks it and none waits for it is
 * taken by the thread that waits for it later (a dedicated signal thread). */
static void sigwait_in_another_thread(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    kill(getpid(), SIGUSR2);
    pthread_t th;
    pthread_create(&th, NULL, waiter, &s);
    pthread_join(th, NULL);
    sigset_t pend;
    sigpending(&pend);
    report("sigwait_in_another_thread", waiter_got == SIGUSR2 && !sigismember(&pend, SIGUSR2),
           "the signal stayed with the main thread");
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

static void realtime_order(void) {
    int a = SIGRTMIN + 3, b = SIGRTMIN + 4;
    block(a);
    block(b);
    block(SIGUSR2);
    int order[][2] = {{b, 1}, {a, 2}, {a, 3}, {b, 4}};
    for (int i = 0; i < 4; i++) {
        union sigval v = {.sival_int = order[i][1]};
        sigqueue(getpid(), order[i][0], v);
    }
    kill(getpid(), SIGUSR2);
    kill(getpid(), SIGUSR2);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, a);
    sigaddset(&s, b);
    sigaddset(&s, SIGUSR2);
    char got[128] = "";
    struct timespec zero = {0, 0};
    siginfo_t si;
    int r;
    while ((r = sigtimedwait(&s, &si, &zero)) > 0) {
        char one[32];
        if (r == SIGUSR2)
            snprintf(one, sizeof one, "USR2 ");
        else
            snprintf(one, sizeof one, "%c%d ", r == a ? 'a' : 'b', si.si_value.sival_int);
        strncat(got, one, sizeof got - strlen(got) - 1);
    }
    report("realtime_order_and_multiplicity", strcmp(got, "USR2 a2 a3 b1 b4 ") == 0, got);
    unblock(a);
    unblock(b);
    unblock(SIGUSR2);
}

int main(void) {
    timerfd_poll();
    timerfd_absolute();
    timerfd_tiny_interval();
    signalfd_fields();
    sigqueue_handler_and_wait();
    realtime_order();
    sigwait_in_another_thread();
    printf("failures: %d\n", failures);
    return failures;
}
