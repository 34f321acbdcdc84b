/* edge-cases [ROUNDS]: Linux edge cases of lseek, open access modes, RLIMIT_CORE and clone racing
 * exit_group, checked against what Linux does. One line per case, "NAME: ok" or
 * "NAME: FAIL ..."; then "failures: N", and the exit status is N.
 *
 * - lseek: an offset that overflows (SEEK_CUR/SEEK_END beyond INT64_MAX, or below 0) is
 *   EINVAL (the sum wraps negative in the kernel), and the file offset is unchanged.
 * - open with access mode 3 ("ioctl only"): allowed on a regular file and on
 *   /dev/null, whose descriptor can neither read nor write (EBADF) but takes ioctls and
 *   fcntl, and reports access mode 3; O_TRUNC with it truncates; on a directory it is
 *   EISDIR (mode 3 asks for write access).
 * - RLIMIT_CORE: no core dump is ever written, so the limit is 0/0 (the test runs the native
 *   program with `ulimit -c 0`); setting it within the hard limit works, soft > hard is
 *   EINVAL, through setrlimit and prlimit.
 * - clone with CLONE_PARENT_SETTID/CLONE_CHILD_SETTID at an unwritable address: the fault is
 *   ignored, the child is created and runs.
 * - clone racing exit_group: ROUNDS (default 200) times a child process starts threads that create threads
 *   as fast as they can while its main thread calls exit_group (_exit(7)). A thread created
 *   while the process is exiting must not outlive it: every child must end with status 7
 *   (a child still running after 20 s is killed and counted as a failure). The first creator
 *   must start; a second one may find the task limit reached by the first (EAGAIN). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
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

/* The name of errno value `e` (the ones these cases can see). */
static const char *errname(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ESPIPE: return "ESPIPE";
    case ENXIO: return "ENXIO";
    case EOVERFLOW: return "EOVERFLOW";
    case EINTR: return "EINTR";
    case EFAULT: return "EFAULT";
    default: return "another errno";
    }
}

/* The result of a call that returned `r` with errno `e`, as text. */
static const char *outcome(long r, int e) {
    static char buf[64];
    if (r >= 0)
        snprintf(buf, sizeof buf, "returned %ld", r);
    else
        snprintf(buf, sizeof buf, "failed with %s", errname(e));
    return buf;
}

/* Checks that `r`/`e` is a failure with errno `want`. */
static void expect_errno(const char *name, long r, int e, int want) {
    char d[128];
    snprintf(d, sizeof d, "%s, expected %s", outcome(r, e), errname(want));
    report(name, r == -1 && e == want, d);
}

static void expect_value(const char *name, long r, int e, long want) {
    char d[128];
    snprintf(d, sizeof d, "%s, expected %ld", outcome(r, e), want);
    report(name, r == want, d);
}

/* Access mode 3, "ioctl only" (glibc's O_ACCMODE; musl's has O_PATH in it too). */
#define ACC3 3

static char dir[64];

static void lseek_cases(void) {
    char path[96];
    snprintf(path, sizeof path, "%s/ten", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "0123456789", 10) != 10) {
        report("lseek: setup", 0, strerror(errno));
        return;
    }
    long r = lseek(fd, 1, SEEK_SET);
    expect_value("lseek SEEK_SET 1", r, errno, 1);
    errno = 0;
    r = lseek(fd, INT64_MAX, SEEK_CUR);
    expect_errno("lseek SEEK_CUR +INT64_MAX from 1 overflows", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, INT64_MIN, SEEK_CUR);
    expect_errno("lseek SEEK_CUR INT64_MIN from 1 is negative", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, INT64_MAX, SEEK_END);
    expect_errno("lseek SEEK_END +INT64_MAX from 10 overflows", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, INT64_MAX - 5, SEEK_END);
    expect_errno("lseek SEEK_END +(INT64_MAX-5) from 10 overflows", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, -11, SEEK_END);
    expect_errno("lseek SEEK_END -11 from 10 is negative", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, -1, SEEK_SET);
    expect_errno("lseek SEEK_SET -1", r, errno, EINVAL);
    errno = 0;
    r = lseek(fd, 0, SEEK_CUR);
    expect_value("lseek: the offset is unchanged after the failures", r, errno, 1);
    close(fd);
    unlink(path);
}

static void accmode_cases(void) {
    char path[96];
    snprintf(path, sizeof path, "%s/file", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "data\n", 5) != 5) {
        report("open with access mode 3: setup", 0, strerror(errno));
        return;
    }
    close(fd);
    char c;
    errno = 0;
    fd = open(path, ACC3);
    report("open(file, 3) is allowed", fd >= 0, outcome(fd, errno));
    if (fd >= 0) {
        errno = 0;
        long r = read(fd, &c, 1);
        expect_errno("read of a file opened with access mode 3", r, errno, EBADF);
        errno = 0;
        r = write(fd, "x", 1);
        expect_errno("write of a file opened with access mode 3", r, errno, EBADF);
        errno = 0;
        r = pread(fd, &c, 1, 0);
        expect_errno("pread of a file opened with access mode 3", r, errno, EBADF);
        errno = 0;
        r = fcntl(fd, F_GETFL);
        expect_value("fcntl(F_GETFL) access mode of a file opened with access mode 3", r < 0 ? r : r & ACC3, errno,
                     ACC3);
        struct stat st;
        errno = 0;
        r = fstat(fd, &st);
        expect_value("fstat of a file opened with access mode 3", r < 0 ? r : (long)st.st_size, errno, 5);
        errno = 0;
        r = lseek(fd, 2, SEEK_SET);
        expect_value("lseek of a file opened with access mode 3", r, errno, 2);
        close(fd);
    }
    errno = 0;
    fd = open(path, ACC3 | O_TRUNC);
    struct stat st;
    long size = fd >= 0 && fstat(fd, &st) == 0 ? (long)st.st_size : -1;
    expect_value("open(file, 3|O_TRUNC) truncates", size, errno, 0);
    if (fd >= 0)
        close(fd);
    errno = 0;
    fd = open(dir, ACC3);
    expect_errno("open(directory, 3)", fd, errno, EISDIR);
    if (fd >= 0)
        close(fd);
    errno = 0;
    fd = open("/dev/null", ACC3);
    report("open(/dev/null, 3) is allowed", fd >= 0, outcome(fd, errno));
    if (fd >= 0) {
        errno = 0;
        long r = read(fd, &c, 1);
        expect_errno("read of /dev/null opened with access mode 3", r, errno, EBADF);
        errno = 0;
        r = write(fd, "x", 1);
        expect_errno("write of /dev/null opened with access mode 3", r, errno, EBADF);
        struct termios t;
        errno = 0;
        r = ioctl(fd, TCGETS, &t);
        expect_errno("ioctl(TCGETS) on /dev/null opened with access mode 3", r, errno, ENOTTY);
        close(fd);
    }
    unlink(path);
}

static void rlimit_core_cases(void) {
    struct rlimit rl = {1, 1};
    errno = 0;
    long r = getrlimit(RLIMIT_CORE, &rl);
    char d[128];
    snprintf(d, sizeof d, "%s: soft %llu hard %llu, expected 0 0", outcome(r, errno),
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    report("getrlimit(RLIMIT_CORE) is 0/0: no core dumps", r == 0 && rl.rlim_cur == 0 && rl.rlim_max == 0, d);
    struct rlimit zero = {0, 0};
    errno = 0;
    r = setrlimit(RLIMIT_CORE, &zero);
    expect_value("setrlimit(RLIMIT_CORE, 0/0) within the hard limit", r, errno, 0);
    struct rlimit bad = {1, 0};
    errno = 0;
    r = setrlimit(RLIMIT_CORE, &bad);
    expect_errno("setrlimit(RLIMIT_CORE, soft 1 > hard 0)", r, errno, EINVAL);
    struct rlimit old = {1, 1};
    errno = 0;
    r = prlimit(0, RLIMIT_CORE, &zero, &old);
    snprintf(d, sizeof d, "%s: old soft %llu hard %llu, expected 0 0", outcome(r, errno),
             (unsigned long long)old.rlim_cur, (unsigned long long)old.rlim_max);
    report("prlimit(RLIMIT_CORE, 0/0) returns the old 0/0", r == 0 && old.rlim_cur == 0 && old.rlim_max == 0, d);
    rl.rlim_cur = rl.rlim_max = 1;
    errno = 0;
    r = getrlimit(RLIMIT_CORE, &rl);
    snprintf(d, sizeof d, "%s: soft %llu hard %llu, expected 0 0", outcome(r, errno),
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
    report("getrlimit(RLIMIT_CORE) after setting it is still 0/0", r == 0 && rl.rlim_cur == 0 && rl.rlim_max == 0, d);
}

/* clone with CLONE_PARENT_SETTID or CLONE_CHILD_SETTID pointing at unmapped memory: Linux
 * ignores the fault (the child exists), so the call returns the child's pid. */
static void settid_cases(void) {
    const struct {
        const char *name;
        unsigned long flags;
        int *ptid, *ctid;
    } cases[] = {
        {"clone(CLONE_PARENT_SETTID) with an unwritable ptid still forks",
         SIGCHLD | CLONE_PARENT_SETTID, (int *)8, NULL},
        {"clone(CLONE_CHILD_SETTID) with an unwritable ctid still forks",
         SIGCHLD | CLONE_CHILD_SETTID, NULL, (int *)8},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        errno = 0;
        long pid = syscall(SYS_clone, cases[i].flags, 0L, cases[i].ptid, cases[i].ctid, 0L);
        if (pid == 0)
            _exit(5);
        int status = 0;
        char d[96];
        snprintf(d, sizeof d, "%s", outcome(pid, errno));
        if (pid > 0 && waitpid(pid, &status, 0) == pid)
            snprintf(d, sizeof d, "child status %#x, expected exit 5", status);
        report(cases[i].name, pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 5, d);
    }
}

/* clone racing exit_group. */
#define CREATORS 2
static int rounds = 200;

static atomic_int created;

static void *sleeper(void *arg) {
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void *creator(void *arg) {
    (void)arg;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 64 * 1024);
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, &a, sleeper, NULL) == 0)
            atomic_fetch_add(&created, 1);
        else
            sched_yield();
    }
    return NULL;
}

/* Exit status of a racer whose own creator thread did not start: RACER_NO_THREAD + the
 * error pthread_create returned (which the parent names). */
#define RACER_NO_THREAD 64

static void exit_racer(int round) {
    pthread_t t;
    for (int i = 0; i < CREATORS; i++) {
        int e = pthread_create(&t, NULL, creator, NULL);
        /* A creator that started may already have made as many threads as the task limit
         * allows before this thread runs again (one CPU; a guest kernel's limit is lower than
         * Linux's): then a later creator's EAGAIN is that limit, and the race goes on with
         * the creators that started. The first one must start (the previous child's threads
         * no longer count). */
        if (e == EAGAIN && i > 0)
            break;
        if (e != 0)
            _exit(RACER_NO_THREAD + (e < 64 ? e : 63));
    }
    /* exit_group after a few creations: mostly while a creator is inside clone. */
    while (atomic_load(&created) < round % 5 + 1)
        sched_yield();
    _exit(7);
}

static void clone_exit_cases(void) {
    int bad = 0, hung = 0;
    char d[160] = "";
    for (int i = 0; i < rounds; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(d, sizeof d, "round %d: fork failed with %s", i, errname(errno));
            bad++;
            break;
        }
        if (pid == 0)
            exit_racer(i);
        int status = 0;
        pid_t w = 0;
        for (int ms = 0; ms < 20000; ms++) {
            w = waitpid(pid, &status, WNOHANG);
            if (w != 0)
                break;
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (w == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (!hung++)
                snprintf(d, sizeof d, "round %d: the child was still running 20 s after exit_group", i);
            bad++;
        } else if (!(WIFEXITED(status) && WEXITSTATUS(status) == 7)) {
            if (!bad && WIFEXITED(status) && WEXITSTATUS(status) >= RACER_NO_THREAD)
                snprintf(d, sizeof d, "round %d: the child's pthread_create failed with %s", i,
                         errname(WEXITSTATUS(status) - RACER_NO_THREAD));
            else if (!bad)
                snprintf(d, sizeof d, "round %d: status %#x, expected exit 7", i, status);
            bad++;
        }
    }
    char name[96];
    snprintf(name, sizeof name, "clone racing exit_group: %d rounds, every child exited 7", rounds);
    report(name, bad == 0, d);
}

int main(int argc, char **argv) {
    if (argc > 1)
        rounds = atoi(argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    mkdir("/tmp", 0777);
    strcpy(dir, "/tmp/edge-cases-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("mkdtemp: %s\n", strerror(errno));
        return 100;
    }
    lseek_cases();
    accmode_cases();
    rlimit_core_cases();
    settid_cases();
    clone_exit_cases();
    rmdir(dir);
    printf("failures: %d\n", failures);
    return failures;
}
