/* Process file descriptors and clone3, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): pidfd_open and its errors, poll/epoll readiness at the
 * child's exit and after its reaping, pidfd_send_signal, waitid(P_PIDFD) (blocking, WNOHANG,
 * a non-blocking pidfd), fdinfo's Pid line, pidfd_getfd, CLONE_PIDFD through clone and
 * clone3 (close-on-exec, not in the child's table) and clone3's argument checks. Raw system
 * calls: musl has no wrappers for them. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif
#define PIDFD_NONBLOCK O_NONBLOCK

struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    uint64_t set_tid, set_tid_size, cgroup;
};

static long pidfd_open(pid_t pid, unsigned flags) {
    return syscall(SYS_pidfd_open, pid, flags);
}

static long send_signal(int fd, int sig) {
    return syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* poll's revents for `fd` after up to `ms` milliseconds. */
static int revents(int fd, int ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    return r < 0 ? -1 : p.revents;
}

/* The Pid line of /proc/self/fdinfo/FD: "child" if it is `child`, else its value. */
static void show_fdinfo_pid(int fd, pid_t child) {
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) {
        int v;
        if (sscanf(line, "Pid: %d", &v) == 1) {
            if (v == child)
                puts("fdinfo Pid: the child");
            else
                printf("fdinfo Pid: %d\n", v);
        }
    }
    if (f)
        fclose(f);
}

static void show_waitid(const char *what, int fd, int options) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    long r = waitid(P_PIDFD, fd, &si, options);
    show(what, r);
    if (r == 0)
        printf("%s: code %d status %d pid set %d\n", what, si.si_code, si.si_status,
               si.si_pid != 0);
}

static pid_t thread_tid;

static void *thread_main(void *arg) {
    (void)arg;
    thread_tid = syscall(SYS_gettid);
    return NULL;
}

/* The lowest free descriptor now. */
static int next_fd(void) {
    int fd = dup(0);
    close(fd);
    return fd;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* pidfd_open's errors. */
    show("pidfd_open of 0", pidfd_open(0, 0));
    show("pidfd_open of -1", pidfd_open(-1, 0));
    show("pidfd_open with bad flags", pidfd_open(getpid(), 1));
    show("pidfd_open of no process", pidfd_open(0x3ffffff0, 0));
    pthread_t th;
    pthread_create(&th, NULL, thread_main, NULL);
    pthread_join(th, NULL);
    /* (The thread has gone: its id names nothing now.) */
    show("pidfd_open of a finished thread", pidfd_open(thread_tid, 0));
    int self = pidfd_open(getpid(), 0);
    show("pidfd_open of itself", self < 0 ? -1 : 0);
    show("its close-on-exec", fcntl(self, F_GETFD) & FD_CLOEXEC);
    show("signal 0 to itself", send_signal(self, 0));
    show("pidfd_send_signal flags", syscall(SYS_pidfd_send_signal, self, 0, NULL, 8));
    show("pidfd_send_signal through stdin", send_signal(0, 0));
    show("waitid P_PIDFD through stdin", waitid(P_PIDFD, 0, NULL, WEXITED));
    show("waitid without WEXITED", waitid(P_ALL, 0, NULL, WNOHANG));
    show("waitid with an unknown option", waitid(P_ALL, 0, NULL, WEXITED | 0x40));

    /* pidfd_getfd: a copy of its own stdout, close-on-exec. */
    int out = syscall(SYS_pidfd_getfd, self, 1, 0);
    show("pidfd_getfd of stdout", out < 0 ? -1 : 0);
    show("its close-on-exec", fcntl(out, F_GETFD) & FD_CLOEXEC);
    dprintf(out, "written through the copy\n");
    close(out);
    show("pidfd_getfd with flags", syscall(SYS_pidfd_getfd, self, 1, 1));
    show("pidfd_getfd of a closed descriptor", syscall(SYS_pidfd_getfd, self, 999, 0));
    close(self);

    /* A child killed through its pidfd; readiness before and after the exit and the reap. */
    pid_t c = fork();
    if (c == 0) {
        for (;;)
            pause();
    }
    int fd = pidfd_open(c, 0);
    int nb = pidfd_open(c, PIDFD_NONBLOCK);
    show("revents while it runs", revents(fd, 0));
    show_fdinfo_pid(fd, c);
    show_waitid("waitid of a running child, non-blocking pidfd", nb, WEXITED);
    show_waitid("waitid WNOHANG of a running child", fd, WEXITED | WNOHANG);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u32 = 7};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
    show("SIGTERM through the pidfd", send_signal(fd, SIGTERM));
    struct epoll_event got;
    int n = epoll_wait(ep, &got, 1, 5000);
    printf("epoll: %d ready, events %#x, data %u\n", n, n > 0 ? got.events : 0,
           n > 0 ? got.data.u32 : 0);
    show("revents after the exit", revents(fd, 0));
    show_waitid("waitid WEXITED|WNOWAIT", fd, WEXITED | WNOWAIT);
    show_waitid("waitid WEXITED", fd, WEXITED);
    show("revents after the reap", revents(fd, 0));
    show_fdinfo_pid(fd, c);
    show("a signal after the reap", send_signal(fd, 0));
    show_waitid("waitid again", fd, WEXITED);
    close(ep);
    close(fd);
    close(nb);

    /* CLONE_PIDFD through clone: the pidfd where the parent tid would go. */
    int pfd = -1;
    int expect = next_fd();
    long r = syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, &pfd, 0, 0);
    if (r == 0) {
        /* The child has no pidfd of its own. */
        _exit(fcntl(expect, F_GETFD) == -1 && errno == EBADF ? 3 : 4);
    }
    show("clone CLONE_PIDFD", r < 0 ? -1 : 0);
    show("the pidfd is the next descriptor", pfd == expect);
    show("its close-on-exec", fcntl(pfd, F_GETFD) & FD_CLOEXEC);
    show_waitid("waitid of the clone child", pfd, WEXITED);
    close(pfd);
    show("clone CLONE_PIDFD|CLONE_PARENT_SETTID",
         syscall(SYS_clone, CLONE_PIDFD | CLONE_PARENT_SETTID | SIGCHLD, 0, &pfd, 0, 0));

    /* clone3: a fork with a pidfd and a parent tid. */
    struct clone_args_v0 ca;
    memset(&ca, 0, sizeof ca);
    pid_t ptid = 0;
    pfd = -1;
    ca.flags = CLONE_PIDFD | CLONE_PARENT_SETTID;
    ca.pidfd = (uintptr_t)&pfd;
    ca.parent_tid = (uintptr_t)&ptid;
    ca.exit_signal = SIGCHLD;
    r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0)
        _exit(5);
    show("clone3 fork", r < 0 ? -1 : 0);
    show("parent tid is the child", ptid == r);
    show_waitid("waitid of the clone3 child", pfd, WEXITED);
    close(pfd);
    /* With the signal handlers reset (an ignored signal stays ignored). */
    static char stack[64 * 1024] __attribute__((aligned(16)));
    signal(SIGUSR1, SIG_IGN);
    memset(&ca, 0, sizeof ca);
    ca.flags = 0x100000000ULL; /* CLONE_CLEAR_SIGHAND */
    ca.exit_signal = SIGCHLD;
    r = syscall(SYS_clone3, &ca, sizeof ca);
    if (r == 0)
        _exit(signal(SIGUSR1, SIG_DFL) == SIG_IGN ? 6 : 7);
    int status = 0;
    waitpid(r, &status, 0);
    show("clone3 CLONE_CLEAR_SIGHAND keeps ignored signals ignored", WEXITSTATUS(status));
    /* Its checks. */
    show("clone3 size 8", syscall(SYS_clone3, &ca, 8));
    show("clone3 size 4097", syscall(SYS_clone3, &ca, 4097));
    char big[128];
    memset(big, 0, sizeof big);
    memcpy(big, &ca, sizeof ca);
    big[100] = 1;
    show("clone3 with trailing bytes", syscall(SYS_clone3, big, sizeof big));
    memset(&ca, 0, sizeof ca);
    ca.flags = SIGCHLD;
    show("clone3 with the signal in the flags", syscall(SYS_clone3, &ca, sizeof ca));
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = 65;
    show("clone3 exit signal 65", syscall(SYS_clone3, &ca, sizeof ca));
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    ca.stack = (uintptr_t)stack;
    show("clone3 stack without size", syscall(SYS_clone3, &ca, sizeof ca));
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_THREAD | CLONE_SIGHAND | CLONE_VM;
    ca.exit_signal = SIGCHLD;
    show("clone3 thread with an exit signal", syscall(SYS_clone3, &ca, sizeof ca));
    memset(&ca, 0, sizeof ca);
    ca.flags = CLONE_SIGHAND;
    show("clone3 CLONE_SIGHAND without CLONE_VM", syscall(SYS_clone3, &ca, sizeof ca));
    puts("pidfd done: 1");
    return 0;
}
