/* sched_setattr and sched_getattr with the normal policies, printed for a comparison with
 * the native run (tests/tests/linux_edges.rs): the struct read back, a nice value and
 * SCHED_BATCH with SCHED_FLAG_RESET_ON_FORK set through it and seen by getpriority and
 * sched_getscheduler, SCHED_FLAG_KEEP_POLICY and KEEP_PARAMS, the size rules (0 for the
 * first version, too small or too large: E2BIG with the kernel's size written back,
 * trailing bytes) and the errors. Raw system calls: glibc 2.36 and musl wrap neither. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "show_result.h"

#ifndef SYS_sched_setattr
#define SYS_sched_setattr 314
#define SYS_sched_getattr 315
#endif

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
    char extra[8];
};

static long setattr(struct attr *a) {
    return syscall(SYS_sched_setattr, 0, a, 0);
}

static void show_attr(const char *what) {
    struct attr a;
    memset(&a, 0xff, sizeof a);
    long r = syscall(SYS_sched_getattr, 0, &a, 48, 0);
    if (r < 0) {
        show(what, r);
        return;
    }
    /* (Not the runtime: each kernel reports its own time slice.) */
    printf("%s: size %u policy %u flags %llu nice %d priority %u runtime set %d\n", what, a.size,
           a.policy, (unsigned long long)a.flags, a.nice, a.priority, a.runtime != 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    show_attr("at start");

    struct attr a;
    memset(&a, 0, sizeof a);
    a.size = 48;
    a.nice = 5;
    show("nice 5", setattr(&a));
    show("getpriority", getpriority(PRIO_PROCESS, 0));
    show_attr("after nice 5");

    memset(&a, 0, sizeof a);
    a.size = 0; /* the first version */
    a.policy = SCHED_BATCH;
    a.flags = 1; /* SCHED_FLAG_RESET_ON_FORK */
    a.nice = 3;
    show("SCHED_BATCH, reset on fork", setattr(&a));
    show("sched_getscheduler", sched_getscheduler(0));
    show_attr("after SCHED_BATCH");

    memset(&a, 0, sizeof a);
    a.size = 48;
    a.flags = 1 | 0x08; /* keep the policy */
    a.nice = 7;
    show("keep policy, nice 7", setattr(&a));
    show_attr("after keep policy");
    memset(&a, 0, sizeof a);
    a.size = 48;
    a.policy = SCHED_IDLE;
    a.flags = 1 | 0x10; /* keep the parameters (the nice value) */
    a.nice = -3;
    show("SCHED_IDLE, keep params", setattr(&a));
    show_attr("after keep params");

    /* Sizes. */
    memset(&a, 0, sizeof a);
    a.size = 40;
    show("size 40", setattr(&a));
    printf("size written back: %u\n", a.size);
    a.size = 4097;
    show("size 4097", setattr(&a));
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.extra[3] = 1;
    show("a byte past the fields", setattr(&a));
    printf("size written back: %u\n", a.size);
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    show("zeros past the fields", setattr(&a));

    /* Errors. */
    memset(&a, 0, sizeof a);
    a.size = 48;
    a.flags = 0x100;
    show("an unknown flag", setattr(&a));
    a.flags = 0;
    a.priority = 1;
    show("SCHED_OTHER at priority 1", setattr(&a));
    a.priority = 0;
    a.policy = 7;
    show("policy 7", setattr(&a));
    a.policy = (uint32_t)-1;
    show("policy -1", setattr(&a));
    a.policy = 0;
    show("flags argument 1", syscall(SYS_sched_setattr, 0, &a, 1));
    show("pid -1", syscall(SYS_sched_setattr, -1, &a, 0));
    show("no struct", syscall(SYS_sched_setattr, 0, NULL, 0));
    show("getattr size 40", syscall(SYS_sched_getattr, 0, &a, 40, 0));
    show("getattr flags 1", syscall(SYS_sched_getattr, 0, &a, 48, 1));
    show("getattr of no thread", syscall(SYS_sched_getattr, 0x3ffffff0, &a, 48, 0));

    /* Back to SCHED_OTHER at nice 0 (root may lower it). */
    memset(&a, 0, sizeof a);
    a.size = 48;
    show("back to SCHED_OTHER", setattr(&a));
    show_attr("at the end");
    puts("sched attr done: 1");
    return 0;
}
