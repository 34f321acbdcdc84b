/* sigbus_eof DIR [FILE]: touching a page of a file mapping that lies wholly past the end of
 * the file is SIGBUS (si_code BUS_ADRERR, si_addr the address touched), as on Linux; the
 * page holding the end of the file reads zeros past it. In DIR (a writable directory): a
 * 5000-byte file mapped three pages long, MAP_SHARED and MAP_PRIVATE, read and written;
 * then a file shrunk by ftruncate while mapped (pages touched before are gone too) and grown
 * again. FILE, if given, is an existing file (not a multiple of the page size) mapped
 * read-only past its end. Prints what it sees (offsets, never addresses). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096

static sigjmp_buf env;
static volatile sig_atomic_t got_sig, got_code;
static void *volatile got_addr;

static void on_fault(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    got_sig = sig;
    got_code = si->si_code;
    got_addr = si->si_addr;
    siglongjmp(env, 1);
}

/* Reads (or writes) the byte at m + off; prints the value or the signal. */
static void touch(const char *what, volatile char *m, long off, int write) {
    got_sig = 0;
    if (sigsetjmp(env, 1) == 0) {
        char v;
        if (write) {
            m[off] = 'W';
            v = m[off];
        } else {
            v = m[off];
        }
        printf("%s %s +%ld: %d\n", what, write ? "write" : "read", off, v);
    } else {
        printf("%s %s +%ld: %s code=%s at +%ld\n", what, write ? "write" : "read", off,
               got_sig == SIGBUS ? "SIGBUS" : got_sig == SIGSEGV ? "SIGSEGV" : "signal",
               got_code == BUS_ADRERR ? "BUS_ADRERR" : "other",
               (long)((char *)got_addr - (char *)m));
    }
}

static int make(const char *path, long size) {
    unlink(path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror("open");
        exit(1);
    }
    char *buf = malloc(size);
    memset(buf, 'x', size);
    if (write(fd, buf, size) != size) {
        perror("write");
        exit(1);
    }
    free(buf);
    return fd;
}

static void past_end(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/sigbus_eof.dat", dir);
    int fd = make(path, 5000);
    const int flags[] = {MAP_SHARED, MAP_PRIVATE};
    const char *names[] = {"shared", "private"};
    for (int i = 0; i < 2; i++) {
        char *m = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, flags[i], fd, 0);
        if (m == MAP_FAILED) {
            printf("%s mmap: %s\n", names[i], strerror(errno));
            continue;
        }
        touch(names[i], m, 0, 0);
        touch(names[i], m, 4999, 0);
        touch(names[i], m, 5000, 0);
        touch(names[i], m, 2 * PG - 1, 0);
        touch(names[i], m, 2 * PG, 0);
        touch(names[i], m, 2 * PG + 100, 1);
        touch(names[i], m, 6000, 1);
        munmap(m, 3 * PG);
    }
    struct stat st;
    fstat(fd, &st);
    printf("size after: %ld\n", (long)st.st_size);
    close(fd);

    /* Shrunk while mapped: the pages past the new end go, even those touched (and a
     * private copy), and come back as zeros when the file grows again. */
    for (int i = 0; i < 2; i++) {
        fd = make(path, 3 * PG);
        char *m = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, flags[i], fd, 0);
        if (m == MAP_FAILED) {
            printf("%s mmap: %s\n", names[i], strerror(errno));
            continue;
        }
        touch(names[i], m, PG + 1, 0);
        touch(names[i], m, 2 * PG + 1, 1);
        printf("%s ftruncate %d: %d\n", names[i], PG, ftruncate(fd, PG));
        touch(names[i], m, 10, 0);
        touch(names[i], m, PG + 1, 0);
        touch(names[i], m, 2 * PG + 1, 0);
        printf("%s ftruncate %d: %d\n", names[i], 3 * PG, ftruncate(fd, 3 * PG));
        touch(names[i], m, PG + 1, 0);
        touch(names[i], m, 2 * PG + 1, 0);
        munmap(m, 3 * PG);
        close(fd);
    }
    unlink(path);
}

static void existing(const char *file) {
    int fd = open(file, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        printf("open %s: %s\n", file, strerror(errno));
        return;
    }
    long size = st.st_size, pages = (size + PG - 1) / PG;
    printf("existing file: %ld bytes, %ld pages\n", size, pages);
    const int flags[] = {MAP_SHARED, MAP_PRIVATE};
    const char *names[] = {"existing shared", "existing private"};
    for (int i = 0; i < 2; i++) {
        char *m = mmap(NULL, (pages + 2) * PG, PROT_READ, flags[i], fd, 0);
        if (m == MAP_FAILED) {
            printf("%s mmap: %s\n", names[i], strerror(errno));
            continue;
        }
        touch(names[i], m, size - 1, 0);
        touch(names[i], m, size, 0);
        touch(names[i], m, pages * PG, 0);
        touch(names[i], m, (pages + 1) * PG + 5, 0);
        munmap(m, (pages + 2) * PG);
    }
    close(fd);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sigbus_eof DIR [FILE]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    past_end(argv[1]);
    if (argc > 2)
        existing(argv[2]);
    return 0;
}
