/* Issue 10 (the guest kernel survives any program): a program that leaves every SIGSEGV
 * handler with siglongjmp never calls rt_sigreturn. Linux keeps nothing in the kernel per
 * signal frame (everything rt_sigreturn needs is in the user frame), so any number of
 * such faults costs the kernel nothing. Usage: klimits-siglongjmp [COUNT] (default 50000).
 * Prints how many faults were caught, and checks that the FPU state a handler finds in its
 * frame (uc_mcontext.fpregs) is the interrupted code's and that rt_sigreturn restores the
 * frame's (possibly edited) FPU state. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <ucontext.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

static sigjmp_buf env;
static volatile long caught;

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)si;
    (void)uc;
    caught++;
    siglongjmp(env, 1);
}

static volatile unsigned mxcsr_seen;
static void on_usr1(int sig, siginfo_t *si, void *ucv) {
    (void)sig;
    (void)si;
    ucontext_t *uc = ucv;
    if (uc->uc_mcontext.fpregs) {
        mxcsr_seen = uc->uc_mcontext.fpregs->mxcsr;
        /* Edit the saved state: rounding mode "toward zero" (RC = 11b) after return. */
        uc->uc_mcontext.fpregs->mxcsr |= 0x6000;
    }
}

static volatile int on_alt;
static void on_usr2(int sig) {
    (void)sig;
    on_alt = 1;
}

static unsigned get_mxcsr(void) {
    unsigned v;
    __asm__ volatile("stmxcsr %0" : "=m"(v));
    return v;
}

static void set_mxcsr(unsigned v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 50000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    for (long i = 0; i < n; i++) {
        if (sigsetjmp(env, 1) == 0) {
            *(volatile int *)0 = 1;
        }
    }
    printf("caught %ld of %ld\n", caught, n);
    /* The FPU state in the frame. */
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    set_mxcsr(0x1f80 | 0x2000); /* round down */
    raise(SIGUSR1);
    unsigned after = get_mxcsr();
    printf("handler saw rounding %u, after return %u\n", (mxcsr_seen >> 13) & 3,
           (after >> 13) & 3);
    set_mxcsr(0x1f80);
    /* A handler on an alternate stack of the size the kernel says a frame needs at most
     * (AT_MINSIGSTKSZ, which the frame's FPU state makes larger than MINSIGSTKSZ with
     * AVX-512), or of MINSIGSTKSZ, the least sigaltstack takes (2048 bytes: more than a
     * frame needs without AVX-512 state, e.g. 1776 bytes on an AMD EPYC without it). */
    long min = (long)getauxval(AT_MINSIGSTKSZ);
    long size = min < 2048 ? 2048 : min;
    stack_t ss = {.ss_sp = malloc(size), .ss_size = size, .ss_flags = 0};
    if (min < 1024 || !ss.ss_sp || sigaltstack(&ss, NULL) != 0) {
        printf("sigaltstack of AT_MINSIGSTKSZ (%ld): failed\n", min);
        return 1;
    }
    struct sigaction sa2;
    memset(&sa2, 0, sizeof sa2);
    sa2.sa_handler = on_usr2;
    sa2.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR2, &sa2, NULL);
    raise(SIGUSR2);
    printf("handler on an alternate stack of AT_MINSIGSTKSZ bytes: %s\n", on_alt ? "ok" : "not run");
    return 0;
}
