/* I/O priorities (ioprio_set, ioprio_get), printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): the classes and levels, class "none" reporting what the
 * nice value implies, the errors, inheritance by a child and a thread, a process group's
 * best, and another user's threads. Run as root. (Through syscall(): musl has no
 * wrappers.) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

#define WHO_PROCESS 1
#define WHO_PGRP 2
#define PRIO(class, level) ((class) << 13 | (level))
enum { NONE, RT, BE, IDLE };

static long set(int which, int who, int prio) { return syscall(SYS_ioprio_set, which, who, prio); }
static long get(int which, int who) { return syscall(SYS_ioprio_get, which, who); }

static void *thread_get(void *arg) {
    (void)arg;
    show("thread inherits", get(WHO_PROCESS, 0));
    return NULL;
}

static void child_get(void) { show("child inherits", get(WHO_PROCESS, 0)); }

static pid_t parent;
static void unprivileged(void) {
    if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)) {
        puts("setresuid failed");
        return;
    }
    show("unprivileged real-time", set(WHO_PROCESS, 0, PRIO(RT, 0)));
    show("unprivileged best-effort", set(WHO_PROCESS, 0, PRIO(BE, 7)));
    show("unprivileged reads back", get(WHO_PROCESS, 0));
    show("root's process", set(WHO_PROCESS, parent, PRIO(IDLE, 0)));
    show("root's process read", get(WHO_PROCESS, parent));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    parent = getpid();
    show("best-effort 3", set(WHO_PROCESS, 0, PRIO(BE, 3)));
    show("reads", get(WHO_PROCESS, 0));
    show("by pid", get(WHO_PROCESS, getpid()));
    show("idle", set(WHO_PROCESS, getpid(), PRIO(IDLE, 0)));
    show("reads", get(WHO_PROCESS, 0));
    show("real-time 2 as root", set(WHO_PROCESS, 0, PRIO(RT, 2)));
    show("reads", get(WHO_PROCESS, 0));
    show("none", set(WHO_PROCESS, 0, PRIO(NONE, 0)));
    show("none reads as nice 0 implies", get(WHO_PROCESS, 0));
    show("nice 7", nice(7) < 0 ? -1 : 0);
    show("none reads as nice 7 implies", get(WHO_PROCESS, 0));
    show("none, level 1", set(WHO_PROCESS, 0, PRIO(NONE, 1)));
    for (int c = 4; c < 8; c++)
        show("unknown class", set(WHO_PROCESS, 0, PRIO(c, 0)));
    show("which 0", set(0, 0, PRIO(BE, 1)));
    show("which 4", get(4, 0));
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    show("reaped pid set", set(WHO_PROCESS, gone, PRIO(BE, 1)));
    show("reaped pid get", get(WHO_PROCESS, gone));

    /* Inherited with a class other than none; none is not. */
    show("best-effort 6", set(WHO_PROCESS, 0, PRIO(BE, 6)));
    in_child(child_get);
    pthread_t th;
    pthread_create(&th, NULL, thread_get, NULL);
    pthread_join(th, NULL);
    show("none again", set(WHO_PROCESS, 0, PRIO(NONE, 0)));
    in_child(child_get);

    /* A process group's best: this process (best-effort 6) and a child (idle). */
    setpgid(0, 0);
    set(WHO_PROCESS, 0, PRIO(BE, 6));
    int go[2], ready[2];
    if (pipe(go) || pipe(ready))
        return 1;
    pid_t c = fork();
    if (c == 0) {
        char b;
        set(WHO_PROCESS, 0, PRIO(IDLE, 0));
        if (write(ready[1], "r", 1) != 1 || read(go[0], &b, 1) != 1)
            _exit(1);
        _exit(0);
    }
    char b;
    if (read(ready[0], &b, 1) != 1)
        return 1;
    show("group's best", get(WHO_PGRP, 0));
    show("the idle child", get(WHO_PROCESS, c));
    show("group set", set(WHO_PGRP, getpgrp(), PRIO(BE, 2)));
    show("the child after", get(WHO_PROCESS, c));
    if (write(go[1], "g", 1) != 1)
        return 1;
    waitpid(c, NULL, 0);

    in_child(unprivileged);
    show("root's after", get(WHO_PROCESS, 0));
    return 0;
}
