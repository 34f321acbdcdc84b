/* epoll-events: what epoll reports for pipes and eventfds, level- and edge-triggered and
 * one-shot, nested epolls, timeouts, signal masks, a waiter woken by another thread, the
 * interest list's life (keyed by descriptor and open file) and epoll_ctl's errors. Every line
 * prints what the calls returned (results, errno names, event bits), so the run in a guest
 * is compared line by line with the native one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif
#include <time.h>
#include <unistd.h>

static const char *en(int e) {
    switch (e) {
    case 0: return "0";
    case EINVAL: return "EINVAL";
    case EEXIST: return "EEXIST";
    case ENOENT: return "ENOENT";
    case EPERM: return "EPERM";
    case ELOOP: return "ELOOP";
    case EBADF: return "EBADF";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case EFAULT: return "EFAULT";
    default: return "other";
    }
}

/* epoll_wait with `max` and `ms`; prints the count and each (data, events). */
static int show_wait(const char *name, int ep, int max, int ms) {
    struct epoll_event ev[8];
    memset(ev, 0, sizeof ev);
    errno = 0;
    int n = epoll_wait(ep, ev, max, ms);
    printf("%s: n=%d errno=%s", name, n, n < 0 ? en(errno) : "0");
    for (int i = 0; i < n; i++)
        printf(" [%llu %#x]", (unsigned long long)ev[i].data.u64, ev[i].events);
    printf("\n");
    fflush(stdout);
    return n;
}

static void show_ctl(const char *name, int ep, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event e = {.events = events, .data.u64 = data};
    errno = 0;
    int r = epoll_ctl(ep, op, fd, &e);
    printf("%s: r=%d errno=%s\n", name, r, r < 0 ? en(errno) : "0");
    fflush(stdout);
}

static void put(int fd, const char *s) {
    if (write(fd, s, strlen(s)) < 0)
        perror("write");
}

static void drain(int fd) {
    char b[256];
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    while (read(fd, b, sizeof b) > 0) {
    }
    fcntl(fd, F_SETFL, fl);
}

static int efd_shared;
static void *waker(void *arg) {
    (void)arg;
    struct timespec t = {0, 20 * 1000 * 1000};
    nanosleep(&t, NULL);
    uint64_t one = 1;
    if (write(efd_shared, &one, 8) != 8)
        perror("eventfd write");
    return NULL;
}

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s) {
    (void)s;
    got_usr1++;
}

int main(void) {
    int p[2], q[2];
    signal(SIGPIPE, SIG_IGN);

    /* Creation. */
    errno = 0;
    int r = syscall(SYS_epoll_create, 0);
    printf("epoll_create(0): r=%d errno=%s\n", r, en(errno));
    errno = 0;
    r = epoll_create1(1);
    printf("epoll_create1(1): r=%d errno=%s\n", r, en(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    printf("epoll_create1(CLOEXEC): ok=%d cloexec=%d\n", ep >= 0,
           (fcntl(ep, F_GETFD) & FD_CLOEXEC) != 0);

    /* Level-triggered on a pipe. */
    pipe(p);
    show_ctl("lt add", ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1);
    show_wait("lt empty", ep, 8, 0);
    put(p[1], "x");
    show_wait("lt ready", ep, 8, 0);
    show_wait("lt still ready", ep, 8, 0);
    drain(p[0]);
    show_wait("lt drained", ep, 8, 0);

    /* ctl errors. */
    show_ctl("add twice", ep, EPOLL_CTL_ADD, p[0], EPOLLIN, 1);
    show_ctl("mod absent", ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 2);
    show_ctl("del absent", ep, EPOLL_CTL_DEL, p[1], 0, 0);
    show_ctl("bad op", ep, 99, p[1], EPOLLIN, 0);
    show_ctl("bad fd", ep, EPOLL_CTL_ADD, 999, EPOLLIN, 0);
    show_ctl("bad epfd", 999, EPOLL_CTL_ADD, p[0], EPOLLIN, 0);
    show_ctl("not an epoll", p[1], EPOLL_CTL_ADD, p[0], EPOLLIN, 0);
    show_ctl("itself", ep, EPOLL_CTL_ADD, ep, EPOLLIN, 0);
    int reg = open("/proc/self/exe", O_RDONLY);
    if (reg < 0)
        reg = open("/", O_RDONLY | O_DIRECTORY);
    show_ctl("regular file or directory", ep, EPOLL_CTL_ADD, reg, EPOLLIN, 0);
    close(reg);
    int devnull = open("/dev/null", O_RDWR);
    show_ctl("/dev/null", ep, EPOLL_CTL_ADD, devnull, EPOLLIN, 0);
    close(devnull);
    show_ctl("exclusive add", ep, EPOLL_CTL_ADD, p[1], EPOLLOUT | EPOLLEXCLUSIVE, 2);
    show_ctl("exclusive mod", ep, EPOLL_CTL_MOD, p[1], EPOLLOUT | EPOLLEXCLUSIVE, 2);
    show_ctl("mod of an exclusive entry", ep, EPOLL_CTL_MOD, p[1], EPOLLOUT, 2);
    show_ctl("exclusive with oneshot", ep, EPOLL_CTL_ADD, p[0],
             EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 3);
    show_ctl("del", ep, EPOLL_CTL_DEL, p[1], 0, 0);
    {
        struct epoll_event ev;
        errno = 0;
        int n = epoll_wait(ep, &ev, 0, 0);
        printf("maxevents 0: n=%d errno=%s\n", n, en(errno));
        errno = 0;
        n = epoll_wait(p[0], &ev, 1, 0);
        printf("wait on a pipe: n=%d errno=%s\n", n, en(errno));
    }

    /* Write end: writable, then EPOLLERR once the reader is gone. */
    pipe(q);
    int ep2 = epoll_create1(0);
    show_ctl("write end add", ep2, EPOLL_CTL_ADD, q[1], EPOLLOUT, 7);
    show_wait("write end writable", ep2, 8, 0);
    close(q[0]);
    show_wait("write end without readers", ep2, 8, 0);
    close(q[1]);
    show_wait("closed write end is gone", ep2, 8, 0);

    /* Read end: EPOLLHUP once the writer is gone; EPOLLRDHUP is accepted. */
    pipe(q);
    show_ctl("read end add", ep2, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLRDHUP, 8);
    put(q[1], "ab");
    close(q[1]);
    show_wait("data then hang-up", ep2, 8, 0);
    drain(q[0]);
    show_wait("hang-up", ep2, 8, 0);
    close(q[0]);
    close(ep2);

    /* Edge-triggered. */
    int et = epoll_create1(0);
    pipe(q);
    show_ctl("et add", et, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLET, 10);
    show_wait("et empty", et, 8, 0);
    put(q[1], "a");
    show_wait("et first edge", et, 8, 0);
    show_wait("et no new edge", et, 8, 0);
    put(q[1], "b");
    show_wait("et second write is an edge", et, 8, 0);
    show_wait("et reported once", et, 8, 0);
    drain(q[0]);
    show_wait("et drained", et, 8, 0);
    put(q[1], "c");
    show_wait("et after drain", et, 8, 0);
    show_ctl("et mod re-arms", et, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLET, 11);
    show_wait("et after mod", et, 8, 0);
    drain(q[0]);
    close(q[0]);
    close(q[1]);

    /* Edge-triggered eventfd, in and out. */
    int efd = eventfd(0, EFD_NONBLOCK);
    show_ctl("et eventfd add", et, EPOLL_CTL_ADD, efd, EPOLLIN | EPOLLOUT | EPOLLET, 12);
    show_wait("et eventfd writable", et, 8, 0);
    show_wait("et eventfd no edge", et, 8, 0);
    uint64_t one = 1, got = 0;
    write(efd, &one, 8);
    show_wait("et eventfd readable", et, 8, 0);
    write(efd, &one, 8);
    show_wait("et eventfd written again", et, 8, 0);
    read(efd, &got, 8);
    printf("eventfd read %llu\n", (unsigned long long)got);
    show_wait("et eventfd after read", et, 8, 0);
    show_wait("et eventfd quiet", et, 8, 0);
    close(efd);
    close(et);

    /* One-shot. */
    int os = epoll_create1(0);
    pipe(q);
    show_ctl("oneshot add", os, EPOLL_CTL_ADD, q[0], EPOLLIN | EPOLLONESHOT, 20);
    put(q[1], "z");
    show_wait("oneshot fires", os, 8, 0);
    show_wait("oneshot disabled", os, 8, 0);
    show_ctl("oneshot add again", os, EPOLL_CTL_ADD, q[0], EPOLLIN, 20);
    show_ctl("oneshot mod", os, EPOLL_CTL_MOD, q[0], EPOLLIN | EPOLLONESHOT, 21);
    show_wait("oneshot re-armed", os, 8, 0);
    show_wait("oneshot disabled again", os, 8, 0);
    close(q[0]);
    close(q[1]);
    close(os);

    /* Several ready: maxevents 1 rotates through them. */
    int rot = epoll_create1(0);
    int pr[3][2];
    for (int i = 0; i < 3; i++) {
        pipe(pr[i]);
        put(pr[i][1], "r");
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = 30 + i};
        epoll_ctl(rot, EPOLL_CTL_ADD, pr[i][0], &e);
    }
    {
        int seen = 0;
        for (int i = 0; i < 3; i++) {
            struct epoll_event e;
            if (epoll_wait(rot, &e, 1, 0) == 1)
                seen |= 1 << (e.data.u64 - 30);
        }
        printf("maxevents 1 rotates through all three: %s\n", seen == 7 ? "yes" : "no");
        struct epoll_event e[8];
        printf("all three at once: %d\n", epoll_wait(rot, e, 8, 0));
    }

    /* Nested epoll: an epoll is pollable and readable while an entry is ready. */
    int outer = epoll_create1(0);
    show_ctl("nest add", outer, EPOLL_CTL_ADD, rot, EPOLLIN, 40);
    show_wait("outer sees inner ready", outer, 8, 0);
    {
        struct pollfd pf = {rot, POLLIN, 0};
        int n = poll(&pf, 1, 0);
        printf("poll on an epoll: n=%d revents=%#x\n", n, pf.revents);
    }
    for (int i = 0; i < 3; i++)
        drain(pr[i][0]);
    show_wait("outer after inner drained", outer, 8, 0);
    show_ctl("loop", rot, EPOLL_CTL_ADD, outer, EPOLLIN, 41);
    show_ctl("exclusive epoll", rot, EPOLL_CTL_ADD, epoll_create1(0), EPOLLIN | EPOLLEXCLUSIVE,
             42);
    put(pr[1][1], "again");
    show_wait("outer sees inner again", outer, 8, 0);
    {
        /* A chain deeper than Linux allows. */
        int chain[7];
        chain[0] = epoll_create1(0);
        for (int i = 1; i < 7; i++) {
            chain[i] = epoll_create1(0);
            struct epoll_event e = {.events = EPOLLIN, .data.u64 = i};
            errno = 0;
            int rr = epoll_ctl(chain[i], EPOLL_CTL_ADD, chain[i - 1], &e);
            printf("chain depth %d: r=%d errno=%s\n", i, rr, rr < 0 ? en(errno) : "0");
        }
        for (int i = 0; i < 7; i++)
            close(chain[i]);
    }

    /* The interest list is keyed by open file: a dup keeps the entry alive. */
    int life = epoll_create1(0);
    pipe(q);
    show_ctl("life add", life, EPOLL_CTL_ADD, q[0], EPOLLIN, 50);
    int dupfd = dup(q[0]);
    close(q[0]);
    put(q[1], "d");
    show_wait("entry outlives its descriptor", life, 8, 0);
    show_ctl("del by the closed number", life, EPOLL_CTL_DEL, q[0], 0, 0);
    show_ctl("del by the dup", life, EPOLL_CTL_DEL, dupfd, 0, 0);
    close(dupfd);
    show_wait("entry gone with its open file", life, 8, 0);
    close(q[1]);
    pipe(q);
    put(q[1], "n");
    show_ctl("new file under an old number", life, EPOLL_CTL_MOD, q[0], EPOLLIN, 51);
    show_wait("nothing for the new file", life, 8, 0);
    close(q[0]);
    close(q[1]);

    /* Timeouts. */
    show_wait("timeout 30 ms", life, 8, 30);
    {
        struct epoll_event e;
        struct timespec ts = {0, 10 * 1000 * 1000};
        errno = 0;
        long n = syscall(SYS_epoll_pwait2, life, &e, 1, &ts, NULL, 8);
        printf("epoll_pwait2 10 ms: n=%ld errno=%s\n", n, n < 0 ? en(errno) : "0");
        struct timespec bad = {0, 2000000000};
        errno = 0;
        n = syscall(SYS_epoll_pwait2, life, &e, 1, &bad, NULL, 8);
        printf("epoll_pwait2 bad timespec: n=%ld errno=%s\n", n, n < 0 ? en(errno) : "0");
    }

    /* A signal blocked by the caller but let through by epoll_pwait's mask. */
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        sigset_t block, old, none;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigprocmask(SIG_BLOCK, &block, &old);
        raise(SIGUSR1);
        struct epoll_event e;
        errno = 0;
        int n = epoll_pwait(life, &e, 1, 0, &block);
        printf("pwait keeping SIGUSR1 blocked: n=%d errno=%s handled=%d\n", n,
               n < 0 ? en(errno) : "0", (int)got_usr1);
        sigemptyset(&none);
        errno = 0;
        n = epoll_pwait(life, &e, 1, -1, &none);
        printf("pwait unblocking SIGUSR1: n=%d errno=%s handled=%d\n", n,
               n < 0 ? en(errno) : "0", (int)got_usr1);
        sigprocmask(SIG_SETMASK, &old, NULL);
    }

    /* A waiter blocked forever, woken by another thread. */
    {
        efd_shared = eventfd(0, 0);
        show_ctl("thread add", life, EPOLL_CTL_ADD, efd_shared, EPOLLIN | EPOLLET, 60);
        pthread_t t;
        pthread_create(&t, NULL, waker, NULL);
        show_wait("woken by another thread", life, 8, -1);
        pthread_join(t, NULL);
    }

    /* Across fork: the child shares the epoll; its write wakes the parent. */
    {
        int cp[2];
        pipe(cp);
        int fe = epoll_create1(0);
        show_ctl("fork add", fe, EPOLL_CTL_ADD, cp[0], EPOLLIN, 70);
        pid_t pid = fork();
        if (pid == 0) {
            struct timespec t = {0, 20 * 1000 * 1000};
            nanosleep(&t, NULL);
            put(cp[1], "k");
            _exit(0);
        }
        show_wait("woken by a child", fe, 8, 5000);
        int st;
        waitpid(pid, &st, 0);
    }
    printf("done\n");
    return 0;
}
