/* image_bytes MODE: what a program's own image holds, against its file (the guest kernel
 * reads program images lazily, a 64 KiB chunk at its first touch: pv-kernel/src/linux/
 * imagecache.rs). Prints offsets and counts, never addresses.
 *
 *   check     every read-only loadable segment in memory (text, rodata: 1 MiB of it a
 *             table nothing else touches) compared with the bytes of /proc/self/exe at its
 *             file offsets; prints the message kept in rodata.
 *   write     makes the rodata page holding the message writable (mprotect), rewrites the
 *             message in memory, then runs itself again (`check`, fork + execve of
 *             /proc/self/exe): the new image must be the file's, not the rewritten page.
 *   truncate  prints `ready OFFSET` (the file offset of a page in the middle of the table,
 *             which nothing has touched), waits 3 s (the test truncates the file to OFFSET), then
 *             reads that page: a file shrunk under its mapping is SIGBUS, as on Linux.
 */
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define TABLE (1 << 20)

static const char message[64] = "the message as the file has it";

/* Non-zero, so it is in the file (rodata), not .bss. */
#define R4(x) x, x + 1, x + 2, x + 3
static const unsigned char table[TABLE] = {R4(1), R4(5), R4(9), R4(13)};

/* The program's load bias and program headers. */
static uintptr_t bias;
static const Elf64_Phdr *ph;
static size_t phnum;

/* Static executables have no PT_PHDR when not position-independent (bias 0). */
static void headers(void) {
    ph = (const Elf64_Phdr *)getauxval(AT_PHDR);
    phnum = getauxval(AT_PHNUM);
    for (size_t i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_PHDR)
            bias = (uintptr_t)ph - ph[i].p_vaddr;
}

/* The file offset of address `a` of a loadable segment, or -1. */
static long file_offset(const void *a) {
    uintptr_t v = (uintptr_t)a - bias;
    for (size_t i = 0; i < phnum; i++)
        if (ph[i].p_type == PT_LOAD && v >= ph[i].p_vaddr && v < ph[i].p_vaddr + ph[i].p_filesz)
            return (long)(ph[i].p_offset + (v - ph[i].p_vaddr));
    return -1;
}

static int check(void) {
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0) {
        perror("open /proc/self/exe");
        return 1;
    }
    unsigned char *buf = malloc(TABLE);
    long segments = 0, bytes = 0;
    for (size_t i = 0; i < phnum; i++) {
        if (ph[i].p_type != PT_LOAD || (ph[i].p_flags & PF_W) || ph[i].p_filesz == 0)
            continue;
        segments++;
        const unsigned char *mem = (const unsigned char *)(bias + ph[i].p_vaddr);
        size_t done = 0;
        while (done < ph[i].p_filesz) {
            size_t n = ph[i].p_filesz - done < TABLE ? ph[i].p_filesz - done : TABLE;
            ssize_t got = pread(fd, buf, n, ph[i].p_offset + done);
            if (got != (ssize_t)n) {
                printf("short read of the file at %lu\n", (unsigned long)(ph[i].p_offset + done));
                return 1;
            }
            for (size_t k = 0; k < n; k++)
                if (mem[done + k] != buf[k]) {
                    printf("image differs from the file at offset %lu\n",
                           (unsigned long)(ph[i].p_offset + done + k));
                    return 1;
                }
            done += n;
            bytes += n;
        }
    }
    printf("image: %ld read-only segments, %s bytes, as in the file\n", segments,
           bytes > TABLE ? "over 1 MiB of" : "under 1 MiB of");
    printf("message: %s\n", message);
    return 0;
}

static int rewrite(void) {
    long pg = sysconf(_SC_PAGESIZE);
    char *page = (char *)((uintptr_t)message & ~(uintptr_t)(pg - 1));
    size_t len = (size_t)(message + sizeof message - page + pg - 1) & ~(size_t)(pg - 1);
    if (mprotect(page, len, PROT_READ | PROT_WRITE) != 0) {
        perror("mprotect");
        return 1;
    }
    strcpy((char *)message, "REWRITTEN in memory");
    const char *volatile m = message;
    printf("rewritten: %s\n", m);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *argv[] = {"image_bytes", "check", NULL};
        execv("/proc/self/exe", argv);
        perror("execv");
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("child: %s %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return 0;
}

static void on_bus(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    char line[64];
    int n = snprintf(line, sizeof line, "signal %d code %d\n", sig, si->si_code);
    write(1, line, n);
    _exit(7);
}

static int truncated(void) {
    struct sigaction sa = {0};
    sa.sa_sigaction = on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    /* The middle of the table: its whole 64 KiB chunk is table bytes nothing has touched
     * (the strings after the table share a chunk with its end). */
    const volatile unsigned char *last = table + TABLE / 2;
    long off = file_offset((const void *)last);
    printf("ready %ld\n", off & ~4095L);
    fflush(stdout);
    sleep(3);
    printf("read %d\n", *last);
    return 0;
}

int main(int argc, char **argv) {
    headers();
    const char *mode = argc > 1 ? argv[1] : "check";
    if (!strcmp(mode, "check"))
        return check();
    if (!strcmp(mode, "write"))
        return rewrite();
    if (!strcmp(mode, "truncate"))
        return truncated();
    fprintf(stderr, "usage: image_bytes check|write|truncate\n");
    return 2;
}
