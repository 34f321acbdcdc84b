/* The FPU state across system calls: every register a program holds — xmm0-15 and their
 * AVX/AVX-512 upper halves, zmm16-31, the opmask registers k0-7, MXCSR and the x87 control
 * word — is what it was after system calls that return at once (getppid), that block and
 * switch threads (a token passed around a ring of pipes, more threads than vCPUs), that
 * deliver a signal whose handler changes every register, and after fork (in the child too).
 * Each call site is `mov $nr, %eax; syscall`, the form a pvmux guest kernel patches, so the
 * trusted in-process mode's kept-state path (no xsave per call) is what runs. Prints the same
 * lines natively and in a guest; the register set follows the CPU. */
#define _GNU_SOURCE
#include <cpuid.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The register image the assembly loads and stores: 32 × 64 bytes of vector registers,
 * 8 opmasks, MXCSR and the x87 control word. */
struct regs {
    uint8_t v[32][64];
    uint64_t k[8];
    uint32_t mxcsr;
    uint16_t fcw;
    uint16_t pad;
    int64_t r1; /* out: the first call's result in the last round */
} __attribute__((aligned(64)));

/* Two system calls per round: nr1(a1, b1, c1) then nr2(a2, b2, c2) (numbers fixed per
 * function). */
struct calls {
    long a1, b1, c1, a2, b2, c2, rounds;
};

/* 0: SSE (xmm0-15), 1: AVX (ymm0-15), 2: AVX-512 (zmm0-31, k0-7). */
static int level;

/* Bytes of one vector register at this level. */
static size_t vec_bytes(void) { return level == 2 ? 64 : level == 1 ? 32 : 16; }
static int vec_count(void) { return level == 2 ? 32 : 16; }

#define PROLOGUE                                                                            \
    "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"             \
    "  sub $24, %rsp\n"                                                                     \
    "  mov %rdi, %r12\n mov %rsi, %r13\n mov %rdx, %r14\n"                                  \
    "  stmxcsr 0(%rsp)\n fnstcw 4(%rsp)\n"                                                  \
    "  ldmxcsr 2112(%r13)\n fldcw 2116(%r13)\n"                                             \
    "  xor %ebp, %ebp\n mov 48(%r12), %r15\n"
#define EPILOGUE                                                                            \
    "  stmxcsr 2112(%r14)\n fnstcw 2116(%r14)\n"                                            \
    "  ldmxcsr 0(%rsp)\n fldcw 4(%rsp)\n"                                                   \
    "  mov %rbp, %rax\n"                                                                    \
    "  add $24, %rsp\n pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"  \
    "  ret\n"
/* The loop: returns how many calls failed (a negative result); the first call's result of
 * the last round goes to `out->r1` (`fork`: 0 in the child). */
#define LOOP(NR1, NR2)                                                                      \
    "1:\n"                                                                                  \
    "  mov 0(%r12), %rdi\n mov 8(%r12), %rsi\n mov 16(%r12), %rdx\n"                        \
    "  mov $" #NR1 ", %eax\n syscall\n"                                                     \
    "  mov %rax, 2120(%r14)\n"                                                              \
    "  test %rax, %rax\n jns 2f\n inc %rbp\n 2:\n"                                          \
    "  mov 24(%r12), %rdi\n mov 32(%r12), %rsi\n mov 40(%r12), %rdx\n"                      \
    "  mov $" #NR2 ", %eax\n syscall\n"                                                     \
    "  test %rax, %rax\n jns 3f\n inc %rbp\n 3:\n"                                          \
    "  dec %r15\n jnz 1b\n"

#define LOAD_SSE ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu \\i*64(%r13), %xmm\\i\n .endr\n"
#define STORE_SSE ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n movdqu %xmm\\i, \\i*64(%r14)\n .endr\n"
#define LOAD_AVX ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu \\i*64(%r13), %ymm\\i\n .endr\n"
#define STORE_AVX ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n vmovdqu %ymm\\i, \\i*64(%r14)\n .endr\n vzeroupper\n"
#define LOAD_512                                                                            \
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n" \
    " vmovdqu64 \\i*64(%r13), %zmm\\i\n .endr\n"                                            \
    ".irp i,0,1,2,3,4,5,6,7\n kmovq 2048+\\i*8(%r13), %k\\i\n .endr\n"
#define STORE_512                                                                           \
    ".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n" \
    " vmovdqu64 %zmm\\i, \\i*64(%r14)\n .endr\n"                                            \
    ".irp i,0,1,2,3,4,5,6,7\n kmovq %k\\i, 2048+\\i*8(%r14)\n .endr\n vzeroupper\n"

#define FN(NAME, NR1, NR2, LOAD, STORE)                                                     \
    __asm__(".text\n.globl " NAME "\n.type " NAME ",@function\n" NAME ":\n" PROLOGUE LOAD  \
            LOOP(NR1, NR2) STORE EPILOGUE);

#define FAMILY(NAME, NR1, NR2)                                                              \
    FN(NAME "_sse", NR1, NR2, LOAD_SSE, STORE_SSE)                                          \
    FN(NAME "_avx", NR1, NR2, LOAD_AVX, STORE_AVX)                                          \
    FN(NAME "_512", NR1, NR2, LOAD_512, STORE_512)

typedef long (*calls_fn)(const struct calls *, const struct regs *, struct regs *);
#define DECLARE(NAME)                                                                       \
    long NAME##_sse(const struct calls *, const struct regs *, struct regs *);              \
    long NAME##_avx(const struct calls *, const struct regs *, struct regs *);              \
    long NAME##_512(const struct calls *, const struct regs *, struct regs *);              \
    static calls_fn NAME(void) { return level == 2 ? NAME##_512 : level == 1 ? NAME##_avx : NAME##_sse; }

FAMILY("ppid", 110, 110)   /* getppid, getppid */
FAMILY("rdwr", 0, 1)       /* read, write */
FAMILY("sigl", 62, 39)     /* kill, getpid */
FAMILY("frk", 57, 39)     /* fork, getpid (one round) */
DECLARE(ppid)
DECLARE(rdwr)
DECLARE(sigl)
DECLARE(frk)

static void detect(void) {
    unsigned a, b, c, d;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 27)) || !(c & (1u << 28)))
        return;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6)
        return;
    level = 1;
    __cpuid_count(7, 0, a, b, c, d);
    if ((b & (1u << 16)) && (lo & 0xe6) == 0xe6)
        level = 2;
}

/* A register image from `seed`: every vector byte and opmask differs per register and
 * seed; MXCSR rounds toward zero with every exception masked; the x87 control word selects
 * 53-bit precision. */
static void pattern(struct regs *r, uint64_t seed) {
    memset(r, 0, sizeof *r);
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int i = 0; i < 32; i++)
        for (int j = 0; j < 64; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r->v[i][j] = (uint8_t)x;
        }
    for (int i = 0; i < 8; i++)
        r->k[i] = seed * 0x0101010101010101ull + (uint64_t)i * 0x1111;
    r->mxcsr = 0x7f80;
    r->fcw = 0x027f;
}

/* Whether `got` holds what `want` loaded (the registers of this CPU's level). */
static int same(const struct regs *want, const struct regs *got) {
    for (int i = 0; i < vec_count(); i++)
        if (memcmp(want->v[i], got->v[i], vec_bytes()))
            return 0;
    if (level == 2 && memcmp(want->k, got->k, sizeof want->k))
        return 0;
    return want->mxcsr == got->mxcsr && want->fcw == got->fcw;
}

static int failures;

static void check(int ok, const char *what) {
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
    if (!ok)
        failures++;
}

/* ---- getppid on several threads at once ---- */
struct job {
    uint64_t seed;
    struct calls c;
    calls_fn fn;
    int ok;
};

static void *run_job(void *arg) {
    struct job *j = arg;
    static __thread struct regs in, out;
    pattern(&in, j->seed);
    long bad = j->fn(&j->c, &in, &out);
    j->ok = bad == 0 && same(&in, &out);
    return NULL;
}

static void threads_getppid(void) {
    enum { N = 4 };
    struct job jobs[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){.seed = 100 + i, .c = {.rounds = 50000}, .fn = ppid()};
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    }
    int ok = 1;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok &= jobs[i].ok;
    }
    check(ok, "getppid x100000 on each of 4 threads keeps every register");
}

/* ---- a token around a ring of pipes: every read blocks, every thread switch happens with
 * a thread's state in the registers ---- */
static void ring(void) {
    enum { N = 3, ROUNDS = 3000 };
    int p[N][2];
    for (int i = 0; i < N; i++)
        if (pipe(p[i]))
            exit(2);
    static char bufs[N][8];
    struct job jobs[N];
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        jobs[i] = (struct job){
            .seed = 200 + i,
            .c = {.a1 = p[i][0], .b1 = (long)bufs[i], .c1 = 1,
                  .a2 = p[(i + 1) % N][1], .b2 = (long)bufs[i], .c2 = 1, .rounds = ROUNDS},
            .fn = rdwr(),
        };
    }
    if (write(p[0][1], "t", 1) != 1)
        exit(2);
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, run_job, &jobs[i]);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ok &= jobs[i].ok;
    }
    check(ok, "a token passed 3000 times around 3 threads keeps every register");
}

/* ---- a signal whose handler changes every register ---- */
static volatile int handled;

static void clobber(int sig) {
    (void)sig;
    handled++;
    if (level == 2)
        __asm__ volatile(".irp i,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
                         " vpxord %%zmm\\i, %%zmm\\i, %%zmm\\i\n .endr\n"
                         ".irp i,1,2,3,4,5,6,7\n kxorq %%k\\i, %%k\\i, %%k\\i\n .endr\n" ::
                             : "memory");
    if (level >= 1)
        __asm__ volatile("vzeroall" ::: "memory");
    else
        __asm__ volatile(".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15\n"
                         " pxor %%xmm\\i, %%xmm\\i\n .endr\n" ::
                             : "memory");
    unsigned m = 0x1f80;
    __asm__ volatile("ldmxcsr %0\n fninit" ::"m"(m) : "memory");
}

static void signal_frame(void) {
    signal(SIGUSR1, clobber);
    struct calls c = {.a1 = getpid(), .b1 = SIGUSR1, .rounds = 200};
    static struct regs in, out;
    pattern(&in, 300);
    long bad = sigl()(&c, &in, &out);
    check(bad == 0 && handled == 200 && same(&in, &out),
          "200 signals whose handler changes every register: restored each time");
}

/* ---- fork: the child starts with the parent's registers ---- */
static void fork_state(void) {
    struct calls c = {.rounds = 1};
    static struct regs in, out;
    pattern(&in, 400);
    long bad = frk()(&c, &in, &out);
    if (out.r1 == 0) /* the child: its registers */
        _exit(bad == 0 && same(&in, &out) ? 0 : 1);
    int st = 0;
    wait(&st);
    check(bad == 0 && out.r1 > 0 && same(&in, &out), "the parent's registers after fork");
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child's registers after fork");
}

int main(void) {
    detect();
    setvbuf(stdout, NULL, _IONBF, 0);
    threads_getppid();
    ring();
    signal_frame();
    fork_state();
    printf("failures: %d\n", failures);
    return failures != 0;
}
