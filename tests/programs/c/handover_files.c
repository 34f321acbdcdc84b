/* Descriptors of in-memory files across a kernel hand-over (tests/tests/upgrade.rs):
 * in directory DIR (fresh) makes the files e0..e11, opens DIR, opens DIR/log (written
 * "before\n", so at offset 7), DIR/gone (written "unlinked\n", then unlinked: held open
 * only) and DIR/dup through two descriptors of one open file description (dup: one offset,
 * "one," written), maps DIR/map (a page of 'A's, a page of 'B's) MAP_PRIVATE and writes 'X'
 * into its first page (a private copy; the second page is still the file's), lists DIR's
 * first entries with one small getdents64; writes "ready" to
 * READY, waits until GO exists, then goes on with every descriptor where it was: lists the
 * rest of DIR, writes "after\n" at log's offset and "more\n" at gone's, and writes to OUT:
 *   entries N unique U log OFFSET <contents> gone OFFSET <contents> dup OFFSET <contents>
 *   map M0 M1 F0
 * (M0, M1: the mapping's first bytes of each page; F0: the file's first byte),
 * with N entries listed in the two parts, U of them distinct, the offsets after the writes,
 * and what pread reads back from offset 0. The caller upgrades the kernel in between; the
 * report must be the one of a run without a switch. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int names(char *buf, long n, char seen[][256], int k) {
    for (long at = 0; at < n && k < 64;) {
        struct dirent64 *d = (struct dirent64 *)(buf + at);
        snprintf(seen[k++], 256, "%s", d->d_name);
        at += d->d_reclen;
    }
    return k;
}

static void show(FILE *out, const char *what, int fd) {
    char b[64];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    b[n < 0 ? 0 : n] = 0;
    for (char *p = b; *p; p++)
        if (*p == '\n')
            *p = '|';
    fprintf(out, " %s %lld %s", what, (long long)lseek(fd, 0, SEEK_CUR), b);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: handover-files DIR READY GO OUT\n");
        return 2;
    }
    char path[4096];
    if (mkdir(argv[1], 0755) != 0) {
        perror("mkdir");
        return 1;
    }
    for (int i = 0; i < 12; i++) {
        snprintf(path, sizeof path, "%s/e%d", argv[1], i);
        close(open(path, O_CREAT | O_WRONLY, 0644));
    }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof path, "%s/log", argv[1]);
    int log = open(path, O_CREAT | O_RDWR, 0644);
    snprintf(path, sizeof path, "%s/gone", argv[1]);
    int gone = open(path, O_CREAT | O_RDWR, 0600);
    snprintf(path, sizeof path, "%s/dup", argv[1]);
    int d1 = open(path, O_CREAT | O_RDWR, 0644);
    int d2 = dup(d1);
    if (dir < 0 || log < 0 || gone < 0 || d1 < 0 || d2 < 0) {
        perror("open");
        return 1;
    }
    if (write(log, "before\n", 7) != 7 || write(gone, "unlinked\n", 9) != 9 ||
        write(d1, "one,", 4) != 4)
        return 1;
    snprintf(path, sizeof path, "%s/gone", argv[1]);
    if (unlink(path) != 0)
        return 1;
    snprintf(path, sizeof path, "%s/map", argv[1]);
    int mf = open(path, O_CREAT | O_RDWR, 0644);
    static char page[8192];
    memset(page, 'A', 4096);
    memset(page + 4096, 'B', 4096);
    if (mf < 0 || write(mf, page, sizeof page) != (ssize_t)sizeof page)
        return 1;
    char *map = mmap(NULL, sizeof page, PROT_READ | PROT_WRITE, MAP_PRIVATE, mf, 0);
    if (map == MAP_FAILED)
        return 1;
    close(mf);
    map[0] = 'X';
    static char seen[64][256];
    char buf[160];
    long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
    int k = names(buf, n, seen, 0);
    FILE *ready = fopen(argv[2], "w");
    fputs("ready\n", ready);
    fclose(ready);
    while (access(argv[3], F_OK) != 0)
        usleep(10000);
    char big[4096];
    while ((n = syscall(SYS_getdents64, dir, big, sizeof big)) > 0)
        k = names(big, n, seen, k);
    if (write(log, "after\n", 6) != 6 || write(gone, "more\n", 5) != 5 ||
        write(d2, "two", 3) != 3)
        return 1;
    int unique = 0;
    for (int i = 0; i < k; i++) {
        int again = 0;
        for (int j = 0; j < i; j++)
            again |= strcmp(seen[i], seen[j]) == 0;
        unique += !again;
    }
    FILE *out = fopen(argv[4], "w");
    fprintf(out, "entries %d unique %d", k, unique);
    show(out, "log", log);
    show(out, "gone", gone);
    show(out, "dup", d1);
    snprintf(path, sizeof path, "%s/map", argv[1]);
    int again = open(path, O_RDONLY);
    char f0 = 0;
    if (again < 0 || pread(again, &f0, 1, 0) != 1)
        return 1;
    fprintf(out, " map %c %c %c\n", map[0], map[4096], f0);
    fclose(out);
    return 0;
}
