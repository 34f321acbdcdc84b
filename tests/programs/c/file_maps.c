/* file_maps DIR: file mappings on a file in DIR — a writable MAP_SHARED mapping seen by
 * read(), by a second process mapping the file and after munmap; write() seen through the
 * mapping; msync's flags; MAP_PRIVATE copy-on-write not visible to the file or to other
 * mappings; a shared mapping's pages of a hole and growth through ftruncate; the errors
 * Linux gives (EACCES for a writable shared mapping of a read-only descriptor, EINVAL for
 * bad msync flags, ENOMEM for msync of an unmapped range). Prints what it sees. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define PG 4096
#define LEN (4 * PG)

static void check(int ok, const char *what) {
    printf("%s: %s\n", what, ok ? "ok" : "FAILED");
}

static int read_at(int fd, off_t off, char *buf, size_t n) {
    return (int)pread(fd, buf, n, off);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: file_maps DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/file_maps.dat", argv[1]);
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    char buf[LEN];
    for (int i = 0; i < LEN; i++)
        buf[i] = 'a' + i % 26;
    if (write(fd, buf, LEN) != LEN) {
        perror("write");
        return 1;
    }

    /* Shared writable mapping: stores are seen by read(), write() by the mapping. */
    char *m = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(m != MAP_FAILED, "mmap shared");
    check(memcmp(m, buf, LEN) == 0, "mapping holds the file");
    memcpy(m + 100, "HELLO", 5);
    char r[16] = {0};
    read_at(fd, 100, r, 5);
    check(memcmp(r, "HELLO", 5) == 0, "read sees a store through the mapping");
    pwrite(fd, "WORLD", 5, PG + 7);
    check(memcmp(m + PG + 7, "WORLD", 5) == 0, "mapping sees write()");

    /* msync: every valid flag accepted, bad ones refused as Linux does. */
    check(msync(m, LEN, MS_SYNC) == 0, "msync MS_SYNC");
    check(msync(m, LEN, MS_ASYNC) == 0, "msync MS_ASYNC");
    check(msync(m, LEN, MS_INVALIDATE) == 0, "msync MS_INVALIDATE");
    check(msync(m, LEN, MS_SYNC | MS_ASYNC) == -1 && errno == EINVAL, "msync SYNC|ASYNC EINVAL");
    check(msync(m + 1, PG, MS_SYNC) == -1 && errno == EINVAL, "msync unaligned EINVAL");
    check(msync(m, LEN, 0x100) == -1 && errno == EINVAL, "msync bad flag EINVAL");

    /* A second process maps the file: it sees the parent's stores, the parent sees its. */
    pid_t pid = fork();
    if (pid == 0) {
        int fd2 = open(path, O_RDWR);
        char *m2 = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
        if (m2 == MAP_FAILED)
            _exit(3);
        int ok = memcmp(m2 + 100, "HELLO", 5) == 0 && memcmp(m2 + PG + 7, "WORLD", 5) == 0;
        memcpy(m2 + 2 * PG, "CHILD", 5);
        msync(m2, LEN, MS_SYNC);
        munmap(m2, LEN);
        close(fd2);
        _exit(ok ? 0 : 4);
    }
    int st;
    waitpid(pid, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second process saw the stores");
    check(memcmp(m + 2 * PG, "CHILD", 5) == 0, "parent mapping sees the second process's store");

    /* A private mapping: copy-on-write, never seen by the file or other mappings. */
    char *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    check(p != MAP_FAILED, "mmap private");
    check(memcmp(p + 100, "HELLO", 5) == 0, "private mapping holds the file");
    memcpy(p + 3 * PG, "PRIVATE", 7);
    check(memcmp(m + 3 * PG, "PRIVATE", 7) != 0, "shared mapping does not see a private store");
    read_at(fd, 3 * PG, r, 7);
    check(memcmp(r, "PRIVATE", 7) != 0, "read does not see a private store");
    pid = fork();
    if (pid == 0) {
        int fd3 = open(path, O_RDONLY);
        char *p3 = mmap(NULL, LEN, PROT_READ, MAP_PRIVATE, fd3, 0);
        _exit(p3 != MAP_FAILED && memcmp(p3 + 3 * PG, "PRIVATE", 7) != 0 ? 0 : 5);
    }
    waitpid(pid, &st, 0);
    check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "other process does not see a private store");
    munmap(p, LEN);

    /* munmap keeps the data: the file and a new mapping have it. */
    check(munmap(m, LEN) == 0, "munmap");
    check(msync(m, LEN, MS_SYNC) == -1 && errno == ENOMEM, "msync unmapped ENOMEM");
    read_at(fd, 2 * PG, r, 5);
    check(memcmp(r, "CHILD", 5) == 0, "file keeps the stores after munmap");

    /* Growth: ftruncate then store into the new page through a fresh shared mapping. */
    check(ftruncate(fd, LEN + PG) == 0, "ftruncate grow");
    m = mmap(NULL, LEN + PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    check(m != MAP_FAILED && m[LEN + 10] == 0, "grown page reads zero");
    m[LEN + 10] = 'Z';
    read_at(fd, LEN + 10, r, 1);
    check(r[0] == 'Z', "store into the grown page is in the file");
    munmap(m, LEN + PG);

    /* Offsets: a mapping from page 1 sees page 1. */
    char *o = mmap(NULL, PG, PROT_READ, MAP_SHARED, fd, PG);
    check(o != MAP_FAILED && memcmp(o + 7, "WORLD", 5) == 0, "mapping at an offset");
    munmap(o, PG);

    /* A read-only descriptor cannot be mapped shared and writable. */
    int ro = open(path, O_RDONLY);
    void *bad = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
    check(bad == MAP_FAILED && errno == EACCES, "shared writable on O_RDONLY EACCES");
    void *okp = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
    check(okp != MAP_FAILED, "private writable on O_RDONLY");
    close(ro);

    /* Checksum of the whole file as read(). */
    unsigned long sum = 0;
    char all[LEN + PG];
    int n = read_at(fd, 0, all, sizeof all);
    for (int i = 0; i < n; i++)
        sum = sum * 31 + (unsigned char)all[i];
    printf("size %d sum %lu\n", n, sum);
    close(fd);
    unlink(path);
    return 0;
}
