/* chroot(2), printed for a comparison with the native run (tests/tests/linux_edges.rs): a
 * process's root — absolute paths, absolute and relative symbolic links and `..` stay in it;
 * the working directory is left where it was (getcwd then names it "(unreachable)..." from
 * outside the root, as the raw system call shows); a descriptor opened before the chroot
 * still leads outside (fchdir, openat), as on Linux; a fork child inherits the root; the
 * errors (ENOENT, ENOTDIR, EPERM without CAP_SYS_CHROOT, EACCES for an unsearchable
 * directory). Runs as root; the tree it makes under /tmp is removed at the end. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

static char top[64];

/* The raw getcwd (glibc's wrapper refuses "(unreachable)" paths), with the tree's own
 * name replaced by TOP so that runs compare. */
static void cwd(const char *what) {
    char buf[256];
    long n = syscall(SYS_getcwd, buf, sizeof buf);
    if (n < 0) {
        show(what, -1);
        return;
    }
    char *at = strstr(buf, top);
    if (at)
        printf("%s: %.*sTOP%s\n", what, (int)(at - buf), buf, at + strlen(top));
    else
        printf("%s: %s\n", what, buf);
}

/* The first line of a file, or the errno. */
static void cat(const char *what, int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) {
        show(what, -1);
        return;
    }
    char b[64] = {0};
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    if (n > 0 && b[n - 1] == '\n')
        b[n - 1] = 0;
    printf("%s: %s\n", what, b);
}

static void put(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, text, strlen(text)) < 0)
            perror("write");
        close(fd);
    }
}

static void child_sees_the_root(void) {
    cat("child: /etc/marker", AT_FDCWD, "/etc/marker");
    cwd("child: cwd");
}

static void as_nobody(void) {
    if (setgid(65534) || setuid(65534)) {
        show("nobody: setuid", -1);
        return;
    }
    show("nobody: chroot a searchable directory", chroot("."));
    show("nobody: chroot an unsearchable one", chroot("/private"));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    mkdir("/tmp", 01777);
    strcpy(top, "/tmp/chrootXXXXXX");
    if (!mkdtemp(top)) {
        perror("mkdtemp");
        return 1;
    }
    char p[256];
#define AT(rel) (snprintf(p, sizeof p, "%s%s", top, rel), p)
    mkdir(AT("/root"), 0755);
    mkdir(AT("/root/etc"), 0755);
    mkdir(AT("/root/sub"), 0755);
    mkdir(AT("/root/sub/deep"), 0755);
    mkdir(AT("/root/sub/private"), 0700);
    mkdir(AT("/root/proc"), 0555);
    put(AT("/root/etc/marker"), "inside\n");
    put(AT("/outside"), "outside\n");
    symlink("/etc/marker", AT("/root/sub/abs"));
    symlink("../../etc", AT("/root/sub/deep/rel"));
    symlink("/../../../outside", AT("/root/sub/escape"));
    int outer = open(top, O_RDONLY | O_DIRECTORY);
    show("outer fd", outer < 0 ? -1 : 0);
    int tmp = open("/tmp", O_RDONLY | O_DIRECTORY);

    show("chroot a missing directory", chroot(AT("/nothing")));
    show("chroot a file", chroot(AT("/root/etc/marker")));
    show("chdir into the tree", chdir(AT("/root/sub")));
    cwd("cwd before");
    show("mount proc on a file", mount("proc", AT("/outside"), "proc", 0, NULL));
    show("umount what is no mount", umount(AT("/root/sub")));
    show("mount proc inside", mount("proc", AT("/root/proc"), "proc", MS_NOSUID | MS_NODEV, NULL));
    show("chroot", chroot(AT("/root")));
    cwd("cwd after (not moved)");
    cat("/etc/marker", AT_FDCWD, "/etc/marker");
    cat("../etc/marker from sub", AT_FDCWD, "../etc/marker");
    cat("/../../etc/marker", AT_FDCWD, "/../../etc/marker");
    cat("absolute link", AT_FDCWD, "/sub/abs");
    cat("relative link", AT_FDCWD, "/sub/deep/rel/marker");
    cat("link climbing out", AT_FDCWD, "/sub/escape");
    cat("outer fd still leads out", outer, "outside");
    in_child(child_sees_the_root);
    {
        char l[256] = {0};
        show("its /proc: self/cwd", readlink("/proc/self/cwd", l, sizeof l - 1));
        printf("  -> %s\n", l);
        memset(l, 0, sizeof l);
        show("its /proc: self/root", readlink("/proc/self/root", l, sizeof l - 1));
        printf("  -> %s\n", l);
        struct stat st;
        show("its /proc: self/stat", stat("/proc/self/stat", &st));
        cat("its /proc: .. of it", AT_FDCWD, "/proc/../etc/marker");
        show("umount it from inside", umount("/proc"));
        show("umount it again", umount("/proc"));
        show("gone", stat("/proc/self/stat", &st));
    }
    show("chdir /", chdir("/"));
    cwd("cwd at the root");
    show("chdir ..", chdir(".."));
    cwd("cwd after ..");
    show("fchdir to the outer fd", fchdir(outer));
    cwd("cwd outside the root");
    cat("outside, relative", AT_FDCWD, "outside");
    cat("absolute still inside", AT_FDCWD, "/etc/marker");
    show("chdir / again", chdir("/"));
    show("chroot sub", chroot("sub"));
    cat("after chroot sub: /deep/rel", AT_FDCWD, "/deep/rel/marker");
    cat("after chroot sub: /abs", AT_FDCWD, "/abs");
    cwd("cwd above the new root");
    show("chdir / once more", chdir("/"));
    in_child(as_nobody);

    /* Clean up from the outer descriptor. */
    show("back out", fchdir(outer));
    unlinkat(outer, "outside", 0);
    unlinkat(outer, "root/sub/abs", 0);
    unlinkat(outer, "root/sub/escape", 0);
    unlinkat(outer, "root/sub/deep/rel", 0);
    unlinkat(outer, "root/sub/deep", AT_REMOVEDIR);
    unlinkat(outer, "root/sub/private", AT_REMOVEDIR);
    unlinkat(outer, "root/sub", AT_REMOVEDIR);
    unlinkat(outer, "root/etc/marker", 0);
    unlinkat(outer, "root/etc", AT_REMOVEDIR);
    unlinkat(outer, "root/proc", AT_REMOVEDIR);
    show("tree removed", unlinkat(outer, "root", AT_REMOVEDIR));
    show("top removed", unlinkat(tmp, strrchr(top, '/') + 1, AT_REMOVEDIR));
    printf("chroot done: 1\n");
    return 0;
}
