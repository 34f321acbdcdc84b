/* Scheduling policies, the personality, mincore and mlockall's flags, printed for a
 * comparison with the native run (tests/tests/linux_edges.rs). Nothing printed depends on
 * privileges: no real-time policy is set, the nice value is only raised, nothing is
 * locked. The `guest` argument runs what may only run in a guest: real-time policies (which
 * the guest refuses), mlockall, and sethostname/setdomainname (on the host they would
 * rename the host). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "show_result.h"

static long setsched(long pid, long pol, const struct sched_param *p) {
    return syscall(SYS_sched_setscheduler, pid, pol, p);
}

static void child_policy(void) {
    show("child policy", sched_getscheduler(0));
    errno = 0;
    int n = getpriority(PRIO_PROCESS, 0);
    show("child nice", errno ? -1 : n);
}

static void child_persona(void) { show("child personality", personality(0xffffffff)); }

static void policies(void) {
    int pols[] = {SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE, 42};
    char what[64];
    for (unsigned i = 0; i < sizeof pols / sizeof *pols; i++) {
        snprintf(what, sizeof what, "priority range of %d", pols[i]);
        show(what, sched_get_priority_min(pols[i]));
        show(what, sched_get_priority_max(pols[i]));
    }
    struct sched_param p = {.sched_priority = 0}, bad = {.sched_priority = 5};
    show("policy", sched_getscheduler(0));
    show("set batch", setsched(0, SCHED_BATCH, &p));
    show("policy", sched_getscheduler(0));
    show("set idle at 5", setsched(0, SCHED_IDLE, &bad));
    show("set with no param", setsched(0, SCHED_IDLE, NULL));
    show("set policy 42", setsched(0, 42, &p));
    show("set for pid -1", setsched(-1, SCHED_OTHER, &p));
    show("set for no such pid", setsched(999999, SCHED_OTHER, &p));
    show("get for pid -1", sched_getscheduler(-1));
    show("get for no such pid", sched_getscheduler(999999));
    struct sched_param got = {.sched_priority = 77};
    show("getparam", sched_getparam(0, &got));
    show("priority", got.sched_priority);
    show("getparam into NULL", syscall(SYS_sched_getparam, 0, NULL));
    show("setparam 1", sched_setparam(0, &bad));
    show("setparam 0", sched_setparam(0, &p));
    struct timespec ts;
    show("rr interval", sched_rr_get_interval(0, &ts));
    show("rr interval of no such pid", sched_rr_get_interval(999999, &ts));
    in_child(child_policy);
    /* SCHED_RESET_ON_FORK: reported, not inherited; a raised nice value is. */
    show("set batch, reset on fork", setsched(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &p));
    show("policy", sched_getscheduler(0));
    show("nice +5", setpriority(PRIO_PROCESS, 0, 5));
    in_child(child_policy);
}

static void persona(char *self) {
    show("personality", personality(0xffffffff));
    show("set no-randomize", personality(ADDR_NO_RANDOMIZE));
    show("personality", personality(0xffffffff));
    in_child(child_persona);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        execl(self, self, "persona-after-exec", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(c, &st, 0);
    show("exec'd child", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    show("set linux", personality(PER_LINUX));
}

static void residency(void) {
    size_t len = 16 << 20;
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    static unsigned char vec[4096];
    p[0] = 1;
    show("mincore", mincore(p, len, vec));
    show("touched page", vec[0]);
    show("far page", vec[1000]);
    show("last page", vec[4095]);
    show("unaligned", mincore(p + 1, 4096, vec));
    show("bad vector", mincore(p, 4096, (unsigned char *)8));
    show("no length", mincore(p, 0, vec));
    show("part of a page", mincore(p, 100, vec));
    madvise(p, 4096, MADV_DONTNEED);
    show("after dontneed", mincore(p, 4096, vec));
    show("dropped page", vec[0]);
    munmap(p + (8 << 20), 4096);
    show("across a hole", mincore(p, len, vec));
    munmap(p, len);
    show("unmapped", mincore(p, 4096, vec));
}

static void locking(void) {
    show("mlockall no flags", mlockall(0));
    show("mlockall on fault alone", mlockall(MCL_ONFAULT));
    show("mlockall flag 8", mlockall(8));
    show("munlockall", munlockall());
}

/* Only in a guest: see the top. */
static void guest_only(void) {
    struct sched_param rt = {.sched_priority = 10};
    show("set fifo", setsched(0, SCHED_FIFO, &rt));
    show("set rr", setsched(0, SCHED_RR, &rt));
    show("policy", sched_getscheduler(0));
    show("mlockall", mlockall(MCL_CURRENT | MCL_FUTURE));
    show("munlockall", munlockall());
    show("set linux32", personality(PER_LINUX32));
    show("set read-implies-exec", personality(READ_IMPLIES_EXEC));
    show("personality", personality(0xffffffff));
    show("sethostname", sethostname("pvmux-test", 10));
    struct utsname u;
    uname(&u);
    printf("nodename: %s\n", u.nodename);
    char buf[80] = {0};
    FILE *f = fopen("/proc/sys/kernel/hostname", "r");
    if (f && fgets(buf, sizeof buf, f))
        printf("proc hostname: %s", buf);
    if (f)
        fclose(f);
    char long_name[65];
    memset(long_name, 'x', sizeof long_name);
    show("sethostname 65 bytes", sethostname(long_name, sizeof long_name));
    show("setdomainname", setdomainname("example", 7));
    uname(&u);
    printf("domainname: %s\n", u.domainname);
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        if (setuid(65534) == 0)
            show("unprivileged sethostname", sethostname("nope", 4));
        fflush(stdout);
        _exit(0);
    }
    waitpid(c, NULL, 0);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "persona-after-exec") == 0) {
        show("exec'd personality", personality(0xffffffff));
        return 3;
    }
    if (argc > 1 && strcmp(argv[1], "guest") == 0) {
        guest_only();
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    policies();
    persona(argv[0]);
    residency();
    locking();
    return 0;
}
