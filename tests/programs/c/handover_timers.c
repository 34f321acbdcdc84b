/* Timers across a kernel hand-over (tests/tests/upgrade.rs): arms `alarm(S)` (ITIMER_REAL,
 * SIGALRM) and a POSIX timer on CLOCK_MONOTONIC (SIGRTMIN+1 to this thread with
 * SIGEV_THREAD_ID, sigev_value 4242) due in S + 0.5 s, writes "armed" to OUT, waits for both
 * signals, then writes to OUT what arrived and when, in ms after arming:
 *   alarm MS posix MS value V timerid ID overrun N
 * The caller upgrades the kernel in between; the times must be as without a switch. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if !defined(sigev_notify_thread_id) && defined(__GLIBC__)
#define sigev_notify_thread_id _sigev_un._tid
#endif

static long long ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
    if (argc != 3 || atoi(argv[2]) <= 0) {
        fprintf(stderr, "usage: handover-timers OUT SECONDS\n");
        return 2;
    }
    unsigned secs = (unsigned)atoi(argv[2]);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGRTMIN + 1;
    ev.sigev_value.sival_int = 4242;
    ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    timer_t id;
    if (timer_create(CLOCK_MONOTONIC, &ev, &id) != 0) {
        perror("timer_create");
        return 1;
    }
    long long start = ms();
    struct itimerspec its = {.it_value = {secs, 500000000}};
    if (timer_settime(id, 0, &its, NULL) != 0) {
        perror("timer_settime");
        return 1;
    }
    alarm(secs);
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    fprintf(f, "armed\n");
    fflush(f);
    long long alarm_at = -1, posix_at = -1;
    int value = 0, timerid = -1, overrun = -1;
    while (alarm_at < 0 || posix_at < 0) {
        siginfo_t si;
        int s = sigwaitinfo(&set, &si);
        if (s == SIGALRM) {
            alarm_at = ms() - start;
        } else if (s == SIGRTMIN + 1) {
            posix_at = ms() - start;
            value = si.si_value.sival_int;
            timerid = si.si_timerid;
            overrun = si.si_overrun;
        }
    }
    rewind(f);
    fprintf(f, "alarm %lld posix %lld value %d timerid %d overrun %d\n", alarm_at, posix_at,
            value, timerid, overrun);
    fclose(f);
    return 0;
}
