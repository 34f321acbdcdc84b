/* process_vm_readv and process_vm_writev, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): a parent reads and writes a child's memory (scattered
 * iovecs on both sides), reads itself, a transfer that stops at an unmapped remote range
 * (the bytes before it, or EFAULT), bad flags, a pid that does not exist, an unprivileged
 * caller refused, and a copy-on-write page written in the child only. Run as root. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

static char target[8192] = "the child's bytes";
static char shared_before_fork[64] = "before the fork";

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int to_child[2], to_parent[2];
    if (pipe(to_child) || pipe(to_parent))
        return 1;
    pid_t c = fork();
    if (c == 0) {
        char b;
        strcpy(target + 4096, "second page");
        if (write(to_parent[1], "r", 1) != 1 || read(to_child[0], &b, 1) != 1)
            _exit(1);
        printf("child sees: %s / %s / %s\n", target, target + 4096, shared_before_fork);
        fflush(stdout);
        if (write(to_parent[1], "d", 1) != 1 || read(to_child[0], &b, 1) != 1)
            _exit(1);
        _exit(0);
    }
    char b;
    if (read(to_parent[0], &b, 1) != 1)
        return 1;

    /* Read: two remote pieces into three local ones. */
    char l1[5] = {0}, l2[20] = {0}, l3[40] = {0};
    struct iovec local[3] = {{l1, 4}, {l2, 13}, {l3, 11}};
    struct iovec remote[2] = {{target, 17}, {target + 4096, 11}};
    show("readv", process_vm_readv(c, local, 3, remote, 2, 0));
    printf("read: [%s] [%s] [%s]\n", l1, l2, l3);

    /* Write into the child, one of the pages shared copy-on-write with this process. */
    char msg[] = "written by the parent";
    struct iovec wl = {msg, sizeof msg};
    struct iovec wr = {target, sizeof msg};
    show("writev", process_vm_writev(c, &wl, 1, &wr, 1, 0));
    char msg2[] = "also written";
    struct iovec wl2 = {msg2, sizeof msg2};
    struct iovec wr2 = {shared_before_fork, sizeof msg2};
    show("writev a copy-on-write page", process_vm_writev(c, &wl2, 1, &wr2, 1, 0));
    printf("parent still sees: %s / %s\n", target, shared_before_fork);

    /* Itself. */
    char self[16] = {0};
    struct iovec sl = {self, 15}, sr = {shared_before_fork, 15};
    show("read itself", process_vm_readv(getpid(), &sl, 1, &sr, 1, 0));
    printf("itself: %s\n", self);

    /* An unmapped remote range: the bytes before it, or EFAULT. */
    char *hole = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(hole, 4096);
    char big[64];
    struct iovec bl = {big, sizeof big};
    struct iovec partial[2] = {{target, 10}, {hole, 10}};
    show("stops at a hole", process_vm_readv(c, &bl, 1, partial, 2, 0));
    show("only a hole", process_vm_readv(c, &bl, 1, partial + 1, 1, 0));
    struct iovec bad_local = {hole, 10};
    show("a local hole", process_vm_readv(c, &bad_local, 1, remote, 1, 0));
    show("flags", process_vm_readv(c, &bl, 1, remote, 1, 1));
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    waitpid(gone, NULL, 0);
    show("a reaped pid", process_vm_readv(gone, &bl, 1, remote, 1, 0));
    show("nothing to move", process_vm_readv(c, &bl, 0, remote, 1, 0));

    /* Let the child print what it holds now. */
    if (write(to_child[1], "g", 1) != 1 || read(to_parent[0], &b, 1) != 1)
        return 1;

    /* Another user may not read root's child. */
    pid_t u = fork();
    if (u == 0) {
        if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
            _exit(2);
        show("nobody reads root's process", process_vm_readv(c, &bl, 1, remote, 1, 0));
        fflush(stdout);
        _exit(0);
    }
    waitpid(u, NULL, 0);
    if (write(to_child[1], "x", 1) != 1)
        return 1;
    waitpid(c, NULL, 0);
    puts("done");
    return 0;
}
