/* signal-rules: the rules of sigaltstack, sigaction and signal delivery a program can see:
 * what sigaltstack reports and refuses (EPERM on the stack, ENOMEM, EINVAL, SS_ONSTACK,
 * SS_DISABLE, SS_AUTODISARM), handlers on the alternate stack, which children keep it
 * (fork) and which do not (threads), SA_RESETHAND and SA_NODEFER, the masks sigaction and
 * sigprocmask store, the frame's uc_stack, uc_sigmask and oldmask, and a handler without
 * SA_RESTORER. One line per case, "NAME: ok" or "NAME: FAIL ..."; the exit status is the
 * number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

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

static char alt[64 * 1024] __attribute__((aligned(16)));

/* The system call itself: the C libraries check some arguments before it (musl refuses
 * SS_ONSTACK), and what is tested here is the kernel. */
static int set_alt(void *sp, int flags, size_t size) {
    stack_t ss = {.ss_sp = sp, .ss_flags = flags, .ss_size = size};
    return syscall(SYS_sigaltstack, &ss, NULL) == 0 ? 0 : -1;
}

/* The kernel's MINSIGSTKSZ on x86-64 (glibc's macro may be the larger sysconf value). */
#define KERNEL_MINSIGSTKSZ 2048

static stack_t query_alt(void) {
    stack_t o;
    memset(&o, 0xa5, sizeof o);
    sigaltstack(NULL, &o);
    return o;
}

static void install(int sig, void (*h)(int, siginfo_t *, void *), int flags, const sigset_t *m) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = h;
    sa.sa_flags = SA_SIGINFO | flags;
    if (m)
        sa.sa_mask = *m;
    sigaction(sig, &sa, NULL);
}

/* What the last handler saw. */
static volatile int handled;
static volatile uintptr_t local_addr;
static stack_t in_handler_query, in_handler_uc_stack;
static int in_handler_set_errno;
static sigset_t in_handler_mask;
static sigset_t uc_mask;
static unsigned long long uc_oldmask;

static void on_alt_handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    int here;
    local_addr = (uintptr_t)&here;
    in_handler_query = query_alt();
    in_handler_uc_stack = uc->uc_stack;
    errno = 0;
    in_handler_set_errno = set_alt(NULL, SS_DISABLE, 0) == 0 ? 0 : errno;
    handled++;
}

static int on_alt(void) {
    return local_addr > (uintptr_t)alt && local_addr < (uintptr_t)alt + sizeof alt;
}

static void altstack_rules(void) {
    char d[160];
    stack_t o = query_alt();
    snprintf(d, sizeof d, "flags %d sp %p size %zu", o.ss_flags, o.ss_sp, o.ss_size);
    report("sigaltstack: none at first", o.ss_flags == SS_DISABLE && o.ss_size == 0, d);

    errno = 0;
    int r = set_alt(alt, 4, sizeof alt);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("sigaltstack: an unknown mode is EINVAL", r == -1 && errno == EINVAL, d);
    errno = 0;
    r = set_alt(alt, 0, KERNEL_MINSIGSTKSZ - 1);
    snprintf(d, sizeof d, "returned %d errno %d", r, errno);
    report("sigaltstack: below MINSIGSTKSZ is ENOMEM", r == -1 && errno == ENOMEM, d);
    o = query_alt();
    report("sigaltstack: a refused stack changes nothing", o.ss_flags == SS_DISABLE,
           "a stack was set");

    r = set_alt(alt, SS_ONSTACK, sizeof alt);
    o = query_alt();
    snprintf(d, sizeof d, "returned %d, then flags %d sp %p size %zu", r, o.ss_flags, o.ss_sp,
             o.ss_size);
    report("sigaltstack: SS_ONSTACK is accepted and the stack reported",
           r == 0 && o.ss_flags == 0 && o.ss_sp == alt && o.ss_size == sizeof alt, d);

    r = set_alt(alt + 16, SS_DISABLE, 1);
    o = query_alt();
    snprintf(d, sizeof d, "returned %d, then flags %d sp %p size %zu", r, o.ss_flags, o.ss_sp,
             o.ss_size);
    report("sigaltstack: disabling forgets the stack",
           r == 0 && o.ss_flags == SS_DISABLE && o.ss_sp == NULL && o.ss_size == 0, d);
}

static void handler_on_alt(void) {
    char d[200];
    set_alt(alt, 0, sizeof alt);
    install(SIGUSR1, on_alt_handler, SA_ONSTACK, NULL);
    handled = 0;
    raise(SIGUSR1);
    report("SA_ONSTACK: the handler runs on the alternate stack", handled == 1 && on_alt(),
           "not on it");
    snprintf(d, sizeof d, "flags %d", in_handler_query.ss_flags);
    report("sigaltstack: reports SS_ONSTACK inside the handler",
           in_handler_query.ss_flags == SS_ONSTACK, d);
    snprintf(d, sizeof d, "errno %d", in_handler_set_errno);
    report("sigaltstack: changing it while on it is EPERM", in_handler_set_errno == EPERM, d);
    snprintf(d, sizeof d, "flags %d sp %p size %zu", in_handler_uc_stack.ss_flags,
             in_handler_uc_stack.ss_sp, in_handler_uc_stack.ss_size);
    report("SA_ONSTACK: uc_stack is the stack as set",
           in_handler_uc_stack.ss_flags == 0 && in_handler_uc_stack.ss_sp == alt &&
               in_handler_uc_stack.ss_size == sizeof alt,
           d);
    stack_t o = query_alt();
    report("sigaltstack: still set after the handler", o.ss_flags == 0 && o.ss_sp == alt,
           "lost");

    install(SIGUSR1, on_alt_handler, 0, NULL);
    handled = 0;
    raise(SIGUSR1);
    report("without SA_ONSTACK the handler stays on the normal stack", handled == 1 && !on_alt(),
           "on the alternate stack");
}

static void autodisarm(void) {
    char d[200];
    set_alt(alt, SS_AUTODISARM, sizeof alt);
    stack_t o = query_alt();
    snprintf(d, sizeof d, "flags %#x", (unsigned)o.ss_flags);
    report("SS_AUTODISARM: reported", (unsigned)o.ss_flags == SS_AUTODISARM, d);
    install(SIGUSR1, on_alt_handler, SA_ONSTACK, NULL);
    handled = 0;
    raise(SIGUSR1);
    snprintf(d, sizeof d, "on it %d, flags %#x, set errno %d", on_alt(),
             (unsigned)in_handler_query.ss_flags, in_handler_set_errno);
    report("SS_AUTODISARM: disabled while the handler runs on it",
           handled == 1 && on_alt() && in_handler_query.ss_flags == SS_DISABLE &&
               in_handler_set_errno == 0,
           d);
    snprintf(d, sizeof d, "flags %#x sp %p", (unsigned)in_handler_uc_stack.ss_flags,
             in_handler_uc_stack.ss_sp);
    report("SS_AUTODISARM: uc_stack keeps the stack",
           (unsigned)in_handler_uc_stack.ss_flags == SS_AUTODISARM &&
               in_handler_uc_stack.ss_sp == alt,
           d);
    o = query_alt();
    snprintf(d, sizeof d, "flags %#x sp %p", (unsigned)o.ss_flags, o.ss_sp);
    report("SS_AUTODISARM: rt_sigreturn puts it back",
           (unsigned)o.ss_flags == SS_AUTODISARM && o.ss_sp == alt, d);
    set_alt(NULL, SS_DISABLE, 0);
}

static void *thread_query(void *arg) {
    *(stack_t *)arg = query_alt();
    return NULL;
}

static void inheritance(void) {
    char d[160];
    set_alt(alt, 0, sizeof alt);
    pid_t pid = fork();
    if (pid == 0) {
        stack_t o = query_alt();
        _exit(o.ss_flags == 0 && o.ss_sp == alt && o.ss_size == sizeof alt ? 0 : 1);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    snprintf(d, sizeof d, "child status %#x", st);
    report("fork: the child keeps the alternate stack", WIFEXITED(st) && WEXITSTATUS(st) == 0, d);
    stack_t t;
    memset(&t, 0, sizeof t);
    pthread_t th;
    pthread_create(&th, NULL, thread_query, &t);
    pthread_join(th, NULL);
    snprintf(d, sizeof d, "flags %d sp %p", t.ss_flags, t.ss_sp);
    report("pthread_create: a thread starts without one", t.ss_flags == SS_DISABLE, d);
    set_alt(NULL, SS_DISABLE, 0);
}

static void mask_handler(int sig, siginfo_t *si, void *ctx) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ctx;
    sigprocmask(SIG_BLOCK, NULL, &in_handler_mask);
    uc_mask = uc->uc_sigmask;
    uc_oldmask = (unsigned long long)uc->uc_mcontext.gregs[REG_OLDMASK];
    handled++;
}

static void actions(void) {
    char d[200];
    sigset_t usr2, all, none, cur;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigfillset(&all);
    sigemptyset(&none);

    /* The handler's mask: the action's mask plus the signal, and the frame's masks. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    sigprocmask(SIG_SETMASK, &hup, NULL);
    install(SIGUSR1, mask_handler, 0, &usr2);
    handled = 0;
    raise(SIGUSR1);
    report("a handler runs with its mask and its own signal blocked",
           handled == 1 && sigismember(&in_handler_mask, SIGUSR1) &&
               sigismember(&in_handler_mask, SIGUSR2) && sigismember(&in_handler_mask, SIGHUP),
           "wrong mask");
    snprintf(d, sizeof d, "oldmask %#llx", uc_oldmask);
    report("uc_sigmask and uc_mcontext.oldmask hold the mask to return to",
           sigismember(&uc_mask, SIGHUP) && !sigismember(&uc_mask, SIGUSR1) &&
               uc_oldmask == 1ull << (SIGHUP - 1),
           d);
    sigprocmask(SIG_SETMASK, NULL, &cur);
    report("the mask of before is back after the handler",
           sigismember(&cur, SIGHUP) && !sigismember(&cur, SIGUSR1), "not restored");
    sigprocmask(SIG_SETMASK, &none, NULL);

    install(SIGUSR1, mask_handler, SA_NODEFER, NULL);
    raise(SIGUSR1);
    report("SA_NODEFER: the signal is not blocked in its handler",
           !sigismember(&in_handler_mask, SIGUSR1), "blocked");

    /* SA_RESETHAND: the handler once, then the default; the flags stay. */
    install(SIGUSR1, mask_handler, SA_RESETHAND, &usr2);
    handled = 0;
    raise(SIGUSR1);
    struct sigaction o;
    sigaction(SIGUSR1, NULL, &o);
    snprintf(d, sizeof d, "handled %d, handler %p, flags %#x", handled, (void *)o.sa_handler,
             (unsigned)o.sa_flags);
    report("SA_RESETHAND: the default action afterwards, the flags and mask kept",
           handled == 1 && o.sa_handler == SIG_DFL && (o.sa_flags & SA_RESETHAND) &&
               (o.sa_flags & SA_SIGINFO) && sigismember(&o.sa_mask, SIGUSR2),
           d);

    /* What sigaction and sigprocmask store. */
    install(SIGUSR2, mask_handler, 0, &all);
    sigaction(SIGUSR2, NULL, &o);
    report("sigaction: the stored mask never has SIGKILL or SIGSTOP",
           !sigismember(&o.sa_mask, SIGKILL) && !sigismember(&o.sa_mask, SIGSTOP) &&
               sigismember(&o.sa_mask, SIGTERM),
           "it has");
    errno = 0;
    int r = sigaction(SIGKILL, &o, NULL);
    int e1 = errno;
    errno = 0;
    int r2 = sigaction(SIGSTOP, &o, NULL);
    snprintf(d, sizeof d, "%d/%d %d/%d", r, e1, r2, errno);
    report("sigaction: SIGKILL and SIGSTOP cannot be caught",
           r == -1 && e1 == EINVAL && r2 == -1 && errno == EINVAL, d);
    sigprocmask(SIG_SETMASK, &all, NULL);
    sigprocmask(SIG_SETMASK, NULL, &cur);
    sigprocmask(SIG_SETMASK, &none, NULL);
    report("sigprocmask: SIGKILL and SIGSTOP cannot be blocked",
           !sigismember(&cur, SIGKILL) && !sigismember(&cur, SIGSTOP) &&
               sigismember(&cur, SIGTERM),
           "blocked");
    signal(SIGUSR1, SIG_DFL);
    signal(SIGUSR2, SIG_DFL);
}

/* The kernel's struct sigaction of x86-64. */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    unsigned long mask;
};

static void no_restorer(void) {
    char d[160];
    pid_t pid = fork();
    if (pid == 0) {
        struct ksigaction k = {.handler = (void *)mask_handler, .flags = SA_SIGINFO};
        if (syscall(SYS_rt_sigaction, SIGUSR1, &k, NULL, 8) != 0)
            _exit(3);
        syscall(SYS_kill, getpid(), SIGUSR1);
        _exit(0);
    }
    int st = -1;
    waitpid(pid, &st, 0);
    snprintf(d, sizeof d, "child status %#x", st);
    report("a handler without SA_RESTORER is a SIGSEGV",
           WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, d);
}

int main(void) {
    altstack_rules();
    handler_on_alt();
    autodisarm();
    inheritance();
    actions();
    no_restorer();
    printf("failures: %d\n", failures);
    return failures;
}
