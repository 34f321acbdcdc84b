/* fork-copies [N]: after each of N forks (default 200) the parent and the child write their
 * stack and their thread-local variables at once, as every program does when fork returns.
 * The child must see the values of the fork instant, whatever the parent writes meanwhile,
 * and neither may see the other's writes afterwards. (pvmux gives a single-threaded
 * parent's child its own copy of these two pages at the fork instead of sharing them
 * copy-on-write.) Prints one line per check and "failures: N"; exits 0 only if all held. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static __thread long tls_value;

/* One fork; returns 0, or the bits of the checks that failed. */
static int one_fork(long i, volatile long *report) {
    volatile long on_stack = i;
    tls_value = i;
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid == 0) {
        int bad = (on_stack != i ? 1 : 0) | (tls_value != i ? 2 : 0);
        on_stack = i + 1000;
        tls_value = i + 1000;
        report[0] = on_stack + tls_value;
        _exit(bad);
    }
    on_stack = i + 2000;
    tls_value = i + 2000;
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return 4;
    int bad = WEXITSTATUS(st) << 3; /* 8: child's stack, 16: child's TLS */
    if (report[0] != 2 * (i + 1000))
        bad |= 32;
    if (on_stack != i + 2000)
        bad |= 64;
    if (tls_value != i + 2000)
        bad |= 128;
    return bad;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200;
    volatile long *report =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (report == MAP_FAILED) {
        perror("fork-copies: mmap");
        return 1;
    }
    int seen = 0;
    for (long i = 0; i < n; i++)
        seen |= one_fork(i, report);
    const struct {
        int bits;
        const char *what;
    } checks[] = {
        {1 | 4, "fork and wait"},
        {8 | 16, "the child sees the stack and TLS of the fork instant"},
        {32, "the child's own writes stay in its copy"},
        {64 | 128, "the parent's stack and TLS keep the parent's writes"},
    };
    int failures = 0;
    for (unsigned k = 0; k < sizeof checks / sizeof checks[0]; k++) {
        int ok = !(seen & checks[k].bits);
        failures += !ok;
        printf("%s: %s\n", checks[k].what, ok ? "ok" : "FAILED");
    }
    printf("failures: %d\n", failures);
    return failures != 0;
}
