/* kheap_fs MODE ARGS: filesystem attacks on the kernel's memory, each measured, undone and
 * repeated (the memory must come back). Prints one result line per phase and exits 0 if every
 * phase behaved (the first failure ends it with status 1). Runs natively in a tmpfs of the same
 * limits for comparison.
 *
 *   files DIR N    create up to N empty files in DIR (made), report how many and the errno that
 *                  stopped it; remove them; create as many again; remove them.
 *   dirs DIR N     nest up to N directories below DIR by mkdir+chdir; report the depth and the
 *                  errno; remove them bottom-up (chdir .., rmdir); nest as deep again; remove.
 *   bigfile PATH MIB   write MIB MiB of pseudo-random bytes, read them back, compare checksums.
 *   fill DIR       write 1 MiB files into DIR until the filesystem is full; report the MiB and
 *                  errno; remove them; fill again to the same amount; remove.
 *   mkfiles DIR N  create up to N empty files in DIR and keep them (for an `rm -rf` after).
 *   hold DIR       write 1 MiB files into DIR until the filesystem is full and keep them (the
 *                  "then" program runs with the kernel's memory used up).
 *
 * "files" and "dirs" first print the inodes the filesystem has in use (statfs), so a run can be
 * compared with Linux's tmpfs of the same nr_inodes. Any mode may be followed by
 * "then PROG ARGS...": after it, PROG runs in a child and its exit status is printed (the
 * kernel must go on after the attack).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errname(int e) {
    switch (e) {
    case 0: return "none";
    case ENOSPC: return "ENOSPC";
    case ENOMEM: return "ENOMEM";
    case EMLINK: return "EMLINK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EDQUOT: return "EDQUOT";
    case EFBIG: return "EFBIG";
    default: return strerror(e);
    }
}

static int fail(const char *what) {
    printf("FAIL: %s: %s\n", what, errname(errno));
    fflush(stdout);
    exit(1);
}

static void enter(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        fail("mkdir");
    if (chdir(dir) != 0)
        fail("chdir");
}

static void inodes_in_use(const char *mode) {
    struct statfs sf;
    if (statfs(".", &sf) != 0)
        fail("statfs");
    printf("%s: %ld of %ld inodes in use\n", mode, (long)(sf.f_files - sf.f_ffree),
           (long)sf.f_files);
}

/* Creates up to n files f0, f1, ... in the cwd; returns how many, the stopping errno in *err. */
static long make_files(long n, int *err) {
    char name[32];
    *err = 0;
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%ld", i);
        int fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0644);
        if (fd < 0) {
            *err = errno;
            return i;
        }
        close(fd);
    }
    return n;
}

static void remove_files(long n) {
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "f%ld", i);
        if (unlink(name) != 0)
            fail("unlink");
    }
}

/* Whether `again` objects made after removing `made` show that the memory came back. At an
 * inode limit (ENOSPC, or no error) the count is exact. When the kernel heap's headroom
 * stopped them (ENOMEM), other kernel work that allocates for a moment at the same time
 * (timers, the console, process bookkeeping) can refuse a few objects earlier: allow 1 in
 * 1000 (a leak of the removed objects' memory would lose all of them). */
static int came_back(long made, long again, int err) {
    if (err != ENOMEM)
        return again == made;
    return again <= made && again >= made - made / 1000 - 1;
}

static int files(const char *dir, long n) {
    enter(dir);
    inodes_in_use("files");
    int err, err2;
    long made = make_files(n, &err);
    printf("files: created %ld, then %s\n", made, errname(err));
    remove_files(made);
    long again = make_files(made, &err2);
    int ok = came_back(made, again, err);
    if (err == ENOMEM && ok)
        printf("files: removed and created as many again\n");
    else
        printf("files: removed and created %ld again%s\n", again, ok ? "" : " (FEWER)");
    if (err == ENOMEM)
        fprintf(stderr, "files: created %ld again\n", again);
    remove_files(again);
    return ok ? 0 : 1;
}

static long nest(long n, int *err) {
    *err = 0;
    for (long i = 0; i < n; i++) {
        if (mkdir("d", 0755) != 0) {
            *err = errno;
            return i;
        }
        if (chdir("d") != 0)
            fail("chdir d");
    }
    return n;
}

static void unnest(long depth) {
    for (long i = 0; i < depth; i++) {
        if (chdir("..") != 0)
            fail("chdir ..");
        if (rmdir("d") != 0)
            fail("rmdir d");
    }
}

static int dirs(const char *dir, long n) {
    enter(dir);
    inodes_in_use("dirs");
    int err, err2;
    long depth = nest(n, &err);
    printf("dirs: nested %ld, then %s\n", depth, errname(err));
    unnest(depth);
    long again = nest(depth, &err2);
    printf("dirs: removed and nested %ld again%s\n", again, again == depth ? "" : " (FEWER)");
    unnest(again);
    struct stat st;
    if (stat("d", &st) == 0)
        fail("d still exists");
    return again == depth ? 0 : 1;
}

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int bigfile(const char *path, long mib) {
    static uint64_t buf[(1 << 20) / 8];
    uint64_t seed = 0x9e3779b97f4a7c15ull, sum = 0, back = 0;
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0)
        fail("create");
    for (long m = 0; m < mib; m++) {
        for (size_t i = 0; i < sizeof buf / 8; i++) {
            buf[i] = next(&seed);
            sum = sum * 31 + buf[i];
        }
        char *p = (char *)buf;
        size_t left = sizeof buf;
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w <= 0) {
                printf("bigfile: write failed after %ld MiB: %s\n", m, errname(errno));
                return 1;
            }
            p += w;
            left -= (size_t)w;
        }
    }
    close(fd);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_size != (off_t)mib << 20)
        fail("size");
    fd = open(path, O_RDONLY);
    if (fd < 0)
        fail("open");
    for (long m = 0; m < mib; m++) {
        size_t got = 0;
        while (got < sizeof buf) {
            ssize_t r = read(fd, (char *)buf + got, sizeof buf - got);
            if (r <= 0)
                fail("read");
            got += (size_t)r;
        }
        for (size_t i = 0; i < sizeof buf / 8; i++)
            back = back * 31 + buf[i];
    }
    char extra;
    if (read(fd, &extra, 1) != 0)
        fail("read past the end");
    close(fd);
    if (unlink(path) != 0)
        fail("unlink");
    printf("bigfile: %ld MiB written and read back, checksum %s\n", mib,
           sum == back ? "ok" : "MISMATCH");
    return sum == back ? 0 : 1;
}

/* Writes 1 MiB files g0, g1, ... until a write fails; returns whole MiB stored. */
static long fill_once(int *err, long *files_made) {
    static char buf[1 << 20];
    memset(buf, 0x5a, sizeof buf);
    char name[32];
    long total = 0;
    *err = 0;
    for (long i = 0;; i++) {
        snprintf(name, sizeof name, "g%ld", i);
        int fd = open(name, O_CREAT | O_TRUNC | O_WRONLY, 0644);
        if (fd < 0) {
            *err = errno;
            *files_made = i;
            return total >> 20;
        }
        size_t left = sizeof buf;
        while (left > 0) {
            ssize_t w = write(fd, buf + sizeof buf - left, left);
            if (w < 0) {
                *err = errno;
                break;
            }
            left -= (size_t)w;
            total += w;
        }
        close(fd);
        if (left > 0) {
            *files_made = i + 1;
            return total >> 20;
        }
    }
}

static void unfill(long n) {
    char name[32];
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "g%ld", i);
        if (unlink(name) != 0)
            fail("unlink g");
    }
}

static int fill(const char *dir) {
    enter(dir);
    int err, err2;
    long n1, n2;
    long mib = fill_once(&err, &n1);
    printf("fill: %ld MiB, then %s\n", mib, errname(err));
    unfill(n1);
    long again = fill_once(&err2, &n2);
    unfill(n2);
    /* The same amount within 1 MiB (the last file's partial write). */
    int same = again >= mib - 1 && again <= mib + 1;
    printf("fill: removed and filled %s again, then %s\n", same ? "as much" : "a different amount",
           errname(err2));
    return same ? 0 : 1;
}

static int hold(const char *dir) {
    enter(dir);
    int err;
    long n;
    long mib = fill_once(&err, &n);
    printf("hold: %ld MiB, then %s\n", mib, errname(err));
    return 0;
}

static int mkfiles(const char *dir, long n) {
    enter(dir);
    int err;
    long made = make_files(n, &err);
    printf("mkfiles: created %ld, then %s\n", made, errname(err));
    return 0;
}

static int run_mode(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "mkfiles") == 0)
        return mkfiles(argv[2], atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "hold") == 0)
        return hold(argv[2]);
    if (argc == 4 && strcmp(argv[1], "files") == 0)
        return files(argv[2], atol(argv[3]));
    if (argc == 4 && strcmp(argv[1], "dirs") == 0)
        return dirs(argv[2], atol(argv[3]));
    if (argc == 4 && strcmp(argv[1], "bigfile") == 0)
        return bigfile(argv[2], atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "fill") == 0)
        return fill(argv[2]);
    fprintf(stderr, "usage: kheap_fs files|dirs DIR N | bigfile PATH MIB | fill DIR "
                    "[then PROG ARGS...]\n");
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = 1;
    while (n < argc && strcmp(argv[n], "then") != 0)
        n++;
    int r = run_mode(n, argv);
    if (r != 0 || n + 1 >= argc)
        return r;
    if (chdir("/") != 0)
        fail("chdir /");
    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        execv(argv[n + 1], argv + n + 1);
        printf("then: exec %s: %s\n", argv[n + 1], errname(errno));
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid)
        fail("waitpid");
    printf("then: %s exited %d\n", argv[n + 1], WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
