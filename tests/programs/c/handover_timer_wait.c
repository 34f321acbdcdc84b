/* A POSIX timer that waits for its signal, across a kernel hand-over
 * (tests/tests/upgrade.rs): a periodic timer (CLOCK_MONOTONIC, every 20 ms, SIGRTMIN+2,
 * sigev_value 77) whose signal stays blocked, so that after its first expiry it waits for
 * the signal to be taken, counting the expirations it misses. Writes "ready" to OUT 100 ms
 * after arming and waits for the file GO; the caller upgrades the kernel in between. Then it
 * takes the signal (sigtimedwait), looks at once for a second one, waits for the next, and
 * writes to OUT what Linux gives:
 *   value V overrun-ok O second S next N
 * O is 1 when si_overrun is the number of expirations between the first one and the take
 * (within 2), S is 1 when a second signal was queued beside the first (a waiting timer
 * queues none; looked for at once, and counted only if the look came within half a period
 * of the take: a process descheduled longer meanwhile may see the next expiration's, on
 * Linux too), N is 1 when the next signal came within 1 s (the timer runs again once its
 * signal is taken). Any failure is a line starting with "error". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *out_path;

static long long ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static void say(const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.new", out_path);
    FILE *f = fopen(tmp, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, out_path) != 0) {
        perror(out_path);
        exit(1);
    }
}

static void fail(const char *what) {
    char line[256];
    snprintf(line, sizeof line, "error %s: %s\n", what, strerror(errno));
    say(line);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: handover-timer-wait OUT GO\n");
        return 2;
    }
    out_path = argv[1];
    int signo = SIGRTMIN + 2;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signo);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        fail("sigprocmask");
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = signo;
    ev.sigev_value.sival_int = 77;
    timer_t timer;
    if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0)
        fail("timer_create");
    struct itimerspec its = {.it_value = {0, 20000000}, .it_interval = {0, 20000000}};
    long long armed = ms();
    if (timer_settime(timer, 0, &its, NULL) != 0)
        fail("timer_settime");
    usleep(100000);
    say("ready\n");
    while (access(argv[2], F_OK) != 0)
        usleep(10000);
    struct timespec zero = {0, 0};
    siginfo_t si;
    if (sigtimedwait(&set, &si, &zero) != signo)
        fail("the first signal");
    long long taken = ms();
    long long missed = (taken - armed - 20) / 20;
    int overrun_ok = si.si_code == SI_TIMER && si.si_overrun >= missed - 2 &&
                     si.si_overrun <= missed + 2;
    siginfo_t again;
    int second = sigtimedwait(&set, &again, &zero) == signo && ms() - taken < 10;
    struct timespec second_wait = {1, 0};
    int next = sigtimedwait(&set, &again, &second_wait) == signo;
    char line[256];
    snprintf(line, sizeof line, "value %d overrun-ok %d second %d next %d\n",
             si.si_value.sival_int, overrun_ok, second, next);
    if (!overrun_ok)
        snprintf(line + strlen(line) - 1, sizeof line - strlen(line) + 1,
                 " (si_overrun %d, %lld expected)\n", si.si_overrun, missed);
    say(line);
    return 0;
}
