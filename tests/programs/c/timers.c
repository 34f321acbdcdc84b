/* timers: alarm + pause, setitimer/getitimer (ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF),
 * POSIX timers (SIGEV_SIGNAL with overruns, SIGEV_THREAD_ID, SIGEV_NONE, absolute times,
 * CPU-time clocks, timer_delete), clock_nanosleep (TIMER_ABSTIME, a process CPU clock),
 * and what exec and fork do to timers. One line per case, "NAME: ok" or "NAME: FAIL ...";
 * the exit status is the number of failures. Nothing timing-dependent is printed, so the
 * output can be compared with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

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

static volatile sig_atomic_t hits[65];

static void count(int sig) { hits[sig]++; }

static void on(int sig, void (*h)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void mask(int how, int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    pthread_sigmask(how, &s, NULL);
}

static long long now_ns(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Spins until `*flag` becomes non-zero, for at most 20 s of wall time. */
static int spin_until(volatile sig_atomic_t *flag) {
    long long end = now_ns(CLOCK_MONOTONIC) + 20000000000LL;
    while (!*flag)
        if (now_ns(CLOCK_MONOTONIC) > end)
            return 0;
    return 1;
}

static void alarm_pause(void) {
    on(SIGALRM, count);
    hits[SIGALRM] = 0;
    unsigned first = alarm(7);
    unsigned left = alarm(1);
    int r = pause();
    snprintf(detail, sizeof detail, "first %u left %u pause %d errno %d hits %d", first, left,
             r, errno, (int)hits[SIGALRM]);
    report("alarm_pause", first == 0 && left == 7 && r == -1 && errno == EINTR &&
                              hits[SIGALRM] == 1, detail);
    report("alarm_cancel", alarm(0) == 0, "alarm(0) after expiry");
}

static void setitimer_interval(void) {
    on(SIGALRM, count);
    hits[SIGALRM] = 0;
    struct itimerval v = {{0, 10000}, {0, 10000}}, old, cur;
    int r = setitimer(ITIMER_REAL, &v, &old);
    while (hits[SIGALRM] < 5)
        pause();
    getitimer(ITIMER_REAL, &cur);
    int armed = cur.it_interval.tv_usec == 10000 && cur.it_value.tv_sec == 0 &&
                cur.it_value.tv_usec <= 10000;
    struct itimerval zero = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &zero, NULL);
    getitimer(ITIMER_REAL, &cur);
    int off = cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0 && cur.it_interval.tv_usec == 0;
    snprintf(detail, sizeof detail, "r %d old %ld.%06ld armed %d off %d", r,
             (long)old.it_value.tv_sec, (long)old.it_value.tv_usec, armed, off);
    report("setitimer_interval", r == 0 && old.it_value.tv_usec == 0 && armed && off, detail);
    struct itimerval bad = {{0, 0}, {0, 1000000}};
    errno = 0;
    report("setitimer_einval", setitimer(ITIMER_REAL, &bad, NULL) == -1 && errno == EINVAL,
           "tv_usec 1000000");
    errno = 0;
    report("getitimer_bad_which", getitimer(7, &cur) == -1 && errno == EINVAL, "which 7");
}

static void cpu_itimer(const char *name, int which, int sig) {
    on(sig, count);
    hits[sig] = 0;
    struct itimerval v = {{0, 0}, {0, 20000}};
    setitimer(which, &v, NULL);
    int got = spin_until(&hits[sig]);
    report(name, got && hits[sig] == 1, "no signal after 20 s of spinning");
}

static volatile sig_atomic_t tick;
static siginfo_t last;

static void info_handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    last = *si;
    tick++;
}

static void posix_overrun(void) {
    int sig = SIGRTMIN;
    mask(SIG_BLOCK, sig);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = 77;
    timer_t t;
    int r = timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 1000000}, {0, 1000000}};
    timer_settime(t, 0, &its, NULL);
    struct timespec nap = {0, 100000000};
    nanosleep(&nap, NULL);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    siginfo_t si;
    int got = sigwaitinfo(&s, &si);
    int ov = timer_getoverrun(t);
    snprintf(detail, sizeof detail, "r %d got %d code %d value %d overrun %d getoverrun %d", r,
             got, si.si_code, si.si_value.sival_int, si.si_overrun, ov);
    report("posix_signal_overrun", r == 0 && got == sig && si.si_code == SI_TIMER &&
                                       si.si_value.sival_int == 77 && si.si_overrun > 0 &&
                                       ov == si.si_overrun, detail);
    /* The timer goes on after the signal is taken: another one comes. */
    got = sigwaitinfo(&s, &si);
    report("posix_interval_goes_on", got == sig && si.si_code == SI_TIMER, "second signal");
    struct itimerspec cur;
    timer_gettime(t, &cur);
    report("posix_gettime_interval", cur.it_interval.tv_nsec == 1000000 && cur.it_value.tv_sec == 0,
           "interval read back");
    report("posix_delete", timer_delete(t) == 0, "timer_delete");
    errno = 0;
    report("posix_deleted_gettime", timer_gettime(t, &cur) == -1 && errno == EINVAL,
           "EINVAL after delete");
    /* Drain what the timer queued before it was deleted. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&s, &si, &zero) > 0)
        ;
    mask(SIG_UNBLOCK, sig);
}

static void posix_handler_absolute(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = info_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    tick = 0;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_ptr = (void *)0x1234;
    timer_t t;
    timer_create(CLOCK_REALTIME, &ev, &t);
    struct timespec when;
    clock_gettime(CLOCK_REALTIME, &when);
    when.tv_nsec += 30000000;
    if (when.tv_nsec >= 1000000000) {
        when.tv_sec++;
        when.tv_nsec -= 1000000000;
    }
    struct itimerspec its = {{0, 0}, when};
    timer_settime(t, TIMER_ABSTIME, &its, NULL);
    while (!tick)
        pause();
    long long late = now_ns(CLOCK_REALTIME) - (when.tv_sec * 1000000000LL + when.tv_nsec);
    struct itimerspec cur;
    timer_gettime(t, &cur);
    snprintf(detail, sizeof detail, "code %d ptr %p overrun %d late %lld", last.si_code,
             last.si_value.sival_ptr, last.si_overrun, late);
    report("posix_absolute_realtime", last.si_code == SI_TIMER &&
                                          last.si_value.sival_ptr == (void *)0x1234 &&
                                          last.si_overrun == 0 && late >= 0 &&
                                          cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec == 0,
           detail);
    timer_delete(t);
}

static void posix_none(void) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_NONE;
    timer_t t;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{2, 0}, {5, 0}}, cur;
    timer_settime(t, 0, &its, NULL);
    timer_gettime(t, &cur);
    report("posix_sigev_none", cur.it_interval.tv_sec == 2 && cur.it_value.tv_sec <= 4 + 1 &&
                                   (cur.it_value.tv_sec > 0 || cur.it_value.tv_nsec > 0),
           "remaining time of a SIGEV_NONE timer");
    timer_delete(t);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = 0;
    errno = 0;
    report("posix_bad_signal", timer_create(CLOCK_MONOTONIC, &ev, &t) == -1 && errno == EINVAL,
           "signal 0");
    errno = 0;
    report("posix_bad_clock", timer_create(12345, NULL, &t) == -1 && errno == EINVAL,
           "clock 12345");
    errno = 0;
    report("posix_raw_clock", timer_create(CLOCK_MONOTONIC_RAW, NULL, &t) == -1 &&
                                  errno == EOPNOTSUPP, "CLOCK_MONOTONIC_RAW");
    struct timespec tiny = {0, 1000};
    report("nanosleep_coarse_clock", clock_nanosleep(CLOCK_REALTIME_COARSE, 0, &tiny, NULL) ==
                                         EOPNOTSUPP, "CLOCK_REALTIME_COARSE");
    report("nanosleep_boottime", clock_nanosleep(CLOCK_BOOTTIME, 0, &tiny, NULL) == 0,
           "CLOCK_BOOTTIME");
}

static volatile pid_t worker_tid;
static volatile sig_atomic_t worker_got;
static volatile int worker_code;

static void *worker(void *arg) {
    (void)arg;
    worker_tid = (pid_t)syscall(SYS_gettid);
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGRTMIN + 1);
    siginfo_t si;
    int r = sigwaitinfo(&s, &si);
    worker_code = si.si_code;
    worker_got = r;
    return NULL;
}

static void posix_thread_id(void) {
    mask(SIG_BLOCK, SIGRTMIN + 1);
    pthread_t th;
    pthread_create(&th, NULL, worker, NULL);
    while (!worker_tid)
        sched_yield();
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGRTMIN + 1;
    ev.sigev_notify_thread_id = worker_tid;
    timer_t t;
    int r = timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 0}, {0, 20000000}};
    timer_settime(t, 0, &its, NULL);
    pthread_join(th, NULL);
    snprintf(detail, sizeof detail, "r %d got %d code %d", r, (int)worker_got, worker_code);
    report("posix_sigev_thread_id", r == 0 && worker_got == SIGRTMIN + 1 &&
                                        worker_code == SI_TIMER, detail);
    timer_delete(t);
    ev.sigev_notify_thread_id = 999999;
    errno = 0;
    report("posix_thread_id_unknown", timer_create(CLOCK_MONOTONIC, &ev, &t) == -1 &&
                                          errno == EINVAL, "tid 999999");
    mask(SIG_UNBLOCK, SIGRTMIN + 1);
}

static volatile sig_atomic_t thread_calls;
static volatile int thread_value;

static void on_expiry(union sigval v) {
    thread_value = v.sival_int;
    thread_calls++;
}

/* SIGEV_THREAD: the C library runs the function in a thread of its own (glibc and musl
 * build it on SIGEV_THREAD_ID and a helper thread waiting for the signal). */
static void posix_sigev_thread(void) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = on_expiry;
    ev.sigev_value.sival_int = 31;
    timer_t t;
    int r = timer_create(CLOCK_MONOTONIC, &ev, &t);
    struct itimerspec its = {{0, 5000000}, {0, 5000000}};
    timer_settime(t, 0, &its, NULL);
    long long end = now_ns(CLOCK_MONOTONIC) + 20000000000LL;
    while (thread_calls < 3 && now_ns(CLOCK_MONOTONIC) < end) {
        struct timespec nap = {0, 1000000};
        nanosleep(&nap, NULL);
    }
    timer_delete(t);
    snprintf(detail, sizeof detail, "r %d calls %d value %d", r, (int)thread_calls,
             thread_value);
    report("posix_sigev_thread", r == 0 && thread_calls >= 3 && thread_value == 31, detail);
}

static void posix_cpu_clock(void) {
    on(SIGUSR2, count);
    hits[SIGUSR2] = 0;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR2;
    timer_t t;
    int r = timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &t);
    long long start = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    struct itimerspec its = {{0, 0}, {0, 30000000}};
    timer_settime(t, 0, &its, NULL);
    int got = spin_until(&hits[SIGUSR2]);
    long long used = now_ns(CLOCK_PROCESS_CPUTIME_ID) - start;
    snprintf(detail, sizeof detail, "r %d got %d used %lld", r, got, used);
    report("posix_process_cpu_clock", r == 0 && got && used >= 30000000, detail);
    timer_delete(t);
    /* The calling thread's CPU clock. */
    hits[SIGUSR2] = 0;
    r = timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &t);
    start = now_ns(CLOCK_THREAD_CPUTIME_ID);
    timer_settime(t, 0, &its, NULL);
    got = spin_until(&hits[SIGUSR2]);
    used = now_ns(CLOCK_THREAD_CPUTIME_ID) - start;
    snprintf(detail, sizeof detail, "r %d got %d used %lld", r, got, used);
    report("posix_thread_cpu_clock", r == 0 && got && used >= 30000000, detail);
    timer_delete(t);
}

static volatile int stop_spinning;

static void *spinner(void *arg) {
    (void)arg;
    while (!stop_spinning)
        ;
    return NULL;
}

static void nanosleep_clocks(void) {
    long long target = now_ns(CLOCK_MONOTONIC) + 20000000;
    struct timespec ts = {target / 1000000000, target % 1000000000};
    int r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    report("clock_nanosleep_abstime", r == 0 && now_ns(CLOCK_MONOTONIC) >= target,
           "woke early");
    struct timespec rel = {0, 10000000};
    r = clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &rel, NULL);
    report("clock_nanosleep_own_thread_clock", r == EINVAL, "EINVAL");
    pthread_t th;
    stop_spinning = 0;
    pthread_create(&th, NULL, spinner, NULL);
    long long before = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    struct timespec cpu = {0, 30000000};
    r = clock_nanosleep(CLOCK_PROCESS_CPUTIME_ID, 0, &cpu, NULL);
    long long after = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    stop_spinning = 1;
    pthread_join(th, NULL);
    snprintf(detail, sizeof detail, "r %d used %lld", r, after - before);
    report("clock_nanosleep_process_cpu", r == 0 && after - before >= 30000000, detail);
}

/* After exec: the interval timer is still armed, the POSIX timer is gone. */
static int after_exec(void) {
    struct itimerval cur;
    getitimer(ITIMER_REAL, &cur);
    report("exec_keeps_itimer", cur.it_value.tv_sec > 0 && cur.it_value.tv_sec <= 100,
           "ITIMER_REAL after exec");
    struct itimerspec its;
    errno = 0;
    int r = syscall(SYS_timer_gettime, 0, &its);
    report("exec_deletes_posix_timers", r == -1 && errno == EINVAL, "timer 0 after exec");
    return failures;
}

static void exec_and_fork(const char *self) {
    struct itimerval v = {{0, 0}, {100, 0}};
    setitimer(ITIMER_REAL, &v, NULL);
    timer_t t;
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_NONE;
    timer_create(CLOCK_MONOTONIC, &ev, &t);
    pid_t pid = fork();
    if (pid == 0) {
        struct itimerval cur;
        getitimer(ITIMER_REAL, &cur);
        struct itimerspec its;
        int r = syscall(SYS_timer_gettime, 0, &its);
        _exit(cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0 && r == -1 ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    report("fork_inherits_no_timers", WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "the child has timers");
    pid = fork();
    if (pid == 0) {
        /* Timers of its own (fork gave it none), then exec. */
        setitimer(ITIMER_REAL, &v, NULL);
        timer_create(CLOCK_MONOTONIC, &ev, &t);
        execl(self, self, "after-exec", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &status, 0);
    report("exec_child", WIFEXITED(status) && WEXITSTATUS(status) == 0, "see above");
    struct itimerval zero = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &zero, NULL);
    timer_delete(t);
}

/* 4,096 periodic 1 ns timers whose signal is ignored, a 1 µs ITIMER_REAL with SIGALRM
 * ignored: the program still runs, and every timer goes away with timer_delete. */
static void timer_storm(void) {
    signal(SIGUSR1, SIG_IGN);
    signal(SIGALRM, SIG_IGN);
    static timer_t ids[4096];
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    struct itimerspec its = {{0, 1}, {0, 1}};
    int n = 0;
    while (n < 4096 && timer_create(CLOCK_MONOTONIC, &ev, &ids[n]) == 0) {
        timer_settime(ids[n], 0, &its, NULL);
        n++;
    }
    struct itimerval iv = {{0, 1}, {0, 1}};
    setitimer(ITIMER_REAL, &iv, NULL);
    long long end = now_ns(CLOCK_MONOTONIC) + 200000000LL;
    unsigned long spins = 0;
    while (now_ns(CLOCK_MONOTONIC) < end)
        spins++;
    struct itimerval zero = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &zero, NULL);
    int deleted = 0;
    for (int i = 0; i < n; i++)
        deleted += timer_delete(ids[i]) == 0;
    snprintf(detail, sizeof detail, "created %d deleted %d spins %lu", n, deleted, spins);
    report("timer_storm", n == 4096 && deleted == n && spins > 0, detail);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "after-exec") == 0) {
        /* Inherit the parent's alarm; do not let it fire. */
        return after_exec();
    }
    alarm_pause();
    setitimer_interval();
    cpu_itimer("itimer_virtual", ITIMER_VIRTUAL, SIGVTALRM);
    cpu_itimer("itimer_prof", ITIMER_PROF, SIGPROF);
    posix_overrun();
    posix_handler_absolute();
    posix_none();
    posix_thread_id();
    posix_sigev_thread();
    posix_cpu_clock();
    nanosleep_clocks();
    exec_and_fork(argv[0]);
    timer_storm();
    printf("failures: %d\n", failures);
    return failures;
}
