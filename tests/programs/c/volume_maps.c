/* volume_maps DIR [VIEW]: writable MAP_SHARED mappings of files in DIR (a --volume in the guest, a
 * host directory natively). Stores through a mapping are seen by read(), write() is seen
 * by the mapping, a second mapping shares the pages, msync(MS_SYNC / MS_ASYNC), ftruncate
 * while mapped (the tail past the new end reads zeros, a page past it is gone), and the
 * stores reach the file on msync, on munmap of the last mapping, on fsync and when the
 * process that made them exits. VIEW, if given, is another path to DIR's directory that
 * reads the file itself, past any cache of the mapped pages (in the guest a second volume of
 * the same host directory; natively DIR again): each way of writing back is checked there
 * at once. Prints what it sees; the caller compares it, and the files left in DIR, with a
 * native run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096

static void check(int ok, const char *what) {
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
}

/* A file of `size` bytes of a repeated alphabet. */
static int make(const char *dir, const char *name, long size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    char *buf = malloc(size);
    for (long i = 0; i < size; i++)
        buf[i] = 'a' + i % 26;
    if (write(fd, buf, size) != size) {
        perror("write");
        exit(1);
    }
    free(buf);
    return fd;
}

/* A checksum of the whole file as read() gives it, and its size. */
static void summary(const char *what, int fd) {
    struct stat st;
    fstat(fd, &st);
    unsigned long sum = 0;
    char buf[PG];
    off_t off = 0;
    ssize_t n;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        for (ssize_t i = 0; i < n; i++)
            sum = sum * 31 + (unsigned char)buf[i];
        off += n;
    }
    printf("%s: size %ld sum %lu\n", what, (long)st.st_size, sum);
}

static const char *view;

/* Whether the file `name` seen through VIEW holds `want` at `off` (true without VIEW). */
static void on_file(const char *what, const char *name, long off, const char *want) {
    if (!view)
        return;
    char path[4096], got[64] = {0};
    snprintf(path, sizeof path, "%s/%s", view, name);
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : pread(fd, got, strlen(want), off);
    if (fd >= 0)
        close(fd);
    check(n == (ssize_t)strlen(want) && !memcmp(got, want, strlen(want)), what);
}

static char *map(int fd, long len) {
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        printf("mmap: %s\n", strerror(errno));
        exit(1);
    }
    return m;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: volume_maps DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *dir = argv[1];
    view = argc > 2 ? argv[2] : NULL;
    char r[64];

    /* Every file is made first: the guest's second volume lists its directory once. */
    int fd = make(dir, "coherent.dat", 3 * PG + 100);
    int fd3 = make(dir, "unmapped.dat", 2 * PG);
    int fd4 = make(dir, "fsynced.dat", PG + 1);
    int fd5 = make(dir, "exited.dat", 3 * PG);

    /* 1: coherence and msync. */
    char *m = map(fd, 4 * PG);
    check(m[0] == 'a' && m[3 * PG + 99] == 'a' + (3 * PG + 99) % 26, "mapping holds the file");
    check(m[3 * PG + 100] == 0, "past the end of the file's last page: zeros");
    memcpy(m + 10, "MAPPED0", 7);
    memcpy(m + PG + 10, "MAPPED1", 7);
    memcpy(m + 3 * PG + 50, "TAIL", 4);
    memset(r, 0, sizeof r);
    pread(fd, r, 7, 10);
    check(!memcmp(r, "MAPPED0", 7), "read sees a store through the mapping");
    pread(fd, r, 7, PG + 10);
    check(!memcmp(r, "MAPPED1", 7), "read sees a store on another page");
    pwrite(fd, "WRITTEN", 7, 2 * PG + 5);
    check(!memcmp(m + 2 * PG + 5, "WRITTEN", 7), "the mapping sees write()");
    char *m2 = map(fd, 4 * PG);
    check(!memcmp(m2 + 10, "MAPPED0", 7), "a second mapping shares the pages");
    m2[20] = 'Z';
    check(m[20] == 'Z', "and its stores are the first one's");
    check(msync(m, 4 * PG, MS_SYNC) == 0, "msync MS_SYNC");
    on_file("in the file after msync MS_SYNC", "coherent.dat", PG + 10, "MAPPED1");
    on_file("the tail page too", "coherent.dat", 3 * PG + 50, "TAIL");
    memcpy(m + 2 * PG + 100, "ASYNC", 5);
    check(msync(m + 2 * PG, PG, MS_ASYNC) == 0, "msync MS_ASYNC of one page");
    on_file("in the file after msync MS_ASYNC", "coherent.dat", 2 * PG + 100, "ASYNC");
    munmap(m2, 4 * PG);
    check(!memcmp(m + 10, "MAPPED0", 7), "the first mapping lives on after the second goes");
    summary("coherent.dat mapped", fd);

    /* 2: ftruncate while mapped. */
    check(ftruncate(fd, 2 * PG + 10) == 0, "ftruncate to 2 pages + 10 while mapped");
    /* "WRITTEN" is at 2 pages + 5: its "TT" stays, its "EN" is cut. */
    check(m[2 * PG + 9] == 'T' && m[2 * PG + 10] == 0 && m[2 * PG + 11] == 0,
          "the tail past the new end reads zeros");
    memcpy(m + PG + 20, "AFTERTRUNC", 10);
    pread(fd, r, 10, PG + 20);
    check(!memcmp(r, "AFTERTRUNC", 10), "stores after the truncate are read");
    summary("coherent.dat truncated", fd);
    munmap(m, 4 * PG);
    summary("coherent.dat after munmap", fd);
    close(fd);

    /* 3: munmap of the last mapping writes back (no msync). */
    fd = fd3;
    m = map(fd, 2 * PG);
    memcpy(m + PG - 3, "ACROSS", 6);
    munmap(m, 2 * PG);
    on_file("in the file after munmap", "unmapped.dat", PG - 3, "ACROSS");
    pread(fd, r, 6, PG - 3);
    check(!memcmp(r, "ACROSS", 6), "after munmap, read sees the stores");
    close(fd);

    /* 4: fsync writes back. */
    fd = fd4;
    m = map(fd, 2 * PG);
    memcpy(m + PG, "F", 1);
    memcpy(m, "FSYNC", 5);
    check(fsync(fd) == 0, "fsync");
    on_file("in the file after fsync", "fsynced.dat", 0, "FSYNC");
    close(fd);
    /* The mapping outlives the descriptor. */
    memcpy(m + 100, "NOFD", 4);
    check(msync(m, 2 * PG, MS_SYNC) == 0, "msync after close");
    on_file("in the file after msync without a descriptor", "fsynced.dat", 100, "NOFD");
    munmap(m, 2 * PG);

    /* 5: the stores of a process that exits without msync or munmap. */
    fd = fd5;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *c = map(fd, 3 * PG);
        memcpy(c + 2 * PG + 7, "CHILD", 5);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    on_file("in the file after the child exited", "exited.dat", 2 * PG + 7, "CHILD");
    pread(fd, r, 5, 2 * PG + 7);
    check(!memcmp(r, "CHILD", 5), "a child's stores are there after it exits");
    summary("exited.dat", fd);
    close(fd);
    return 0;
}
