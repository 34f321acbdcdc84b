/* siginfo: what a signal's siginfo_t says about its sender, for kill, tgkill, sigqueue,
 * SIGCHLD, sigwaitinfo and waitid; how standard signals merge and real-time ones queue. One
 * line per case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the number of failures.
 * The output is deterministic (no pids), so it can be compared with the native run. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* What the last handler invocations saw. */
#define MAX_SEEN 16
static volatile int nseen;
static siginfo_t seen[MAX_SEEN];

static void handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)ctx;
    if (nseen < MAX_SEEN)
        seen[nseen] = *si;
    nseen++;
}

static void catch(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

static void block(int sig, int how) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(how, &s, NULL);
}

static char detail[256];

static void describe(const siginfo_t *si) {
    snprintf(detail, sizeof detail, "signo %d code %d pid %d (want %d) uid %d status %d",
             si->si_signo, si->si_code, si->si_pid, getpid(), si->si_uid, si->si_status);
}

static void kill_self(void) {
    catch(SIGUSR1);
    nseen = 0;
    kill(getpid(), SIGUSR1);
    describe(&seen[0]);
    report("kill: si_pid, si_uid, SI_USER",
           nseen == 1 && seen[0].si_signo == SIGUSR1 && seen[0].si_code == SI_USER &&
               seen[0].si_pid == getpid() && seen[0].si_uid == getuid(),
           detail);
}

static void kill_from_child(void) {
    catch(SIGUSR2);
    block(SIGUSR2, SIG_BLOCK);
    nseen = 0;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        kill(parent, SIGUSR2);
        _exit(0);
    }
    waitpid(pid, NULL, 0);
    block(SIGUSR2, SIG_UNBLOCK);
    snprintf(detail, sizeof detail, "seen %d, si_pid %d, child %d", nseen, seen[0].si_pid, pid);
    report("kill from a child: si_pid is the child",
           nseen == 1 && seen[0].si_pid == pid && seen[0].si_code == SI_USER, detail);
}

static void tgkill_self(void) {
    catch(SIGUSR1);
    nseen = 0;
    syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1);
    describe(&seen[0]);
    report("tgkill: SI_TKILL with the sender", nseen == 1 && seen[0].si_code == SI_TKILL &&
                                                   seen[0].si_pid == getpid(),
           detail);
    nseen = 0;
    syscall(SYS_tkill, gettid(), SIGUSR1);
    describe(&seen[0]);
    report("tkill: SI_TKILL with the sender", nseen == 1 && seen[0].si_code == SI_TKILL &&
                                                  seen[0].si_pid == getpid(),
           detail);
    errno = 0;
    long r = syscall(SYS_tgkill, getpid() + 100000, gettid(), SIGUSR1);
    report("tgkill with the wrong tgid: ESRCH", r == -1 && errno == ESRCH, strerror(errno));
    errno = 0;
    r = syscall(SYS_tgkill, -1, gettid(), SIGUSR1);
    report("tgkill with a negative tgid: EINVAL", r == -1 && errno == EINVAL, strerror(errno));
}

static void sigqueue_value(void) {
    catch(SIGRTMIN);
    nseen = 0;
    union sigval v = {.sival_int = 42};
    sigqueue(getpid(), SIGRTMIN, v);
    describe(&seen[0]);
    report("sigqueue: SI_QUEUE, si_pid, si_value",
           nseen == 1 && seen[0].si_code == SI_QUEUE && seen[0].si_pid == getpid() &&
               seen[0].si_value.sival_int == 42,
           detail);
}

static void queueing(void) {
    /* Real-time signals queue, in order, with their values. */
    catch(SIGRTMIN + 1);
    block(SIGRTMIN + 1, SIG_BLOCK);
    nseen = 0;
    for (int i = 1; i <= 3; i++) {
        union sigval v = {.sival_int = i};
        sigqueue(getpid(), SIGRTMIN + 1, v);
    }
    block(SIGRTMIN + 1, SIG_UNBLOCK);
    snprintf(detail, sizeof detail, "seen %d: %d %d %d", nseen, seen[0].si_value.sival_int,
             seen[1].si_value.sival_int, seen[2].si_value.sival_int);
    report("real-time signals queue in order", nseen == 3 && seen[0].si_value.sival_int == 1 &&
                                                   seen[1].si_value.sival_int == 2 &&
                                                   seen[2].si_value.sival_int == 3,
           detail);
    /* A standard signal sent twice while blocked arrives once. */
    catch(SIGUSR1);
    block(SIGUSR1, SIG_BLOCK);
    nseen = 0;
    kill(getpid(), SIGUSR1);
    kill(getpid(), SIGUSR1);
    block(SIGUSR1, SIG_UNBLOCK);
    snprintf(detail, sizeof detail, "seen %d", nseen);
    report("a standard signal pending twice arrives once", nseen == 1, detail);
}

static void sigchld(void) {
    catch(SIGCHLD);
    block(SIGCHLD, SIG_BLOCK);
    nseen = 0;
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    int st;
    waitpid(pid, &st, 0);
    block(SIGCHLD, SIG_UNBLOCK);
    snprintf(detail, sizeof detail, "seen %d code %d pid %d (want %d) status %d", nseen,
             seen[0].si_code, seen[0].si_pid, pid, seen[0].si_status);
    report("SIGCHLD of an exit: CLD_EXITED, si_pid, si_status",
           nseen == 1 && seen[0].si_code == CLD_EXITED && seen[0].si_pid == pid &&
               seen[0].si_status == 7,
           detail);

    block(SIGCHLD, SIG_BLOCK);
    nseen = 0;
    pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    block(SIGCHLD, SIG_UNBLOCK);
    snprintf(detail, sizeof detail, "seen %d code %d pid %d (want %d) status %d", nseen,
             seen[0].si_code, seen[0].si_pid, pid, seen[0].si_status);
    report("SIGCHLD of a kill: CLD_KILLED, si_pid, si_status",
           nseen == 1 && seen[0].si_code == CLD_KILLED && seen[0].si_pid == pid &&
               seen[0].si_status == SIGKILL,
           detail);
    signal(SIGCHLD, SIG_DFL);
}

static void waitinfo(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    kill(getpid(), SIGUSR2);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = sigwaitinfo(&s, &si);
    describe(&si);
    report("sigwaitinfo: the signal and its sender",
           r == SIGUSR2 && si.si_signo == SIGUSR2 && si.si_code == SI_USER &&
               si.si_pid == getpid(),
           detail);
    struct timespec ts = {0, 20 * 1000 * 1000};
    errno = 0;
    r = sigtimedwait(&s, &si, &ts);
    report("sigtimedwait with nothing pending: EAGAIN", r == -1 && errno == EAGAIN,
           strerror(errno));
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

static void waitid_info(void) {
    pid_t pid = fork();
    if (pid == 0)
        _exit(5);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_PID, pid, &si, WEXITED);
    snprintf(detail, sizeof detail, "r %d signo %d code %d pid %d (want %d) status %d", r,
             si.si_signo, si.si_code, si.si_pid, pid, si.si_status);
    report("waitid: SIGCHLD, CLD_EXITED, si_pid, si_status",
           r == 0 && si.si_signo == SIGCHLD && si.si_code == CLD_EXITED && si.si_pid == pid &&
               si.si_status == 5,
           detail);
}

static void forged(void) {
    /* A process may not pretend to be kill() or the kernel towards another process. */
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGUSR1;
    si.si_code = SI_USER;
    si.si_pid = 1;
    errno = 0;
    long r = syscall(SYS_rt_sigqueueinfo, pid, SIGUSR1, &si);
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    report("rt_sigqueueinfo with SI_USER to another process: EPERM", r == -1 && e == EPERM,
           strerror(e));
}

int main(void) {
    kill_self();
    kill_from_child();
    tgkill_self();
    sigqueue_value();
    queueing();
    sigchld();
    waitinfo();
    waitid_info();
    forged();
    printf("failures: %d\n", failures);
    return failures;
}
