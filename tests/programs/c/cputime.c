/* cputime: the CPU time the kernel accounts is real and consistent: getrusage (self,
 * children, thread), wait4's rusage, times(), SIGCHLD's si_utime, and the CPU-time clocks.
 * Work is counted, never timed: a loop of a fixed number of iterations certainly takes more
 * than 10 ms of user time, and no thread can use more CPU time than the time that passed.
 * One line per case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the number of
 * failures. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Iterations of the busy loop: ~0.2-1 s of CPU, certainly more than MIN_CPU_NS. */
#define SPIN 200000000UL
#define MIN_CPU_NS (10 * 1000 * 1000LL)

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

static long long tv_ns(struct timeval tv) {
    return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
}

static long long clock_ns(clockid_t c) {
    struct timespec ts;
    if (clock_gettime(c, &ts) != 0)
        return -1;
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static volatile unsigned long sink;

static void spin(unsigned long n) {
    unsigned long x = 1;
    for (unsigned long i = 0; i < n; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
}

static char d[256];

static void self(void) {
    long long wall0 = clock_ns(CLOCK_MONOTONIC);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    spin(SPIN);
    getrusage(RUSAGE_SELF, &r1);
    long long wall = clock_ns(CLOCK_MONOTONIC) - wall0;
    long long user = tv_ns(r1.ru_utime) - tv_ns(r0.ru_utime);
    long long sys = tv_ns(r1.ru_stime) - tv_ns(r0.ru_stime);
    snprintf(d, sizeof d, "user %lld ns, system %lld ns, wall %lld ns", user, sys, wall);
    report("RUSAGE_SELF: a busy loop is user time", user >= MIN_CPU_NS, d);
    report("RUSAGE_SELF: no more CPU time than time passed", user + sys <= wall + 2000000, d);

    /* System time: the kernel's work for system calls that copy a lot (256 MiB at a time).
     * Linux splits CPU time into user and system by its timer ticks, so a short copy can
     * show none: go on (at most 2 s) until some shows. */
    static char buf[1 << 20];
    int zfd = open("/dev/zero", O_RDONLY);
    long long copy0 = clock_ns(CLOCK_MONOTONIC);
    getrusage(RUSAGE_SELF, &r0);
    do {
        for (int i = 0; i < 256; i++)
            if (read(zfd, buf, sizeof buf) != sizeof buf)
                break;
        getrusage(RUSAGE_SELF, &r1);
    } while (tv_ns(r1.ru_stime) == tv_ns(r0.ru_stime) &&
             clock_ns(CLOCK_MONOTONIC) - copy0 < 2000000000LL);
    close(zfd);
    sys = tv_ns(r1.ru_stime) - tv_ns(r0.ru_stime);
    snprintf(d, sizeof d, "system %lld ns", sys);
    report("RUSAGE_SELF: system calls are system time", sys > 0, d);
    report("RUSAGE_SELF: maxrss", r1.ru_maxrss > 0, "0");

    /* Page faults: first touches of 4 MiB of fresh memory. */
    char *mem = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < (4 << 20); i += 4096)
        mem[i] = 1;
    getrusage(RUSAGE_SELF, &r0);
    snprintf(d, sizeof d, "minflt %ld -> %ld", r1.ru_minflt, r0.ru_minflt);
    report("RUSAGE_SELF: first touches are minor faults", r0.ru_minflt > r1.ru_minflt, d);
    munmap(mem, 4 << 20);

    long long tc = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    long long pc = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    snprintf(d, sizeof d, "process %lld, thread %lld, rusage %lld", pc, tc,
             tv_ns(r0.ru_utime) + tv_ns(r0.ru_stime));
    report("CLOCK_PROCESS_CPUTIME_ID covers getrusage",
           pc >= tv_ns(r0.ru_utime) + tv_ns(r0.ru_stime) - 1000, d);
    report("CLOCK_THREAD_CPUTIME_ID of the only thread", tc >= MIN_CPU_NS && tc <= pc + 1000,
           d);
    clockid_t cid;
    long long pid_clock = -1;
    if (clock_getcpuclockid(0, &cid) == 0)
        pid_clock = clock_ns(cid);
    snprintf(d, sizeof d, "clock_getcpuclockid clock %lld, process clock %lld", pid_clock, pc);
    report("clock_getcpuclockid(0) is the process clock", pid_clock >= pc, d);

    struct tms t;
    times(&t);
    long hz = sysconf(_SC_CLK_TCK);
    snprintf(d, sizeof d, "tms_utime %ld ticks at %ld Hz", (long)t.tms_utime, hz);
    report("times: tms_utime", hz == 100 && t.tms_utime >= 1, d);
}

static volatile long long child_utime_ticks = -1;

static void on_chld(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    child_utime_ticks = si->si_utime;
}

static void children(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_chld;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    struct rusage before, after, ru;
    getrusage(RUSAGE_CHILDREN, &before);
    pid_t pid = fork();
    if (pid == 0) {
        spin(SPIN);
        _exit(0);
    }
    int st;
    wait4(pid, &st, 0, &ru);
    getrusage(RUSAGE_CHILDREN, &after);
    long long w4 = tv_ns(ru.ru_utime);
    long long ch = tv_ns(after.ru_utime) - tv_ns(before.ru_utime);
    snprintf(d, sizeof d, "wait4 user %lld ns, RUSAGE_CHILDREN grew by %lld ns", w4, ch);
    report("wait4: the child's user time", w4 >= MIN_CPU_NS, d);
    report("RUSAGE_CHILDREN: the reaped child's time", ch >= w4 - 1000, d);
    struct tms t;
    times(&t);
    snprintf(d, sizeof d, "tms_cutime %ld", (long)t.tms_cutime);
    report("times: tms_cutime", t.tms_cutime >= 1, d);
    snprintf(d, sizeof d, "si_utime %lld ticks", child_utime_ticks);
    report("SIGCHLD: si_utime", child_utime_ticks >= 1, d);
    signal(SIGCHLD, SIG_DFL);

    /* A grandchild's time reaches the grandparent through the child's wait. */
    getrusage(RUSAGE_CHILDREN, &before);
    pid = fork();
    if (pid == 0) {
        pid_t g = fork();
        if (g == 0) {
            spin(SPIN);
            _exit(0);
        }
        waitpid(g, NULL, 0);
        _exit(0);
    }
    wait4(pid, &st, 0, &ru);
    getrusage(RUSAGE_CHILDREN, &after);
    ch = tv_ns(after.ru_utime) - tv_ns(before.ru_utime);
    snprintf(d, sizeof d, "wait4 user %lld ns, RUSAGE_CHILDREN grew by %lld ns",
             tv_ns(ru.ru_utime), ch);
    report("a reaped grandchild counts for the grandparent",
           tv_ns(ru.ru_utime) >= MIN_CPU_NS && ch >= MIN_CPU_NS, d);
}

static long long thread_cpu[2];

static void *worker(void *arg) {
    long i = (long)arg;
    spin(SPIN);
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    thread_cpu[i] = tv_ns(r.ru_utime) + tv_ns(r.ru_stime);
    return NULL;
}

static void threads(void) {
    struct rusage before, after, mine;
    getrusage(RUSAGE_SELF, &before);
    getrusage(RUSAGE_THREAD, &mine);
    long long main_before = tv_ns(mine.ru_utime);
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    getrusage(RUSAGE_SELF, &after);
    getrusage(RUSAGE_THREAD, &mine);
    long long grew = tv_ns(after.ru_utime) + tv_ns(after.ru_stime) - tv_ns(before.ru_utime) -
                     tv_ns(before.ru_stime);
    snprintf(d, sizeof d, "threads %lld + %lld ns, process grew by %lld ns", thread_cpu[0],
             thread_cpu[1], grew);
    report("RUSAGE_THREAD: each thread's own time",
           thread_cpu[0] >= MIN_CPU_NS && thread_cpu[1] >= MIN_CPU_NS, d);
    report("RUSAGE_SELF: includes ended threads",
           grew >= thread_cpu[0] + thread_cpu[1] - 2000000, d);
    snprintf(d, sizeof d, "main thread user %lld -> %lld ns", main_before, tv_ns(mine.ru_utime));
    report("RUSAGE_THREAD: not the other threads' time",
           tv_ns(mine.ru_utime) - main_before < MIN_CPU_NS, d);
}

int main(void) {
    self();
    children();
    threads();
    printf("failures: %d\n", failures);
    return failures;
}
