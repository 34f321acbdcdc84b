/* poll-rules: what poll and select report for pipes and closed descriptors, and the
 * arguments they take: a pipe's write end without readers is POLLOUT and POLLERR, a read
 * end without writers POLLHUP, a closed descriptor POLLNVAL; select takes microseconds of a
 * second or more and an nfds beyond the descriptor table. One line per case, "NAME: ok" or
 * "NAME: FAIL ..."; the exit status is the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/syscall.h>
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

int main(void) {
    char d[128];
    int p[2];
    signal(SIGPIPE, SIG_IGN);

    pipe(p);
    close(p[0]);
    struct pollfd w = {p[1], POLLOUT, 0};
    int r = poll(&w, 1, 0);
    snprintf(d, sizeof d, "returned %d revents %#x", r, w.revents);
    report("poll: a write end without readers is POLLOUT|POLLERR",
           r == 1 && w.revents == (POLLOUT | POLLERR), d);
    struct pollfd w0 = {p[1], 0, 0};
    r = poll(&w0, 1, 0);
    snprintf(d, sizeof d, "returned %d revents %#x", r, w0.revents);
    report("poll: POLLERR is reported unasked", r == 1 && w0.revents == POLLERR, d);
    close(p[1]);

    pipe(p);
    close(p[1]);
    struct pollfd rd = {p[0], POLLIN, 0};
    r = poll(&rd, 1, 0);
    snprintf(d, sizeof d, "returned %d revents %#x", r, rd.revents);
    report("poll: a read end without writers is POLLHUP", r == 1 && rd.revents == POLLHUP, d);
    close(p[0]);

    struct pollfd bad[2] = {{p[0], POLLIN, 0}, {-1, POLLIN, 0}};
    r = poll(bad, 2, 0);
    snprintf(d, sizeof d, "returned %d revents %#x %#x", r, bad[0].revents, bad[1].revents);
    report("poll: a closed descriptor is POLLNVAL, a negative one skipped",
           r == 1 && bad[0].revents == POLLNVAL && bad[1].revents == 0, d);
    errno = 0;
    r = syscall(SYS_poll, bad, 1 << 20, 0); /* rejected before anything is read */
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("poll: more descriptors than RLIMIT_NOFILE is EINVAL", r == -1 && errno == EINVAL, d);

    /* select, called directly (the C libraries normalize a timeval and may use pselect6). */
    pipe(p);
    unsigned long sets[3][64]; /* room for any nfds the kernel may read */
    memset(sets, 0, sizeof sets);
    sets[1][p[1] / 64] |= 1ul << (p[1] % 64);
    struct timeval tv = {0, 1500000};
    errno = 0;
    r = syscall(SYS_select, p[1] + 1, NULL, sets[1], NULL, &tv);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("select: 1500000 microseconds is a valid timeout", r == 1, d);
    struct timeval neg = {0, -1};
    errno = 0;
    r = syscall(SYS_select, p[1] + 1, NULL, sets[1], NULL, &neg);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("select: a negative timeout is EINVAL", r == -1 && errno == EINVAL, d);
    memset(sets, 0, sizeof sets);
    sets[1][p[1] / 64] |= 1ul << (p[1] % 64);
    struct timeval zero = {0, 0};
    errno = 0;
    r = syscall(SYS_select, 2000, NULL, sets[1], NULL, &zero);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("select: an nfds beyond the table is cut to it", r == 1, d);
    errno = 0;
    r = syscall(SYS_select, -1, NULL, NULL, NULL, &zero);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("select: a negative nfds is EINVAL", r == -1 && errno == EINVAL, d);
    close(p[0]);
    close(p[1]);
    printf("failures: %d\n", failures);
    return failures;
}
