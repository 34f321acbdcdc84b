/* Event objects across a kernel hand-over (tests/tests/upgrade.rs): sets up an eventfd
 * (EFD_SEMAPHORE | EFD_NONBLOCK, count 5), a periodic timerfd (CLOCK_MONOTONIC, every
 * 100 ms), a signalfd for SIGUSR1 with SIGUSR1 blocked and pending, a pipe holding "abc",
 * an epoll over them (data words 0x1001 eventfd level-triggered, 0x1002 timerfd
 * edge-triggered, 0x1003 signalfd, 0x1004 the pipe one-shot) and a second epoll holding the
 * first (0x2001). A first epoll_wait reports them (and so disables the one-shot pipe), then
 * it writes "ready" to OUT and waits for the file GO. The caller upgrades the kernel in
 * between. Then it writes one line to OUT of what Linux gives:
 *   outer DATA.. inner DATA.. eventfd-reads N nonblock B signo S pid-ok P
 *   timer-interval NS timer-on-schedule T oneshot-silent O rearmed DATA pipe STR
 * and exits 0; any failure is a line starting with "error". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static FILE *out;

static void fail(const char *what) {
    fprintf(out, "error %s: %s\n", what, strerror(errno));
    fclose(out);
    exit(1);
}

static long long ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static int cmp(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The data words one epoll_wait(timeout 0) reports, sorted, as text. */
static void ready(int ep, char *buf, size_t len) {
    struct epoll_event ev[16];
    int n = epoll_wait(ep, ev, 16, 0);
    if (n < 0)
        fail("epoll_wait");
    uint64_t d[16];
    for (int i = 0; i < n; i++)
        d[i] = ev[i].data.u64;
    qsort(d, (size_t)n, sizeof d[0], cmp);
    buf[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%llx", i ? "," : "",
                 (unsigned long long)d[i]);
    if (n == 0)
        snprintf(buf, len, "none");
}

static void add(int ep, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        fail("epoll_ctl");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: handover-events OUT GO\n");
        return 2;
    }
    out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    int efd = eventfd(5, EFD_SEMAPHORE | EFD_NONBLOCK);
    if (efd < 0)
        fail("eventfd");
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (tfd < 0)
        fail("timerfd_create");
    struct itimerspec its = {.it_value = {0, 100000000}, .it_interval = {0, 100000000}};
    long long armed = ms();
    if (timerfd_settime(tfd, 0, &its, NULL) != 0)
        fail("timerfd_settime");
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK);
    if (sfd < 0)
        fail("signalfd");
    kill(getpid(), SIGUSR1);
    int p[2];
    if (pipe(p) != 0 || write(p[1], "abc", 3) != 3)
        fail("pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int outer = epoll_create1(0);
    if (ep < 0 || outer < 0)
        fail("epoll_create1");
    add(ep, efd, EPOLLIN, 0x1001);
    add(ep, tfd, EPOLLIN | EPOLLET, 0x1002);
    add(ep, sfd, EPOLLIN, 0x1003);
    add(ep, p[0], EPOLLIN | EPOLLONESHOT, 0x1004);
    add(outer, ep, EPOLLIN, 0x2001);
    /* Let the timer fire once, then report everything once (the one-shot pipe fires). */
    usleep(150000);
    char before[128];
    ready(ep, before, sizeof before);
    fprintf(out, "ready %s\n", before);
    fflush(out);
    while (access(argv[2], F_OK) != 0)
        usleep(10000);
    /* After the (possible) switch. */
    char outer_ready[128], inner[128];
    ready(outer, outer_ready, sizeof outer_ready);
    ready(ep, inner, sizeof inner);
    int reads = 0;
    uint64_t v;
    while (read(efd, &v, 8) == 8) {
        if (v != 1)
            fail("a semaphore read not 1");
        reads++;
    }
    if (errno != EAGAIN)
        fail("eventfd read");
    int nonblock = (fcntl(efd, F_GETFL) & O_NONBLOCK) != 0;
    struct signalfd_siginfo si;
    if (read(sfd, &si, sizeof si) != sizeof si)
        fail("signalfd read");
    int pid_ok = si.ssi_pid == (uint32_t)getpid();
    /* The timer's expirations so far, then five more read blocking: on schedule if their
     * sum is what 100 ms periods since arming give (one either way for the edges). */
    uint64_t total = 0;
    if (read(tfd, &v, 8) == 8)
        total += v;
    int fl = fcntl(tfd, F_GETFL);
    fcntl(tfd, F_SETFL, fl & ~O_NONBLOCK);
    for (int i = 0; i < 5; i++) {
        if (read(tfd, &v, 8) != 8)
            fail("timerfd read");
        total += v;
    }
    long long periods = (ms() - armed) / 100;
    int on_schedule = (long long)total >= periods - 1 && (long long)total <= periods + 1;
    struct itimerspec cur;
    if (timerfd_gettime(tfd, &cur) != 0)
        fail("timerfd_gettime");
    /* The one-shot pipe stays silent until re-armed; then it reports, its bytes there. */
    char silent[128], rearmed[128];
    ready(ep, silent, sizeof silent);
    struct epoll_event mod = {.events = EPOLLIN | EPOLLONESHOT, .data.u64 = 0x1004};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, p[0], &mod) != 0)
        fail("epoll_ctl MOD");
    ready(ep, rearmed, sizeof rearmed);
    char buf[8] = {0};
    if (read(p[0], buf, sizeof buf - 1) != 3)
        fail("pipe read");
    fprintf(out,
            "outer %s inner %s eventfd-reads %d nonblock %d signo %u pid-ok %d "
            "timer-interval %lld timer-on-schedule %d oneshot-silent %d rearmed %s pipe %s\n",
            outer_ready, inner, reads, nonblock, si.ssi_signo, pid_ok,
            (long long)cur.it_interval.tv_sec * 1000000000LL + cur.it_interval.tv_nsec,
            on_schedule, strcmp(silent, "none") == 0, rearmed, buf);
    fclose(out);
    return 0;
}
