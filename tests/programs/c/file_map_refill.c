/* Pages of a private file mapping that the mapping has not filled yet come from the file
 * at their first touch, as on Linux, whatever left them unfilled: a mapping grown by mremap
 * (in place, or moved), pages dropped by madvise(MADV_DONTNEED) after a private write, and
 * pages that lay past the file's end when it was mapped but are inside it now. Pages wholly
 * past the end stay SIGBUS. For a memfd, a file in /tmp and the program's own executable
 * (a host ELF file under --rootfs), printed for a comparison with the native run
 * (tests/tests/linux_edges.rs). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "show_result.h"

#define PAGE 4096UL

static sigjmp_buf env;

static void on_bus(int sig) {
    siglongjmp(env, sig);
}

/* The first byte of page `i` of `p`, or "SIGBUS"/"SIGSEGV" if touching it raises one. */
static void show_page(const char *what, volatile char *p, size_t i) {
    int sig = sigsetjmp(env, 1);
    if (sig == 0) {
        char c = p[i * PAGE];
        printf("%s page %zu: %c\n", what, i, c ? c : '0');
    } else {
        printf("%s page %zu: %s\n", what, i, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    }
}

/* Writes `pages` pages to `fd` from offset `from`, page k filled with 'a' + k. */
static void fill(int fd, int from, int pages) {
    char buf[PAGE];
    for (int k = from; k < from + pages; k++) {
        memset(buf, 'a' + k, sizeof buf);
        if (pwrite(fd, buf, sizeof buf, (off_t)k * PAGE) != (ssize_t)sizeof buf) {
            perror("pwrite");
            exit(1);
        }
    }
}

static void cases(const char *kind, int fd) {
    char what[64];
    fill(fd, 0, 8);

    /* Grown in place: pages 2..5 of the file, then 8 and 9 past its end. */
    char *r = room(12);
    char *a = mmap(r, 2 * PAGE, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    show("grow in place", mremap(a, 2 * PAGE, 10 * PAGE, 0) == a ? 0 : -1);
    snprintf(what, sizeof what, "%s grown", kind);
    for (size_t i = 0; i < 10; i++)
        show_page(what, a, i);
    munmap(a, 10 * PAGE);

    /* Grown and moved: a neighbour is in the way. */
    r = room(4);
    a = mmap(r, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 2 * PAGE);
    char *block = mmap(r + 2 * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                       -1, 0);
    a[0] = 'Z'; /* a private copy, moved with the mapping */
    char *b = mremap(a, 2 * PAGE, 5 * PAGE, MREMAP_MAYMOVE);
    show("grow and move", b == MAP_FAILED ? -1 : b != a);
    snprintf(what, sizeof what, "%s moved", kind);
    for (size_t i = 0; b != MAP_FAILED && i < 5; i++)
        show_page(what, b, i);
    if (b != MAP_FAILED)
        munmap(b, 5 * PAGE);
    munmap(block, PAGE);

    /* A private write dropped by MADV_DONTNEED: the file's bytes again. */
    a = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 3 * PAGE);
    memset(a + PAGE, 'Q', PAGE);
    snprintf(what, sizeof what, "%s written", kind);
    show_page(what, a, 1);
    show("madvise DONTNEED", madvise(a + PAGE, PAGE, MADV_DONTNEED));
    snprintf(what, sizeof what, "%s dropped", kind);
    for (size_t i = 0; i < 3; i++)
        show_page(what, a, i);
    munmap(a, 3 * PAGE);

    /* Mapped past the end of the file, which then grows under the mapping. */
    show("truncate to 2 pages", ftruncate(fd, 2 * PAGE));
    a = mmap(NULL, 5 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    snprintf(what, sizeof what, "%s short", kind);
    show_page(what, a, 3);
    fill(fd, 2, 2);
    snprintf(what, sizeof what, "%s longer", kind);
    for (size_t i = 0; i < 5; i++)
        show_page(what, a, i);
    munmap(a, 5 * PAGE);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);

    int m = memfd_create("refill", 0);
    if (m < 0) {
        perror("memfd_create");
        return 1;
    }
    cases("memfd", m);
    close(m);

    mkdir("/tmp", 01777); /* (a --rootfs of the test's own programs has none) */
    char path[] = "/tmp/refillXXXXXX";
    int t = mkstemp(path);
    if (t < 0) {
        perror("mkstemp");
        return 1;
    }
    unlink(path);
    cases("tmp", t);
    close(t);

    /* The program's own file, mapped one page and grown: the grown pages are the file's. */
    int e = open("/proc/self/exe", O_RDONLY);
    off_t size = lseek(e, 0, SEEK_END);
    if (e < 0 || size < 4 * (off_t)PAGE) {
        puts("executable too small");
        return 1;
    }
    for (int exec = 0; exec < 2; exec++) {
        char *r2 = room(4);
        int prot = PROT_READ | (exec ? PROT_EXEC : 0);
        char *x = mmap(r2, PAGE, prot, MAP_PRIVATE | MAP_FIXED, e, PAGE);
        show(exec ? "exe grow in place (exec)" : "exe grow in place",
             mremap(x, PAGE, 3 * PAGE, 0) == x ? 0 : -1);
        char want[3 * PAGE];
        if (pread(e, want, sizeof want, PAGE) != (ssize_t)sizeof want)
            return 1;
        printf("exe pages match the file: %d\n", memcmp(x, want, sizeof want) == 0);
        munmap(x, 3 * PAGE);
    }
    close(e);
    puts("refill done: 1");
    return 0;
}
