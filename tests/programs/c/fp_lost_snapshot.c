/* A thread's FPU image that a snapshot catches unfinished. The guest kernel reads the image
 * a slot holds only once the slot's `fp_pending` word is 0 (the stub is still writing it
 * otherwise); a restore that finds the word set cannot wait for a sandbox that is gone, so
 * the thread's FPU state is lost and must come back as the initial state, never as
 * whatever registers the new sandbox's thread holds.
 *
 * `fp-lost-snapshot PENDING DIR` (PENDING: the address of this program's slot's
 * `fp_pending` word, hex; run with one vCPU and `--no-patch`, so the `wait4` below traps
 * and its report leaves the word alone): starts a child that ends once DIR/go exists (another
 * process: another sandbox and slot) and writes DIR/armed; then, with no libc code in
 * between, loads xmm0-15 with a pattern and MXCSR with round-toward-zero, sets the word to 1
 * (a program can write its slots), waits for the child in a raw `wait4`, and stores xmm0-15
 * and MXCSR back. It writes DIR/result, `mxcsr=HEX pattern=N zero=N wait=RET` (of the 16
 * registers, how many still hold the pattern and how many are 0; RET: 1 if `wait4` returned the child's pid, else what it returned),
 * and waits for a signal to end it. Woken without a snapshot, the slot still
 * holds the thread's exit and the state is kept: `mxcsr=7f80 pattern=16 zero=0`. Restored
 * from a snapshot taken while it waits: `mxcsr=1f80 pattern=0 zero=16`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fp-lost-snapshot PENDING_HEX DIR\n");
        return 2;
    }
    volatile uint32_t *pending = (volatile uint32_t *)(uintptr_t)strtoull(argv[1], 0, 16);
    static uint8_t in[16][16] __attribute__((aligned(16)));
    static uint8_t out[16][16] __attribute__((aligned(16)));
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 16; b++)
            in[r][b] = (uint8_t)(0xa0 + r + b * 3);
    uint32_t mxcsr_in = 0x7f80, mxcsr_out = 0;
    char go[512];
    snprintf(go, sizeof go, "%s/go", argv[2]);
    pid_t child = fork();
    if (child < 0) {
        perror("fork");
        return 2;
    }
    if (child == 0) {
        while (access(go, F_OK) != 0)
            usleep(10000);
        _exit(0);
    }
    put(argv[2], "armed", "1\n");
    long ret;
    __asm__ volatile(
        "movdqa 0(%[in]), %%xmm0\n movdqa 16(%[in]), %%xmm1\n"
        "movdqa 32(%[in]), %%xmm2\n movdqa 48(%[in]), %%xmm3\n"
        "movdqa 64(%[in]), %%xmm4\n movdqa 80(%[in]), %%xmm5\n"
        "movdqa 96(%[in]), %%xmm6\n movdqa 112(%[in]), %%xmm7\n"
        "movdqa 128(%[in]), %%xmm8\n movdqa 144(%[in]), %%xmm9\n"
        "movdqa 160(%[in]), %%xmm10\n movdqa 176(%[in]), %%xmm11\n"
        "movdqa 192(%[in]), %%xmm12\n movdqa 208(%[in]), %%xmm13\n"
        "movdqa 224(%[in]), %%xmm14\n movdqa 240(%[in]), %%xmm15\n"
        "ldmxcsr %[mi]\n"
        "movl $1, (%[pend])\n"
        "mov $61, %%eax\n" /* wait4(child, NULL, 0, NULL) */
        "mov %[child], %%edi\n"
        "xor %%esi, %%esi\n"
        "xor %%edx, %%edx\n"
        "xor %%r10d, %%r10d\n"
        "syscall\n"
        "mov %%rax, %[ret]\n"
        "stmxcsr %[mo]\n"
        "movdqa %%xmm0, 0(%[out])\n movdqa %%xmm1, 16(%[out])\n"
        "movdqa %%xmm2, 32(%[out])\n movdqa %%xmm3, 48(%[out])\n"
        "movdqa %%xmm4, 64(%[out])\n movdqa %%xmm5, 80(%[out])\n"
        "movdqa %%xmm6, 96(%[out])\n movdqa %%xmm7, 112(%[out])\n"
        "movdqa %%xmm8, 128(%[out])\n movdqa %%xmm9, 144(%[out])\n"
        "movdqa %%xmm10, 160(%[out])\n movdqa %%xmm11, 176(%[out])\n"
        "movdqa %%xmm12, 192(%[out])\n movdqa %%xmm13, 208(%[out])\n"
        "movdqa %%xmm14, 224(%[out])\n movdqa %%xmm15, 240(%[out])\n"
        : [ret] "=&r"(ret), [mo] "=m"(mxcsr_out)
        : [in] "r"(in), [out] "r"(out), [mi] "m"(mxcsr_in), [pend] "r"(pending),
          [child] "r"(child)
        : "rax", "rcx", "rdx", "rdi", "rsi", "r10", "r11", "memory", "xmm0", "xmm1", "xmm2",
          "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
          "xmm13", "xmm14", "xmm15");
    /* Back to the default rounding before libc formats anything. */
    uint32_t dflt = 0x1f80;
    __asm__ volatile("ldmxcsr %0" : : "m"(dflt));
    int pattern = 0, zero = 0;
    static const uint8_t zeros[16];
    for (int r = 0; r < 16; r++) {
        pattern += memcmp(out[r], in[r], 16) == 0;
        zero += memcmp(out[r], zeros, 16) == 0;
    }
    char text[128];
    snprintf(text, sizeof text, "mxcsr=%x pattern=%d zero=%d wait=%ld\n", mxcsr_out, pattern,
             zero, ret == child ? 1L : ret);
    put(argv[2], "result", text);
    /* Stays (as init) so that the result can be read; ends at the stop's SIGTERM. */
    for (;;)
        pause();
}
