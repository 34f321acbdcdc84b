/* openat2, printed for a comparison with the native run (tests/tests/linux_edges.rs):
 * struct open_how's checks (sizes, trailing bytes, unknown flags, a mode without O_CREAT,
 * O_PATH's flags, RESOLVE_BENEATH with RESOLVE_IN_ROOT, RESOLVE_CACHED with O_CREAT), and
 * the lookup restrictions in a tree made under /tmp: RESOLVE_BENEATH (.., absolute paths,
 * absolute and escaping links), RESOLVE_IN_ROOT (the same paths resolved inside the
 * directory), RESOLVE_NO_SYMLINKS (any link followed; O_PATH|O_NOFOLLOW of a link itself),
 * RESOLVE_NO_MAGICLINKS (/proc/self/fd/N) and RESOLVE_NO_XDEV (/proc). Raw system calls:
 * neither libc wraps openat2. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "show_result.h"

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#define RESOLVE_IN_ROOT 0x10
#define RESOLVE_CACHED 0x20

struct how {
    uint64_t flags, mode, resolve;
};

static long openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode,
                    uint64_t resolve) {
    struct how h = {flags, mode, resolve};
    return syscall(SYS_openat2, dirfd, path, &h, sizeof h);
}

/* "what: the first line of what the descriptor reads", or the error. */
static void show_open(const char *what, long fd) {
    if (fd < 0) {
        show(what, fd);
        return;
    }
    char buf[64] = "";
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = 0;
    printf("%s: reads \"%s\"\n", what, buf);
    close(fd);
}

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) < 0) {
        perror(path);
        exit(1);
    }
    close(fd);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    mkdir("/tmp", 01777); /* (a --rootfs of the test's own programs has none) */
    char top[] = "/tmp/openat2-XXXXXX";
    if (!mkdtemp(top))
        return 1;
    char p[512];
    snprintf(p, sizeof p, "%s/root", top);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/root/sub", top);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/root/file", top);
    put(p, "inside\n");
    snprintf(p, sizeof p, "%s/root/sub/deep", top);
    put(p, "deep\n");
    snprintf(p, sizeof p, "%s/outside", top);
    put(p, "outside\n");
    snprintf(p, sizeof p, "%s/root/rel", top);
    symlink("sub/deep", p);
    snprintf(p, sizeof p, "%s/root/up", top);
    symlink("../outside", p);
    snprintf(p, sizeof p, "%s/root/abs", top);
    symlink("/file", p);
    snprintf(p, sizeof p, "%s/root", top);
    int root = open(p, O_RDONLY | O_DIRECTORY);

    /* The struct's checks. */
    struct how h = {O_RDONLY, 0, 0};
    show("size 16", syscall(SYS_openat2, root, "file", &h, 16));
    show("size 4097", syscall(SYS_openat2, root, "file", &h, 4097));
    char big[40] = {0};
    memcpy(big, &h, sizeof h);
    show_open("size 40, zeros after", syscall(SYS_openat2, root, "file", big, sizeof big));
    big[30] = 1;
    show("size 40, a byte after", syscall(SYS_openat2, root, "file", big, sizeof big));
    show("an unknown flag", openat2(root, "file", 0x10, 0, 0));
    show("a flag above 32 bits", openat2(root, "file", 1ULL << 40, 0, 0));
    show("a mode without O_CREAT", openat2(root, "file", O_RDONLY, 0644, 0));
    show("a mode past 07777", openat2(root, "new", O_CREAT | O_WRONLY, 010000, 0));
    show("O_PATH with O_RDWR", openat2(root, "file", O_PATH | O_RDWR, 0, 0));
    show("an unknown resolve flag", openat2(root, "file", O_RDONLY, 0, 0x40));
    show("BENEATH and IN_ROOT", openat2(root, "file", O_RDONLY, 0, RESOLVE_BENEATH | RESOLVE_IN_ROOT));
    show("CACHED with O_CREAT",
         openat2(root, "new", O_CREAT | O_WRONLY, 0644, RESOLVE_CACHED));
    show_open("CACHED", openat2(root, "file", O_RDONLY, 0, RESOLVE_CACHED));

    /* RESOLVE_BENEATH. */
    show_open("beneath: file", openat2(root, "file", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: sub/../file", openat2(root, "sub/../file", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: ../outside", openat2(root, "../outside", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: absolute", openat2(root, p, O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: rel link", openat2(root, "rel", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: up link", openat2(root, "up", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: abs link", openat2(root, "abs", O_RDONLY, 0, RESOLVE_BENEATH));
    show_open("beneath: ..", openat2(root, "..", O_RDONLY, 0, RESOLVE_BENEATH));

    /* RESOLVE_IN_ROOT: the same paths, the directory as the root. */
    show_open("in root: ../file", openat2(root, "../file", O_RDONLY, 0, RESOLVE_IN_ROOT));
    show_open("in root: /file", openat2(root, "/file", O_RDONLY, 0, RESOLVE_IN_ROOT));
    show_open("in root: /sub/deep", openat2(root, "/sub/deep", O_RDONLY, 0, RESOLVE_IN_ROOT));
    show_open("in root: up link", openat2(root, "up", O_RDONLY, 0, RESOLVE_IN_ROOT));
    show_open("in root: abs link", openat2(root, "abs", O_RDONLY, 0, RESOLVE_IN_ROOT));
    long fd = openat2(root, "made", O_CREAT | O_WRONLY, 0600, RESOLVE_IN_ROOT);
    show("in root: O_CREAT", fd < 0 ? fd : 0);
    if (fd >= 0)
        close(fd);

    /* RESOLVE_NO_SYMLINKS. */
    show_open("no symlinks: file", openat2(root, "file", O_RDONLY, 0, RESOLVE_NO_SYMLINKS));
    show_open("no symlinks: rel link", openat2(root, "rel", O_RDONLY, 0, RESOLVE_NO_SYMLINKS));
    fd = openat2(root, "rel", O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS);
    show("no symlinks: O_PATH|O_NOFOLLOW of the link", fd < 0 ? fd : 0);
    if (fd >= 0)
        close(fd);
    snprintf(p, sizeof p, "%s/root/linkdir", top);
    symlink("sub", p);
    show_open("no symlinks: through a link", openat2(root, "linkdir/deep", O_RDONLY, 0, RESOLVE_NO_SYMLINKS));

    /* RESOLVE_NO_MAGICLINKS and RESOLVE_NO_XDEV. */
    char self_fd[64];
    snprintf(self_fd, sizeof self_fd, "/proc/self/fd/%d", root);
    fd = openat2(AT_FDCWD, self_fd, O_RDONLY | O_DIRECTORY, 0, 0);
    show("a magic link", fd < 0 ? fd : 0);
    if (fd >= 0)
        close(fd);
    show("a magic link, NO_MAGICLINKS",
         openat2(AT_FDCWD, self_fd, O_RDONLY | O_DIRECTORY, 0, RESOLVE_NO_MAGICLINKS));
    show_open("NO_MAGICLINKS: file", openat2(root, "file", O_RDONLY, 0, RESOLVE_NO_MAGICLINKS));
    show_open("NO_XDEV: file", openat2(root, "sub/deep", O_RDONLY, 0, RESOLVE_NO_XDEV));
    show_open("NO_XDEV: /proc/version", openat2(AT_FDCWD, "/proc/version", O_RDONLY, 0, RESOLVE_NO_XDEV));
    show_open("/proc/self/comm", openat2(AT_FDCWD, "/proc/self/comm", O_RDONLY, 0, 0));

    /* Clean up. */
    const char *names[] = {"root/made", "root/linkdir", "root/abs", "root/up", "root/rel",
                           "root/sub/deep", "root/file", "outside"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", top, names[i]);
        unlink(p);
    }
    snprintf(p, sizeof p, "%s/root/sub", top);
    rmdir(p);
    snprintf(p, sizeof p, "%s/root", top);
    rmdir(p);
    rmdir(top);
    close(root);
    puts("openat2 done: 1");
    return 0;
}
