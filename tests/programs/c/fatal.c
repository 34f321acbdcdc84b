/* fatal [--report] MODE: dies the way MODE says, to check how a death is reported.
 *
 *   segv-write   writes to address 0 (SIGSEGV, page fault, error 6)
 *   segv-read    reads address 0x10 (SIGSEGV, page fault, error 4)
 *   segv-ro      writes to a read-only page (SIGSEGV, protection fault, error 7)
 *   segv-mprotect writes to a page it wrote before and then made read-only with mprotect
 *                (SIGSEGV, protection fault on a present page, error 7)
 *   segv-fork-ro as segv-mprotect, with a fork (the page shared copy-on-write) in between
 *   gp           reads a non-canonical address (SIGSEGV, general protection)
 *   ud           executes ud2 (SIGILL)
 *   div          divides by zero (SIGFPE)
 *   abort        calls abort() (SIGABRT, sent by itself)
 *   term-child   a child sends it SIGTERM (prints the child's pid first)
 *   int          raises SIGINT (a user's ^C: reported quietly)
 *   pipe         writes to a pipe without readers (SIGPIPE: reported quietly)
 *   handled      segfaults with a SIGSEGV handler that exits 3 (not a death)
 *   child-segv   a child segfaults; prints how it ended and exits 0
 *   exit N       exits with N
 *
 * Before dying it prints "fatal: MODE". With --report, the fault modes run the same faulting
 * instruction under a SA_SIGINFO handler that prints what the kernel told it (signal,
 * si_code, si_addr, the faulting ip, uc_mcontext err and trapno) and exits 0: the same facts
 * the kernel's death report gives, to compare with the native run. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile int zero = 0;

static void on_segv(int sig) {
    (void)sig;
    _exit(3);
}

static void report(int sig, siginfo_t *si, void *ctx) {
    ucontext_t *uc = ctx;
    printf("signal %d code %d addr %#lx ip %#llx err %llu trapno %llu\n", sig, si->si_code,
           (unsigned long)si->si_addr, (unsigned long long)uc->uc_mcontext.gregs[REG_RIP],
           (unsigned long long)uc->uc_mcontext.gregs[REG_ERR],
           (unsigned long long)uc->uc_mcontext.gregs[REG_TRAPNO]);
    fflush(stdout);
    _exit(0);
}

/* The faulting instructions, each in a function of its own so that --report faults at the
 * same address. */
__attribute__((noinline)) static void write_null(void) { *(volatile int *)(uintptr_t)zero = 1; }
__attribute__((noinline)) static int read_low(void) {
    return *(volatile int *)(uintptr_t)(zero + 0x10);
}
__attribute__((noinline)) static void write_ro(char *p) { *(volatile char *)p = 1; }
__attribute__((noinline)) static int read_noncanonical(void) {
    return *(volatile int *)(uintptr_t)(0x8000000000000000ULL + zero);
}
__attribute__((noinline)) static void undefined(void) { __asm__ volatile("ud2"); }
__attribute__((noinline)) static int divide(void) { return 10 / zero; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--report") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = report;
        sa.sa_flags = SA_SIGINFO;
        int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
        for (int i = 0; i < 4; i++)
            sigaction(sigs[i], &sa, NULL);
        argv++;
        argc--;
    }
    const char *mode = argc > 1 ? argv[1] : "";
    printf("fatal: %s\n", mode);
    fflush(stdout);
    if (strcmp(mode, "segv-write") == 0) {
        write_null();
    } else if (strcmp(mode, "segv-read") == 0) {
        return read_low();
    } else if (strcmp(mode, "segv-ro") == 0) {
        /* Touched first, so the write is a protection fault on a present page. */
        char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || p[0] != 0)
            return 2;
        write_ro(p);
    } else if (strcmp(mode, "segv-mprotect") == 0 || strcmp(mode, "segv-fork-ro") == 0) {
        /* Written first (present and dirty), then read-only: the write is a protection
         * fault on a present page, as after any mprotect of memory in use. */
        char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        p[0] = 1;
        if (mode[5] == 'f') {
            pid_t pid = fork();
            if (pid == 0)
                _exit(0);
            if (pid < 0 || waitpid(pid, NULL, 0) != pid)
                return 2;
        }
        if (mprotect(p, 4096, PROT_READ) != 0)
            return 2;
        write_ro(p);
    } else if (strcmp(mode, "gp") == 0) {
        return read_noncanonical();
    } else if (strcmp(mode, "ud") == 0) {
        undefined();
    } else if (strcmp(mode, "div") == 0) {
        return divide();
    } else if (strcmp(mode, "abort") == 0) {
        abort();
    } else if (strcmp(mode, "term-child") == 0) {
        /* SIGTERM stays blocked until the child's pid is out. */
        sigset_t term, old;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        sigprocmask(SIG_BLOCK, &term, &old);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            kill(parent, SIGTERM);
            _exit(0);
        }
        printf("child %d\n", pid);
        fflush(stdout);
        for (;;)
            sigsuspend(&old);
    } else if (strcmp(mode, "int") == 0) {
        raise(SIGINT);
    } else if (strcmp(mode, "pipe") == 0) {
        int fd[2];
        if (pipe(fd) != 0)
            return 2;
        close(fd[0]);
        (void)!write(fd[1], "x", 1);
    } else if (strcmp(mode, "handled") == 0) {
        signal(SIGSEGV, on_segv);
        write_null();
    } else if (strcmp(mode, "child-segv") == 0) {
        pid_t pid = fork();
        if (pid == 0)
            write_null();
        int st;
        waitpid(pid, &st, 0);
        printf("child killed by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        return 0;
    } else if (strcmp(mode, "exit") == 0) {
        return argc > 2 ? atoi(argv[2]) : 0;
    }
    printf("fatal: still alive\n");
    return 1;
}
