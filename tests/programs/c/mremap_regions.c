/* mremap over regions Linux's map would hold as one, printed for a comparison with the
 * native run (tests/tests/linux_edges.rs): a mapping grown a page at a time (APT's cache
 * grows so), mappings made next to each other by separate mmap calls, a range split by
 * mprotect and joined again, neighbours that differ (rights, shared against private, files
 * at offsets that do not follow), shrinking and growing back, and the heap grown by many
 * brk calls, which /proc/self/maps shows as one region. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "show_result.h"

#define PAGE 4096UL

/* 0, or -1 with errno, for a mremap result (addresses differ between runs). */
static long remap(void *old, size_t old_len, size_t new_len, int flags) {
    void *q = mremap(old, old_len, new_len, flags);
    return q == MAP_FAILED ? -1 : 0;
}

static char *place(char *at, size_t pages, int prot, int flags, int fd, off_t off) {
    char *p = mmap(at, pages * PAGE, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) {
        perror("mmap fixed");
        exit(1);
    }
    return p;
}

/* The mapping at `p` of `len` bytes holds `want` in the first byte of each page. */
static int holds(const char *p, size_t len, char want) {
    for (size_t k = 0; k < len; k += PAGE)
        if (p[k] != want)
            return 0;
    return 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Grown a page at a time, moving when it must, its bytes kept. */
    size_t sz = 24 * PAGE;
    char *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(p, 1, sz);
    int grown = 0, kept = 1;
    for (int i = 0; i < 40; i++) {
        char *q = mremap(p, sz, sz + PAGE, MREMAP_MAYMOVE);
        if (q == MAP_FAILED)
            break;
        q[sz] = 1;
        p = q;
        sz += PAGE;
        grown++;
        kept &= holds(p, sz, 1);
    }
    printf("grown a page at a time: %d times, bytes kept %d\n", grown, kept);
    /* Without MREMAP_MAYMOVE, in place where the room after it is free. */
    char *r = room(8);
    char *a = place(r, 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("grow in place", remap(a, 2 * PAGE, 4 * PAGE, 0));
    show("grow in place again", remap(a, 4 * PAGE, 6 * PAGE, 0));
    a[5 * PAGE] = 2;
    show("shrink", remap(a, 6 * PAGE, 3 * PAGE, 0));
    show("grow back", remap(a, 3 * PAGE, 5 * PAGE, 0));
    printf("grown back page reads: %d\n", a[4 * PAGE]);
    /* Part of a region grown without moving: the rest of the region is in the way. */
    show("grow the first page of a region", remap(a, PAGE, 2 * PAGE, 0));
    munmap(r, 8 * PAGE);

    /* Separate mmap calls next to each other, alike: one region on Linux. */
    r = room(8);
    a = place(r, 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    place(r + 2 * PAGE, 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(a, 3, 4 * PAGE);
    show("two neighbours grown", remap(a, 4 * PAGE, 6 * PAGE, 0));
    printf("their bytes: %d\n", holds(a, 4 * PAGE, 3));
    munmap(r, 8 * PAGE);

    /* Split by mprotect and joined again by another. */
    r = room(8);
    a = place(r, 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(a, 4, 4 * PAGE);
    mprotect(a + PAGE, PAGE, PROT_READ);
    show("across a split", remap(a, 4 * PAGE, 6 * PAGE, 0));
    mprotect(a + PAGE, PAGE, PROT_READ | PROT_WRITE);
    show("split and joined", remap(a, 4 * PAGE, 6 * PAGE, 0));
    char *moved = mremap(a, 6 * PAGE, 64 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, room(64));
    show("moved whole", moved == MAP_FAILED ? -1 : 0);
    if (moved != MAP_FAILED) {
        printf("moved bytes: %d\n", holds(moved, 4 * PAGE, 4));
        munmap(moved, 64 * PAGE);
    }

    /* Neighbours that differ. */
    r = room(8);
    a = place(r, 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    place(r + 2 * PAGE, 2, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("other rights", remap(a, 4 * PAGE, 6 * PAGE, MREMAP_MAYMOVE));
    place(r + 2 * PAGE, 2, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    show("shared after private", remap(a, 4 * PAGE, 6 * PAGE, MREMAP_MAYMOVE));
    munmap(r, 8 * PAGE);

    /* A file mapped by two calls at offsets that follow, and at offsets that do not. */
    int fd = memfd_create("mremap-regions", 0);
    if (fd < 0) {
        perror("memfd_create");
        return 1;
    }
    char buf[PAGE];
    for (int i = 0; i < 8; i++) {
        memset(buf, 'a' + i, sizeof buf);
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            return 1;
    }
    r = room(8);
    a = place(r, 2, PROT_READ, MAP_PRIVATE, fd, 0);
    place(r + 2 * PAGE, 2, PROT_READ, MAP_PRIVATE, fd, 2 * PAGE);
    show("file offsets that follow", remap(a, 4 * PAGE, 6 * PAGE, 0));
    /* The pages it grew by are the file's (file_map_refill.c tests more of that). */
    printf("file pages: %c %c %c %c\n", a[0], a[3 * PAGE], a[4 * PAGE], a[5 * PAGE]);
    munmap(r, 8 * PAGE);
    r = room(8);
    a = place(r, 2, PROT_READ, MAP_PRIVATE, fd, 0);
    place(r + 2 * PAGE, 2, PROT_READ, MAP_PRIVATE, fd, 4 * PAGE);
    show("file offsets that do not", remap(a, 4 * PAGE, 6 * PAGE, MREMAP_MAYMOVE));
    munmap(r, 8 * PAGE);
    close(fd);

    /* MREMAP_DONTUNMAP: the pages move, the old range stays mapped and empty (zeros for
     * anonymous memory, the file's bytes again for a file); its errors. */
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(a, 'x', 2 * PAGE);
    char *b = mremap(a, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    show("dontunmap", b == MAP_FAILED ? -1 : b != a);
    if (b != MAP_FAILED)
        printf("dontunmap anonymous: new %c%c old %d%d\n", b[0], b[PAGE], a[0], a[PAGE]);
    show("dontunmap without maymove", remap(a, 2 * PAGE, 2 * PAGE, MREMAP_DONTUNMAP));
    show("dontunmap to another size",
         remap(a, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP));
    show("fixed without maymove", (long)mremap(a, PAGE, PAGE, MREMAP_FIXED, b) == -1 ? -1 : 0);
    show("fixed over itself",
         (long)mremap(a, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, a + PAGE) == -1
             ? -1
             : 0);
    munmap(a, 2 * PAGE);
    if (b != MAP_FAILED)
        munmap(b, 2 * PAGE);
    fd = memfd_create("mremap-dontunmap", 0);
    for (int i = 0; i < 2; i++) {
        memset(buf, 'p' + i, sizeof buf);
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf)
            return 1;
    }
    a = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    a[0] = 'W';
    b = mremap(a, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
    show("dontunmap file", b == MAP_FAILED ? -1 : b != a);
    if (b != MAP_FAILED)
        printf("dontunmap file: new %c%c old %c%c\n", b[0], b[PAGE], a[0], a[PAGE]);
    close(fd);

    /* The heap, grown by many brk calls, is one region (the system call: musl's sbrk only
     * reads the break). */
    char *start = (char *)syscall(SYS_brk, 0);
    for (int i = 1; i <= 50; i++)
        if (syscall(SYS_brk, start + i * 3 * PAGE) != (long)(start + i * 3 * PAGE)) {
            puts("brk refused");
            return 1;
        }
    memset(start, 5, 150 * PAGE);
    printf("heap lines after 50 brk calls: %d\n", maps_lines("[heap]", NULL));
    return 0;
}
