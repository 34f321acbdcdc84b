/* stress-signals [ROUNDS [PATTERN]]: fork + kill + sigsuspend/sigwaitinfo/pause + waitpid
 * patterns in tight loops, so that a sender and its target run on different vCPUs at every
 * possible moment (a lost wake-up hangs the program; a lost or misdirected signal fails a
 * check). Each pattern (or only PATTERN) runs ROUNDS times (default 200) and prints one line;
 * any failed check prints what went wrong and exits 1.
 *
 *   child-kills-parent   the parent blocks SIGUSR1, forks a child that sends it SIGUSR1, and
 *                        waits in sigsuspend for its handler to run (fatal.c's term-child
 *                        with a handler), then reaps the child
 *   sigwait-sender       the same with sigwaitinfo: the signal's si_pid is the child's
 *   parent-kills-child   the child blocks SIGUSR2 and waits in sigsuspend; the parent sends it
 *                        right after fork; the handler's _exit status comes back
 *   sigchld-suspend      the parent blocks SIGCHLD (handled), forks a child that exits at
 *                        once, and waits in sigsuspend for the SIGCHLD
 *   fatal-to-middle      a middle process blocks SIGTERM and forks a grandchild that kills it
 *                        with SIGTERM, then waits in sigsuspend; its parent sees it killed by
 *                        SIGTERM
 *   ping-pong            parent and child take turns: each sends SIGUSR1 to the other and
 *                        waits for the reply in sigsuspend, 20 exchanges per child
 *   pause-child          the child waits in pause() with SIGUSR1 handled and unblocked; the
 *                        parent sends SIGUSR1 until the child's exit status says it was taken */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_signal(int sig) {
    (void)sig;
    got++;
}

static void fail(const char *pattern, int round, const char *what) {
    printf("%s: round %d: %s (errno %d)\n", pattern, round, what, errno);
    fflush(stdout);
    exit(1);
}

static void handle(int sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0)
        fail("setup", 0, "sigaction");
}

static void set_default(int sig) { signal(sig, SIG_DFL); }

/* Blocks `sig`; returns the mask of before in `old`. */
static void block(int sig, sigset_t *old) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    if (sigprocmask(SIG_BLOCK, &s, old) != 0)
        fail("setup", 0, "sigprocmask");
}

static void unblock(int sig) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, sig);
    sigprocmask(SIG_UNBLOCK, &s, NULL);
}

/* Reaps `pid`; returns its wait status. */
static int reap(const char *pattern, int round, pid_t pid) {
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid)
        fail(pattern, round, "waitpid");
    return st;
}

static void child_kills_parent(int rounds) {
    const char *p = "child-kills-parent";
    sigset_t old;
    handle(SIGUSR1);
    block(SIGUSR1, &old);
    for (int i = 0; i < rounds; i++) {
        got = 0;
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0) {
            kill(parent, SIGUSR1);
            _exit(0);
        }
        while (!got)
            sigsuspend(&old);
        int st = reap(p, i, pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != 1)
            fail(p, i, "child status or signal count");
    }
    unblock(SIGUSR1);
    set_default(SIGUSR1);
    printf("%s: %d rounds\n", p, rounds);
}

static void sigwait_sender(int rounds) {
    const char *p = "sigwait-sender";
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    block(SIGUSR2, NULL);
    for (int i = 0; i < rounds; i++) {
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0) {
            kill(parent, SIGUSR2);
            _exit(0);
        }
        siginfo_t si;
        int s;
        do
            s = sigwaitinfo(&set, &si);
        while (s < 0 && errno == EINTR);
        if (s != SIGUSR2 || si.si_pid != pid || si.si_code != SI_USER)
            fail(p, i, "sigwaitinfo: wrong signal or sender");
        int st = reap(p, i, pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail(p, i, "child status");
    }
    unblock(SIGUSR2);
    printf("%s: %d rounds\n", p, rounds);
}

static void parent_kills_child(int rounds) {
    const char *p = "parent-kills-child";
    sigset_t old;
    handle(SIGUSR2);
    block(SIGUSR2, &old);
    for (int i = 0; i < rounds; i++) {
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0) {
            got = 0;
            while (!got)
                sigsuspend(&old);
            _exit(got == 1 ? 7 : 8);
        }
        if (kill(pid, SIGUSR2) != 0)
            fail(p, i, "kill");
        int st = reap(p, i, pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
            fail(p, i, "child status");
    }
    unblock(SIGUSR2);
    set_default(SIGUSR2);
    printf("%s: %d rounds\n", p, rounds);
}

static void sigchld_suspend(int rounds) {
    const char *p = "sigchld-suspend";
    sigset_t old;
    handle(SIGCHLD);
    block(SIGCHLD, &old);
    for (int i = 0; i < rounds; i++) {
        got = 0;
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0)
            _exit(i & 0x7f);
        while (!got)
            sigsuspend(&old);
        int st = reap(p, i, pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != (i & 0x7f))
            fail(p, i, "child status");
    }
    unblock(SIGCHLD);
    set_default(SIGCHLD);
    printf("%s: %d rounds\n", p, rounds);
}

static void fatal_to_middle(int rounds) {
    const char *p = "fatal-to-middle";
    for (int i = 0; i < rounds; i++) {
        pid_t mid = fork();
        if (mid < 0)
            fail(p, i, "fork");
        if (mid == 0) {
            sigset_t old;
            block(SIGTERM, &old);
            pid_t me = getpid();
            pid_t pid = fork();
            if (pid < 0)
                _exit(2);
            if (pid == 0) {
                kill(me, SIGTERM);
                _exit(0);
            }
            for (;;)
                sigsuspend(&old);
        }
        int st = reap(p, i, mid);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM)
            fail(p, i, "middle process not killed by SIGTERM");
    }
    /* The grandchildren were reparented to init (or a subreaper): reap any that are ours. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    printf("%s: %d rounds\n", p, rounds);
}

static void ping_pong(int rounds) {
    const char *p = "ping-pong";
    enum { EXCHANGES = 20 };
    sigset_t old;
    handle(SIGUSR1);
    block(SIGUSR1, &old);
    for (int i = 0; i < rounds; i++) {
        pid_t parent = getpid();
        got = 0;
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0) {
            for (int n = 0; n < EXCHANGES; n++) {
                while (got == n)
                    sigsuspend(&old);
                kill(parent, SIGUSR1);
            }
            _exit(got == EXCHANGES ? 0 : 3);
        }
        for (int n = 0; n < EXCHANGES; n++) {
            kill(pid, SIGUSR1);
            while (got == n)
                sigsuspend(&old);
        }
        int st = reap(p, i, pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != EXCHANGES)
            fail(p, i, "child status or exchange count");
    }
    unblock(SIGUSR1);
    set_default(SIGUSR1);
    printf("%s: %d rounds of %d exchanges\n", p, rounds, EXCHANGES);
}

static void pause_child(int rounds) {
    const char *p = "pause-child";
    handle(SIGUSR1);
    for (int i = 0; i < rounds; i++) {
        pid_t pid = fork();
        if (pid < 0)
            fail(p, i, "fork");
        if (pid == 0) {
            got = 0;
            pause();
            _exit(got >= 1 ? 5 : 6);
        }
        /* The child may not be in pause() yet: the handler then runs before it gets there
         * and pause() waits for the next one. Resend until it has exited. */
        int st;
        pid_t r;
        struct timespec ms = {0, 1000000};
        for (;;) {
            kill(pid, SIGUSR1);
            r = waitpid(pid, &st, WNOHANG);
            if (r == pid)
                break;
            if (r < 0)
                fail(p, i, "waitpid");
            nanosleep(&ms, NULL);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 5)
            fail(p, i, "child status");
    }
    set_default(SIGUSR1);
    printf("%s: %d rounds\n", p, rounds);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    const char *only = argc > 2 ? argv[2] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct {
        const char *name;
        void (*run)(int);
    } patterns[] = {
        {"child-kills-parent", child_kills_parent},
        {"sigwait-sender", sigwait_sender},
        {"parent-kills-child", parent_kills_child},
        {"sigchld-suspend", sigchld_suspend},
        {"fatal-to-middle", fatal_to_middle},
        {"ping-pong", ping_pong},
        {"pause-child", pause_child},
    };
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++)
        if (!only || strcmp(only, patterns[i].name) == 0)
            patterns[i].run(rounds);
    return 0;
}
