/* fchmodat2 and mlock2, two calls newer C libraries make (glibc 2.39's fchmodat with
 * AT_SYMLINK_NOFOLLOW, lchmod), printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): a file's mode changed through a link and not, a link's own
 * mode refused, AT_EMPTY_PATH on a descriptor, an unknown flag; mlock2's flags. Through
 * syscall(): the C libraries here have no wrappers. Works in a directory of its own under
 * /tmp, removed at the end. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "show_result.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452
#endif

static long chmod2(int dirfd, const char *path, mode_t m, int flags) {
    return syscall(SYS_fchmodat2, dirfd, path, m, flags);
}

static void mode_of(const char *what, const char *path) {
    struct stat st;
    if (lstat(path, &st) < 0)
        show(what, -1);
    else
        printf("%s: %o\n", what, (unsigned)(st.st_mode & 07777));
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    mkdir("/tmp", 01777);
    char dir[] = "/tmp/chmod-mlock2-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) < 0) {
        perror("mkdtemp");
        return 1;
    }
    int fd = open("file", O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || symlink("file", "link") < 0)
        return 1;
    show("no flags", chmod2(AT_FDCWD, "file", 0640, 0));
    mode_of("file", "file");
    show("through the link", chmod2(AT_FDCWD, "link", 0604, 0));
    mode_of("file", "file");
    show("a file, not following", chmod2(AT_FDCWD, "file", 0600, AT_SYMLINK_NOFOLLOW));
    mode_of("file", "file");
    show("the link itself", chmod2(AT_FDCWD, "link", 0600, AT_SYMLINK_NOFOLLOW));
    show("AT_EMPTY_PATH", chmod2(fd, "", 0644, AT_EMPTY_PATH));
    mode_of("file", "file");
    show("an empty path without it", chmod2(fd, "", 0644, 0));
    show("an unknown flag", chmod2(AT_FDCWD, "file", 0644, 0x2));
    show("nothing there", chmod2(AT_FDCWD, "missing", 0644, AT_SYMLINK_NOFOLLOW));
    close(fd);
    unlink("link");
    unlink("file");
    if (chdir("/") < 0 || rmdir(dir) < 0)
        return 1;

    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    show("mlock2", syscall(SYS_mlock2, p, 8192, 0));
    show("mlock2 on fault", syscall(SYS_mlock2, p, 8192, 1));
    show("mlock2 unknown flag", syscall(SYS_mlock2, p, 8192, 2));
    show("munlock", munlock(p, 8192));
    return 0;
}
