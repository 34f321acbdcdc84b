/* grant_attack MODE ...: a guest program that tries to run threads of its user sandbox
 * without a vCPU from the guest kernel (docs/SECURITY.md, "User threads run only on a granted
 * vCPU"). It reaches the stub as tests/programs/src/bin/hostile.rs does: the context region
 * at USER_CTX_BASE, and a `syscall; pop rbp; ret` in stub code found through the signal
 * frames the host kernel left on the stub's signal stacks.
 *
 *   fake-runs NPROC SECONDS   NPROC children each, 20 times over a second, disarm the slice
 *                             timer of every idle slot of their own context region and write a
 *                             complete RUN request into it (registers pointing at a spin
 *                             loop), bump run_seq and wake the slot threads (futex wake on
 *                             run_seq and on the grant words, from stub code); then they sleep
 *                             in pause(). The parent prints "attack in place" once all have,
 *                             sleeps SECONDS, kills and reaps them, and forks a normal child.
 *                             Exit 0 when everything after the attack worked.
 *   forged-exit TIMEOUT       a child disarms its slot's slice timer, forges its own slot's
 *                             exit as a `pause` system call and hands the slot back, but keeps
 *                             spinning. The parent waits up to
 *                             TIMEOUT seconds for it to be killed; exit 0 if it died of
 *                             SIGKILL (and a normal child works afterwards), 1 if it was not
 *                             killed (the parent kills it then).
 *   garbage-exit TIMEOUT      as forged-exit, but the forged exit's reason is no valid one:
 *                             the guest kernel gives up on the sandbox at once and kills the
 *                             child (and says why on the console's stderr).
 *
 * Exit 3 when the attack could not be set up. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define USER_CTX_BASE 0x480000000000ull
#define USER_AREAS_BASE (USER_CTX_BASE + 0x40000000ull)
#define USER_GRANT_BASE (USER_CTX_BASE + 0x20000000ull)
#define AREA_SIZE (128ull * 1024)
#define AREA_ALTSTACK (40ull * 1024)
#define ALTSTACK_SIZE (AREA_SIZE - AREA_ALTSTACK)
#define SLOT_OFFSET 4096ull
#define SLOT_SIZE (4ull * 4096)
#define MAX_SLOTS 64

/* UserSlot fields (docs/ABI.md §16.3). */
#define S_RUN_SEQ 0x00
#define S_DONE_SEQ 0x04
#define S_KERNEL_WAITING 0x0c
#define S_COMMAND 0x10
#define S_NR_OPS 0x14
#define S_FS_BASE 0x18
#define S_SLICE_NS 0x20
#define S_FP_LEN 0x28
#define S_FP_INIT 0x2c
#define S_EXIT_REASON 0x30
#define S_EXIT_VECTOR 0x34
#define S_EXIT_ERROR_CODE 0x38
#define S_EXIT_ADDR 0x40
#define S_FP_SAVED_LEN 0x50
#define S_REGS 0x58
#define S_OPS_SEQ 0x140
/* TrapFrame fields. */
#define R_RAX 0
#define R_RIP 144
#define R_RFLAGS 152
#define R_RSP 160

#define SYS_FUTEX 202
#define SYS_TIMER_SETTIME 223
#define FUTEX_WAKE 1
#define NR_PAUSE 34

static uint64_t slot_base(uint32_t i) { return USER_CTX_BASE + SLOT_OFFSET + i * SLOT_SIZE; }
static volatile uint32_t *w32(uint64_t a) { return (volatile uint32_t *)a; }
static volatile uint64_t *w64(uint64_t a) { return (volatile uint64_t *)a; }

static uint32_t nr_slots(void) {
    uint32_t n = *w32(USER_CTX_BASE + 12);
    return n > MAX_SLOTS ? MAX_SLOTS : n;
}

/* The stub's signal restorer (`mov eax, 15; syscall`), from an rt_sigframe on a signal
 * stack: its first word is the restorer, followed by the ucontext whose uc_stack names the
 * signal stack. */
static uint64_t find_restorer(void) {
    static const uint8_t code[7] = {0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05};
    for (uint32_t i = 0; i < nr_slots(); i++) {
        uint64_t ss_sp = USER_AREAS_BASE + i * AREA_SIZE + AREA_ALTSTACK;
        size_t words = ALTSTACK_SIZE / 8;
        for (size_t j = 3; j + 2 < words; j++) {
            if (*w64(ss_sp + 8 * j) != ss_sp || *w64(ss_sp + 8 * (j + 2)) != ALTSTACK_SIZE)
                continue;
            uint64_t cand = *w64(ss_sp + 8 * (j - 3));
            if (cand < USER_CTX_BASE || cand >= 0x800000000000ull)
                continue;
            if (memcmp((const void *)cand, code, sizeof code) == 0)
                return cand;
        }
    }
    return 0;
}

static uint64_t gadget;

/* `syscall; pop rbp; ret` after the restorer. */
static int find_gadget(void) {
    uint64_t r = find_restorer();
    if (!r)
        return -1;
    for (uint64_t a = r; a < r + 16 * 1024; a++) {
        const uint8_t *b = (const uint8_t *)a;
        if (b[0] == 0x0f && b[1] == 0x05 && b[2] == 0x5d && b[3] == 0xc3) {
            gadget = a;
            return 0;
        }
    }
    return -1;
}

/* A system call made from stub code. */
static long stub_call(long n, long a0, long a1, long a2) {
    long r;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    register long r9 __asm__("r9") = 0;
    __asm__ volatile("lea 1f(%%rip), %%r11\n\t"
                     "push %%r11\n\t"
                     "push %%rbp\n\t"
                     "jmp *%[g]\n\t"
                     "1:"
                     : "=a"(r)
                     : [g] "r"(gadget), "a"(n), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

static void futex_wake_from_stub(uint64_t addr) { stub_call(SYS_FUTEX, (long)addr, FUTEX_WAKE, 64); }

/* What a hijacked slot thread would run: a spin that needs no stack. */
__attribute__((naked, noinline)) static void spin_forever(void) {
    __asm__ volatile("1: pause\n\t jmp 1b");
}

static char spin_stacks[MAX_SLOTS][4096] __attribute__((aligned(16)));

/* Faults in the code and stacks a hijacked or forged thread spins on while it can still be
 * served: a fork child's pages are mapped at their first fault (pvmux maps them lazily),
 * and a thread whose slot was handed back has nobody to serve its faults. */
static void prefault_spin(void) {
    (void)*(volatile const char *)(uintptr_t)spin_forever;
    for (uint32_t i = 0; i < MAX_SLOTS; i++)
        *(volatile char *)&spin_stacks[i][sizeof spin_stacks[i] - 1] = 0;
}

/* Writes a RUN request into every idle slot (run_seq == done_seq) and wakes its thread. */
static int forge_runs(void) {
    int forged = 0;
    for (uint32_t i = 0; i < nr_slots(); i++) {
        uint64_t s = slot_base(i);
        if (*w32(s + S_RUN_SEQ) != *w32(s + S_DONE_SEQ))
            continue; /* our own slot, running this code (or one already hijacked) */
        /* Disarm the slot's slice timer first: it would bring a hijacked thread back. */
        static const struct { long v[4]; } zero;
        int32_t timer = *(volatile int32_t *)(USER_AREAS_BASE + i * AREA_SIZE + 8);
        (void)*(volatile const long *)zero.v; /* faulted in first, as in forge_own_exit */
        stub_call(SYS_TIMER_SETTIME, timer, 0, (long)&zero);
        *w32(s + S_COMMAND) = 1; /* RUN */
        *w32(s + S_NR_OPS) = 0;
        *w64(s + S_OPS_SEQ) = 0;
        *w64(s + S_FS_BASE) = 0;
        *w64(s + S_SLICE_NS) = 0; /* no slice timer */
        *w32(s + S_FP_LEN) = 0;
        *w32(s + S_FP_INIT) = 1;
        for (int r = 0; r < 21; r++)
            *w64(s + S_REGS + 8 * r) = 0;
        *w64(s + S_REGS + R_RIP) = (uint64_t)spin_forever;
        *w64(s + S_REGS + R_RSP) = (uint64_t)(spin_stacks[i] + sizeof spin_stacks[i]);
        *w64(s + S_REGS + R_RFLAGS) = 0x202;
        __atomic_add_fetch((uint32_t *)(s + S_RUN_SEQ), 1, __ATOMIC_SEQ_CST);
        futex_wake_from_stub(s + S_RUN_SEQ);
        futex_wake_from_stub(USER_GRANT_BASE + 4 * i);
        forged++;
    }
    return forged;
}

static int fake_runs(int nproc, int seconds) {
    int ready[2];
    if (pipe(ready) != 0)
        return 3;
    pid_t kids[64];
    if (nproc > 64)
        nproc = 64;
    for (int k = 0; k < nproc; k++) {
        pid_t p = fork();
        if (p < 0)
            return 3;
        if (p == 0) {
            char c = 'x';
            prefault_spin();
            if (find_gadget() == 0) {
                /* Again and again for a second: a thread a stale timer signal brought back
                 * is hijacked anew. */
                int n = 0;
                for (int round = 0; round < 20; round++) {
                    n += forge_runs();
                    usleep(50000);
                }
                c = n > 0 ? 'f' : 'n';
            }
            if (write(ready[1], &c, 1) != 1)
                _exit(3);
            for (;;)
                pause();
        }
        kids[k] = p;
    }
    int forged = 0;
    for (int k = 0; k < nproc; k++) {
        char c;
        if (read(ready[0], &c, 1) != 1 || c == 'x') {
            printf("could not set up the attack (child %d)\n", k);
            return 3;
        }
        forged += c == 'f';
    }
    printf("attack in place: %d children forged run requests\n", forged);
    fflush(stdout);
    sleep((unsigned)seconds);
    for (int k = 0; k < nproc; k++)
        kill(kids[k], SIGKILL);
    for (int k = 0; k < nproc; k++) {
        int st;
        if (waitpid(kids[k], &st, 0) != kids[k])
            return 1;
    }
    printf("attackers reaped\n");
    pid_t p = fork();
    if (p == 0)
        _exit(7);
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("a normal child failed afterwards\n");
        return 1;
    }
    printf("a normal child ran afterwards\n");
    return forged == nproc ? 0 : 1;
}

/* Hands our own slot back as if we had made a `pause` system call, and keeps running: first
 * disarms the slot's slice timer (its id is in the stub's per-slot state), which would
 * otherwise bring the thread back into the stub within a slice. */
static void forge_own_exit(uint32_t reason) {
    for (uint32_t i = 0; i < nr_slots(); i++) {
        uint64_t s = slot_base(i);
        uint32_t run = *w32(s + S_RUN_SEQ);
        if (run == *w32(s + S_DONE_SEQ))
            continue;
        static const struct itimerspec_raw { long v[4]; } zero;
        int32_t timer = *(volatile int32_t *)(USER_AREAS_BASE + i * AREA_SIZE + 8);
        /* Faulted in by user code first: the stub's own system call would get EFAULT for a
         * page not mapped yet (a fork child's pages are mapped at their first fault). */
        (void)*(volatile const long *)zero.v;
        stub_call(SYS_TIMER_SETTIME, timer, 0, (long)&zero);
        *w64(s + S_REGS + R_RAX) = NR_PAUSE;
        *w64(s + S_REGS + R_RIP) = (uint64_t)spin_forever;
        *w64(s + S_REGS + R_RSP) = (uint64_t)(spin_stacks[i] + sizeof spin_stacks[i]);
        *w64(s + S_REGS + R_RFLAGS) = 0x202;
        *w32(s + S_FP_SAVED_LEN) = 0;
        *w32(s + S_EXIT_VECTOR) = 128;
        *w64(s + S_EXIT_ERROR_CODE) = NR_PAUSE;
        *w64(s + S_EXIT_ADDR) = 0;
        *w32(s + S_EXIT_REASON) = reason;
        __atomic_store_n((uint32_t *)(s + S_DONE_SEQ), *w32(s + S_RUN_SEQ), __ATOMIC_SEQ_CST);
        futex_wake_from_stub(s + S_DONE_SEQ);
        return;
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int forged_exit(int timeout, uint32_t reason) {
    pid_t p = fork();
    if (p < 0)
        return 3;
    if (p == 0) {
        if (find_gadget() != 0)
            _exit(3);
        prefault_spin();
        forge_own_exit(reason);
        spin_forever();
    }
    double t0 = now_s();
    int st = 0;
    for (;;) {
        pid_t r = waitpid(p, &st, WNOHANG);
        if (r == p)
            break;
        if (now_s() - t0 > timeout) {
            printf("the forged-exit child was not killed within %d s\n", timeout);
            kill(p, SIGKILL);
            waitpid(p, &st, 0);
            return 1;
        }
        usleep(20000);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
        printf("could not set up the attack\n");
        return 3;
    }
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
        printf("the forged-exit child ended otherwise: status %#x\n", st);
        return 1;
    }
    printf("the forged-exit child was killed by SIGKILL after %.1f s\n", now_s() - t0);
    pid_t q = fork();
    if (q == 0)
        _exit(7);
    if (q < 0 || waitpid(q, &st, 0) != q || !WIFEXITED(st) || WEXITSTATUS(st) != 7) {
        printf("a normal child failed afterwards\n");
        return 1;
    }
    printf("a normal child ran afterwards\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "fake-runs") == 0)
        return fake_runs(atoi(argv[2]), atoi(argv[3]));
    if (argc == 3 && strcmp(argv[1], "forged-exit") == 0)
        return forged_exit(atoi(argv[2]), 1 /* Syscall */);
    if (argc == 3 && strcmp(argv[1], "garbage-exit") == 0)
        return forged_exit(atoi(argv[2]), 0xdead);
    fprintf(stderr, "usage: grant_attack fake-runs NPROC SECONDS | forged-exit TIMEOUT | "
                    "garbage-exit TIMEOUT\n");
    return 2;
}
