/* random-sources [--at-random]: every random source a program has gives fresh, unpredictable
 * bytes: getrandom (with its flags), /dev/urandom, /dev/random and AT_RANDOM (the 16 bytes
 * the C library seeds its stack protector and pointer guard from), different on every exec.
 * Statistical checks are loose (many standard deviations): they catch a broken generator,
 * not a subtle one. One line per case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the
 * number of failures. With --at-random it prints its AT_RANDOM bytes in hex and exits. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/random.h>
#include <sys/wait.h>
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

static int all_zero(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* Bits set and a chi-square over byte values, for n random bytes. */
static void looks_random(const char *what, const unsigned char *p, size_t n) {
    unsigned long counts[256] = {0}, ones = 0;
    for (size_t i = 0; i < n; i++) {
        counts[p[i]]++;
        ones += __builtin_popcount(p[i]);
    }
    double expected = n / 256.0, chi = 0;
    for (int i = 0; i < 256; i++)
        chi += (counts[i] - expected) * (counts[i] - expected) / expected;
    double frac = (double)ones / (8.0 * n);
    char name[96], d[96];
    snprintf(d, sizeof d, "ones %.5f, chi-square %.1f (255 expected)", frac, chi);
    /* 8 Mibit: sd of the fraction 0.00017; chi-square(255): sd 22.6. */
    snprintf(name, sizeof name, "%s: 1 MiB looks uniform", what);
    report(name, frac > 0.4985 && frac < 0.5015 && chi < 450, d);
}

static void read_dev(const char *path, unsigned char *p, size_t n) {
    int fd = open(path, O_RDONLY);
    size_t got = 0;
    while (fd >= 0 && got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r <= 0)
            break;
        got += r;
    }
    if (fd >= 0)
        close(fd);
    if (got != n)
        memset(p, 0, n);
}

static const char *self_path;

/* AT_RANDOM of a fresh exec of this program. */
static int exec_at_random(char out[33]) {
    int fd[2];
    if (pipe(fd) != 0)
        return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        execl(self_path, self_path, "--at-random", (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    ssize_t n = read(fd[0], out, 32);
    close(fd[0]);
    waitpid(pid, NULL, 0);
    out[n > 0 ? n : 0] = 0;
    return n == 32;
}

int main(int argc, char **argv) {
    unsigned char *at = (unsigned char *)getauxval(AT_RANDOM);
    if (argc > 1 && strcmp(argv[1], "--at-random") == 0) {
        for (int i = 0; i < 16; i++)
            printf("%02x", at ? at[i] : 0);
        return 0;
    }
    self_path = argv[0];
    static unsigned char a[1 << 20], b[1 << 20];

    size_t got = 0;
    while (got < sizeof a) {
        ssize_t r = getrandom(a + got, sizeof a - got, 0);
        if (r <= 0)
            break;
        got += r;
    }
    report("getrandom: 1 MiB", got == sizeof a, "short");
    looks_random("getrandom", a, sizeof a);
    unsigned char x[64], y[64];
    report("getrandom: two calls differ",
           getrandom(x, 64, 0) == 64 && getrandom(y, 64, 0) == 64 && memcmp(x, y, 64) != 0,
           "same bytes");
    report("getrandom: GRND_NONBLOCK, GRND_RANDOM",
           getrandom(x, 16, GRND_NONBLOCK) == 16 && getrandom(x, 16, GRND_RANDOM) == 16 &&
               !all_zero(x, 16),
           strerror(errno));
    errno = 0;
    report("getrandom: unknown flags are EINVAL", getrandom(x, 16, 0x80) == -1 && errno == EINVAL,
           strerror(errno));

    read_dev("/dev/urandom", b, sizeof b);
    looks_random("/dev/urandom", b, sizeof b);
    report("/dev/urandom differs from getrandom", memcmp(a, b, 4096) != 0, "same bytes");
    read_dev("/dev/random", x, 64);
    report("/dev/random", !all_zero(x, 64), "zeros");

    report("AT_RANDOM: present and not zero", at && !all_zero(at, 16), "missing or zero");
    char r1[33], r2[33], r3[33];
    int ok = exec_at_random(r1) && exec_at_random(r2) && exec_at_random(r3);
    char d[128];
    snprintf(d, sizeof d, "%s %s %s", r1, r2, r3);
    report("AT_RANDOM: different on every exec",
           ok && strcmp(r1, r2) != 0 && strcmp(r2, r3) != 0 && strcmp(r1, r3) != 0, d);

    printf("failures: %d\n", failures);
    return failures;
}
