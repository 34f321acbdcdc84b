/* execveat and fexecve, printed for a comparison with the native run
 * (tests/tests/linux_edges.rs): the program re-executes itself through a descriptor
 * (AT_EMPTY_PATH), a path relative to a directory descriptor and to AT_FDCWD, and runs a
 * script through a descriptor (refused when the descriptor is close-on-exec); each new image
 * prints its AT_EXECFN, argv[1] and the name /proc/self/exe ends with; then the errors
 * (AT_SYMLINK_NOFOLLOW on a link, unknown flags, an empty path without AT_EMPTY_PATH, a bad
 * or non-directory descriptor). Raw system calls: musl's fexecve differs from glibc's. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "show_result.h"

#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

static char self[4096];

static long exec_at(int dirfd, const char *path, char *const argv[], int flags) {
    char *envp[] = {NULL};
    return syscall(SYS_execveat, dirfd, path, argv, envp, flags);
}

/* Runs `f(arg)` in a child (which execs) and waits; "what: exit N" if it exited. */
static void in_exec_child(const char *what, long (*f)(const char *), const char *arg) {
    fflush(stdout);
    pid_t c = fork();
    if (c == 0) {
        long r = f(arg);
        show(what, r);
        fflush(stdout);
        _exit(99);
    }
    int status = 0;
    waitpid(c, &status, 0);
    printf("%s: exit %d\n", what, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static long by_fd(const char *mode) {
    int fd = open(self, O_RDONLY);
    char *argv[] = {"exec-at", (char *)mode, NULL};
    return exec_at(fd, "", argv, AT_EMPTY_PATH);
}

static long by_dirfd(const char *mode) {
    char dir[4096];
    strcpy(dir, self);
    int d = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    char name[4096];
    strcpy(name, self);
    char *argv[] = {"exec-at", (char *)mode, NULL};
    return exec_at(d, basename(name), argv, 0);
}

static long by_cwd(const char *mode) {
    char dir[4096];
    strcpy(dir, self);
    if (chdir(dirname(dir)) != 0)
        return -1;
    char name[4096];
    strcpy(name, self);
    char rel[4200];
    snprintf(rel, sizeof rel, "./%s", basename(name));
    char *argv[] = {"exec-at", (char *)mode, NULL};
    return exec_at(AT_FDCWD, rel, argv, 0);
}

static char script[64];

static long script_by_fd(const char *cloexec) {
    int fd = open(script, O_RDONLY | (cloexec[0] == '1' ? O_CLOEXEC : 0));
    char *argv[] = {"script", "from-script", NULL};
    return exec_at(fd, "", argv, AT_EMPTY_PATH);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "main") != 0) {
        /* A new image: what it was started with. */
        const char *fn = (const char *)getauxval(AT_EXECFN);
        char exe[4096] = "";
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[n > 0 ? n : 0] = 0;
        char *base = strrchr(exe, '/');
        printf("image: argv1 %s execfn %s exe ends %s", argv[1], fn ? fn : "(none)",
               base ? base + 1 : exe);
        if (argc >= 3)
            printf(" argv2 %s", argv[2]);
        putchar('\n');
        return 7;
    }
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 1;
    self[n] = 0;

    in_exec_child("through a descriptor", by_fd, "fd");
    in_exec_child("relative to a directory descriptor", by_dirfd, "dirfd");
    in_exec_child("relative to AT_FDCWD", by_cwd, "cwd");

    /* A script whose interpreter is this program. */
    mkdir("/tmp", 01777); /* (a --rootfs of the test's own programs has none) */
    strcpy(script, "/tmp/exec-at-XXXXXX");
    int s = mkstemp(script);
    dprintf(s, "#!%s\n", self);
    fchmod(s, 0755);
    close(s);
    in_exec_child("a script through a close-on-exec descriptor", script_by_fd, "1");
    in_exec_child("a script through a descriptor", script_by_fd, "0");

    /* Errors (nothing is executed). */
    char link[64];
    strcpy(link, "/tmp/exec-at-link-XXXXXX");
    int l = mkstemp(link);
    close(l);
    unlink(link);
    if (symlink(self, link) != 0)
        return 1;
    char *args[] = {"exec-at", "never", NULL};
    show("AT_SYMLINK_NOFOLLOW on a link", exec_at(AT_FDCWD, link, args, AT_SYMLINK_NOFOLLOW));
    show("unknown flags", exec_at(AT_FDCWD, self, args, 0x4));
    int fd = open(self, O_RDONLY);
    show("an empty path without AT_EMPTY_PATH", exec_at(fd, "", args, 0));
    show("a relative path from a file descriptor", exec_at(fd, "x", args, 0));
    show("a relative path from a closed descriptor", exec_at(999, "x", args, 0));
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    show("a directory through AT_EMPTY_PATH", exec_at(dir, "", args, AT_EMPTY_PATH));
    unlink(link);
    unlink(script);
    puts("exec at done: 1");
    return 0;
}
