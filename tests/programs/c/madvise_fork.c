/* What fork copies after madvise, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): MADV_WIPEONFORK gives the child the region empty (zeros)
 * while the parent keeps its bytes, MADV_KEEPONFORK undoes it, MADV_DONTFORK leaves the
 * region out of the child (SIGSEGV there, no line in its /proc/self/maps), MADV_DOFORK
 * undoes it; a part of a region splits it; the errors (WIPEONFORK of a file or shared
 * mapping, a range not mapped, unknown advice). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

#define PAGE 4096UL

static sigjmp_buf env;
static char *region;

static void on_segv(int sig) {
    siglongjmp(env, sig);
}

/* The first byte of each of the region's 4 pages as the child sees them, and how many
 * lines of the child's /proc/self/maps cover the region's first page. */
static void child_view(void) {
    char line[160];
    for (int i = 0; i < 4; i++) {
        if (sigsetjmp(env, 1) == 0) {
            char c = region[i * PAGE];
            snprintf(line, sizeof line, "child page %d: %c", i, c ? c : '0');
        } else {
            snprintf(line, sizeof line, "child page %d: SIGSEGV", i);
        }
        puts(line);
    }
    char want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)region);
    printf("child maps lines at the region: %d\n", maps_lines(want, NULL));
}

static void parent_view(const char *what) {
    printf("%s: parent pages %c %c %c %c\n", what, region[0], region[PAGE], region[2 * PAGE],
           region[3 * PAGE]);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);

    region = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < 4; i++)
        memset(region + i * PAGE, 'a' + i, PAGE);

    show("WIPEONFORK of the whole region", madvise(region, 4 * PAGE, MADV_WIPEONFORK));
    in_child(child_view);
    parent_view("after the wiped fork");
    show("KEEPONFORK of page 1", madvise(region + PAGE, PAGE, MADV_KEEPONFORK));
    in_child(child_view);
    show("KEEPONFORK of the rest", madvise(region, 4 * PAGE, MADV_KEEPONFORK));

    show("DONTFORK of pages 2-3", madvise(region + 2 * PAGE, 2 * PAGE, MADV_DONTFORK));
    in_child(child_view);
    show("DONTFORK of the whole region", madvise(region, 4 * PAGE, MADV_DONTFORK));
    in_child(child_view);
    show("DOFORK", madvise(region, 4 * PAGE, MADV_DOFORK));
    in_child(child_view);
    parent_view("at the end");

    /* Errors. */
    int fd = memfd_create("madvise-fork", 0);
    if (ftruncate(fd, PAGE) != 0)
        return 1;
    char *file = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
    show("WIPEONFORK of a file mapping", madvise(file, PAGE, MADV_WIPEONFORK));
    show("DONTFORK of a file mapping", madvise(file, PAGE, MADV_DONTFORK));
    char *shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    show("WIPEONFORK of shared memory", madvise(shared, PAGE, MADV_WIPEONFORK));
    munmap(region + 2 * PAGE, PAGE);
    show("DONTFORK over a hole", madvise(region, 4 * PAGE, MADV_DONTFORK));
    in_child(child_view); /* (the mapped parts were changed all the same) */
    region[0] = 'z';
    show("DONTNEED over a hole", madvise(region, 4 * PAGE, MADV_DONTNEED));
    printf("the mapped part was dropped: %d\n", region[0] == 0);
    show("WILLNEED over a hole", madvise(region, 4 * PAGE, MADV_WILLNEED));
    show("unknown advice 5", madvise(region, PAGE, 5));
    show("unknown advice 200", madvise(region, PAGE, 200));
    show("unaligned address", madvise(region + 1, PAGE, MADV_DONTFORK));
    show("empty range", madvise(region, 0, MADV_WIPEONFORK));
    puts("madvise fork done: 1");
    return 0;
}
