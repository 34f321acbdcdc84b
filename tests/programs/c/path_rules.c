/* path-rules: the *at calls' conventions and open's flags as Linux has them: absolute
 * paths ignore dirfd, a dirfd that is not a directory is ENOTDIR, AT_EMPTY_PATH; access
 * mode 3 (neither read nor write), O_RDONLY|O_TRUNC truncates, O_PATH drops O_CREAT and
 * O_DIRECTORY's conflict, O_TMPFILE needs write access; the errnos of mknod, unlinkat,
 * linkat, renameat2 and utimensat. One line per case, "NAME: ok" or "NAME: FAIL ...";
 * the exit status is the number of failures. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef O_TMPFILE
#define O_TMPFILE (020000000 | O_DIRECTORY)
#endif
#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE 1
#endif

static int failures;
static char dir[64];

static void report(const char *name, int ok, const char *detail) {
    if (ok)
        printf("%s: ok\n", name);
    else {
        printf("%s: FAIL %s\n", name, detail);
        failures++;
    }
    fflush(stdout);
}

/* Checks that `r` is -1 with `want` (or success when want is 0). */
static void expect(const char *name, long r, int want) {
    char d[96];
    int e = errno;
    snprintf(d, sizeof d, "returned %ld errno %d, want errno %d", r, r < 0 ? e : 0, want);
    report(name, want == 0 ? r >= 0 : (r == -1 && e == want), d);
}

static void put(const char *name, const char *data) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (write(fd, data, strlen(data)) < 0)
        printf("write failed\n");
    close(fd);
}

static long size_of(int d, const char *name) {
    struct stat st;
    return fstatat(d, name, &st, 0) == 0 ? (long)st.st_size : -1;
}

int main(void) {
    mkdir("/tmp", 01777);
    strcpy(dir, "/tmp/path-rules-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("mkdtemp failed\n");
        return 100;
    }
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    put("f", "data");
    mkdirat(d, "sub", 0755);
    symlinkat("f", d, "lf");
    int f = openat(d, "f", O_RDONLY);

    /* Where paths start. */
    char abs[128];
    snprintf(abs, sizeof abs, "%s/f", dir);
    struct stat st;
    errno = 0;
    expect("an absolute path ignores a bad dirfd", fstatat(9999, abs, &st, 0), 0);
    errno = 0;
    expect("a relative path from a bad dirfd is EBADF", fstatat(9999, "f", &st, 0), EBADF);
    errno = 0;
    expect("a relative path from a file is ENOTDIR", fstatat(f, "x", &st, 0), ENOTDIR);
    errno = 0;
    expect("an empty path is ENOENT", fstatat(d, "", &st, 0), ENOENT);
    errno = 0;
    long r = fstatat(f, "", &st, AT_EMPTY_PATH);
    report("AT_EMPTY_PATH: the descriptor itself", r == 0 && st.st_size == 4, "wrong file");
    errno = 0;
    expect("fstatat: an unknown flag is EINVAL", fstatat(d, "f", &st, 0x4), EINVAL);

    /* open's flags. */
    errno = 0;
    int three = openat(d, "f", 3);
    char b[8];
    errno = 0;
    long rr = read(three, b, 1);
    int re = errno;
    errno = 0;
    long wr = write(three, "x", 1);
    int we = errno;
    char dd[96];
    snprintf(dd, sizeof dd, "fd %d, read %ld/%d, write %ld/%d", three, rr, re, wr, we);
    report("access mode 3: opens, neither reads nor writes",
           three >= 0 && rr == -1 && re == EBADF && wr == -1 && we == EBADF, dd);
    close(three);
    errno = 0;
    expect("access mode 3 on a directory is EISDIR", openat(d, "sub", 3), EISDIR);
    int t = openat(d, "f", O_RDONLY | O_TRUNC);
    snprintf(dd, sizeof dd, "fd %d size %ld", t, size_of(d, "f"));
    report("O_RDONLY|O_TRUNC truncates", t >= 0 && size_of(d, "f") == 0, dd);
    close(t);
    put("f", "data");
    errno = 0;
    expect("O_CREAT|O_DIRECTORY is EINVAL", openat(d, "new", O_CREAT | O_DIRECTORY, 0644),
           EINVAL);
    errno = 0;
    int p = openat(d, "sub", O_PATH | O_CREAT | O_DIRECTORY, 0644);
    report("O_PATH drops O_CREAT before that check", p >= 0, "refused");
    close(p);
    errno = 0;
    expect("O_PATH does not create", openat(d, "new", O_PATH | O_CREAT, 0644), ENOENT);
    errno = 0;
    expect("O_TMPFILE read-only is EINVAL", openat(d, ".", O_TMPFILE | O_RDONLY, 0600), EINVAL);
    errno = 0;
    expect("O_DIRECTORY on a file is ENOTDIR", openat(d, "f", O_RDONLY | O_DIRECTORY), ENOTDIR);
    errno = 0;
    expect("O_NOFOLLOW on a symbolic link is ELOOP", openat(d, "lf", O_RDONLY | O_NOFOLLOW),
           ELOOP);
    errno = 0;
    expect("O_CREAT|O_EXCL on a symbolic link is EEXIST",
           openat(d, "lf", O_CREAT | O_EXCL | O_WRONLY, 0644), EEXIST);

    /* mknod. */
    errno = 0;
    expect("mknod of a directory is EPERM", mknodat(d, "m1", S_IFDIR | 0755, 0), EPERM);
    errno = 0;
    expect("mknod of a symbolic link is EINVAL", mknodat(d, "m2", S_IFLNK | 0777, 0), EINVAL);
    errno = 0;
    expect("mknod of a regular file works", mknodat(d, "m3", S_IFREG | 0644, 0), 0);

    /* unlinkat, linkat, renameat2. */
    errno = 0;
    expect("unlinkat: an unknown flag is EINVAL", unlinkat(d, "m3", AT_SYMLINK_NOFOLLOW), EINVAL);
    errno = 0;
    expect("unlinkat: AT_REMOVEDIR on a file is ENOTDIR", unlinkat(d, "m3", AT_REMOVEDIR),
           ENOTDIR);
    errno = 0;
    expect("unlinkat: a directory without AT_REMOVEDIR is EISDIR", unlinkat(d, "sub", 0),
           EISDIR);
    errno = 0;
    expect("linkat: an unknown flag is EINVAL", linkat(d, "f", d, "g", AT_SYMLINK_NOFOLLOW),
           EINVAL);
    errno = 0;
    expect("linkat of a directory is EPERM", linkat(d, "sub", d, "sub2", 0), EPERM);
    errno = 0;
    expect("linkat onto an existing name is EEXIST", linkat(d, "f", d, "m3", 0), EEXIST);
    errno = 0;
    expect("linkat to a new name with a slash is ENOENT", linkat(d, "f", d, "g/", 0), ENOENT);
    errno = 0;
    expect("linkat: AT_EMPTY_PATH links the descriptor's file",
           linkat(f, "", d, "byfd", AT_EMPTY_PATH), 0);
    errno = 0;
    expect("renameat2: an unknown flag is EINVAL",
           syscall(SYS_renameat2, d, "f", d, "g", 8), EINVAL);
    errno = 0;
    expect("renameat2: RENAME_NOREPLACE onto a name is EEXIST",
           syscall(SYS_renameat2, d, "f", d, "m3", RENAME_NOREPLACE), EEXIST);
    errno = 0;
    expect("renameat2: RENAME_NOREPLACE to a new name works",
           syscall(SYS_renameat2, d, "m3", d, "sub/m4", RENAME_NOREPLACE), 0);

    /* utimensat. */
    struct timespec ts[2] = {{1, 0}, {2, 0}};
    errno = 0;
    expect("utimensat: a descriptor with a null path takes no flags",
           syscall(SYS_utimensat, f, NULL, ts, AT_SYMLINK_NOFOLLOW), EINVAL);
    errno = 0;
    expect("utimensat: a descriptor with a null path works",
           syscall(SYS_utimensat, f, NULL, ts, 0), 0);
    ts[1].tv_nsec = 1000000000;
    errno = 0;
    expect("utimensat: a bad tv_nsec is EINVAL", utimensat(d, "f", ts, 0), EINVAL);

    close(f);
    close(d);
    const char *names[] = {"f", "lf", "byfd", "sub/m4"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        char q[160];
        snprintf(q, sizeof q, "%s/%s", dir, names[i]);
        unlink(q);
    }
    char q[160];
    snprintf(q, sizeof q, "%s/sub", dir);
    rmdir(q);
    rmdir(dir);
    printf("failures: %d\n", failures);
    return failures;
}
