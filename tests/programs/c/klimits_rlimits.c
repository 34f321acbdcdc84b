/* Issue 10 (the guest kernel survives any program): resource limits are kept per process,
 * enforced, and inherited by fork, as Linux. Usage: klimits-rlimits [nproc]. Without an
 * argument: RLIMIT_NOFILE (what setrlimit/getrlimit/prlimit report, open until EMFILE, dup2
 * and F_DUPFD beyond the limit, poll with more entries than the limit, fork inherits the
 * limits). With "nproc": RLIMIT_NPROC (fork until EAGAIN; Linux exempts root, the guest
 * kernel does not). With "sigpending": RLIMIT_SIGPENDING (sigqueue of a blocked real-time
 * signal until EAGAIN, then every one taken back in order). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *name(int e) {
    switch (e) {
    case 0: return "ok";
    case EMFILE: return "EMFILE";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    default: return "other";
    }
}

static void show(const char *what, int resource) {
    struct rlimit r;
    getrlimit(resource, &r);
    printf("%s: soft %lld hard %lld\n", what, (long long)r.rlim_cur, (long long)r.rlim_max);
}

static int nofile(void) {
    for (int fd = 3; fd < 1024; fd++)
        close(fd); /* whatever the caller left open */
    struct rlimit r = {.rlim_cur = 200, .rlim_max = 400};
    printf("setrlimit NOFILE 200/400: %s\n", name(setrlimit(RLIMIT_NOFILE, &r) ? errno : 0));
    show("NOFILE", RLIMIT_NOFILE);
    struct rlimit bad = {.rlim_cur = 500, .rlim_max = 400};
    printf("soft above hard: %s\n", name(setrlimit(RLIMIT_NOFILE, &bad) ? errno : 0));
    struct rlimit old, nl = {.rlim_cur = 150, .rlim_max = 400};
    printf("prlimit: %s\n", name(prlimit(0, RLIMIT_NOFILE, &nl, &old) ? errno : 0));
    printf("prlimit old: soft %lld hard %lld\n", (long long)old.rlim_cur, (long long)old.rlim_max);
    show("NOFILE", RLIMIT_NOFILE);
    r.rlim_cur = 200;
    setrlimit(RLIMIT_NOFILE, &r);
    /* Open until the limit. */
    int n = 0, last = -1, e = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY);
        if (fd < 0) {
            e = errno;
            break;
        }
        last = fd;
        n++;
        if (n > 100000)
            break;
    }
    printf("opened %d, last fd %d, then %s\n", n, last, name(e));
    int p[2];
    printf("pipe at the limit: %s\n", name(pipe(p) ? errno : 0));
    close(last);
    printf("dup2 to 250: %s\n", name(dup2(0, 250) < 0 ? errno : 0));
    printf("dup2 to 199: %s\n", name(dup2(0, 199) < 0 ? errno : 0));
    close(199);
    printf("F_DUPFD 300: %s\n", name(fcntl(0, F_DUPFD, 300) < 0 ? errno : 0));
    struct pollfd pf[256];
    memset(pf, 0, sizeof pf);
    for (int i = 0; i < 256; i++)
        pf[i].fd = -1;
    printf("poll 256 entries: %s\n", name(poll(pf, 256, 0) < 0 ? errno : 0));
    printf("poll 200 entries: %s\n", name(poll(pf, 200, 0) < 0 ? errno : 0));
    /* Lowering the limit below open descriptors keeps them. */
    struct rlimit low = {.rlim_cur = 10, .rlim_max = 400};
    setrlimit(RLIMIT_NOFILE, &low);
    printf("fd 150 still open after lowering: %s\n", name(fcntl(150, F_GETFD) < 0 ? errno : 0));
    printf("open after lowering: %s\n", name(open("/dev/null", O_RDONLY) < 0 ? errno : 0));
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    /* Other limits are kept and reported. */
    struct rlimit st = {.rlim_cur = 4 << 20, .rlim_max = 64 << 20};
    setrlimit(RLIMIT_STACK, &st);
    struct rlimit core = {.rlim_cur = 0, .rlim_max = 0};
    setrlimit(RLIMIT_CORE, &core);
    struct rlimit sp = {.rlim_cur = 77, .rlim_max = 99};
    setrlimit(RLIMIT_SIGPENDING, &sp);
    /* fork inherits. */
    pid_t c = fork();
    if (c == 0) {
        show("child NOFILE", RLIMIT_NOFILE);
        show("child STACK", RLIMIT_STACK);
        show("child CORE", RLIMIT_CORE);
        show("child SIGPENDING", RLIMIT_SIGPENDING);
        int k = 0;
        while (open("/dev/null", O_RDONLY) >= 0)
            k++;
        printf("child opened %d then %s\n", k, name(errno));
        _exit(0);
    }
    int status;
    waitpid(c, &status, 0);
    printf("child status %d\n", status);
    /* execve keeps them (the program re-runs itself). */
    return 0;
}

static int nproc(void) {
    struct rlimit r = {.rlim_cur = 8, .rlim_max = 8};
    setrlimit(RLIMIT_NPROC, &r);
    show("NPROC", RLIMIT_NPROC);
    int n = 0, e = 0;
    pid_t kids[64];
    for (; n < 64; n++) {
        pid_t c = fork();
        if (c < 0) {
            e = errno;
            break;
        }
        if (c == 0) {
            pause();
            _exit(0);
        }
        kids[n] = c;
    }
    printf("forked %d then %s\n", n, name(e));
    for (int i = 0; i < n; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    pid_t c = fork();
    if (c == 0)
        _exit(7);
    int status = 0;
    waitpid(c, &status, 0);
    printf("fork after the children ended: %s, status %d\n", c > 0 ? "ok" : name(errno),
           WEXITSTATUS(status));
    return 0;
}

static int sigpending_limit(void) {
    struct rlimit r = {.rlim_cur = 100, .rlim_max = 100};
    setrlimit(RLIMIT_SIGPENDING, &r);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int n = 0, e = 0;
    for (; n < 100000; n++) {
        union sigval v = {.sival_int = n};
        if (sigqueue(getpid(), SIGRTMIN, v) != 0) {
            e = errno;
            break;
        }
    }
    printf("queued %d then %s\n", n, name(e));
    int in_order = 1, taken = 0;
    siginfo_t si;
    struct timespec zero = {0, 0};
    while (sigtimedwait(&set, &si, &zero) == SIGRTMIN) {
        if (si.si_value.sival_int != taken)
            in_order = 0;
        taken++;
    }
    printf("taken back %d, in order: %s\n", taken, in_order ? "yes" : "no");
    union sigval v = {.sival_int = 0};
    printf("sigqueue after: %s\n", name(sigqueue(getpid(), SIGRTMIN, v) ? errno : 0));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "nproc") == 0)
        return nproc();
    if (argc > 1 && strcmp(argv[1], "sigpending") == 0)
        return sigpending_limit();
    return nofile();
}
