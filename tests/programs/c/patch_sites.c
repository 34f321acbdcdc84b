/* Syscall-site patching (issue 13 item 1): system calls made from `mov $nr,%eax; syscall`
 * sites — the form the pvmux guest kernel rewrites after the first trap — behave as on Linux
 * while they get patched, from several threads, under a signal flood, across fork.
 *
 *   patch-sites            the checks below; prints "NAME: ok" lines and "failures: N"
 *   patch-sites code       prints the bytes of one site after it ran (under pvmux with
 *                          patching they differ from native; with --no-patch they are equal)
 *   patch-sites hostile    guest only: calls the stub's patch entry directly with garbage
 *                          registers, writes the original bytes back over a patched site,
 *                          then points its patch table at address 0 (it gets SIGSEGV)
 *
 * Output is the same natively and in a guest. Every site here is written out in assembly so
 * its form is the patchable one whatever the C library. One check makes its calls with
 * EFLAGS.AC (alignment checking) set, as a SIGBUS handler for an alignment fault does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL: %s\n", what);
        failures++;
    }
}

/* One patchable site per call number (and per place it is inlined). */
#define SYS0(NR)                                                                           \
    ({                                                                                     \
        long r_;                                                                           \
        __asm__ volatile("mov %1, %%eax\n\tsyscall" : "=a"(r_) : "i"(NR) : "rcx", "r11",    \
                         "memory");                                                        \
        r_;                                                                                \
    })
#define SYS3(NR, A, B, C)                                                                  \
    ({                                                                                     \
        long r_;                                                                           \
        register long a_ __asm__("rdi") = (long)(A);                                       \
        register long b_ __asm__("rsi") = (long)(B);                                       \
        register long c_ __asm__("rdx") = (long)(C);                                       \
        __asm__ volatile("mov %4, %%eax\n\tsyscall"                                       \
                         : "=a"(r_), "+r"(a_), "+r"(b_), "+r"(c_)                         \
                         : "i"(NR)                                                         \
                         : "rcx", "r11", "memory");                                        \
        r_;                                                                                \
    })

#define NR_READ 0
#define NR_WRITE 1
#define NR_GETPID 39
#define NR_GETPPID 110
#define NR_GETTID 186

/* ---- registers: everything but rax, rcx, r11 survives; rcx = the next rip, r11 = rflags;
 * the red zone below rsp is untouched; the flags are kept. ---- */
extern long reg_site(long *out);
__asm__(".text\n"
        ".globl reg_site\n"
        "reg_site:\n"
        "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
        "  mov %rdi, %r15\n"                     /* out[] */
        "  movq $0x1111, -8(%rsp)\n"             /* red zone words */
        "  movq $0x2222, -64(%rsp)\n"
        "  movq $0x3333, -128(%rsp)\n"
        "  mov $0x0101, %rbx\n mov $0x0202, %rbp\n mov $0x0303, %rdi\n mov $0x0404, %rsi\n"
        "  mov $0x0505, %rdx\n mov $0x0606, %r8\n mov $0x0707, %r9\n mov $0x0808, %r10\n"
        "  mov $0x0909, %r12\n mov $0x0a0a, %r13\n mov $0x0b0b, %r14\n"
        "  mov $0x5a5a, %eax\n movq %rax, %xmm3\n"
        "  stc\n"
        "  mov $39, %eax\n"
        "  syscall\n"
        "1:\n"
        "  setc %al\n movzbq %al, %rax\n mov %rax, 120(%r15)\n" /* CF kept */
        "  mov %rbx, 0(%r15)\n mov %rbp, 8(%r15)\n mov %rdi, 16(%r15)\n mov %rsi, 24(%r15)\n"
        "  mov %rdx, 32(%r15)\n mov %r8, 40(%r15)\n mov %r9, 48(%r15)\n mov %r10, 56(%r15)\n"
        "  mov %r12, 64(%r15)\n mov %r13, 72(%r15)\n mov %r14, 80(%r15)\n"
        "  lea 1b(%rip), %rax\n sub %rcx, %rax\n mov %rax, 88(%r15)\n" /* rcx == 1b */
        "  movq %xmm3, %rax\n mov %rax, 96(%r15)\n"
        "  mov -8(%rsp), %rax\n add -64(%rsp), %rax\n add -128(%rsp), %rax\n"
        "  mov %rax, 104(%r15)\n"
        "  mov %r11, 112(%r15)\n"
        "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
        "  ret\n");

static void registers(void) {
    int ok = 1;
    for (int round = 0; round < 4; round++) { /* trapped, then patched */
        long o[16] = {0};
        reg_site(o);
        long want[11] = {0x0101, 0x0202, 0x0303, 0x0404, 0x0505, 0x0606,
                         0x0707, 0x0808, 0x0909, 0x0a0a, 0x0b0b};
        for (int i = 0; i < 11; i++)
            ok &= o[i] == want[i];
        ok &= o[11] == 0;                       /* rcx: the address after the site */
        ok &= o[12] == 0x5a5a;                  /* xmm3 */
        ok &= o[13] == 0x1111 + 0x2222 + 0x3333; /* red zone */
        ok &= (o[14] & 0x2) != 0;               /* r11: rflags (bit 1 always set) */
        ok &= o[15] == 1;                       /* CF */
    }
    check(ok, "registers across a site");
    printf("registers: %s\n", ok ? "ok" : "bad");
}

/* ---- alignment checking: calls from a site with EFLAGS.AC set (as a SIGBUS handler for an
 * alignment fault starts) work and keep AC; nothing on the way faults with #AC. ---- */
extern void ac_site(long *out, long n);
__asm__(".text\n"
        ".globl ac_site\n"
        "ac_site:\n"                 /* out[0..n) = getppid() results, out[n] = r11 of the last */
        "  mov %rsi, %r8\n"
        "  mov %rdi, %r9\n"
        "  pushfq\n orl $0x40000, (%rsp)\n popfq\n"
        "1:\n"
        "  mov $110, %eax\n"
        "  syscall\n"
        "  mov %rax, (%r9)\n add $8, %r9\n"
        "  dec %r8\n jnz 1b\n"
        "  mov %r11, (%r9)\n"
        "  pushfq\n andl $0xfffbffff, (%rsp)\n popfq\n"
        "  ret\n");

static void alignment_check(void) {
    long out[9] = {0};
    long p = getppid();
    ac_site(out, 8); /* trapped, then patched */
    int ok = 1;
    for (int i = 0; i < 8; i++)
        ok &= out[i] == p;
    ok &= (out[8] & 0x40000) != 0; /* r11: the flags, AC included */
    check(ok, "calls with EFLAGS.AC set");
    printf("alignment-check: %s\n", ok ? "ok" : "bad");
}

/* ---- threads: many calls from several threads while their sites get patched ---- */
#define THREADS 4
#define ROUNDS 3000
static long ppid, pid;

static void *worker(void *arg) {
    long bad = 0;
    long tid = SYS0(NR_GETTID);
    int fds[2];
    if (pipe(fds) != 0)
        return (void *)1;
    for (int i = 0; i < ROUNDS; i++) {
        bad += SYS0(NR_GETPPID) != ppid;
        bad += SYS0(NR_GETPID) != pid;
        bad += SYS0(NR_GETTID) != tid;
        char c = (char)i, d = 0;
        bad += SYS3(NR_WRITE, fds[1], &c, 1) != 1;
        bad += SYS3(NR_READ, fds[0], &d, 1) != 1 || d != c;
    }
    close(fds[0]);
    close(fds[1]);
    (void)arg;
    return (void *)bad;
}

static void threads(void) {
    ppid = getppid();
    pid = getpid();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    check(bad == 0, "threads");
    printf("threads: %s\n", bad == 0 ? "ok" : "bad");
}

/* ---- signals: a timer flood while patched calls run; EINTR and SA_RESTART ---- */
static volatile sig_atomic_t ticks;
static void on_alarm(int s) {
    (void)s;
    ticks++;
}

static void arm(int restart, long usec) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = {{0, usec}, {0, usec}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static void disarm(void) {
    struct itimerval it = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &it, NULL);
}

static int wfd;
static void *late_writer(void *arg) {
    (void)arg;
    usleep(60000);
    char c = 'x';
    if (write(wfd, &c, 1) != 1)
        return (void *)1;
    return NULL;
}

/* A blocking read from a site (patched by the warm-up) while SIGALRM fires every 2 ms. */
static long flood_read(int restart) {
    int fds[2];
    if (pipe(fds) != 0)
        return -999;
    char c = 'w', d;
    for (int i = 0; i < 3; i++) { /* warm the site up: trapped, then patched */
        SYS3(NR_WRITE, fds[1], &c, 1);
        SYS3(NR_READ, fds[0], &d, 1);
    }
    wfd = fds[1];
    pthread_t t;
    pthread_create(&t, NULL, late_writer, NULL);
    ticks = 0;
    arm(restart, 2000);
    long r = SYS3(NR_READ, fds[0], &d, 1);
    disarm();
    pthread_join(t, NULL);
    close(fds[0]);
    close(fds[1]);
    return r;
}

static void signals(void) {
    /* Flood: many patched calls, each result right, handlers run. */
    ticks = 0;
    arm(1, 200);
    long bad = 0;
    long p = getppid();
    for (int i = 0; i < 30000; i++)
        bad += SYS0(NR_GETPPID) != p;
    disarm();
    check(bad == 0, "calls under a signal flood");
    check(ticks > 0, "the flood's handler ran");
    printf("flood: %s\n", bad == 0 && ticks > 0 ? "ok" : "bad");

    long r = flood_read(0);
    check(r == -EINTR, "read without SA_RESTART fails with EINTR");
    printf("eintr: %s\n", r == -EINTR ? "ok" : "bad");
    r = flood_read(1);
    check(r == 1, "read with SA_RESTART is restarted and gets the byte");
    printf("restart: %s\n", r == 1 ? "ok" : "bad");
}

/* ---- fork after patching: the child's calls work, its copy of the code is the parent's ---- */
static void fork_after_patch(void) {
    long p0 = SYS0(NR_GETPID);
    p0 = SYS0(NR_GETPID);
    pid_t c = fork();
    if (c == 0) {
        long bad = 0;
        long me = getpid();
        for (int i = 0; i < 1000; i++)
            bad += SYS0(NR_GETPID) != me || SYS0(NR_GETPPID) != p0;
        _exit(bad == 0 ? 0 : 1);
    }
    int st = 0;
    waitpid(c, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && SYS0(NR_GETPID) == p0;
    check(ok, "fork after patching");
    printf("fork: %s\n", ok ? "ok" : "bad");
}

/* ---- code bytes: the 7 bytes of a site after it ran ---- */
extern long code_site(void);
extern unsigned char code_site_bytes[];
__asm__(".text\n"
        ".globl code_site\n.globl code_site_bytes\n"
        "code_site:\n"
        "code_site_bytes:\n"
        "  mov $39, %eax\n"
        "  syscall\n"
        "  ret\n");

static int code(void) {
    for (int i = 0; i < 3; i++)
        code_site();
    unsigned char b[7];
    memcpy(b, code_site_bytes, 7);
    printf("site bytes:");
    for (int i = 0; i < 7; i++)
        printf(" %02x", b[i]);
    printf("\n");
    printf("calls: %s\n", code_site() == getpid() ? "ok" : "bad");
    return 0;
}

/* ---- hostile: what a program can do with the entry and its own patched code ---- */
#include <sys/mman.h>
#define PATCH_ENTRY 0x480030000000UL /* USER_PATCH_ENTRY */
#define PATCH_TABLE 0x60000UL

/* Jumps to the entry with rax = getpid, rcx = the return label, every other register
 * garbage (rsp kept: the entry must not use the program's stack). */
extern long entry_direct(unsigned long entry);
__asm__(".text\n.globl entry_direct\n"
        "entry_direct:\n"
        "  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
        "  mov %rdi, %r11\n"
        "  mov $-1, %rbx\n mov $-2, %rbp\n mov $-3, %rdi\n mov $-4, %rsi\n mov $-5, %rdx\n"
        "  mov $-6, %r8\n mov $-7, %r9\n mov $-8, %r10\n mov $-9, %r12\n mov $-10, %r13\n"
        "  mov $-11, %r14\n mov $-12, %r15\n"
        "  mov $39, %eax\n"
        "  lea 1f(%rip), %rcx\n"
        "  jmp *%r11\n"
        "1:\n"
        "  cmp $-12, %r15\n jne 2f\n cmp $-1, %rbx\n jne 2f\n"
        "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n"
        "2:\n  mov $-999, %rax\n"
        "  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n ret\n");

/* Fresh sites only: every site patched before now jumps through the broken table. */
static void on_segv(int s) {
    (void)s;
    static const char m[] = "table: SIGSEGV\n";
    SYS3(NR_WRITE, 1, m, sizeof m - 1);
    SYS3(231, 0, 0, 0); /* exit_group(0) */
}

static int hostile(void) {
    long me = getpid();
    printf("entry: %s\n", entry_direct(PATCH_ENTRY) == me ? "ok" : "bad");
    /* Unpatch a site: write the original bytes back; it traps again and works. */
    for (int i = 0; i < 3; i++)
        code_site();
    unsigned long page = (unsigned long)code_site_bytes & ~4095UL;
    int ok = mprotect((void *)page, 8192, PROT_READ | PROT_WRITE | PROT_EXEC) == 0;
    static const unsigned char orig[7] = {0xb8, 0x27, 0, 0, 0, 0x0f, 0x05};
    if (ok)
        memcpy(code_site_bytes, orig, 7);
    ok = ok && code_site() == me && code_site() == me;
    printf("unpatch: %s\n", ok ? "ok" : "bad");
    /* Point the table's entry at 0: the next patched call faults in the program. */
    signal(SIGSEGV, on_segv);
    for (int i = 0; i < 3; i++)
        code_site();
    if (mprotect((void *)PATCH_TABLE, 4096, PROT_READ | PROT_WRITE | PROT_EXEC) != 0) {
        printf("table: mprotect failed\n");
        return 1;
    }
    *(volatile unsigned long *)PATCH_TABLE = 0;
    code_site();
    printf("table: no fault\n");
    return 1;
}

/* ---- FPU state per thread: four threads each keep their own value in xmm8 across 20,000
 * calls from one site (getppid and sched_yield in turn: on one vCPU the threads share a
 * context slot, so a thread's state must come back after another's ran there). ---- */
extern long fpu_site(long value, long rounds);
__asm__(".text\n"
        ".globl fpu_site\n"
        "fpu_site:\n"                  /* returns how many calls found xmm8 changed */
        "  push %rbx\n"
        "  xor %ebx, %ebx\n"
        "  movq %rdi, %xmm8\n"
        "  mov %rsi, %rdx\n"
        "1:\n"
        "  mov $110, %eax\n"           /* getppid */
        "  syscall\n"
        "  movq %xmm8, %rax\n cmp %rdi, %rax\n je 2f\n inc %rbx\n movq %rdi, %xmm8\n"
        "2:\n"
        "  mov $24, %eax\n"            /* sched_yield */
        "  syscall\n"
        "  movq %xmm8, %rax\n cmp %rdi, %rax\n je 3f\n inc %rbx\n movq %rdi, %xmm8\n"
        "3:\n"
        "  dec %rdx\n jnz 1b\n"
        "  mov %rbx, %rax\n"
        "  pop %rbx\n"
        "  ret\n");

static void *fpu_worker(void *arg) {
    return (void *)fpu_site((long)(intptr_t)arg, 10000);
}

static void fpu_threads(void) {
    pthread_t t[4];
    for (long i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, fpu_worker, (void *)(0x5150000000000000 + i * 0x1234567));
    long changed = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        changed += (long)(intptr_t)r;
    }
    check(changed == 0, "each thread's xmm8 across calls");
    printf("fpu threads: %s\n", changed == 0 ? "ok" : "bad");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "code") == 0)
        return code();
    if (argc > 1 && strcmp(argv[1], "hostile") == 0)
        return hostile();
    registers();
    alignment_check();
    threads();
    fpu_threads();
    signals();
    fork_after_patch();
    printf("failures: %d\n", failures);
    return failures != 0;
}
